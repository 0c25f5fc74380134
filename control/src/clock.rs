//! Injectable time. The engine reads time only through [`Clock`], so tests
//! drive timeouts and backoff by advancing a [`ManualClock`] instead of sleeping.

use crate::mcast::Completion;
use crate::sync::{lock, Arc, AtomicU64, Mutex, Ordering, Weak};
use std::time::{Duration, Instant};

/// Monotonic time as a `Duration` since the clock's origin.
pub trait Clock: Send + Sync {
    fn now(&self) -> Duration;
    /// Waits until `done` completes (true) or the clock reaches `deadline` (false).
    fn wait(&self, done: &Arc<Completion>, deadline: Duration) -> bool;
}

/// Real time.
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
    fn wait(&self, done: &Arc<Completion>, deadline: Duration) -> bool {
        done.wait_with(|| {
            let now = self.now();
            deadline.checked_sub(now).filter(|d| !d.is_zero())
        })
    }
}

/// Time that moves only when told to. Waiters are woken by [`ManualClock::advance`].
#[derive(Default)]
pub struct ManualClock {
    nanos: AtomicU64,
    waiters: Mutex<Vec<Weak<Completion>>>,
}

impl ManualClock {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn advance(&self, by: Duration) {
        self.nanos.fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
        let waiters: Vec<Arc<Completion>> = {
            let mut w = lock(&self.waiters);
            w.retain(|c| c.strong_count() > 0);
            w.iter().filter_map(Weak::upgrade).collect()
        };
        for c in waiters {
            c.poke();
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
    fn wait(&self, done: &Arc<Completion>, deadline: Duration) -> bool {
        lock(&self.waiters).push(Arc::downgrade(done));
        // `advance` pokes under the completion's lock, so checking the time
        // here (also under that lock) cannot miss a wake-up.
        done.wait_while_pending(|| self.now() < deadline)
    }
}

/// Real time sped up `scale` times: lets a fault scenario run seconds of
/// backoff and join timeouts in milliseconds.
pub struct ScaledClock {
    origin: Instant,
    scale: u32,
}

impl ScaledClock {
    pub fn new(scale: u32) -> Self {
        ScaledClock {
            origin: Instant::now(),
            scale: scale.max(1),
        }
    }
    /// Real time until the clock shows `t`.
    pub fn real_until(&self, t: Duration) -> Duration {
        t.saturating_sub(self.now()) / self.scale
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> Duration {
        self.origin.elapsed() * self.scale
    }
    fn wait(&self, done: &Arc<Completion>, deadline: Duration) -> bool {
        done.wait_with(|| {
            let left = self.real_until(deadline);
            (!left.is_zero()).then_some(left)
        })
    }
}
