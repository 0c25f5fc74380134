//! Unicast paths from the subnet administrator on InfiniBand ports, through
//! rdma_cm: per query an id resolves the destination GID
//! (`rdma_resolve_addr`, `AF_IB`) and then its route (`rdma_resolve_route`,
//! an SA PathRecord query); the route's first path record gives the DLID,
//! SL, MTU and rate the address handle is built from. Sans-IO over a
//! [`RouteBackend`]: the answers are read, without blocking, when the path
//! cache polls (on the control thread), and tests drive it with a fake.

use crate::path::{PathError, PathRecord, PathResult, PathService, QueryId};
use ipoib_dataplane::wire::Gid;
use rdma_sys::cm::{CmAddr, CmError, CmEvent, CmEventKind, CmId, CmPath, EventChannel};
use rdma_sys::ffi::RDMA_PS_IB;
use rdma_sys::VerbsError;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long rdma_cm may take for each of the two steps.
pub const ROUTE_STEP_MS: i32 = 2000;

/// What resolving routes needs of rdma_cm.
pub trait RouteBackend: Send + 'static {
    type Id: Send + 'static;
    /// A new id that starts resolving `dst` from `src`.
    fn resolve_addr(&self, src: CmAddr, dst: CmAddr) -> Result<Self::Id, VerbsError>;
    fn resolve_route(&self, id: &Self::Id) -> Result<(), VerbsError>;
    /// The resolved route's first path record.
    fn path(&self, id: &Self::Id) -> Option<CmPath>;
    /// The identity events name `id` by.
    fn id_addr(&self, id: &Self::Id) -> usize;
    /// The next pending event; never blocks.
    fn next_event(&self) -> Result<Option<CmEvent>, VerbsError>;
}

/// librdmacm, on an event channel of its own.
pub struct RdmaCmRoutes {
    channel: Arc<EventChannel>,
}

impl RdmaCmRoutes {
    pub fn new() -> Result<Self, CmError> {
        Ok(RdmaCmRoutes {
            channel: EventChannel::new()?,
        })
    }
}

impl RouteBackend for RdmaCmRoutes {
    type Id = CmId;
    fn resolve_addr(&self, src: CmAddr, dst: CmAddr) -> Result<CmId, VerbsError> {
        let id = CmId::new(&self.channel, RDMA_PS_IB)?;
        id.resolve_addr(src, dst, ROUTE_STEP_MS)?;
        Ok(id)
    }
    fn resolve_route(&self, id: &CmId) -> Result<(), VerbsError> {
        id.resolve_route(ROUTE_STEP_MS)
    }
    fn path(&self, id: &CmId) -> Option<CmPath> {
        id.path()
    }
    fn id_addr(&self, id: &CmId) -> usize {
        id.raw_addr()
    }
    fn next_event(&self) -> Result<Option<CmEvent>, VerbsError> {
        self.channel.next_event()
    }
}

/// Counters of the route service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteStats {
    pub queries: u64,
    pub answered: u64,
    pub failed: u64,
    /// Events for no query in flight.
    pub late_events: u64,
}

struct InFlight<I> {
    query: QueryId,
    dgid: Gid,
    id: I,
}

/// A `PathService` answered by the SA through rdma_cm.
pub struct SaPathService<B: RouteBackend = RdmaCmRoutes> {
    backend: B,
    pkey: u16,
    /// By the id's address.
    inflight: HashMap<usize, InFlight<B::Id>>,
    ready: Vec<(QueryId, PathResult)>,
    stats: RouteStats,
}

impl<B: RouteBackend> SaPathService<B> {
    /// Paths on the partition `pkey`.
    pub fn new(backend: B, pkey: u16) -> Self {
        SaPathService {
            backend,
            pkey,
            inflight: HashMap::new(),
            ready: Vec::new(),
            stats: RouteStats::default(),
        }
    }

    pub fn stats(&self) -> RouteStats {
        self.stats
    }

    /// Queries whose route is still being resolved.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    fn finish(&mut self, key: usize, result: PathResult) {
        if let Some(f) = self.inflight.remove(&key) {
            match result {
                Ok(_) => self.stats.answered += 1,
                Err(_) => self.stats.failed += 1,
            }
            self.ready.push((f.query, result));
        }
    }

    fn on_event(&mut self, ev: CmEvent) {
        let key = ev.id;
        let Some(f) = self.inflight.get(&key) else {
            self.stats.late_events += 1;
            return;
        };
        match ev.kind {
            CmEventKind::AddrResolved if ev.status == 0 => {
                if let Err(e) = self.backend.resolve_route(&f.id) {
                    tracing::warn!(dgid = %f.dgid, error = %e, "path query not sent");
                    self.finish(key, Err(PathError::Failed));
                }
            }
            CmEventKind::RouteResolved if ev.status == 0 => {
                let dgid = f.dgid;
                let result = match self.backend.path(&f.id) {
                    Some(p) if p.dlid != 0 => Ok(PathRecord {
                        dgid,
                        dlid: p.dlid,
                        sl: p.sl,
                        mtu: p.mtu,
                        rate: p.rate,
                    }),
                    _ => Err(PathError::NoPath),
                };
                self.finish(key, result);
            }
            CmEventKind::AddrError | CmEventKind::RouteError => {
                tracing::warn!(dgid = %f.dgid, kind = ?ev.kind, status = ev.status, "no path");
                self.finish(key, Err(PathError::NoPath));
            }
            CmEventKind::AddrResolved | CmEventKind::RouteResolved => {
                self.finish(key, Err(PathError::Failed));
            }
            CmEventKind::AddrChange | CmEventKind::DeviceRemoval => {
                self.finish(key, Err(PathError::Failed));
            }
            CmEventKind::MulticastJoin | CmEventKind::MulticastError | CmEventKind::Other(_) => {
                tracing::debug!(kind = ?ev.kind, "rdma_cm route: event ignored");
            }
        }
    }
}

impl<B: RouteBackend> PathService for SaPathService<B> {
    fn query(&mut self, id: QueryId, sgid: Gid, dgid: Gid, _now: Duration) {
        self.stats.queries += 1;
        let src = CmAddr::Ib {
            gid: sgid.0,
            pkey: self.pkey,
        };
        let dst = CmAddr::Ib {
            gid: dgid.0,
            pkey: self.pkey,
        };
        match self.backend.resolve_addr(src, dst) {
            Ok(cm) => {
                let key = self.backend.id_addr(&cm);
                self.inflight.insert(
                    key,
                    InFlight {
                        query: id,
                        dgid,
                        id: cm,
                    },
                );
            }
            Err(e) => {
                tracing::warn!(%dgid, error = %e, "path query not sent");
                self.stats.failed += 1;
                self.ready.push((id, Err(PathError::Failed)));
            }
        }
    }

    fn poll(&mut self, _now: Duration) -> Vec<(QueryId, PathResult)> {
        loop {
            match self.backend.next_event() {
                Ok(Some(ev)) => self.on_event(ev),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "rdma_cm route events");
                    break;
                }
            }
        }
        std::mem::take(&mut self.ready)
    }

    fn poll_timeout(&self) -> Option<Duration> {
        // Answers in flight arrive on the channel: look at every pass.
        (!self.ready.is_empty() || !self.inflight.is_empty()).then_some(Duration::ZERO)
    }
}
