//! Bounded power-of-two rings with burst and bulk operations, named by mode
//! as DPDK's `rte_ring` is:
//!
//! | module   | producers | consumers | DPDK flags              |
//! |----------|-----------|-----------|-------------------------|
//! | [`spsc`] | one       | one       | `RING_F_SP_ENQ \| RING_F_SC_DEQ` |
//! | [`mpsc`] | many      | one       | `RING_F_SC_DEQ`          |
//!
//! SPSC rings connect lcore to lcore; MPSC rings are for queues that several
//! lcores feed, such as requests to a single service thread.
//!
//! Every mode offers the same operations on move-only items:
//!
//! - `push` / `pop`: one item.
//! - `enqueue_burst` / `dequeue_burst`: as many items as possible, moved
//!   between the ring and an [`arrayvec::ArrayVec`]; returns the count.
//! - `enqueue_bulk` / `dequeue_bulk`: all requested items or none; returns
//!   whether it happened.
//! - `enqueue_slice` / `dequeue_slice`: burst copies for `Copy` items.
//!
//! Capacity is rounded up to a power of two (see [`ring_capacity`]), so a
//! slot is found with a mask; 0 is rejected. Rings allocate only when
//! created, and dropping the last handle drops the items still inside.
//!
//! Head and tail indices live on separate cache lines, each side caches the
//! other side's index and re-reads it only when the cache says full or
//! empty, and a burst publishes its index once.
//!
//! The atomics and cells come from a small `sync` shim so that building
//! with `RUSTFLAGS="--cfg loom"` runs the loom model tests
//! (`tests/ring_loom.rs`) against this exact code.

mod burst;
mod capacity;
pub mod mpsc;
mod slots;
pub mod spsc;
mod sync;

pub use capacity::{ring_capacity, CapacityError};
