//! The device's asynchronous events, mapped to the join engine's flushes
//! as the kernel's IPoIB driver maps them (ipoib_event).

use crate::mcast::FlushLevel;
use rdma_sys::{AsyncEventKind, Context};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The flush an event asks for; `None` for events that change nothing
/// about memberships.
pub fn flush_level(kind: AsyncEventKind) -> Option<FlushLevel> {
    match kind {
        AsyncEventKind::ClientReregister | AsyncEventKind::SmChange | AsyncEventKind::GidChange => {
            Some(FlushLevel::Light)
        }
        AsyncEventKind::PortActive | AsyncEventKind::PortError | AsyncEventKind::LidChange => {
            Some(FlushLevel::Normal)
        }
        AsyncEventKind::PkeyChange => Some(FlushLevel::Heavy(None)),
        AsyncEventKind::Fatal | AsyncEventKind::Other(_) => None,
    }
}

/// Reads a device's async events and asks for the flush each one needs
/// (`on_flush` runs on the watcher's thread: it should hand the flush to
/// the control thread).
pub struct PortEventWatcher {
    stop: Arc<AtomicBool>,
    flushes: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl PortEventWatcher {
    pub fn start(
        ctx: Context,
        port: u8,
        on_flush: Box<dyn Fn(FlushLevel) + Send>,
    ) -> std::io::Result<Self> {
        ctx.set_async_nonblocking()
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flushes = Arc::new(AtomicU64::new(0));
        let thread = {
            let stop = stop.clone();
            let flushes = flushes.clone();
            std::thread::Builder::new()
                .name("port-events".into())
                .spawn(move || {
                    let fd = ctx.async_fd();
                    while !stop.load(Ordering::Relaxed) {
                        let mut pfd = libc::pollfd {
                            fd,
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        // SAFETY: one valid pollfd; the timeout bounds a stop's wait.
                        if unsafe { libc::poll(&mut pfd, 1, 50) } <= 0 {
                            continue;
                        }
                        while let Ok(Some(ev)) = ctx.next_async_event() {
                            if ev.port != 0 && ev.port != port {
                                continue;
                            }
                            let Some(level) = flush_level(ev.kind) else {
                                tracing::warn!(kind = ?ev.kind, "device event");
                                continue;
                            };
                            tracing::info!(kind = ?ev.kind, port = ev.port, ?level, "port event: flush");
                            on_flush(level);
                            flushes.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })?
        };
        Ok(PortEventWatcher {
            stop,
            flushes,
            thread: Some(thread),
        })
    }

    /// Flushes done so far.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PortEventWatcher {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_map_to_the_kernels_flush_levels() {
        assert_eq!(
            flush_level(AsyncEventKind::ClientReregister),
            Some(FlushLevel::Light)
        );
        assert_eq!(
            flush_level(AsyncEventKind::GidChange),
            Some(FlushLevel::Light)
        );
        assert_eq!(
            flush_level(AsyncEventKind::PortError),
            Some(FlushLevel::Normal)
        );
        assert_eq!(
            flush_level(AsyncEventKind::PortActive),
            Some(FlushLevel::Normal)
        );
        assert_eq!(
            flush_level(AsyncEventKind::LidChange),
            Some(FlushLevel::Normal)
        );
        assert_eq!(
            flush_level(AsyncEventKind::PkeyChange),
            Some(FlushLevel::Heavy(None))
        );
        assert_eq!(flush_level(AsyncEventKind::Fatal), None);
    }
}
