//! The daemon's answers: what it runs, its counters, its multicast and
//! neighbour state; flush and join/leave run on the control thread.

use super::protocol::{Level, Request};
use super::server::Backend;
use crate::control_plane::{ControlCtx, ControlJob, ControlPlane};
use crate::reload::{GroupNames, Reloader};
use crate::wiring::HostInfo;
use ipoib_config::Config;
use ipoib_control::{Engine, FlushLevel, GroupFlags, GroupInfo};
use ipoib_dataplane::capture::{Capture, CaptureStatus, MAX_SNAPLEN};
use ipoib_dataplane::lcore::TunStats;
use ipoib_dataplane::mem::Mempool;
use ipoib_dataplane::provider::fabric::{DropReason, Fabric};
use ipoib_dataplane::provider::ProviderXstats;
use ipoib_dataplane::stats::{IfaceStats, StatsSnapshot};
use ipoib_dataplane::wire::{mgid_for_ip, Gid, HwAddr};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest wait for the control thread (a flush waits for joins in flight).
const CONTROL_WAIT: Duration = Duration::from_secs(30);

/// One interface as the socket shows it.
struct Iface {
    name: String,
    mtu: u16,
    pkey: u16,
    port: u16,
    /// The interface a P_Key child belongs to.
    parent: Option<String>,
    lcore: usize,
    /// The lcore of each queue, as `stats`.
    queue_lcores: Vec<usize>,
    gid: Gid,
    qpn: u32,
    addresses: Vec<String>,
    stats: Vec<Arc<IfaceStats>>,
    fabric_port: Option<usize>,
    engine: Option<Arc<Engine>>,
    /// Counters of the interface's TUN device, if it has one.
    tun: Option<Arc<TunStats>>,
    /// The provider's own counters, per queue.
    provider_xstats: Vec<Arc<ProviderXstats>>,
}

pub struct DaemonBackend {
    started: Instant,
    provider: String,
    lcores: Vec<usize>,
    pool: &'static Mempool,
    fabric: Option<Arc<Fabric>>,
    ifaces: Vec<Iface>,
    jobs: Option<SyncSender<ControlJob>>,
    /// MGID → IP group, to name groups in `groups` (config, joins, reloads).
    names: GroupNames,
    reloader: Option<Arc<Reloader>>,
    capture: Option<Arc<Capture>>,
}

fn capture_json(c: &CaptureStatus) -> Value {
    json!({
        "file": c.file.display().to_string(),
        "interfaces": c.interfaces,
        "snaplen": c.snaplen,
        "written": c.written,
        "drops": c.drops,
        "error": c.error,
    })
}

fn mgid_of(ip: IpAddr, pkey: u16) -> Option<Gid> {
    mgid_for_ip(ip, pkey, 2).ok()
}

impl DaemonBackend {
    pub fn new(
        cfg: &Config,
        hosts: &[HostInfo],
        pool: &'static Mempool,
        fabric: Option<Arc<Fabric>>,
        control: Option<&ControlPlane>,
    ) -> DaemonBackend {
        let mut names = Vec::new();
        let ifaces = hosts
            .iter()
            .zip(&cfg.interfaces)
            .map(|(h, c)| {
                for ip in c.groups.iter().chain(&c.sendonly) {
                    names.extend(mgid_of(*ip, h.port.pkey).map(|g| (g, *ip)));
                }
                let engine = control.and_then(|cp| {
                    cp.engines
                        .iter()
                        .find(|(n, _)| *n == h.name)
                        .map(|(_, e)| e.clone())
                });
                Iface {
                    name: h.name.clone(),
                    mtu: c.mtu,
                    pkey: h.port.pkey,
                    port: c.port,
                    parent: c.parent.clone(),
                    lcore: c.lcore,
                    queue_lcores: h.queue_lcores.clone(),
                    gid: h.port.gid,
                    qpn: h.port.qpn,
                    addresses: c
                        .ipv4
                        .iter()
                        .map(|a| format!("{}/{}", a.addr, a.prefix))
                        .chain(c.ipv6.iter().map(|a| format!("{}/{}", a.addr, a.prefix)))
                        .collect(),
                    stats: h.stats.clone(),
                    fabric_port: h.fabric_port,
                    engine,
                    tun: h.tun.as_ref().map(|(_, t)| t.clone()),
                    provider_xstats: h.provider_xstats.clone(),
                }
            })
            .collect();
        DaemonBackend {
            started: Instant::now(),
            provider: cfg.provider.kind.as_str().to_owned(),
            lcores: cfg.dataplane.lcores.clone(),
            pool,
            fabric,
            ifaces,
            jobs: control.map(ControlPlane::jobs),
            names: Arc::new(Mutex::new(names)),
            reloader: None,
            capture: None,
        }
    }

    /// The group names, for the reloader to extend.
    pub fn names(&self) -> GroupNames {
        self.names.clone()
    }

    /// Lets `reload` re-read the configuration.
    pub fn set_reloader(&mut self, r: Arc<Reloader>) {
        self.reloader = Some(r);
    }

    fn reload(&self) -> Result<Value, String> {
        let r = self
            .reloader
            .as_ref()
            .ok_or("this daemon cannot reload its configuration")?;
        r.reload().map(|o| o.to_json())
    }

    /// Serves `pcap_start` and `pcap_stop` with the daemon's capture.
    pub fn with_capture(mut self, capture: Arc<Capture>) -> DaemonBackend {
        self.capture = Some(capture);
        self
    }

    fn pcap_start(
        &self,
        file: &str,
        interface: Option<&str>,
        snaplen: Option<u32>,
    ) -> Result<Value, String> {
        let c = self
            .capture
            .as_ref()
            .ok_or("this daemon has no packet capture")?;
        let st = c
            .start(
                std::path::Path::new(file),
                interface,
                snaplen.unwrap_or(MAX_SNAPLEN),
            )
            .map_err(|e| e.to_string())?;
        tracing::info!(file, "capture started from the control socket");
        Ok(capture_json(&st))
    }

    fn pcap_stop(&self) -> Result<Value, String> {
        let c = self
            .capture
            .as_ref()
            .ok_or("this daemon has no packet capture")?;
        let st = c.stop().map_err(|e| e.to_string())?;
        tracing::info!(
            file = %st.file.display(),
            written = st.written,
            drops = st.drops,
            "capture stopped from the control socket"
        );
        Ok(capture_json(&st))
    }

    fn iface(&self, name: &str) -> Result<&Iface, String> {
        self.ifaces.iter().find(|i| i.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.ifaces.iter().map(|i| i.name.as_str()).collect();
            format!("unknown interface \"{name}\" (known: {})", known.join(", "))
        })
    }

    fn no_control(&self) -> String {
        format!(
            "the {} provider runs no control plane (no multicast or neighbour state)",
            self.provider
        )
    }

    /// Runs `f` on the control thread and waits for its result.
    fn on_control<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ControlCtx<'_>) -> T + Send + 'static,
    ) -> Result<T, String> {
        let jobs = self.jobs.as_ref().ok_or_else(|| self.no_control())?;
        let (tx, rx) = mpsc::channel();
        let job: ControlJob = Box::new(move |ctx| {
            let _ = tx.send(f(ctx));
        });
        jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => "the control thread is busy: try again".to_string(),
            TrySendError::Disconnected(_) => "the control plane has stopped".to_string(),
        })?;
        rx.recv_timeout(CONTROL_WAIT)
            .map_err(|_| "the control thread did not answer".to_string())
    }

    pub fn status(&self) -> Value {
        let ifaces: Vec<Value> = self
            .ifaces
            .iter()
            .map(|i| {
                json!({
                    "name": i.name,
                    "carrier": i.engine.as_ref().map(|e| e.carrier()),
                    "admin_up": i.engine.as_ref().map(|e| e.is_up()),
                    "mtu": i.mtu,
                    "pkey": format!("{:#06x}", i.pkey),
                    "port": i.port,
                    "parent": i.parent,
                    "gid": i.gid.to_string(),
                    "qpn": format!("{:#x}", i.qpn),
                    "lcore": i.lcore,
                    "queues": i.queue_lcores.len(),
                    "addresses": i.addresses,
                })
            })
            .collect();
        let lcores: Vec<Value> = self
            .lcores
            .iter()
            .enumerate()
            .map(|(id, core)| {
                let names: Vec<&str> = self
                    .ifaces
                    .iter()
                    .filter(|i| i.queue_lcores.contains(&id))
                    .map(|i| i.name.as_str())
                    .collect();
                json!({"id": id, "core": core, "interfaces": names})
            })
            .collect();
        json!({
            "pid": std::process::id(),
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "provider": self.provider,
            "mempool": {
                "capacity": self.pool.capacity(),
                "available": self.pool.available(),
                "buf_size": self.pool.buf_size(),
                "hugepages": self.pool.is_hugepage(),
            },
            "lcores": lcores,
            "interfaces": ifaces,
            "capture": self.capture.as_ref().and_then(|c| c.status()).map(|c| capture_json(&c)),
        })
    }

    pub fn stats(&self) -> Value {
        let taps = self
            .capture
            .as_ref()
            .map(|c| c.counters())
            .unwrap_or_default();
        let ifaces: Vec<Value> = self
            .ifaces
            .iter()
            .map(|i| {
                let mut s = StatsSnapshot::default();
                for b in &i.stats {
                    s += b.snapshot();
                }
                let mut x: Vec<Value> = s.xstats().map(|(n, v)| json!([n, v])).collect();
                if let (Some(f), Some(p)) = (&self.fabric, i.fabric_port) {
                    let c = f.counters(p).unwrap_or_default();
                    x.push(json!(["fabric_tx_messages", c.tx_messages]));
                    x.push(json!(["fabric_rx_messages", c.rx_messages]));
                    for r in DropReason::ALL {
                        x.push(json!([format!("fabric_{}", r.name()), c.drop_count(r)]));
                    }
                }
                if let Some(t) = taps.iter().find(|t| t.interface == i.name) {
                    x.push(json!(["capture_packets", t.captured]));
                    x.push(json!(["capture_drops", t.drops]));
                }
                if let Some(t) = &i.tun {
                    x.extend(t.xstats().map(|(n, v)| json!([n, v])));
                }
                x.extend(provider_xstats(&i.provider_xstats));
                if let Some(e) = &i.engine {
                    let m = e.stats();
                    for (n, v) in [
                        ("mcast_join_requests", m.join_requests),
                        ("mcast_request_overflows", m.request_overflows),
                        ("mcast_joins_started", m.joins_started),
                        ("mcast_joins_ok", m.joins_ok),
                        ("mcast_joins_failed", m.joins_failed),
                        ("mcast_joins_timed_out", m.joins_timed_out),
                        ("mcast_leaves", m.leaves),
                        ("mcast_sendonly_promoted", m.sendonly_promoted),
                        ("mcast_sendonly_collected", m.sendonly_collected),
                        ("mcast_flushes", m.flushes),
                    ] {
                        x.push(json!([n, v]));
                    }
                }
                json!({"interface": i.name, "lcores": i.stats.len(), "xstats": x})
            })
            .collect();
        // Each lcore's share: the sum of the interfaces it polls.
        let lcores: Vec<Value> = self
            .lcores
            .iter()
            .enumerate()
            .map(|(id, core)| {
                let mut s = StatsSnapshot::default();
                for i in &self.ifaces {
                    for (b, _) in i
                        .stats
                        .iter()
                        .zip(&i.queue_lcores)
                        .filter(|(_, l)| **l == id)
                    {
                        s += b.snapshot();
                    }
                }
                let x: Vec<Value> = s.xstats().map(|(n, v)| json!([n, v])).collect();
                json!({"lcore": id, "core": core, "xstats": x})
            })
            .collect();
        json!({
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "interfaces": ifaces,
            "lcores": lcores,
        })
    }

    fn group_json(&self, g: &GroupInfo) -> Value {
        let flags: Vec<&str> = GroupFlags::ALL
            .iter()
            .filter(|(f, _)| g.flags.contains(*f))
            .map(|(_, n)| *n)
            .collect();
        let address = self.names.lock().ok().and_then(|n| {
            n.iter()
                .find(|(m, _)| *m == g.mgid)
                .map(|(_, ip)| ip.to_string())
        });
        json!({
            "mgid": g.mgid.to_string(),
            "address": address,
            "broadcast": g.broadcast,
            "flags": flags,
            "status": g.status.to_string(),
            "backoff_s": g.backoff.as_secs_f64(),
            "mtu": g.record.map(|r| r.mtu),
            "mlid": g.record.map(|r| r.mlid),
            "joins_started": g.counters.joins_started,
            "joins_ok": g.counters.joins_ok,
            "joins_failed": g.counters.joins_failed,
        })
    }

    pub fn groups(&self) -> Result<Value, String> {
        if self.jobs.is_none() {
            return Err(self.no_control());
        }
        let out: Vec<Value> = self
            .ifaces
            .iter()
            .filter_map(|i| i.engine.as_ref().map(|e| (i, e)))
            .map(|(i, e)| {
                let groups: Vec<Value> = e.groups().iter().map(|g| self.group_json(g)).collect();
                json!({"interface": i.name, "carrier": e.carrier(), "groups": groups})
            })
            .collect();
        Ok(json!({ "interfaces": out }))
    }

    fn neigh(&self) -> Result<Value, String> {
        let tables = self.on_control(|ctx| {
            ctx.resolvers
                .iter()
                .map(|r| (r.name.clone(), r.static_neighbours(), r.neighbours()))
                .collect::<Vec<_>>()
        })?;
        let out: Vec<Value> = tables
            .into_iter()
            .map(|(name, statics, entries)| {
                // Configured entries first, as the kernel shows PERMANENT ones.
                let statics = statics.iter().map(|n| {
                    json!({
                        "ip": n.ip.to_string(),
                        "state": "permanent",
                        "hwaddr": HwAddr::new(0, n.qpn, n.gid).to_string(),
                        "queued": 0,
                    })
                });
                let list: Vec<Value> = statics
                    .chain(entries.iter().map(|n| {
                        json!({
                            "ip": n.ip.to_string(),
                            "state": format!("{:?}", n.state).to_lowercase(),
                            "hwaddr": n.hwaddr.map(|h| h.to_string()),
                            "queued": n.queued,
                        })
                    }))
                    .collect();
                json!({"interface": name, "neighbours": list})
            })
            .collect();
        Ok(json!({ "interfaces": out }))
    }

    fn paths(&self) -> Result<Value, String> {
        let tables = self.on_control(|ctx| {
            let now = ctx.now;
            ctx.resolvers
                .iter()
                .map(|r| {
                    let (paths, stats) = r.paths();
                    let list: Vec<Value> = paths
                        .iter()
                        .map(|p| {
                            json!({
                                "dgid": p.dgid.to_string(),
                                "dlid": p.record.map(|r| r.dlid),
                                "sl": p.record.map(|r| r.sl),
                                "mtu": p.record.map(|r| r.mtu),
                                "rate": p.record.map(|r| r.rate),
                                "ah": p.has_ah,
                                "querying": p.querying,
                                "expires_in_s": p.expires.saturating_sub(now).as_secs_f64(),
                                "users": p.users.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
                            })
                        })
                        .collect();
                    json!({
                        "interface": r.name,
                        "paths": list,
                        "stats": {
                            "queries": stats.queries,
                            "answers": stats.answers,
                            "timeouts": stats.timeouts,
                            "failures": stats.failures,
                            "ah_created": stats.ah_created,
                            "ah_destroyed": stats.ah_destroyed,
                        },
                    })
                })
                .collect::<Vec<_>>()
        })?;
        Ok(json!({ "interfaces": tables }))
    }

    fn flush(&self, level: Level, only: Option<String>) -> Result<Value, String> {
        if let Some(name) = &only {
            self.iface(name)?;
        }
        let fl = match level {
            Level::Light => FlushLevel::Light,
            Level::Normal => FlushLevel::Normal,
            Level::Heavy => FlushLevel::Heavy(None),
        };
        let done = self.on_control(move |ctx| {
            ctx.engines
                .iter()
                .filter(|(n, _)| only.as_ref().map(|o| o == n).unwrap_or(true))
                .map(|(n, e)| {
                    let r = e.flush(fl);
                    tracing::info!(
                        interface = %n,
                        level = level.as_str(),
                        left = r.left,
                        "flush from the control socket"
                    );
                    json!({"interface": n, "removed": r.removed, "waited": r.waited,
                           "left": r.left, "timed_out": r.timed_out})
                })
                .collect::<Vec<_>>()
        })?;
        Ok(json!({"level": level.as_str(), "interfaces": done}))
    }

    /// Adds (`join`) or removes the group from the interface's full-member
    /// list and lets the engine's restart pass do the joining or leaving.
    fn membership(&self, name: &str, group: IpAddr, join: bool) -> Result<Value, String> {
        let iface = self.iface(name)?;
        let mgid = mgid_for_ip(group, iface.pkey, 2).map_err(|e| format!("group {group}: {e}"))?;
        if join {
            if let Ok(mut n) = self.names.lock() {
                if !n.iter().any(|(m, _)| *m == mgid) {
                    n.push((mgid, group));
                }
            }
        }
        let owned = name.to_owned();
        let reply = self.on_control(move |ctx| -> Result<Value, String> {
            let name = owned;
            let idx = ctx
                .engines
                .iter()
                .position(|(n, _)| *n == name)
                .ok_or_else(|| format!("interface {name} has no multicast engine"))?;
            let wanted = ctx
                .desired
                .get_mut(idx)
                .ok_or_else(|| format!("interface {name} has no group list"))?;
            let present = wanted.contains(&mgid);
            if join == present {
                if join {
                    return Ok(json!({"changed": false}));
                }
                return Err(format!(
                    "{name} is not a full member of {group} (nothing to leave)"
                ));
            }
            if join {
                wanted.push(mgid);
                wanted.sort();
            } else {
                wanted.retain(|g| *g != mgid);
            }
            let r = ctx.engines[idx].1.restart(wanted);
            let action = if join { "join" } else { "leave" };
            tracing::info!(interface = %name, %group, "{action} from the control socket");
            Ok(
                json!({"changed": true, "added": r.added, "promoted": r.promoted,
                      "left": r.removed.left}),
            )
        })??;
        let mut out = json!({"interface": name, "group": group.to_string(),
                             "mgid": mgid.to_string()});
        if let (Some(o), Some(r)) = (out.as_object_mut(), reply.as_object()) {
            o.extend(r.clone());
        }
        Ok(out)
    }
}

impl Backend for DaemonBackend {
    fn handle(&self, req: Request) -> Result<Value, String> {
        match req {
            Request::Status => Ok(self.status()),
            Request::Stats => Ok(self.stats()),
            Request::Groups => self.groups(),
            Request::Neigh => self.neigh(),
            Request::Flush { level, interface } => self.flush(level, interface),
            Request::Join { interface, group } => self.membership(&interface, group, true),
            Request::Leave { interface, group } => self.membership(&interface, group, false),
            Request::Reload => self.reload(),
            Request::Paths => self.paths(),
            Request::PcapStart {
                file,
                interface,
                snaplen,
            } => self.pcap_start(&file, interface.as_deref(), snaplen),
            Request::PcapStop => self.pcap_stop(),
        }
    }
}

/// The provider's counters of an interface, summed over its queues.
fn provider_xstats(queues: &[Arc<ProviderXstats>]) -> Vec<Value> {
    let mut sums: Vec<(String, u64)> = Vec::new();
    for q in queues {
        for (i, (name, v)) in q.snapshot().into_iter().enumerate() {
            match sums.get_mut(i) {
                Some(s) if s.0 == name => s.1 += v,
                _ => sums.push((name, v)),
            }
        }
    }
    sums.into_iter().map(|(n, v)| json!([n, v])).collect()
}
