//! The path query service, sans-IO: queries go in with `query`, answers come
//! out of `poll`. A lost query simply never answers; the cache times it out.

use super::record::{PathError, PathRecord, PathResult, QueryId};
use crate::sa::SplitMix64;
use ipoib_dataplane::provider::fabric::Fabric;
use ipoib_dataplane::wire::Gid;
use std::sync::Arc;
use std::time::Duration;

/// Asks the SA for path records.
pub trait PathService {
    /// Sends a query from `sgid` to `dgid`; its answer comes from `poll`
    /// under `id`, at most once.
    fn query(&mut self, id: QueryId, sgid: Gid, dgid: Gid, now: Duration);
    /// Answers that arrived by `now`.
    fn poll(&mut self, now: Duration) -> Vec<(QueryId, PathResult)>;
    /// When `poll` will next have an answer.
    fn poll_timeout(&self) -> Option<Duration>;
}

/// How the soft SA answers path queries, and which faults it injects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftPathConfig {
    pub sl: u8,
    pub rate: u8,
    /// Time from query to answer.
    pub latency: Duration,
    /// Probability that a query is never answered.
    pub loss: f64,
    /// Probability that a query is answered with a failure.
    pub failure: f64,
    pub seed: u64,
}

impl Default for SoftPathConfig {
    fn default() -> Self {
        SoftPathConfig {
            sl: 0,
            rate: 3,
            latency: Duration::from_millis(1),
            loss: 0.0,
            failure: 0.0,
            seed: 1,
        }
    }
}

/// Counters of the soft service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SoftPathStats {
    pub queries: u64,
    pub answered: u64,
    pub lost: u64,
    pub failed: u64,
}

/// Answers path queries from the soft fabric's port table: the port's LID,
/// the fabric MTU, and the configured SL and rate.
pub struct SoftPathService {
    fabric: Arc<Fabric>,
    cfg: SoftPathConfig,
    rng: SplitMix64,
    /// (due, id, answer), in query order.
    pending: Vec<(Duration, QueryId, PathResult)>,
    stats: SoftPathStats,
}

impl SoftPathService {
    pub fn new(fabric: Arc<Fabric>, cfg: SoftPathConfig) -> Self {
        SoftPathService {
            fabric,
            rng: SplitMix64::new(cfg.seed),
            cfg,
            pending: Vec::new(),
            stats: SoftPathStats::default(),
        }
    }
    pub fn stats(&self) -> SoftPathStats {
        self.stats
    }
    /// Changes the fault probabilities from now on.
    pub fn set_faults(&mut self, loss: f64, failure: f64) {
        self.cfg.loss = loss;
        self.cfg.failure = failure;
    }

    fn lookup(&self, dgid: Gid) -> PathResult {
        let port = self.fabric.port_by_gid(&dgid).ok_or(PathError::NoPath)?;
        let attr = self.fabric.port_attr(port).ok_or(PathError::NoPath)?;
        Ok(PathRecord {
            dgid,
            dlid: attr.lid,
            sl: self.cfg.sl,
            mtu: attr.max_msg,
            rate: self.cfg.rate,
        })
    }
}

impl PathService for SoftPathService {
    fn query(&mut self, id: QueryId, _sgid: Gid, dgid: Gid, now: Duration) {
        self.stats.queries += 1;
        if self.rng.chance(self.cfg.loss) {
            self.stats.lost += 1;
            return;
        }
        let answer = if self.rng.chance(self.cfg.failure) {
            self.stats.failed += 1;
            Err(PathError::Failed)
        } else {
            self.lookup(dgid)
        };
        self.pending
            .push((now.saturating_add(self.cfg.latency), id, answer));
    }

    fn poll(&mut self, now: Duration) -> Vec<(QueryId, PathResult)> {
        let mut due = Vec::new();
        self.pending.retain(|(at, id, answer)| {
            let ready = *at <= now;
            if ready {
                due.push((*id, *answer));
            }
            !ready
        });
        self.stats.answered += due.len() as u64;
        due
    }

    fn poll_timeout(&self) -> Option<Duration> {
        self.pending.iter().map(|(at, _, _)| *at).min()
    }
}
