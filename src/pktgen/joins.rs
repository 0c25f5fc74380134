//! Multicast memberships of a pktgen phase on the verbs provider, through
//! the daemon's own control plane (rdma_cm joins, QP attach): every
//! interface joins its full-member groups, and send-only the groups its
//! streams send to that it is not a full member of, before the lcores
//! start, so each route and address handle comes from a join; all are left
//! once the phase is over.

use super::assemble::Port;
use super::plan::PlannedStream;
use crate::control_plane::{ControlPlane, McastBackend};
use crate::wiring::HostInfo;
use ipoib_config::Config;
use ipoib_control::rdmacm::{RdmaCmService, VerbsAttach};
use ipoib_control::{FaultSpec, GroupStatus};
use ipoib_dataplane::pktgen::Mode;
use ipoib_dataplane::tables::{JoinRequest, McastState};
use ipoib_dataplane::wire::{mgid_for_ip, Gid};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for every membership of a phase (joins on a slow device
/// retry with backoff).
const JOIN_WAIT: Duration = Duration::from_secs(60);

/// Send-only groups are kept for the whole phase, used or not.
const SENDONLY_KEEP: Duration = Duration::from_secs(365 * 86400);

/// The memberships of one phase, held until `leave`.
pub struct Joins {
    control: ControlPlane,
    services: Vec<(String, Arc<RdmaCmService>)>,
}

/// The multicast groups an interface's streams send to (sequence templates
/// included).
fn destinations(idx: usize, streams: &[PlannedStream]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for s in streams.iter().filter(|s| s.iface == idx) {
        out.push(s.to);
        if let Mode::Sequence(ts) = &s.spec.mode {
            out.extend(ts.iter().map(|t| t.dst));
        }
    }
    out.retain(|a| a.is_multicast());
    out.sort();
    out.dedup();
    out
}

impl Joins {
    /// Starts the control plane on `ports` (one rdma_cm service and queue-0
    /// attach each, in interface order), asks for the send-only joins and
    /// waits until every membership is joined and its route published.
    pub fn start(
        cfg: &Config,
        mcast: Vec<(Arc<RdmaCmService>, Arc<VerbsAttach>)>,
        ports: &[Port],
        streams: &[PlannedStream],
    ) -> Result<Joins, String> {
        let services = ports
            .iter()
            .zip(&mcast)
            .map(|(p, (s, _))| (p.name.clone(), s.clone()))
            .collect();
        let hosts: Vec<HostInfo> = ports
            .iter()
            .map(|p| HostInfo {
                name: p.name.clone(),
                port: p.qp,
                fabric_port: None,
                stats: p.queues.iter().map(|q| q.stats.clone()).collect(),
                queue_lcores: p.queues.iter().map(|q| q.lcore).collect(),
                mcast: p.mcast.clone(),
                join_requests: p.join_requests.clone(),
                groups: p.groups.clone(),
                tun: None,
                provider_xstats: Vec::new(),
            })
            .collect();
        let control = ControlPlane::start(
            &McastBackend::RdmaCm(mcast),
            None,
            &hosts,
            Vec::new(),
            cfg.control.join_timeout(),
            SENDONLY_KEEP,
            FaultSpec::none(),
            0,
        )?;
        let joins = Joins { control, services };
        match joins.join_all(cfg, ports, streams) {
            Ok(()) => Ok(joins),
            Err(e) => {
                let _ = joins.leave();
                Err(e)
            }
        }
    }

    /// Send-only requests for the streams' groups, then waits for every
    /// membership (full and send-only) and its published route.
    fn join_all(
        &self,
        cfg: &Config,
        ports: &[Port],
        streams: &[PlannedStream],
    ) -> Result<(), String> {
        let mut wanted: Vec<Vec<Gid>> = Vec::new();
        for (idx, p) in ports.iter().enumerate() {
            let pkey = cfg.interfaces[idx].pkey;
            let mgid = |g: IpAddr| {
                mgid_for_ip(g, pkey, 2).map_err(|e| format!("{}: group {g}: {e}", p.name))
            };
            let mut w = p
                .groups
                .iter()
                .map(|g| mgid(*g))
                .collect::<Result<Vec<_>, _>>()?;
            for g in destinations(idx, streams) {
                if p.groups.contains(&g) {
                    continue;
                }
                let m = mgid(g)?;
                // The lcore's own request on a first send, made up front.
                if !p.join_requests.push(JoinRequest {
                    mgid: m,
                    ifindex: idx as u16,
                }) {
                    return Err(format!(
                        "{}: send-only join of {g}: request queue full",
                        p.name
                    ));
                }
                w.push(m);
            }
            wanted.push(w);
        }
        let deadline = Instant::now() + JOIN_WAIT;
        loop {
            let missing = self.missing(ports, &wanted);
            let Some((port, what)) = missing else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "interface {port}: {what} not joined through rdma_cm within {} s",
                    JOIN_WAIT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The first interface with a membership not joined yet, and which.
    fn missing(&self, ports: &[Port], wanted: &[Vec<Gid>]) -> Option<(String, String)> {
        for ((name, engine), (p, w)) in self.control.engines.iter().zip(ports.iter().zip(wanted)) {
            if !engine.carrier() {
                return Some((name.clone(), "the broadcast group".into()));
            }
            let table = p.mcast.load();
            for m in w {
                let joined = engine
                    .group(*m)
                    .is_some_and(|g| g.status == GroupStatus::Joined);
                if !joined || !matches!(table.lookup(m), Some(McastState::Joined(_))) {
                    return Some((name.clone(), format!("group {m}")));
                }
            }
        }
        None
    }

    /// Leaves every membership (the QPs detached) and checks rdma_cm's
    /// books: an error names an interface with a membership left over.
    pub fn leave(self) -> Result<(), String> {
        let report = self.control.shutdown();
        let mut bad = Vec::new();
        for (name, s) in &self.services {
            s.shutdown();
            let st = s.stats();
            eprintln!(
                "pktgen: rdma_cm {name}: joins={} sendonly_joins={} leaves={} failed={} outstanding={}",
                st.joins,
                st.sendonly_joins,
                st.leaves,
                st.failed,
                st.outstanding()
            );
            if st.outstanding() != 0 || st.ids_created != st.ids_destroyed {
                bad.push(name.clone());
            }
        }
        tracing::debug!(left = report.leaves, "multicast memberships left");
        if bad.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "rdma_cm memberships left over on {}",
                bad.join(", ")
            ))
        }
    }
}
