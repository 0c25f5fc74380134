//! Synchronisation primitives used by the engine. With the `shuttle` feature
//! they are shuttle's, so the model-checking tests control every interleaving.

#[cfg(feature = "shuttle")]
pub use shuttle::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc, Condvar, Mutex, MutexGuard, Weak,
};
#[cfg(feature = "shuttle")]
pub use shuttle::thread;

#[cfg(not(feature = "shuttle"))]
pub use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc, Condvar, Mutex, MutexGuard, Weak,
};
#[cfg(not(feature = "shuttle"))]
pub use std::thread;

/// Locks, ignoring poisoning: a panicking test thread must not hide the
/// engine's own invariant failures behind `PoisonError`s.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
