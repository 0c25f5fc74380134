//! Per-group state. Every field is guarded by the engine's single mutex,
//! except `done`, which flush waits on with the mutex released.

use super::completion::Completion;
use super::service::{McastRecord, Membership};
use crate::sync::Arc;
use ipoib_dataplane::wire::Gid;
use std::fmt;
use std::time::Duration;

/// Group flags. BUSY means exactly "a join is in flight": whether a join has
/// completed is read from `mc`, never from a flag (seed rules 1 and 2).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct GroupFlags(u8);

impl GroupFlags {
    pub const SENDONLY: GroupFlags = GroupFlags(1);
    pub const FOUND: GroupFlags = GroupFlags(1 << 1);
    pub const ATTACHED: GroupFlags = GroupFlags(1 << 2);
    pub const BUSY: GroupFlags = GroupFlags(1 << 3);
    /// Every flag there is, with its name.
    pub const ALL: [(GroupFlags, &'static str); 4] = [
        (GroupFlags::BUSY, "BUSY"),
        (GroupFlags::SENDONLY, "SENDONLY"),
        (GroupFlags::FOUND, "FOUND"),
        (GroupFlags::ATTACHED, "ATTACHED"),
    ];

    pub const fn empty() -> Self {
        GroupFlags(0)
    }
    pub const fn bits(self) -> u8 {
        self.0
    }
    pub const fn contains(self, other: GroupFlags) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn insert(&mut self, other: GroupFlags) {
        self.0 |= other.0;
    }
    pub fn remove(&mut self, other: GroupFlags) {
        self.0 &= !other.0;
    }
}

impl fmt::Display for GroupFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (flag, name) in GroupFlags::ALL {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

impl fmt::Debug for GroupFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Retry delay: 1, 2, 4, 8, 16, 16, ... seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    secs: u32,
}

impl Backoff {
    pub const MAX_SECS: u32 = 16;

    pub const fn new() -> Self {
        Backoff { secs: 1 }
    }
    /// The delay before the next attempt.
    pub fn current(&self) -> Duration {
        Duration::from_secs(u64::from(self.secs))
    }
    /// Takes the current delay and doubles the next one, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.current();
        self.secs = (self.secs * 2).min(Self::MAX_SECS);
        d
    }
    pub fn reset(&mut self) {
        self.secs = 1;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// Per-group counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCounters {
    pub joins_started: u64,
    pub joins_ok: u64,
    pub joins_failed: u64,
}

/// What the group looks like from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupStatus {
    /// A join is in flight (BUSY).
    Joining,
    /// `mc` holds a successful membership.
    Joined,
    /// Waiting for its next attempt.
    Waiting,
    /// Send-only group that used up its retry; packets for it are dropped.
    Failed,
}

impl fmt::Display for GroupStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GroupStatus::Joining => "joining",
            GroupStatus::Joined => "joined",
            GroupStatus::Waiting => "waiting",
            GroupStatus::Failed => "failed",
        })
    }
}

pub(crate) struct Group {
    pub mgid: Gid,
    pub flags: GroupFlags,
    pub done: Arc<Completion>,
    /// The service's membership: Some from the moment `join` returned until the
    /// callback reports an error (or the group is left). None = not joined.
    pub mc: Option<Membership>,
    /// Record of the last successful join.
    pub rec: Option<McastRecord>,
    pub backoff: Backoff,
    pub delay_until: Duration,
    /// Token of the join in flight; callbacks with another token are stale.
    pub attempt: u64,
    pub join_started: Duration,
    /// Send-only: failed attempts since the last success.
    pub failures: u32,
    /// Send-only group that gave up.
    pub failed: bool,
    /// False once a flush or the restart task took the group off the list:
    /// no join starts on it any more and it is about to be freed.
    pub listed: bool,
    pub last_used: Duration,
    pub counters: GroupCounters,
}

impl Group {
    pub fn new(mgid: Gid, sendonly: bool, now: Duration) -> Self {
        let mut flags = GroupFlags::empty();
        if sendonly {
            flags.insert(GroupFlags::SENDONLY);
        }
        Group {
            mgid,
            flags,
            done: Arc::new(Completion::completed()),
            mc: None,
            rec: None,
            backoff: Backoff::new(),
            delay_until: now,
            attempt: 0,
            join_started: now,
            failures: 0,
            failed: false,
            listed: true,
            last_used: now,
            counters: GroupCounters::default(),
        }
    }
    pub fn busy(&self) -> bool {
        self.flags.contains(GroupFlags::BUSY)
    }
    pub fn sendonly(&self) -> bool {
        self.flags.contains(GroupFlags::SENDONLY)
    }
    /// Joined means "holds a successful membership", read from `mc` (rule 3 of the seed).
    pub fn joined(&self) -> bool {
        !self.busy() && self.mc.is_some()
    }
    pub fn status(&self) -> GroupStatus {
        if self.busy() {
            GroupStatus::Joining
        } else if self.mc.is_some() {
            GroupStatus::Joined
        } else if self.failed {
            GroupStatus::Failed
        } else {
            GroupStatus::Waiting
        }
    }
    /// Ready for a join attempt by the join task.
    pub fn wants_join(&self, now: Duration) -> bool {
        self.listed && !self.busy() && self.mc.is_none() && !self.failed && now >= self.delay_until
    }
}

/// A copy of one group's state, for printing and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupInfo {
    pub mgid: Gid,
    pub flags: GroupFlags,
    pub status: GroupStatus,
    pub membership: Option<Membership>,
    pub record: Option<McastRecord>,
    pub backoff: Duration,
    pub broadcast: bool,
    /// The group's `done` is complete: no join in flight is owed a completion.
    pub done_complete: bool,
    pub counters: GroupCounters,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_print_by_name() {
        let mut f = GroupFlags::empty();
        assert_eq!(f.to_string(), "-");
        f.insert(GroupFlags::BUSY);
        f.insert(GroupFlags::ATTACHED);
        assert_eq!(f.to_string(), "BUSY|ATTACHED");
        f.remove(GroupFlags::BUSY);
        assert!(!f.contains(GroupFlags::BUSY) && f.contains(GroupFlags::ATTACHED));
    }

    #[test]
    fn backoff_doubles_to_sixteen_seconds_and_resets() {
        let mut b = Backoff::new();
        let secs: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 16, 16]);
        b.reset();
        assert_eq!(b.current(), Duration::from_secs(1));
    }
}
