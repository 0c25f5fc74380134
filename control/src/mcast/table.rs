//! A printable table of the groups, for the daemon's output.

use super::group::GroupInfo;
use std::fmt;

/// `Display`s one line per group: MGID, flags, state, backoff, MTU, counters.
pub struct GroupsTable<'a>(pub &'a [GroupInfo]);

impl fmt::Display for GroupsTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<40} {:<22} {:<8} {:>7} {:>5} {:>6} {:>6}",
            "MGID", "FLAGS", "STATE", "BACKOFF", "MTU", "JOINS", "FAILS"
        )?;
        for g in self.0 {
            let name = if g.broadcast {
                format!("{} (bcast)", g.mgid)
            } else {
                g.mgid.to_string()
            };
            let mtu = g
                .record
                .map_or_else(|| "-".to_string(), |r| r.mtu.to_string());
            writeln!(
                f,
                "{:<40} {:<22} {:<8} {:>6}s {:>5} {:>6} {:>6}",
                name,
                g.flags.to_string(),
                g.status.to_string(),
                g.backoff.as_secs(),
                mtu,
                g.counters.joins_started,
                g.counters.joins_failed
            )?;
        }
        Ok(())
    }
}
