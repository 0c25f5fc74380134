//! Path records and address handles per destination GID, sans-IO.
//!
//! One entry per GID: the last good record, the address handle created
//! from it (once, shared by every neighbour on the path), the set of
//! neighbours using it, and the query in flight. The handle is destroyed
//! when the last neighbour releases the path.

use super::ah::AhFactory;
use super::record::{PathError, PathRecord, PathResult, QueryId};
use ipoib_dataplane::wire::Gid;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

/// Path cache timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathConfig {
    /// A query unanswered for this long fails with `TimedOut`.
    pub query_timeout: Duration,
    /// A record is re-queried this long after it was answered (while in use).
    pub expiry: Duration,
}

impl Default for PathConfig {
    fn default() -> Self {
        PathConfig {
            query_timeout: Duration::from_secs(1),
            expiry: Duration::from_secs(300),
        }
    }
}

/// What the path cache asks its owner to do or tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathEvent<A> {
    /// Send this query to the path service.
    Query { id: QueryId, dgid: Gid },
    /// The path to `dgid` has a (new) address handle.
    Ready { dgid: Gid, ah: A },
    /// The path to `dgid` has no address handle and its query failed.
    Failed { dgid: Gid, error: PathError },
}

/// What `acquire` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire<A> {
    Ready(A),
    /// Wait for `Ready` or `Failed`.
    Pending,
}

/// Counters of the path cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathStats {
    pub queries: u64,
    pub answers: u64,
    pub timeouts: u64,
    pub failures: u64,
    /// Answers for queries no longer waited for.
    pub stale_answers: u64,
    pub ah_created: u64,
    pub ah_destroyed: u64,
    pub ah_failures: u64,
}

/// One path as an operator sees it (`ipoibctl paths`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    pub dgid: Gid,
    /// The last good record, if any answer came.
    pub record: Option<PathRecord>,
    /// An address handle exists (the path is usable).
    pub has_ah: bool,
    /// A query is in flight.
    pub querying: bool,
    /// When the record is re-queried (on the owner's clock).
    pub expires: Duration,
    /// Neighbours using the path.
    pub users: Vec<IpAddr>,
}

struct PathEntry<A> {
    record: Option<PathRecord>,
    ah: Option<A>,
    /// When the record should be re-queried.
    expires: Duration,
    query: Option<(QueryId, Duration)>,
    users: BTreeSet<IpAddr>,
}

impl<A> PathEntry<A> {
    fn new(now: Duration) -> Self {
        PathEntry {
            record: None,
            ah: None,
            expires: now,
            query: None,
            users: BTreeSet::new(),
        }
    }
}

/// The path cache of one port, owning the address handle factory.
pub struct PathCache<F: AhFactory> {
    cfg: PathConfig,
    factory: F,
    paths: BTreeMap<Gid, PathEntry<F::Ah>>,
    next_query: u64,
    stats: PathStats,
    /// Bumped whenever an address handle appears, changes or goes away.
    generation: u64,
}

impl<F: AhFactory> PathCache<F> {
    pub fn new(cfg: PathConfig, factory: F) -> Self {
        PathCache {
            cfg,
            factory,
            paths: BTreeMap::new(),
            next_query: 0,
            stats: PathStats::default(),
            generation: 0,
        }
    }

    pub fn config(&self) -> &PathConfig {
        &self.cfg
    }
    pub fn factory(&self) -> &F {
        &self.factory
    }
    pub fn factory_mut(&mut self) -> &mut F {
        &mut self.factory
    }
    pub fn stats(&self) -> &PathStats {
        &self.stats
    }
    pub fn generation(&self) -> u64 {
        self.generation
    }
    pub fn len(&self) -> usize {
        self.paths.len()
    }
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
    pub fn ah(&self, dgid: &Gid) -> Option<F::Ah> {
        self.paths.get(dgid).and_then(|p| p.ah)
    }
    pub fn record(&self, dgid: &Gid) -> Option<PathRecord> {
        self.paths.get(dgid).and_then(|p| p.record)
    }
    /// Every path, by destination GID.
    pub fn paths(&self) -> Vec<PathInfo> {
        self.paths
            .iter()
            .map(|(dgid, p)| PathInfo {
                dgid: *dgid,
                record: p.record,
                has_ah: p.ah.is_some(),
                querying: p.query.is_some(),
                expires: p.expires,
                users: p.users.iter().copied().collect(),
            })
            .collect()
    }
    /// Neighbours using the path to `dgid`.
    pub fn users(&self, dgid: &Gid) -> usize {
        self.paths.get(dgid).map_or(0, |p| p.users.len())
    }

    /// `ip` uses the path to `dgid`. Starts a query if there is no handle
    /// and none is in flight. Acquiring twice for the same `ip` counts once.
    pub fn acquire(
        &mut self,
        dgid: Gid,
        ip: IpAddr,
        now: Duration,
        events: &mut Vec<PathEvent<F::Ah>>,
    ) -> Acquire<F::Ah> {
        self.paths
            .entry(dgid)
            .or_insert_with(|| PathEntry::new(now))
            .users
            .insert(ip);
        self.lookup(dgid, now, events)
    }

    /// The handle for `dgid` without becoming a user of the path (a
    /// unicast ARP/ND frame to a host we may keep no entry for). Starts a
    /// query if needed; a path nobody uses is collected by `on_timer`.
    pub fn lookup(
        &mut self,
        dgid: Gid,
        now: Duration,
        events: &mut Vec<PathEvent<F::Ah>>,
    ) -> Acquire<F::Ah> {
        let entry = self
            .paths
            .entry(dgid)
            .or_insert_with(|| PathEntry::new(now));
        if let Some(ah) = entry.ah {
            return Acquire::Ready(ah);
        }
        if entry.query.is_none() {
            self.start_query(dgid, now, events);
        }
        Acquire::Pending
    }

    /// `ip` no longer uses the path; the last user's release destroys the
    /// handle and forgets the path.
    pub fn release(&mut self, dgid: Gid, ip: IpAddr) {
        let Some(entry) = self.paths.get_mut(&dgid) else {
            return;
        };
        entry.users.remove(&ip);
        if !entry.users.is_empty() {
            return;
        }
        if let Some(entry) = self.paths.remove(&dgid) {
            if let Some(ah) = entry.ah {
                self.destroy(ah);
            }
        }
    }

    /// An answer from the service.
    pub fn on_answer(
        &mut self,
        id: QueryId,
        result: PathResult,
        now: Duration,
    ) -> Vec<PathEvent<F::Ah>> {
        let mut events = Vec::new();
        let found = self
            .paths
            .iter()
            .find(|(_, p)| p.query.is_some_and(|(q, _)| q == id))
            .map(|(gid, _)| *gid);
        let Some(dgid) = found else {
            self.stats.stale_answers += 1;
            return events;
        };
        self.stats.answers += 1;
        self.complete(dgid, result, now, &mut events);
        events
    }

    /// Query timeouts, record expiry, and paths without users (left by
    /// `lookup`) due by `now`.
    pub fn on_timer(&mut self, now: Duration) -> Vec<PathEvent<F::Ah>> {
        let mut events = Vec::new();
        let gids: Vec<Gid> = self.paths.keys().copied().collect();
        for dgid in gids {
            let Some(entry) = self.paths.get(&dgid) else {
                continue;
            };
            if entry.users.is_empty() && entry.query.is_none() {
                if let Some(ah) = self.paths.remove(&dgid).and_then(|e| e.ah) {
                    self.destroy(ah);
                }
                continue;
            }
            match entry.query {
                Some((_, deadline)) if now >= deadline => {
                    self.stats.timeouts += 1;
                    self.complete(dgid, Err(PathError::TimedOut), now, &mut events);
                }
                None if entry.record.is_some() && now >= entry.expires => {
                    self.start_query(dgid, now, &mut events);
                }
                _ => {}
            }
        }
        events
    }

    /// When `on_timer` next has something to do.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.paths
            .values()
            .filter_map(|p| match p.query {
                Some((_, deadline)) => Some(deadline),
                // Unused: collect at the next timer.
                None if p.users.is_empty() => Some(Duration::ZERO),
                None => p.record.map(|_| p.expires),
            })
            .min()
    }

    /// GID change or port event: every record is re-queried; handles stay
    /// in use until the answers replace them.
    pub fn invalidate(&mut self, now: Duration) -> Vec<PathEvent<F::Ah>> {
        let mut events = Vec::new();
        let gids: Vec<Gid> = self.paths.keys().copied().collect();
        for dgid in gids {
            if let Some(entry) = self.paths.get_mut(&dgid) {
                entry.query = None;
                entry.expires = now;
            }
            self.start_query(dgid, now, &mut events);
        }
        events
    }

    fn start_query(&mut self, dgid: Gid, now: Duration, events: &mut Vec<PathEvent<F::Ah>>) {
        let Some(entry) = self.paths.get_mut(&dgid) else {
            return;
        };
        self.next_query += 1;
        let id = QueryId(self.next_query);
        entry.query = Some((id, now.saturating_add(self.cfg.query_timeout)));
        self.stats.queries += 1;
        events.push(PathEvent::Query { id, dgid });
    }

    fn complete(
        &mut self,
        dgid: Gid,
        result: PathResult,
        now: Duration,
        events: &mut Vec<PathEvent<F::Ah>>,
    ) {
        let Some(entry) = self.paths.get_mut(&dgid) else {
            return;
        };
        entry.query = None;
        let record = match result {
            Ok(record) => record,
            Err(error) => {
                if error != PathError::TimedOut {
                    self.stats.failures += 1;
                }
                if entry.ah.is_some() {
                    // A failed refresh: keep the handle, ask again soon.
                    entry.expires = now.saturating_add(self.cfg.query_timeout);
                } else {
                    events.push(PathEvent::Failed { dgid, error });
                }
                return;
            }
        };
        entry.expires = now.saturating_add(self.cfg.expiry);
        let unchanged = entry.record.map(|r| r.ah_attr()) == Some(record.ah_attr());
        entry.record = Some(record);
        if unchanged && entry.ah.is_some() {
            return;
        }
        let old = entry.ah.take();
        let created = self.factory.create_ah(&record.ah_attr());
        if let Some(old) = old {
            self.destroy(old);
        }
        let Some(entry) = self.paths.get_mut(&dgid) else {
            return;
        };
        match created {
            Ok(ah) => {
                entry.ah = Some(ah);
                self.stats.ah_created += 1;
                self.generation += 1;
                events.push(PathEvent::Ready { dgid, ah });
            }
            Err(_) => {
                entry.record = None;
                self.stats.ah_failures += 1;
                events.push(PathEvent::Failed {
                    dgid,
                    error: PathError::AhCreate,
                });
            }
        }
    }

    fn destroy(&mut self, ah: F::Ah) {
        self.factory.destroy_ah(ah);
        self.stats.ah_destroyed += 1;
        self.generation += 1;
    }
}

impl<F: AhFactory> Drop for PathCache<F> {
    /// Handles still held go back to the provider.
    fn drop(&mut self) {
        let handles: Vec<F::Ah> = self.paths.values().filter_map(|p| p.ah).collect();
        for ah in handles {
            self.factory.destroy_ah(ah);
        }
    }
}
