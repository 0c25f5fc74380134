//! The control thread of a run: one multicast join engine per interface,
//! served by the soft fabric's SA (attaching QPs on the fabric) or, on
//! rocev2, by IGMP on each interface's multicast socket.

use crate::resolution::{HostResolver, PingSummary};
use crate::wiring::HostInfo;
use ipoib_control::igmp::{IgmpService, SocketAttach};
use ipoib_control::neigh::NeighInfo;
use ipoib_control::rdmacm::{PortEvents, RdmaCmService, VerbsAttach};
use ipoib_control::{
    Engine, EngineConfig, FaultSpec, FlushLevel, GroupFlags, GroupStatus, GroupsTable, McastAttach,
    MulticastService, SaStats, SoftSa, SoftSaConfig,
};
use ipoib_dataplane::provider::fabric::Fabric;
use ipoib_dataplane::provider::rocev2::addr::ip_of;
use ipoib_dataplane::wire::{broadcast_mgid, mgid_for_ip, Gid};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `ibv_attach_mcast` on the soft fabric for one port.
struct FabricAttach {
    fabric: Arc<Fabric>,
    port: usize,
}

impl McastAttach for FabricAttach {
    fn attach(&self, mgid: Gid, _mlid: u16) -> bool {
        self.fabric.attach_mcast(self.port, mgid).is_ok()
    }
    fn detach(&self, mgid: Gid, _mlid: u16) {
        let _ = self.fabric.detach_mcast(self.port, mgid);
    }
}

/// What serves one engine: who answers its joins, and how QPs attach.
type HostMcast = (Arc<dyn MulticastService>, Arc<dyn McastAttach>);

/// Who answers the engines' joins.
pub enum McastBackend {
    /// The soft fabric's SA; QPs attach on the fabric.
    Fabric(Arc<Fabric>),
    /// One IGMP service per host, in host order (rocev2): a join is the
    /// socket's membership, so attaching is nothing more.
    Igmp(Vec<Arc<IgmpService>>),
    /// One rdma_cm service and QP attach per host, in host order (verbs).
    RdmaCm(Vec<(Arc<RdmaCmService>, Arc<VerbsAttach>)>),
}

impl McastBackend {
    /// Whether host `h` can join `mgid` at all: an IGMP socket joins only
    /// groups of its own address family (IPv6 ND groups need an IPv6
    /// `local_ip`, or on IPv4 `provider.rocev2.ipv6_group_range`); the
    /// fabric joins anything.
    fn can_join(&self, h: &HostInfo, mgid: Gid) -> bool {
        match self {
            McastBackend::Fabric(_) => true,
            McastBackend::Igmp(services) => services
                .first()
                .is_some_and(|s| s.can_join(mgid, ip_of(h.port.gid))),
            McastBackend::RdmaCm(services) => services.iter().any(|(s, _)| s.can_join(mgid)),
        }
    }

    /// The service and attach of host `idx`.
    fn for_host(&self, idx: usize, h: &HostInfo, sa: &Arc<SoftSa>) -> Result<HostMcast, String> {
        match self {
            McastBackend::Fabric(fabric) => {
                let port = h.fabric_port.ok_or("control plane needs fabric hosts")?;
                let attach = Arc::new(FabricAttach {
                    fabric: fabric.clone(),
                    port,
                });
                Ok((sa.clone(), attach))
            }
            McastBackend::Igmp(services) => {
                let service = services
                    .get(idx)
                    .ok_or_else(|| format!("{}: no IGMP service", h.name))?;
                Ok((service.clone(), Arc::new(SocketAttach)))
            }
            McastBackend::RdmaCm(services) => {
                let (service, attach) = services
                    .get(idx)
                    .ok_or_else(|| format!("{}: no rdma_cm service", h.name))?;
                Ok((service.clone(), attach.clone()))
            }
        }
    }
}

/// The descriptors the control thread reads itself, without blocking,
/// once per pass: each interface's rdma_cm event channel and the device's
/// async events (verbs). Answers run the engines' callbacks on this thread;
/// port events flush every engine here, and a flush waiting for a join
/// reads that join's answer itself (`MulticastService::progress`).
#[derive(Default)]
pub struct ChannelEvents {
    pub cm: Vec<Arc<RdmaCmService>>,
    pub port: Option<PortEvents>,
}

impl ChannelEvents {
    fn is_empty(&self) -> bool {
        self.cm.is_empty() && self.port.is_none()
    }

    /// One look at every descriptor (poll with no timeout), then the
    /// readable ones are read. Returns the flushes done.
    pub fn pass(&mut self, engines: &[(String, Arc<Engine>)]) -> usize {
        if self.is_empty() {
            return 0;
        }
        let mut fds: Vec<libc::pollfd> = self
            .cm
            .iter()
            .map(|s| s.fd().unwrap_or(-1))
            .chain(self.port.as_ref().map(PortEvents::fd))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: a valid array of pollfds; timeout 0 never blocks.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
        if n <= 0 {
            return 0;
        }
        for (s, fd) in self.cm.iter().zip(&fds) {
            if fd.revents != 0 {
                s.progress();
            }
        }
        let levels = match (&mut self.port, fds.last()) {
            (Some(p), Some(fd)) if fd.revents != 0 => p.read(),
            _ => Vec::new(),
        };
        for &level in &levels {
            flush_all(engines, level);
        }
        levels.len()
    }

    /// Flushes the port events asked for (None without a device).
    pub fn port_flushes(&self) -> Option<u64> {
        self.port.as_ref().map(PortEvents::flushes)
    }
}

/// A port event's flush on every interface.
fn flush_all(engines: &[(String, Arc<Engine>)], level: FlushLevel) {
    for (name, e) in engines {
        let r = e.flush(level);
        tracing::info!(interface = %name, ?level, left = r.left, "flush on a port event");
    }
}

/// What a job on the control thread may touch: the engines, the resolvers
/// (they live on that thread) and the full-member groups each interface
/// wants, in the order of `engines`.
pub struct ControlCtx<'a> {
    /// The control thread's clock (resolvers' timers run on it).
    pub now: Duration,
    pub engines: &'a [(String, Arc<Engine>)],
    pub resolvers: &'a mut [HostResolver],
    pub desired: &'a mut [Vec<Gid>],
}

/// Work run on the control thread between two ticks (neighbour reads,
/// flush, join/leave), so it never races the resolvers or the restart lists.
pub type ControlJob = Box<dyn FnOnce(&mut ControlCtx<'_>) + Send>;

/// Jobs waiting for the control thread; senders get `Full` beyond this.
const JOB_QUEUE: usize = 64;

pub struct ControlPlane {
    pub engines: Vec<(String, Arc<Engine>)>,
    pub sa: Arc<SoftSa>,
    stop: Arc<AtomicBool>,
    jobs: mpsc::SyncSender<ControlJob>,
    thread: Option<JoinHandle<(Vec<HostResolver>, ChannelEvents)>>,
}

/// What shutting the control plane down found.
pub struct ControlReport {
    pub sa: SaStats,
    pub unbalanced: usize,
    pub violations: Vec<String>,
    pub leaves: usize,
    /// Neighbour tables at stop, per interface.
    pub neighbours: Vec<(String, Vec<NeighInfo>)>,
    /// Round trips of the pings the first interface's IP stack sent.
    pub pings: Vec<PingSummary>,
    /// What address resolution did, one line per interface.
    pub resolution: Vec<String>,
    /// Flushes the device's port events asked for (verbs only).
    pub port_flushes: Option<u64>,
}

impl ControlReport {
    pub fn is_ok(&self) -> bool {
        self.unbalanced == 0 && self.violations.is_empty()
    }
}

impl ControlPlane {
    /// Builds one engine per host, brings every interface up and starts
    /// the control thread (join task passes; it also drains the lcores' send-only
    /// requests). `faults` apply to the soft SA, which only the fabric uses.
    /// `port_events` (verbs) are read and acted on by the control thread.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        backend: &McastBackend,
        port_events: Option<PortEvents>,
        hosts: &[HostInfo],
        mut resolvers: Vec<HostResolver>,
        join_timeout: Duration,
        sendonly_idle: Duration,
        faults: FaultSpec,
        seed: u64,
    ) -> Result<ControlPlane, String> {
        let sa = Arc::new(SoftSa::new(SoftSaConfig::default(), faults, seed));
        let mut engines = Vec::new();
        let mut wanted = Vec::new();
        for (idx, h) in hosts.iter().enumerate() {
            let (service, attach) = backend.for_host(idx, h, &sa)?;
            let mut ec = EngineConfig::new(h.port.gid, broadcast_mgid(h.port.pkey, 2));
            ec.ifindex = idx as u16;
            ec.join_timeout = join_timeout;
            ec.sendonly_idle = sendonly_idle;
            let engine = Engine::builder(ec, service)
                .name(h.name.clone())
                .attach(attach)
                .requests(h.join_requests.clone())
                .table(h.mcast.clone())
                .build();
            let mut desired = h
                .groups
                .iter()
                .map(|g| {
                    mgid_for_ip(*g, h.port.pkey, 2)
                        .map_err(|e| format!("{}: group {g}: {e}", h.name))
                })
                .collect::<Result<Vec<Gid>, String>>()?;
            // ARP rides on the broadcast group (always joined); ND needs the
            // all-nodes and solicited-node groups as full member.
            if let Some(r) = resolvers.iter().find(|r| r.name == h.name) {
                let bcast = ec.broadcast_mgid;
                desired.extend(
                    r.multicast_groups()
                        .into_iter()
                        .filter(|g| *g != bcast && backend.can_join(h, *g)),
                );
            }
            desired.sort();
            desired.dedup();
            engine.up();
            engine.restart(&desired);
            wanted.push(desired);
            engines.push((h.name.clone(), Arc::new(engine)));
        }
        let mut channels = ChannelEvents {
            cm: match backend {
                McastBackend::RdmaCm(services) => services.iter().map(|(s, _)| s.clone()).collect(),
                _ => Vec::new(),
            },
            port: port_events,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (jobs, job_rx) = mpsc::sync_channel::<ControlJob>(JOB_QUEUE);
        let thread = {
            let named = engines.clone();
            let engines: Vec<Arc<Engine>> = engines.iter().map(|e| e.1.clone()).collect();
            let stop = stop.clone();
            let start = Instant::now();
            std::thread::Builder::new()
                .name("control".into())
                .spawn(move || {
                    let mut next_touch = Duration::from_secs(1);
                    while !stop.load(Ordering::Relaxed) {
                        channels.pass(&named);
                        for e in &engines {
                            e.join_task();
                        }
                        let now = start.elapsed();
                        for r in &mut resolvers {
                            r.step(now);
                        }
                        if now >= next_touch {
                            for r in &mut resolvers {
                                r.touch_used(now);
                            }
                            next_touch = now + Duration::from_secs(1);
                        }
                        while let Ok(job) = job_rx.try_recv() {
                            job(&mut ControlCtx {
                                now: start.elapsed(),
                                engines: &named,
                                resolvers: &mut resolvers,
                                desired: &mut wanted,
                            });
                        }
                        // Lcores never wake us (no syscall on the datapath):
                        // poll their queues on a short tick.
                        engines[0].wait_for_work(Duration::from_millis(1));
                    }
                    (resolvers, channels)
                })
                .map_err(|e| format!("cannot start the control thread: {e}"))?
        };
        Ok(ControlPlane {
            engines,
            sa,
            stop,
            jobs,
            thread: Some(thread),
        })
    }

    /// A handle to queue jobs on the control thread; once the thread has
    /// stopped, queued jobs are dropped (their reply channels disconnect).
    pub fn jobs(&self) -> mpsc::SyncSender<ControlJob> {
        self.jobs.clone()
    }

    /// Every host has carrier (broadcast joined) and its full-member groups joined.
    pub fn is_ready(&self) -> bool {
        self.engines.iter().all(|(_, e)| {
            e.carrier()
                && e.groups().iter().all(|g| {
                    g.flags.contains(GroupFlags::SENDONLY) || g.status == GroupStatus::Joined
                })
        })
    }

    /// Waits (at most `timeout`) until `is_ready`; returns whether it got there.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while !self.is_ready() {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// The multicast state of every interface, as a table per interface.
    pub fn groups_report(&self) -> String {
        let mut out = String::new();
        for (name, e) in &self.engines {
            out.push_str(&format!("{name}:\n{}", GroupsTable(&e.groups())));
        }
        out
    }

    /// Stops the control thread, takes every interface down (flush: wait for
    /// joins in flight, leave every valid membership) and checks the SA's books.
    pub fn shutdown(mut self) -> ControlReport {
        self.stop.store(true, Ordering::Relaxed);
        let (resolvers, channels) = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        let neighbours = resolvers
            .iter()
            .map(|r| (r.name.clone(), r.neighbours()))
            .collect();
        let pings = resolvers.iter().flat_map(|r| r.ping_results()).collect();
        let resolution = resolvers.iter().map(|r| r.resolution_line()).collect();
        // Packets still waiting for resolution go back to the pool here.
        drop(resolvers);
        let mut leaves = 0;
        for (_, e) in &self.engines {
            leaves += e.down().left;
        }
        ControlReport {
            sa: self.sa.stats(),
            unbalanced: self.sa.unbalanced(),
            violations: self.sa.violations(),
            leaves,
            neighbours,
            pings,
            resolution,
            port_flushes: channels.port_flushes(),
        }
    }
}
