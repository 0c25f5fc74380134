//! A reusable completion (the kernel's `struct completion`): re-initialised
//! before every join, completed exactly once per join, waited on by flush.

use crate::sync::{lock, Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct Completion {
    done: Mutex<bool>,
    cv: Condvar,
}

impl Completion {
    /// A completion that is already complete: a group with no join in flight.
    pub fn completed() -> Self {
        Completion {
            done: Mutex::new(true),
            cv: Condvar::new(),
        }
    }
    pub fn reinit(&self) {
        *lock(&self.done) = false;
    }
    pub fn complete(&self) {
        *lock(&self.done) = true;
        self.cv.notify_all();
    }
    pub fn is_complete(&self) -> bool {
        *lock(&self.done)
    }
    /// Waits with no deadline.
    pub fn wait(&self) {
        let mut d = lock(&self.done);
        while !*d {
            d = self.cv.wait(d).unwrap_or_else(|e| e.into_inner());
        }
    }
    /// Wakes waiters without completing, so they re-check a deadline.
    pub(crate) fn poke(&self) {
        let _d = lock(&self.done);
        self.cv.notify_all();
    }
    /// Waits while `keep_waiting` holds (checked under the completion's lock).
    pub(crate) fn wait_while_pending(&self, mut keep_waiting: impl FnMut() -> bool) -> bool {
        let mut d = lock(&self.done);
        loop {
            if *d {
                return true;
            }
            if !keep_waiting() {
                return false;
            }
            d = self.cv.wait(d).unwrap_or_else(|e| e.into_inner());
        }
    }
    /// Waits in real-time slices; `remaining` returns None once the deadline passed.
    pub(crate) fn wait_with(&self, mut remaining: impl FnMut() -> Option<Duration>) -> bool {
        let mut d = lock(&self.done);
        loop {
            if *d {
                return true;
            }
            let Some(left) = remaining() else {
                return false;
            };
            d = self
                .cv
                .wait_timeout(d, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
