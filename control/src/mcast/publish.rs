//! Publishing joined groups to the lcores as an immutable snapshot. The lcores
//! keep the per-group pending packets; they flush them when a group shows up
//! Joined and drop (counting) them when it shows up Failed.

use super::engine::{Engine, Shared, State};
use super::group::{GroupInfo, GroupStatus};
use super::probe::LockSite;
use crate::sync::Arc;
use ipoib_dataplane::tables::{McastRoute, McastState, McastTable};

impl Shared {
    pub fn publish_if_dirty(&self, st: &mut State) {
        if st.dirty {
            self.publish(st);
        }
    }

    pub fn publish(&self, st: &mut State) {
        st.generation += 1;
        st.stats.publishes += 1;
        st.dirty = false;
        let entries = st
            .groups
            .values()
            .filter(|g| g.listed)
            .filter_map(|g| match (g.status(), g.rec) {
                (GroupStatus::Joined, Some(r)) => Some((
                    g.mgid,
                    McastState::Joined(McastRoute {
                        mgid: g.mgid,
                        mlid: r.mlid,
                        qkey: r.qkey,
                        sl: r.sl,
                        mtu: r.mtu,
                    }),
                )),
                (GroupStatus::Failed, _) => Some((g.mgid, McastState::Failed)),
                _ => None,
            })
            .collect();
        self.table
            .store(Arc::new(McastTable::new(st.generation, entries)));
    }
}

impl Engine {
    /// Publishes the table now if anything changed since the last publish.
    pub fn publish(&self) {
        let mut st = self.shared.lock(LockSite::Other);
        self.shared.publish_if_dirty(&mut st);
    }

    /// State of every listed group, broadcast first, then by MGID.
    pub fn groups(&self) -> Vec<GroupInfo> {
        let st = self.shared.lock(LockSite::Other);
        let mut out: Vec<GroupInfo> = st
            .groups
            .iter()
            .filter(|(_, g)| g.listed)
            .map(|(k, g)| GroupInfo {
                mgid: g.mgid,
                flags: g.flags,
                status: g.status(),
                membership: g.mc,
                record: g.rec,
                backoff: g.backoff.current(),
                broadcast: st.broadcast == Some(*k),
                done_complete: g.done.is_complete(),
                counters: g.counters,
            })
            .collect();
        out.sort_by(|a, b| b.broadcast.cmp(&a.broadcast).then(a.mgid.cmp(&b.mgid)));
        out
    }

    pub fn group(&self, mgid: ipoib_dataplane::wire::Gid) -> Option<GroupInfo> {
        self.groups().into_iter().find(|g| g.mgid == mgid)
    }
}
