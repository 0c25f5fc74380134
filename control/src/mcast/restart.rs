//! The restart task: brings the list of full-member groups in line with what
//! the host wants, as ipoib_mcast_restart_task does.

use super::engine::Engine;
use super::flush::FlushReport;
use super::group::GroupFlags;
use super::probe::LockSite;
use ipoib_dataplane::wire::Gid;
use std::collections::BTreeSet;

/// What one restart pass changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestartReport {
    /// New full-member groups to be joined by the join task.
    pub added: usize,
    /// Send-only groups replaced by a full membership.
    pub promoted: usize,
    /// Full-member groups no longer wanted, left and freed.
    pub removed: FlushReport,
}

impl Engine {
    /// Sets the full-member groups the host wants (the broadcast group is
    /// always kept). Groups no longer wanted are left; send-only groups are
    /// never removed here, but a wanted one is promoted to full membership.
    pub fn restart(&self, desired: &[Gid]) -> RestartReport {
        let sh = &self.shared;
        let now = sh.clock.now();
        let mut report = RestartReport::default();
        let mut st = sh.lock(LockSite::Other);
        st.desired = desired.iter().copied().collect::<BTreeSet<Gid>>();
        let mut remove = Vec::new();
        if st.admin_up {
            for g in st.groups.values_mut() {
                g.flags.remove(GroupFlags::FOUND);
            }
            let wanted: Vec<Gid> = st.desired.iter().copied().collect();
            for mgid in wanted {
                match st.by_mgid.get(&mgid).copied() {
                    Some(key) if st.groups[&key].sendonly() => {
                        st.unlist(key);
                        remove.push(key);
                        let new = st.add_group(mgid, false, now);
                        st.groups
                            .get_mut(&new)
                            .expect("just added")
                            .flags
                            .insert(GroupFlags::FOUND);
                        st.stats.sendonly_promoted += 1;
                        report.promoted += 1;
                    }
                    Some(key) => {
                        st.groups
                            .get_mut(&key)
                            .expect("listed")
                            .flags
                            .insert(GroupFlags::FOUND);
                    }
                    None => {
                        let new = st.add_group(mgid, false, now);
                        st.groups
                            .get_mut(&new)
                            .expect("just added")
                            .flags
                            .insert(GroupFlags::FOUND);
                        report.added += 1;
                    }
                }
            }
            let broadcast = st.broadcast;
            let stale: Vec<u64> = st
                .groups
                .iter()
                .filter(|(k, g)| {
                    g.listed
                        && !g.sendonly()
                        && Some(**k) != broadcast
                        && !g.flags.contains(GroupFlags::FOUND)
                })
                .map(|(k, _)| *k)
                .collect();
            for key in stale {
                st.unlist(key);
                remove.push(key);
            }
        }
        sh.publish_if_dirty(&mut st);
        drop(st);
        report.removed = self.remove_unlisted(remove);
        sh.kick();
        report
    }

    /// The datapath used a send-only group: keeps it from being collected.
    pub fn touch_sendonly(&self, mgid: Gid) {
        let sh = &self.shared;
        let now = sh.clock.now();
        let mut st = sh.lock(LockSite::Other);
        if let Some(&key) = st.by_mgid.get(&mgid) {
            if let Some(g) = st.groups.get_mut(&key) {
                g.last_used = now;
            }
        }
    }
}
