//! A runnable fault scenario: an engine against the soft SA with injected
//! faults, through join / port event / SA restart / interface down cycles,
//! checking after every down that memberships balance.

use crate::clock::ScaledClock;
use crate::mcast::{Engine, EngineConfig, FlushLevel, GroupInfo, GroupStatus, GroupsTable};
use crate::sa::{FaultSpec, SoftSa, SoftSaConfig, SplitMix64};
use crate::sync::Arc;
use ipoib_dataplane::tables::{JoinRequest, McastState};
use ipoib_dataplane::wire::Gid;
use std::fmt;
use std::time::{Duration, Instant};

/// Scenario time runs this much faster than real time.
const SPEED: u32 = 100;
/// A down() that takes longer than this (real time) counts as hung.
const HUNG_AFTER: Duration = Duration::from_secs(10);
/// Real time one settle phase may take before the round moves on.
const SETTLE_BUDGET: Duration = Duration::from_secs(3);

/// What a fault scenario saw. `is_ok` is false if any invariant broke.
#[derive(Debug, Clone, Default)]
pub struct ScenarioSummary {
    pub rounds: u32,
    pub joins: u64,
    pub leaves: u64,
    pub cancels: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub sa_restarts: u64,
    pub flushes: u64,
    /// Rounds where the groups did not all settle within the budget (not an error).
    pub unsettled: u32,
    /// Joined groups whose MTU differs from the broadcast group's.
    pub mtu_mismatches: u32,
    /// SA invariants broken (leave without join, leave on an invalid membership...).
    pub violations: Vec<String>,
    /// Successful joins never left, summed over the downs.
    pub unbalanced: usize,
    pub hung_flushes: u32,
    /// The groups as they stood before the last down.
    pub last_groups: Vec<GroupInfo>,
}

impl ScenarioSummary {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
            && self.unbalanced == 0
            && self.hung_flushes == 0
            && self.mtu_mismatches == 0
    }
    pub fn groups_table(&self) -> GroupsTable<'_> {
        GroupsTable(&self.last_groups)
    }
}

impl fmt::Display for ScenarioSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rounds={} joins={} leaves={} cancels={} failed={} timed_out={} sa_restarts={} flushes={} \
             mtu_mismatches={} violations={} unbalanced={} hung_flushes={}",
            self.rounds,
            self.joins,
            self.leaves,
            self.cancels,
            self.failed,
            self.timed_out,
            self.sa_restarts,
            self.flushes,
            self.mtu_mismatches,
            self.violations.len(),
            self.unbalanced,
            self.hung_flushes
        )?;
        for v in &self.violations {
            write!(f, "\n  violation: {v}")?;
        }
        Ok(())
    }
}

fn mgid(n: u8) -> Gid {
    Gid([
        0xff, 0x12, 0x40, 0x1b, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0xe0, 0, 0, n,
    ])
}

/// Runs `rounds` cycles of: up, join the desired and send-only groups, one
/// random port event (flush level, membership change or SA restart with a new
/// broadcast MTU), settle, down — with the soft SA injecting `spec`'s faults.
pub fn run_fault_scenario(spec: &FaultSpec, seed: u64, rounds: u32) -> ScenarioSummary {
    let sa = Arc::new(SoftSa::new(SoftSaConfig::default(), *spec, seed));
    let clock = Arc::new(ScaledClock::new(SPEED));
    let port = Gid::link_local(0x0002_c903_0000_0001);
    let mut cfg = EngineConfig::new(port, mgid(0xff));
    cfg.join_timeout = Duration::from_secs(10).max(spec.delay.1 * SPEED * 2);
    cfg.sendonly_idle = Duration::from_secs(600);
    let engine = Engine::builder(cfg, sa.clone())
        .clock(clock.clone())
        .build();
    let mut rng = SplitMix64::new(seed ^ 0x5ce7_a410);
    let mut out = ScenarioSummary::default();
    let mut restarts_seen = 0;

    for _ in 0..rounds {
        out.rounds += 1;
        let desired: Vec<Gid> = (1..=4).map(mgid).collect();
        engine.up();
        engine.restart(&desired);
        for n in [0x21, 0x22] {
            engine.requests().push(JoinRequest {
                mgid: mgid(n),
                ifindex: cfg.ifindex,
            });
        }
        let settled = settle(&engine, &sa, &clock, &mut restarts_seen);
        match rng.range(0, 4) {
            0 => drop(engine.flush(FlushLevel::Light)),
            1 => drop(engine.flush(FlushLevel::Normal)),
            2 => drop(engine.flush(FlushLevel::Heavy(None))),
            3 => drop(engine.restart(&desired[..rng.range(1, 4) as usize])),
            _ => {
                sa.restart(Some(if rng.chance(0.5) { 4096 } else { 2048 }));
                restarts_seen = sa.restarts();
                engine.flush(FlushLevel::Light);
            }
        }
        let settled = settled & settle(&engine, &sa, &clock, &mut restarts_seen);
        if !settled {
            out.unsettled += 1;
        } else if !mtu_consistent(&engine) {
            out.mtu_mismatches += 1;
        }
        out.last_groups = engine.groups();
        if !down_with_watchdog(&engine) {
            out.hung_flushes += 1;
            break;
        }
        out.unbalanced += sa.unbalanced();
    }
    let s = engine.stats();
    let sas = sa.stats();
    out.joins = sas.joins;
    out.leaves = sas.leaves;
    out.cancels = sas.cancels;
    out.failed = sas.failed;
    out.timed_out = s.joins_timed_out;
    out.sa_restarts = sas.restarts;
    out.flushes = s.flushes;
    out.violations = sa.violations();
    out
}

/// Runs the join task until every group is joined or failed; an SA restart
/// seen meanwhile is a client re-register event: a light flush.
fn settle(engine: &Engine, sa: &SoftSa, clock: &ScaledClock, restarts_seen: &mut u64) -> bool {
    let start = Instant::now();
    while start.elapsed() < SETTLE_BUDGET {
        if sa.restarts() != *restarts_seen {
            *restarts_seen = sa.restarts();
            engine.flush(FlushLevel::Light);
        }
        let report = engine.join_task();
        let groups = engine.groups();
        let all_done = groups
            .iter()
            .all(|g| matches!(g.status, GroupStatus::Joined | GroupStatus::Failed));
        if all_done && sa.restarts() == *restarts_seen {
            engine.publish();
            return true;
        }
        let wait = report
            .next_wakeup
            .map_or(Duration::from_millis(20), |t| clock.real_until(t));
        engine.wait_for_work(wait.clamp(Duration::from_micros(100), Duration::from_millis(20)));
    }
    false
}

fn mtu_consistent(engine: &Engine) -> bool {
    let table = engine.table().load();
    let Some(McastState::Joined(b)) = table.lookup(&engine.config().broadcast_mgid).copied() else {
        return true;
    };
    let consistent = table.iter().all(|(_, s)| match s {
        McastState::Joined(r) => r.mtu == b.mtu,
        McastState::Failed => true,
    });
    consistent
}

fn down_with_watchdog(engine: &Engine) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    let e = engine.clone();
    std::thread::spawn(move || {
        e.down();
        let _ = tx.send(());
    });
    rx.recv_timeout(HUNG_AFTER).is_ok()
}
