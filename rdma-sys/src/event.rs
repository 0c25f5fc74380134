//! The device's asynchronous events (port up/down, LID/P_Key/GID change,
//! SM change, client re-register), read without blocking.

use crate::device::Context;
use crate::ffi::*;
use crate::VerbsError;

/// The events the IPoIB layer acts on; the rest are `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsyncEventKind {
    PortActive,
    PortError,
    LidChange,
    PkeyChange,
    SmChange,
    ClientReregister,
    GidChange,
    /// A CQ, QP or device error: the resources are broken.
    Fatal,
    Other(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncEvent {
    pub kind: AsyncEventKind,
    /// The port for port events, else 0.
    pub port: u8,
}

fn kind_of(t: ibv_event_type) -> AsyncEventKind {
    match t {
        IBV_EVENT_PORT_ACTIVE => AsyncEventKind::PortActive,
        IBV_EVENT_PORT_ERR => AsyncEventKind::PortError,
        IBV_EVENT_LID_CHANGE => AsyncEventKind::LidChange,
        IBV_EVENT_PKEY_CHANGE => AsyncEventKind::PkeyChange,
        IBV_EVENT_SM_CHANGE => AsyncEventKind::SmChange,
        IBV_EVENT_CLIENT_REREGISTER => AsyncEventKind::ClientReregister,
        IBV_EVENT_GID_CHANGE => AsyncEventKind::GidChange,
        IBV_EVENT_CQ_ERR | IBV_EVENT_QP_FATAL | IBV_EVENT_DEVICE_FATAL => AsyncEventKind::Fatal,
        other => AsyncEventKind::Other(other),
    }
}

fn is_port_event(t: ibv_event_type) -> bool {
    matches!(
        t,
        IBV_EVENT_PORT_ACTIVE
            | IBV_EVENT_PORT_ERR
            | IBV_EVENT_LID_CHANGE
            | IBV_EVENT_PKEY_CHANGE
            | IBV_EVENT_SM_CHANGE
            | IBV_EVENT_CLIENT_REREGISTER
            | IBV_EVENT_GID_CHANGE
    )
}

impl Context {
    /// The fd that becomes readable when an async event is pending.
    pub fn async_fd(&self) -> libc::c_int {
        // SAFETY: live context.
        unsafe { (*self.as_ptr()).async_fd }
    }

    /// Makes `next_async_event` non-blocking (once, before reading).
    pub fn set_async_nonblocking(&self) -> Result<(), VerbsError> {
        let fd = self.async_fd();
        // SAFETY: fcntl on the context's own fd.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(VerbsError::last("fcntl(async_fd)"));
        }
        // SAFETY: as above.
        let rc = unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) };
        if rc < 0 {
            return Err(VerbsError::last("fcntl(async_fd)"));
        }
        Ok(())
    }

    /// The next pending event, acknowledged; `None` when there is none
    /// (after `set_async_nonblocking`).
    pub fn next_async_event(&self) -> Result<Option<AsyncEvent>, VerbsError> {
        let mut ev = ibv_async_event::default();
        // SAFETY: live context, valid out-pointer.
        let rc = unsafe { (self.verbs().ibv_get_async_event)(self.as_ptr(), &mut ev) };
        if rc != 0 {
            let e = VerbsError::last("ibv_get_async_event");
            return if e.errno == libc::EAGAIN {
                Ok(None)
            } else {
                Err(e)
            };
        }
        let port = if is_port_event(ev.event_type) {
            // SAFETY: port events carry the port number in the union.
            unsafe { ev.element.port_num as u8 }
        } else {
            0
        };
        let kind = kind_of(ev.event_type);
        // SAFETY: every event read is acknowledged once.
        unsafe { (self.verbs().ibv_ack_async_event)(&mut ev) };
        Ok(Some(AsyncEvent { kind, port }))
    }
}
