//! `ipoibd pktgen`: stamped UDP streams from generators on the lcores, a
//! measuring sink on every interface, phase after phase; a live screen, a
//! summary table, and every figure as JSON or CSV.
//!
//! The JSON document is described in `SCHEMA.md` and, machine-readably, in
//! `schema.json` beside this file.

mod args;
mod assemble;
mod joins;
mod live;
mod outcome;
mod output;
mod plan;
mod plot;
mod run;
mod scenario;

pub use args::PktgenArgs;
pub use outcome::{PhaseOutcome, RunOutcome, StreamOutcome};
pub use output::{summary, to_csv, to_json, SCHEMA_ID};
pub use plan::{plan, Plan};
pub use scenario::Scenario;

use ipoib_config::ProviderKind;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The documented JSON schema of `--json` output.
pub const JSON_SCHEMA: &str = include_str!("schema.json");

/// Runs every phase of the plan. Stops early (and still reports) when `stop` is set.
pub fn run_plan(plan: &Plan, live: Option<bool>, stop: &AtomicBool) -> Result<RunOutcome, String> {
    if plan.provider == ProviderKind::Verbs {
        // Before the pool: without RDMA, the daemon's one line that says what to do.
        let vc = crate::wiring::verbs_config(&plan.cfg);
        ipoib_dataplane::provider::verbs::VerbsDevice::probe(&vc).map_err(|e| e.to_string())?;
    }
    let pool = crate::wiring::make_pool(&plan.cfg)?;
    ipoib_dataplane::pktgen::clock::init();
    let mut phases = Vec::new();
    for i in 0..plan.phases.len() {
        let (streams, name) = match plan.sink {
            Some(_) => (Vec::new(), "sink".to_string()),
            None => (plan.phase_streams(i)?, plan.phase_name(i)),
        };
        let r = run::PhaseRun {
            name: &name,
            cores: &plan.cfg.dataplane.lcores,
            streams: &streams,
            live,
            stop,
            expect_receivers: plan.provider != ProviderKind::Null,
            sink_role: plan.sink,
        };
        // Stream ids the sinks keep records for.
        let n = match plan.sink {
            Some(s) => usize::from(s.streams),
            None => plan.streams.len(),
        };
        let cfg = &plan.cfg;
        let outcome = match plan.provider {
            ProviderKind::Null => run::run_phase(&r, assemble::null_rig(cfg, pool, &streams, n)?)?,
            ProviderKind::Rocev2 => {
                let rig = assemble::rocev2_rig(cfg, pool, &streams, n)?;
                sink_ready(plan, &rig);
                run::run_phase(&r, rig)?
            }
            ProviderKind::Fabric => {
                run::run_phase(&r, assemble::fabric_rig(cfg, pool, &streams, n)?)?
            }
            ProviderKind::Verbs => {
                let rig = assemble::verbs_rig(cfg, pool, &streams, n)?;
                sink_ready(plan, &rig);
                run::run_phase(&r, rig)?
            }
        };
        let interrupted = outcome.interrupted;
        phases.push(outcome);
        if interrupted || stop.load(Ordering::Relaxed) {
            break;
        }
    }
    Ok(RunOutcome {
        provider: plan.provider.as_str(),
        lcores: plan.cfg.dataplane.lcores.len(),
        phases,
        pool_capacity: pool.capacity(),
        pool_free_after: pool.available(),
    })
}

/// Sink role: sockets are bound or receive queues posted, so what arrives
/// from now on is counted; says so, with the addresses generators send to.
fn sink_ready<P: ipoib_dataplane::provider::Provider>(plan: &Plan, rig: &assemble::Rig<P>) {
    if plan.sink.is_some() {
        eprintln!(
            "pktgen sink: ready on {} interface(s): {}",
            rig.ports.len(),
            rig.addresses()
        );
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("ipoibd pktgen: error: {msg}");
    ExitCode::from(2)
}

/// The subcommand: exit status 0 when the run is clean, 1 on a leak, 2 on bad input.
pub fn main(args: &PktgenArgs) -> ExitCode {
    let plan = match plan(args) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    if let Some(p) = &args.plot {
        if !matches!(p.extension().and_then(|x| x.to_str()), Some("svg" | "png")) {
            return fail(format!(
                "--plot {}: expected a .svg or .png file",
                p.display()
            ));
        }
    }
    if args.dry_run {
        print!("{}", plan.describe());
        return ExitCode::SUCCESS;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            return fail(format!("cannot install signal handler: {e}"));
        }
    }
    let live = (!args.quiet).then(|| std::io::stdout().is_terminal());
    let outcome = match run_plan(&plan, live, &stop) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    print!("{}", summary(&outcome));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&to_json(&outcome)).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text + "\n") {
            return fail(format!("--json {}: {e}", path.display()));
        }
    }
    if let Some(path) = &args.csv {
        if let Err(e) = std::fs::write(path, to_csv(&outcome)) {
            return fail(format!("--csv {}: {e}", path.display()));
        }
    }
    if let Some(path) = &args.plot {
        if let Err(e) = plot::write(&outcome, path) {
            return fail(e);
        }
    }
    if outcome.leaked() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
