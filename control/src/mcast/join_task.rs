//! The join task: the only place joins start. Broadcast first (it gates
//! carrier and everything else), then full-member groups, then the send-only
//! requests the lcores queued (seed rule 7 / DESIGN rule 6).

use super::engine::{Engine, Pending, Shared, State};
use super::group::GroupFlags;
use super::probe::{LockSite, ProbeEvent};
use super::service::{GroupTemplate, JoinParams, JoinState};
use crate::sync::{Arc, MutexGuard};
use std::time::Duration;

/// What one pass of the join task did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JoinTaskReport {
    /// Joins started in this pass.
    pub started: usize,
    /// Joins abandoned for having no answer in time.
    pub timed_out: usize,
    /// Idle send-only groups left and freed.
    pub collected: usize,
    /// When the task has something to do next (a backoff or a join deadline).
    pub next_wakeup: Option<Duration>,
}

impl Engine {
    /// One pass of the join task. Call it when kicked and at `next_wakeup`.
    pub fn join_task(&self) -> JoinTaskReport {
        let sh = &self.shared;
        let now = sh.clock.now();
        let mut report = JoinTaskReport::default();
        let mut pending: Pending = Vec::new();
        let mut st = sh.lock(LockSite::JoinTask);
        if !st.admin_up {
            return report;
        }
        let busy: Vec<u64> = st
            .groups
            .iter()
            .filter(|(_, g)| g.busy())
            .map(|(k, _)| *k)
            .collect();
        for key in busy {
            let fired = sh.expire_join(&mut st, key, now);
            report.timed_out += fired.len();
            pending.extend(fired);
        }
        drain_requests(sh, &mut st, now);

        // Nothing starts while no broadcast group is listed (mid-flush), but
        // expired joins above must still complete below.
        if let Some(bkey) = st.broadcast {
            st = start_due_joins(sh, st, bkey, now, &mut pending, &mut report);
        }

        let idle: Vec<u64> = st
            .groups
            .iter()
            .filter(|(_, g)| {
                g.listed
                    && g.sendonly()
                    && !g.busy()
                    && now.saturating_sub(g.last_used) >= sh.config.sendonly_idle
            })
            .map(|(k, _)| *k)
            .collect();
        for &key in &idle {
            st.unlist(key);
        }
        st.stats.sendonly_collected += idle.len() as u64;
        report.collected = idle.len();
        report.next_wakeup = next_wakeup(sh, &st, now);
        sh.publish_if_dirty(&mut st);
        drop(st);
        sh.fire(pending);
        if !idle.is_empty() {
            self.remove_unlisted(idle);
        }
        report
    }
}

/// Broadcast first; once it is joined, full members, then send-only groups.
fn start_due_joins<'a>(
    sh: &'a Arc<Shared>,
    mut st: MutexGuard<'a, State>,
    bkey: u64,
    now: Duration,
    pending: &mut Pending,
    report: &mut JoinTaskReport,
) -> MutexGuard<'a, State> {
    if st.broadcast_joined().is_none() {
        if st.groups[&bkey].wants_join(now) {
            let params = sh.params(&st, bkey, None);
            st = sh.start_join(st, bkey, params, now, pending);
            report.started += 1;
        }
        return st;
    }
    // Full members before send-only ones, in creation order.
    let mut keys: Vec<(bool, u64)> = st
        .groups
        .iter()
        .filter(|(_, g)| g.wants_join(now))
        .map(|(k, g)| (g.sendonly(), *k))
        .collect();
    keys.sort_unstable();
    for (_, key) in keys {
        // The broadcast record may have changed (or gone) meanwhile.
        let Some(template) = st
            .broadcast_joined()
            .and_then(|b| b.rec)
            .map(|r| GroupTemplate::from(&r))
        else {
            break;
        };
        if !st.groups.get(&key).is_some_and(|g| g.wants_join(now)) {
            continue;
        }
        let params = sh.params(&st, key, Some(template));
        st = sh.start_join(st, key, params, now, pending);
        report.started += 1;
    }
    st
}

/// Takes the lcores' send-only requests: a new MGID becomes a SENDONLY group.
fn drain_requests(sh: &Shared, st: &mut State, now: Duration) {
    while let Some(req) = sh.requests.pop() {
        st.stats.join_requests += 1;
        if req.ifindex != sh.config.ifindex {
            st.stats.requests_other_if += 1;
            continue;
        }
        match st.by_mgid.get(&req.mgid) {
            Some(&key) => {
                if let Some(g) = st.groups.get_mut(&key) {
                    g.last_used = now;
                    if g.failed {
                        // New traffic for a group that gave up: try again
                        // (as the kernel does when a packet is queued).
                        g.failed = false;
                        g.failures = 0;
                        st.stats.sendonly_rearmed += 1;
                        st.dirty = true;
                    }
                }
            }
            None => {
                st.add_group(req.mgid, true, now);
            }
        }
    }
}

fn next_wakeup(sh: &Shared, st: &State, now: Duration) -> Option<Duration> {
    st.groups
        .values()
        .filter_map(|g| {
            if g.busy() {
                Some(g.join_started + sh.config.join_timeout)
            } else if g.listed && g.mc.is_none() && !g.failed && g.delay_until > now {
                Some(g.delay_until)
            } else {
                None
            }
        })
        .min()
}

impl Shared {
    fn params(&self, st: &State, key: u64, template: Option<GroupTemplate>) -> JoinParams {
        let g = &st.groups[&key];
        JoinParams {
            mgid: g.mgid,
            port_gid: self.config.port_gid,
            join_state: if g.sendonly() {
                JoinState::SendOnly
            } else {
                JoinState::Full
            },
            template,
        }
    }

    /// Starts one join: `done` re-initialised, then BUSY set (rule 2), then the
    /// service called with the mutex held so its callback cannot look at `mc`
    /// before `join` returned and `mc` was stored (rule 4).
    #[cfg(not(broken_engine))]
    fn start_join<'a>(
        self: &'a Arc<Self>,
        mut st: MutexGuard<'a, State>,
        key: u64,
        params: JoinParams,
        now: Duration,
        pending: &mut Pending,
    ) -> MutexGuard<'a, State> {
        let token = self.mark_busy(&mut st, key, now);
        let callback = self.callback(key, params.mgid, token);
        self.probe.on(ProbeEvent::JoinCalling(params.mgid));
        let result = self.service.join(params, callback);
        self.join_returned(&mut st, key, params, result, now, pending);
        st
    }

    /// The behaviour the seed fixed, kept only to show the race tests catch
    /// it: the mutex is dropped around `join`, `mc` is stored afterwards.
    #[cfg(broken_engine)]
    fn start_join<'a>(
        self: &'a Arc<Self>,
        mut st: MutexGuard<'a, State>,
        key: u64,
        params: JoinParams,
        now: Duration,
        pending: &mut Pending,
    ) -> MutexGuard<'a, State> {
        let token = self.mark_busy(&mut st, key, now);
        let callback = self.callback(key, params.mgid, token);
        drop(st);
        self.probe.on(ProbeEvent::JoinCalling(params.mgid));
        let result = self.service.join(params, callback);
        let mut st = self.lock(LockSite::JoinTask);
        self.join_returned(&mut st, key, params, result, now, pending);
        st
    }

    fn mark_busy(&self, st: &mut State, key: u64, now: Duration) -> u64 {
        let token = st.next_attempt;
        st.next_attempt += 1;
        st.stats.joins_started += 1;
        let g = st.groups.get_mut(&key).expect("group to join exists");
        g.done.reinit();
        self.probe.on(ProbeEvent::DoneReinit(g.mgid));
        g.flags.insert(GroupFlags::BUSY);
        self.probe.on(ProbeEvent::BusySet(g.mgid));
        g.attempt = token;
        g.join_started = now;
        g.counters.joins_started += 1;
        token
    }

    fn join_returned(
        &self,
        st: &mut State,
        key: u64,
        params: JoinParams,
        result: Result<super::service::Membership, super::service::JoinError>,
        now: Duration,
        pending: &mut Pending,
    ) {
        match result {
            Ok(m) => {
                if let Some(g) = st.groups.get_mut(&key) {
                    g.mc = Some(m);
                    self.probe.on(ProbeEvent::McSet(params.mgid, m));
                }
            }
            Err(e) => {
                self.probe.on(ProbeEvent::JoinNotStarted(params.mgid));
                st.stats.joins_not_started += 1;
                self.join_failed(st, key, e, now);
                pending.extend(self.clear_busy(st, key));
            }
        }
    }
}
