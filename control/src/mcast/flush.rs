//! Interface up/down and port-event flushes. A flush takes groups off the
//! list, waits for every BUSY one's `done` with the mutex released, then
//! leaves exactly the groups whose `mc` is valid and frees them (rule 5).

use super::engine::{Engine, Pending};
use super::group::GroupFlags;
use super::probe::{LockSite, ProbeEvent};
use super::service::Membership;
use ipoib_dataplane::wire::Gid;

/// How deep a port event flushes, as the kernel's IPOIB_FLUSH_* levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushLevel {
    /// Client re-register, GID change: memberships are redone, carrier stays.
    Light,
    /// Port error/active, LID change: carrier drops until broadcast rejoins.
    Normal,
    /// P_Key change: as Normal, and the broadcast MGID may change with the P_Key.
    Heavy(Option<Gid>),
}

impl FlushLevel {
    pub fn name(self) -> &'static str {
        match self {
            FlushLevel::Light => "light",
            FlushLevel::Normal => "normal",
            FlushLevel::Heavy(_) => "heavy",
        }
    }
}

/// What a flush (or removal) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    pub removed: usize,
    /// BUSY groups whose `done` was waited for.
    pub waited: usize,
    pub left: usize,
    /// Waits that hit the join deadline and abandoned the join.
    pub timed_out: usize,
}

impl Engine {
    /// Interface up: creates the broadcast group and the desired groups; the
    /// join task does the rest.
    pub fn up(&self) {
        let sh = &self.shared;
        let now = sh.clock.now();
        let mut st = sh.lock(LockSite::Other);
        st.admin_up = true;
        populate(&mut st, now);
        drop(st);
        sh.kick();
    }

    /// Interface down: carrier off, every group left and freed. Returns once
    /// no join is in flight and every valid membership was left.
    pub fn down(&self) -> FlushReport {
        let keys = {
            let mut st = self.shared.lock(LockSite::Flush);
            st.admin_up = false;
            self.shared.set_carrier(&mut st, false);
            st.stats.flushes += 1;
            let keys: Vec<u64> = st
                .groups
                .iter()
                .filter(|(_, g)| g.listed)
                .map(|(k, _)| *k)
                .collect();
            for &k in &keys {
                st.unlist(k);
            }
            // Requests queued while going down are for the old interface.
            while self.shared.requests.pop().is_some() {}
            self.shared.publish_if_dirty(&mut st);
            keys
        };
        self.remove_unlisted(keys)
    }

    /// Port event flush; rejoins (broadcast first) if the interface is up.
    pub fn flush(&self, level: FlushLevel) -> FlushReport {
        let keys = {
            let mut st = self.shared.lock(LockSite::Flush);
            st.stats.flushes += 1;
            if level != FlushLevel::Light {
                self.shared.set_carrier(&mut st, false);
            }
            if let FlushLevel::Heavy(Some(mgid)) = level {
                st.broadcast_mgid = mgid;
            }
            let keys: Vec<u64> = st
                .groups
                .iter()
                .filter(|(_, g)| g.listed)
                .map(|(k, _)| *k)
                .collect();
            for &k in &keys {
                st.unlist(k);
            }
            self.shared.publish_if_dirty(&mut st);
            keys
        };
        let report = self.remove_unlisted(keys);
        let sh = &self.shared;
        tracing::info!(
            event = "flush",
            interface = %sh.name,
            level = level.name(),
            removed = report.removed,
            left = report.left,
            waited = report.waited,
            timed_out = report.timed_out,
            "multicast flush"
        );
        let now = sh.clock.now();
        let mut st = sh.lock(LockSite::Flush);
        if st.admin_up {
            populate(&mut st, now);
        }
        drop(st);
        sh.kick();
        report
    }

    /// Waits for the BUSY ones among already unlisted groups, then leaves the
    /// valid memberships and frees the groups.
    pub(crate) fn remove_unlisted(&self, keys: Vec<u64>) -> FlushReport {
        let sh = &self.shared;
        let mut report = FlushReport {
            removed: keys.len(),
            ..FlushReport::default()
        };
        let busy: Vec<_> = {
            let st = sh.lock(LockSite::Flush);
            keys.iter()
                .filter_map(|k| st.groups.get(k).map(|g| (*k, g)))
                .filter(|(_, g)| g.busy())
                .map(|(k, g)| {
                    (
                        k,
                        g.mgid,
                        g.done.clone(),
                        g.join_started + sh.config.join_timeout,
                    )
                })
                .collect()
        };
        for (key, mgid, done, deadline) in busy {
            report.waited += 1;
            sh.probe.on(ProbeEvent::FlushWaiting(mgid));
            let answered = if sh.service.driven() {
                wait_driven(sh, &done, deadline)
            } else {
                sh.clock.wait(&done, deadline)
            };
            if !answered {
                // No answer by the join deadline: abandon it ourselves.
                let mut st = sh.lock(LockSite::Flush);
                let now = sh.clock.now().max(deadline);
                let fired: Pending = sh.expire_join(&mut st, key, now);
                report.timed_out += fired.len();
                drop(st);
                sh.fire(fired);
                done.wait();
            }
            sh.probe.on(ProbeEvent::FlushWaited(mgid));
        }
        let leaves: Vec<(Gid, Membership)> = {
            let mut st = sh.lock(LockSite::Flush);
            let mut leaves = Vec::new();
            for key in &keys {
                let Some(mut g) = st.groups.remove(key) else {
                    continue;
                };
                if g.flags.contains(GroupFlags::ATTACHED) {
                    g.flags.remove(GroupFlags::ATTACHED);
                    sh.attach.detach(g.mgid, g.rec.map_or(0, |r| r.mlid));
                }
                if let Some(m) = g.mc.take() {
                    leaves.push((g.mgid, m));
                }
            }
            st.stats.leaves += leaves.len() as u64;
            sh.publish_if_dirty(&mut st);
            leaves
        };
        report.left = leaves.len();
        for (mgid, m) in leaves {
            tracing::info!(event = "leave", interface = %sh.name, %mgid, "multicast group left");
            sh.probe.on(ProbeEvent::Leave(mgid, m));
            sh.service.leave(m);
        }
        sh.probe.on(ProbeEvent::FlushDone);
        report
    }
}

/// Waits for `done` while reading the service's answers, in short real-time
/// slices, until `deadline` on the engine's clock.
fn wait_driven(
    sh: &super::engine::Shared,
    done: &crate::sync::Arc<super::Completion>,
    deadline: std::time::Duration,
) -> bool {
    loop {
        sh.service.progress();
        if done.is_complete() {
            return true;
        }
        if sh.clock.now() >= deadline {
            return false;
        }
        done.wait_with({
            let mut once = Some(DRIVEN_SLICE);
            move || once.take()
        });
    }
}

/// How long a driven flush sleeps between two reads of its service's answers.
const DRIVEN_SLICE: std::time::Duration = std::time::Duration::from_millis(1);

/// (Re)creates the broadcast group and the desired full-member groups.
fn populate(st: &mut super::engine::State, now: std::time::Duration) {
    if st.broadcast.is_none() {
        let mgid = st.broadcast_mgid;
        let key = match st.by_mgid.get(&mgid) {
            Some(&existing) => existing,
            None => st.add_group(mgid, false, now),
        };
        st.broadcast = Some(key);
    }
    let desired: Vec<Gid> = st.desired.iter().copied().collect();
    for mgid in desired {
        if !st.by_mgid.contains_key(&mgid) {
            st.add_group(mgid, false, now);
        }
    }
}
