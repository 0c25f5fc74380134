//! ipoibd: the dataplane daemon. With no arguments it runs the embedded
//! default: three soft hosts exchanging UDP on the in-process fabric.

use clap::{Parser, Subcommand};
use ipoib_app::report::{self, Live};
use ipoib_app::wiring::{self, Built};
use ipoib_config::{Config, ProviderKind};
use ipoib_dataplane::lcore::{spawn_lcores, Pinning};
use ipoib_dataplane::provider::Provider;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "ipoibd", version, about = "Poll-mode IP-over-InfiniBand dataplane")]
struct Cli {
    /// Configuration file (TOML). Without it, the embedded default runs.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Run for this many seconds (0 = until SIGINT/SIGTERM); overrides run.duration_s.
    #[arg(long)]
    duration: Option<f64>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file and print the effective configuration.
    CheckConfig { file: PathBuf },
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("ipoibd: error: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return match ipoib_config::load_file(file) {
            Ok(cfg) => {
                print!("{}", cfg.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        };
    }
    let mut cfg = match &cli.config {
        Some(path) => match ipoib_config::load_file(path) {
            Ok(c) => c,
            Err(e) => return fail(e),
        },
        None => ipoib_config::embedded_default(),
    };
    if let Some(d) = cli.duration {
        if !(0.0..=86_400.0).contains(&d) {
            return fail(format!("--duration: expected seconds in 0..=86400, got {d}"));
        }
        cfg.run.duration_s = d;
    }
    init_logging(&cfg);
    match run(&cfg) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => fail(e),
    }
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cfg.log.level.as_str()));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()).with_target(false).try_init();
}

fn run(cfg: &Config) -> Result<bool, String> {
    match cfg.provider.kind {
        ProviderKind::Fabric => run_built(cfg, wiring::build_fabric(cfg)?),
        ProviderKind::Null => {
            let pool = wiring::make_pool(cfg)?;
            run_built(cfg, wiring::build_null(cfg, pool)?)
        }
        other => Err(format!("provider \"{}\" is not available in this build yet", other.as_str())),
    }
}

fn run_built<P: Provider + 'static>(cfg: &Config, built: Built<P>) -> Result<bool, String> {
    let Built { pool, lcores, hosts, fabric } = built;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("cannot install signal handler: {e}"))?;
    }
    println!(
        "ipoibd: {} host(s) on the {} provider, {} lcore(s), pool {} x {} B{}",
        hosts.len(),
        cfg.provider.kind.as_str(),
        lcores.len(),
        pool.capacity(),
        pool.buf_size(),
        if pool.is_hugepage() { " (hugepages)" } else { "" }
    );
    let lcore_stop = Arc::new(AtomicBool::new(false));
    let (handles, pinning) =
        spawn_lcores(lcores, &cfg.dataplane.lcores, lcore_stop.clone()).map_err(|e| format!("cannot start lcores: {e}"))?;
    match pinning {
        Pinning::Shared { cores, lcores } => {
            tracing::warn!("{lcores} lcores share {cores} core(s): expect lower rates than with one core each")
        }
        Pinning::Unpinned => tracing::warn!("cannot pin lcores to cores here; they run unpinned"),
        Pinning::Dedicated => {}
    }
    let start = Instant::now();
    let interval = cfg.run.stats_interval();
    let deadline = cfg.run.duration().map(|d| start + d);
    let mut live = Live::default();
    let mut next = start + interval;
    loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| now >= d) {
            break;
        }
        if now >= next {
            println!("{}", live.line(now - start, interval, &hosts, fabric.as_deref()));
            next += interval;
        }
        let wake = deadline.map_or(next, |d| d.min(next));
        std::thread::sleep(wake.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)));
    }
    let elapsed = start.elapsed();
    lcore_stop.store(true, Ordering::Relaxed);
    let mut stopped = Vec::new();
    for h in handles {
        stopped.push(h.join().map_err(|_| "an lcore panicked".to_string())?);
    }
    for l in &mut stopped {
        l.drain();
    }
    drop(stopped);
    drop(fabric.clone());
    print!("\n{}", report::summary(&hosts, fabric.as_deref(), elapsed));
    let leaked = pool.capacity() - pool.available();
    let ok = leaked == 0;
    println!(
        "mempool: {}/{} buffers free after stop{}",
        pool.available(),
        pool.capacity(),
        if ok { " (no leak)" } else { " — LEAK" }
    );
    Ok(ok)
}
