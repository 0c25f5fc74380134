//! The control thread that runs the join task: woken by callbacks, by the
//! task's own next deadline, and at a short poll interval for the lcores'
//! request queue (lcores never wake it: they only push, lock-free).

use super::engine::Engine;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A running join-task thread; stopping it does not flush (call `down`).
pub struct JoinThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl JoinThread {
    /// `poll` bounds how long a queued send-only request can wait.
    pub fn spawn(engine: Engine, poll: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("mcast-join".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    let report = engine.join_task();
                    let now = engine.now();
                    let wait = report
                        .next_wakeup
                        .map_or(poll, |t| t.saturating_sub(now).min(poll));
                    engine.wait_for_work(wait.max(Duration::from_micros(50)));
                }
            })
            .expect("spawn join thread");
        JoinThread {
            stop,
            handle: Some(handle),
        }
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for JoinThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}
