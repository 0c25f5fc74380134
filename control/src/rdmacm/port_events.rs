//! The device's asynchronous events, mapped to the join engine's flushes
//! as the kernel's IPoIB driver maps them (ipoib_event).

use crate::mcast::FlushLevel;
use rdma_sys::{AsyncEvent, AsyncEventKind, Context};
use std::os::fd::RawFd;

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

/// The flush one async event asks of the interfaces on `port`: `None`
/// for another port's events and for events that change no membership.
pub fn flush_for(ev: &AsyncEvent, port: u8) -> Option<FlushLevel> {
    if ev.port != 0 && ev.port != port {
        return None;
    }
    flush_level(ev.kind)
}

/// A device's async event queue, read without blocking by the control
/// thread when its fd is readable.
pub struct PortEvents {
    ctx: Context,
    port: u8,
    flushes: u64,
}

impl PortEvents {
    pub fn new(ctx: Context, port: u8) -> std::io::Result<Self> {
        ctx.set_async_nonblocking()
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno))?;
        Ok(PortEvents {
            ctx,
            port,
            flushes: 0,
        })
    }

    /// Readable while an event is pending.
    pub fn fd(&self) -> RawFd {
        self.ctx.async_fd()
    }

    /// The flushes the pending events ask for, in order (never blocks).
    pub fn read(&mut self) -> Vec<FlushLevel> {
        let mut out = Vec::new();
        loop {
            match self.ctx.next_async_event() {
                Ok(Some(ev)) => match flush_for(&ev, self.port) {
                    Some(level) => {
                        tracing::info!(kind = ?ev.kind, port = ev.port, ?level, "port event: flush");
                        out.push(level);
                    }
                    None => tracing::warn!(kind = ?ev.kind, port = ev.port, "device event"),
                },
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "device async events");
                    break;
                }
            }
        }
        self.flushes += out.len() as u64;
        out
    }

    /// Flushes asked for so far.
    pub fn flushes(&self) -> u64 {
        self.flushes
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

    #[test]
    fn another_ports_events_flush_nothing() {
        let ev = |port| AsyncEvent {
            kind: AsyncEventKind::PortError,
            port,
        };
        assert_eq!(flush_for(&ev(1), 1), Some(FlushLevel::Normal));
        assert_eq!(flush_for(&ev(2), 1), None);
        // Device-wide events (port 0) concern every port.
        assert_eq!(flush_for(&ev(0), 1), Some(FlushLevel::Normal));
    }
}
