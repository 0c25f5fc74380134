//! A reusable completion (the kernel's `struct completion`): re-initialised
//! before every join, completed once per join, waited on by flush.
//!
//! Each re-initialisation starts a new generation and completing names the
//! generation it completes. A callback that released the mutex but has not
//! completed yet when the next join re-initialises `done` would otherwise
//! complete the *new* join's `done`, and a flush waiting on it would leave a
//! membership whose answer is still to come (found by the shuttle model).

use crate::sync::{lock, Condvar, Mutex};
use std::time::Duration;

struct State {
    done: bool,
    generation: u64,
}

pub struct Completion {
    state: Mutex<State>,
    cv: Condvar,
}

impl Default for Completion {
    fn default() -> Self {
        Completion {
            state: Mutex::new(State {
                done: false,
                generation: 0,
            }),
            cv: Condvar::new(),
        }
    }
}

impl Completion {
    /// A completion that is already complete: a group with no join in flight.
    pub fn completed() -> Self {
        Completion {
            state: Mutex::new(State {
                done: true,
                generation: 0,
            }),
            cv: Condvar::new(),
        }
    }
    /// Starts a new generation, not complete; returns it.
    pub fn reinit(&self) -> u64 {
        let mut s = lock(&self.state);
        s.generation += 1;
        s.done = false;
        s.generation
    }
    pub fn generation(&self) -> u64 {
        lock(&self.state).generation
    }
    /// Completes `generation` if it is still the current one; returns whether it did.
    pub fn complete(&self, generation: u64) -> bool {
        let mut s = lock(&self.state);
        if s.generation != generation || s.done {
            return false;
        }
        s.done = true;
        drop(s);
        self.cv.notify_all();
        true
    }
    pub fn is_complete(&self) -> bool {
        lock(&self.state).done
    }
    /// Waits with no deadline.
    pub fn wait(&self) {
        let mut s = lock(&self.state);
        while !s.done {
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
    /// Wakes waiters without completing, so they re-check a deadline.
    pub(crate) fn poke(&self) {
        let _s = lock(&self.state);
        self.cv.notify_all();
    }
    /// Waits while `keep_waiting` holds (checked under the completion's lock).
    pub(crate) fn wait_while_pending(&self, mut keep_waiting: impl FnMut() -> bool) -> bool {
        let mut s = lock(&self.state);
        loop {
            if s.done {
                return true;
            }
            if !keep_waiting() {
                return false;
            }
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
    /// Waits in real-time slices; `remaining` returns None once the deadline passed.
    pub(crate) fn wait_with(&self, mut remaining: impl FnMut() -> Option<Duration>) -> bool {
        let mut s = lock(&self.state);
        loop {
            if s.done {
                return true;
            }
            let Some(left) = remaining() else {
                return false;
            };
            s = self
                .cv
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
