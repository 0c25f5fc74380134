//! Observation points inside the engine. Tests use them to check the seed's
//! ordering rules and to place a service's callback at exact interleavings.

use super::service::Membership;
use ipoib_dataplane::wire::Gid;

/// Where the engine's mutex was found held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockSite {
    JoinTask,
    Callback,
    Flush,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeEvent {
    DoneReinit(Gid),
    BusySet(Gid),
    /// About to call `MulticastService::join`.
    JoinCalling(Gid),
    /// `join` returned and its membership was stored in `mc`.
    McSet(Gid, Membership),
    /// `join` returned an error: no callback will follow.
    JoinNotStarted(Gid),
    /// First thing in the callback, before taking the mutex.
    CallbackEntered(Gid),
    /// The callback holds the mutex; `mc_valid` is what it found in `mc`.
    CallbackLocked {
        mgid: Gid,
        mc_valid: bool,
    },
    /// A callback for an abandoned join was ignored.
    StaleCallback(Gid),
    BusyCleared(Gid),
    /// The mutex is released and `done` is about to be completed.
    CompletingDone(Gid),
    DoneCompleted(Gid),
    /// A completion for a join whose `done` was already re-initialised for
    /// the next join: ignored.
    StaleCompletion(Gid),
    /// The join had no answer in time.
    TimedOut(Gid),
    /// Flush is about to wait for a BUSY group's `done` (mutex not held).
    FlushWaiting(Gid),
    FlushWaited(Gid),
    /// Flush leaves this membership.
    Leave(Gid, Membership),
    /// A flush (or removal) pass returned.
    FlushDone,
    /// The mutex was held by someone else when this site wanted it.
    MutexContended(LockSite),
}

impl ProbeEvent {
    pub fn mgid(&self) -> Option<Gid> {
        use ProbeEvent::*;
        match *self {
            DoneReinit(g)
            | BusySet(g)
            | JoinCalling(g)
            | McSet(g, _)
            | JoinNotStarted(g)
            | CallbackEntered(g)
            | StaleCallback(g)
            | BusyCleared(g)
            | CompletingDone(g)
            | DoneCompleted(g)
            | StaleCompletion(g)
            | TimedOut(g)
            | FlushWaiting(g)
            | FlushWaited(g)
            | Leave(g, _) => Some(g),
            CallbackLocked { mgid, .. } => Some(mgid),
            FlushDone | MutexContended(_) => None,
        }
    }
}

pub trait Probe: Send + Sync {
    /// Called synchronously at the point named by the event; may block to
    /// order threads (tests only), but must not take the engine's mutex.
    fn on(&self, event: ProbeEvent);
}

/// The default: observes nothing.
pub struct NoProbe;

impl Probe for NoProbe {
    fn on(&self, _event: ProbeEvent) {}
}
