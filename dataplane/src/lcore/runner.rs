//! Spawning lcores on pinned threads, and stopping them.

use super::Lcore;
use crate::provider::Provider;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;

/// How lcores were placed on cores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinning {
    /// Each lcore on its own requested core.
    Dedicated,
    /// Fewer usable cores than lcores: several lcores share a core.
    Shared { cores: usize, lcores: usize },
    /// Pinning is not available here; threads float.
    Unpinned,
}

pub struct LcoreHandle<P: Provider> {
    pub id: usize,
    pub core: Option<usize>,
    thread: JoinHandle<Lcore<P>>,
}

impl<P: Provider> LcoreHandle<P> {
    /// Waits for the lcore to stop and returns it (for draining and leak checks).
    pub fn join(self) -> std::thread::Result<Lcore<P>> {
        self.thread.join()
    }
}

/// Starts each lcore on a thread pinned to `cores[i]` (core ids as in the
/// config). Cores that do not exist are replaced by available ones, shared
/// round-robin when there are fewer cores than lcores; the caller is told so
/// it can warn.
pub fn spawn_lcores<P: Provider + 'static>(
    lcores: Vec<Lcore<P>>,
    cores: &[usize],
    stop: Arc<AtomicBool>,
) -> std::io::Result<(Vec<LcoreHandle<P>>, Pinning)> {
    let available: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let n = lcores.len();
    let mut placement = Vec::with_capacity(n);
    let mut pinning = Pinning::Dedicated;
    if available.is_empty() {
        pinning = Pinning::Unpinned;
        placement.resize(n, None);
    } else {
        for i in 0..n {
            let want = cores.get(i).copied().filter(|c| available.contains(c));
            placement.push(Some(want.unwrap_or(available[i % available.len()])));
        }
        let mut distinct = placement.clone();
        distinct.sort();
        distinct.dedup();
        if distinct.len() < n {
            pinning = Pinning::Shared {
                cores: distinct.len(),
                lcores: n,
            };
        }
    }
    let mut handles = Vec::with_capacity(n);
    for (mut lcore, core) in lcores.into_iter().zip(placement) {
        let stop = stop.clone();
        let id = lcore.id;
        let thread = std::thread::Builder::new()
            .name(format!("lcore{id}"))
            .spawn(move || {
                if let Some(c) = core {
                    core_affinity::set_for_current(core_affinity::CoreId { id: c });
                }
                lcore.run(&stop);
                lcore
            })?;
        handles.push(LcoreHandle { id, core, thread });
    }
    Ok((handles, pinning))
}
