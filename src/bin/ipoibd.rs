//! ipoibd: the dataplane daemon. With no arguments it runs the embedded
//! default: three soft hosts exchanging UDP on the in-process fabric.

use clap::{Parser, Subcommand};
use ipoib_app::control_plane::{ControlPlane, McastBackend};
use ipoib_app::ctl::daemon::DaemonBackend;
use ipoib_app::ctl::server::Listener;
use ipoib_app::logging::{self, LogControl};
use ipoib_app::metrics::{exposition, MetricsServer};
use ipoib_app::reload::Reloader;
use ipoib_app::report::{self, Live};
use ipoib_app::wiring::{self, Built};
use ipoib_config::{Config, ProviderKind};
use ipoib_control::{run_fault_scenario, FaultSpec};
use ipoib_dataplane::capture;
use ipoib_dataplane::lcore::{spawn_lcores, Pinning};
use ipoib_dataplane::provider::Provider;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "ipoibd",
    version,
    about = "Poll-mode IP-over-InfiniBand dataplane"
)]
struct Cli {
    /// Configuration file (TOML). Without it, the embedded default runs.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Run for this many seconds (0 = until SIGINT/SIGTERM); overrides run.duration_s.
    #[arg(long)]
    duration: Option<f64>,
    /// Inject faults into the soft SA, e.g.
    /// `delay=0-50ms,fail=0.1,reset=0.05,noanswer=0.02,early=0.5,restart=0.01`.
    /// After the run, the join engine is also driven through port-event cycles
    /// with these faults; any broken invariant makes the exit status 1.
    #[arg(long, value_name = "SPEC")]
    sa_faults: Option<String>,
    /// Seed of the SA's fault dice (same seed, same faults).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Port-event cycles of the fault scenario run after traffic with --sa-faults.
    #[arg(long, default_value_t = 200)]
    fault_rounds: u32,
    /// Ping these addresses (comma-separated) from the first interface's IP
    /// stack while traffic runs, and print min/avg/max round trips. The
    /// embedded default pings 10.0.0.2 and fd00::3.
    #[arg(long, value_name = "ADDR,...", value_delimiter = ',')]
    ping: Option<Vec<std::net::IpAddr>>,
    /// Control socket for ipoibctl (mode 0600). Default: /run/ipoibd.sock as
    /// root, else $XDG_RUNTIME_DIR/ipoibd.sock, else /tmp/ipoibd-UID.sock;
    /// when the default is taken by another ipoibd, this one runs without.
    #[arg(long, value_name = "PATH", conflicts_with = "no_socket")]
    socket: Option<PathBuf>,
    /// Serve no control socket.
    #[arg(long)]
    no_socket: bool,
    /// Write the IPoIB frames every interface sends and receives to FILE, a
    /// pcap with link type 242 (LINKTYPE_IPOIB) that tshark decodes.
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// With --pcap: only this interface.
    #[arg(long, value_name = "IF", requires = "pcap")]
    pcap_interface: Option<String>,
    /// With --pcap: bytes kept of each record, the 40-byte pseudo header
    /// included (64-4136; default: whole frames).
    #[arg(long, value_name = "N", requires = "pcap")]
    pcap_snaplen: Option<u32>,
    #[command(subcommand)]
    command: Option<Command>,
}

// Parsed once at start-up: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file and print the effective configuration.
    CheckConfig { file: PathBuf },
    /// Traffic generator and sink: stamped UDP streams, loss, reorder and latency.
    Pktgen(ipoib_app::pktgen::PktgenArgs),
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
    if let Some(Command::Pktgen(args)) = &cli.command {
        return ipoib_app::pktgen::main(args);
    }
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
            return fail(format!(
                "--duration: expected seconds in 0..=86400, got {d}"
            ));
        }
        cfg.run.duration_s = d;
    }
    let faults = match cli.sa_faults.as_deref().map(FaultSpec::parse).transpose() {
        Ok(f) => f,
        Err(e) => return fail(format!("--sa-faults: {e}")),
    };
    let log = logging::init(cfg.log.level);
    let pings = match (&cli.ping, &cli.config) {
        (Some(p), _) => p.clone(),
        (None, None) => vec![
            "10.0.0.2".parse().expect("literal"),
            "fd00::3".parse().expect("literal"),
        ],
        (None, Some(_)) => Vec::new(),
    };
    let opts = RunOptions {
        faults,
        seed: cli.seed,
        fault_rounds: cli.fault_rounds,
        pings,
        config_path: cli.config.clone(),
        duration_override: cli.duration,
        pcap: cli.pcap.clone(),
        pcap_interface: cli.pcap_interface.clone(),
        pcap_snaplen: cli.pcap_snaplen,
    };
    let ctl = match (&cli.socket, cli.no_socket) {
        (_, true) => None,
        (Some(path), false) => match Listener::bind(path) {
            Ok(l) => Some(l),
            Err(e) => return fail(e),
        },
        (None, false) => match Listener::bind(&ipoib_app::ctl::default_socket_path()) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!("no control socket: {e}");
                None
            }
        },
    };
    match run(&cfg, &opts, ctl, log) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => fail(e),
    }
}

/// Echo requests sent to each `--ping` target.
const PING_COUNT: u16 = 5;
/// How long the end of a run waits for echo replies still on their way.
const PING_GRACE: Duration = Duration::from_secs(3);

/// Lets replies still in flight arrive (a loaded machine can take seconds)
/// before the lcores stop, so the summary counts them.
fn wait_for_pings(control: &ControlPlane) {
    let deadline = Instant::now() + PING_GRACE;
    let jobs = control.jobs();
    while Instant::now() < deadline {
        let (tx, rx) = std::sync::mpsc::channel();
        let job: ipoib_app::control_plane::ControlJob = Box::new(move |ctx| {
            let done = ctx
                .resolvers
                .iter()
                .flat_map(|r| r.ping_results())
                .all(|p| p.sent == PING_COUNT && p.rtts.len() == usize::from(p.sent));
            let _ = tx.send(done);
        });
        if jobs.try_send(job).is_err() {
            return;
        }
        match rx.recv_timeout(PING_GRACE) {
            Ok(true) | Err(_) => return,
            Ok(false) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

struct RunOptions {
    faults: Option<FaultSpec>,
    seed: u64,
    fault_rounds: u32,
    pings: Vec<std::net::IpAddr>,
    /// The file SIGHUP re-reads (none: the embedded default).
    config_path: Option<PathBuf>,
    duration_override: Option<f64>,
    pcap: Option<PathBuf>,
    pcap_interface: Option<String>,
    pcap_snaplen: Option<u32>,
}

fn run(
    cfg: &Config,
    opts: &RunOptions,
    ctl: Option<Listener>,
    log: LogControl,
) -> Result<bool, String> {
    match cfg.provider.kind {
        ProviderKind::Fabric => run_built(cfg, opts, wiring::build_fabric(cfg)?, ctl, log),
        ProviderKind::Null => {
            let pool = wiring::make_pool(cfg)?;
            run_built(cfg, opts, wiring::build_null(cfg, pool)?, ctl, log)
        }
        ProviderKind::Rocev2 => run_built(cfg, opts, wiring::build_rocev2(cfg)?, ctl, log),
        ProviderKind::Verbs => run_built(cfg, opts, wiring::build_verbs(cfg)?, ctl, log),
    }
}

fn run_built<P: Provider + 'static>(
    cfg: &Config,
    opts: &RunOptions,
    built: Built<P>,
    ctl: Option<Listener>,
    log: LogControl,
) -> Result<bool, String> {
    let Built {
        pool,
        lcores,
        hosts,
        fabric,
        resolvers,
        igmp,
        rates,
        capture,
        verbs,
        ..
    } = built;
    if let Some(file) = &opts.pcap {
        capture
            .start(
                file,
                opts.pcap_interface.as_deref(),
                opts.pcap_snaplen.unwrap_or(capture::MAX_SNAPLEN),
            )
            .map_err(|e| format!("--pcap: {e}"))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("cannot install signal handler: {e}"))?;
    }
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .map_err(|e| format!("cannot install signal handler: {e}"))?;
    println!(
        "ipoibd: {} host(s) on the {} provider, {} lcore(s), pool {} x {} B{}",
        hosts.len(),
        cfg.provider.kind.as_str(),
        lcores.len(),
        pool.capacity(),
        pool.buf_size(),
        if pool.is_hugepage() {
            " (hugepages)"
        } else {
            ""
        }
    );
    let backend = match (&fabric, &verbs) {
        (Some(f), _) => Some(McastBackend::Fabric(f.clone())),
        (None, Some(v)) => Some(McastBackend::RdmaCm(v.mcast.clone())),
        (None, None) if !igmp.is_empty() => Some(McastBackend::Igmp(igmp)),
        (None, None) => None,
    };
    // The device's port events (link down/up, LID, P_Key, SM, GID) are
    // read by the control thread, which flushes every engine.
    let port_events = match &verbs {
        Some(v) => Some(
            ipoib_control::rdmacm::PortEvents::new(
                v.device.context().clone(),
                v.device.config().port,
            )
            .map_err(|e| format!("verbs: port events: {e}"))?,
        ),
        None => None,
    };
    let control = match &backend {
        Some(b) => Some(ControlPlane::start(
            b,
            port_events,
            &hosts,
            resolvers,
            cfg.control.join_timeout(),
            cfg.control.sendonly_gc(),
            opts.faults.unwrap_or_else(FaultSpec::none),
            opts.seed,
        )?),
        None => None,
    };
    let mut backend = DaemonBackend::new(cfg, &hosts, pool, fabric.clone(), control.as_ref())
        .with_capture(capture.clone());
    let reloader = Arc::new(Reloader::new(
        opts.config_path.clone(),
        cfg.clone(),
        opts.duration_override,
        log,
        rates,
        control.as_ref().map(ControlPlane::jobs),
        backend.names(),
        hosts.iter().map(|h| h.port.pkey).collect(),
    ));
    backend.set_reloader(reloader.clone());
    let backend = Arc::new(backend);
    let metrics = match cfg.metrics.listen {
        Some(addr) => {
            let b = backend.clone();
            let page =
                move || exposition::render(&b.stats(), &b.status(), b.groups().ok().as_ref());
            let m = MetricsServer::start(addr, Arc::new(page))?;
            println!("metrics: http://{}/metrics", m.local_addr());
            Some(m)
        }
        None => None,
    };
    let server = match ctl {
        Some(l) => {
            let path = l.path().display().to_string();
            let s = l.serve(backend.clone())?;
            println!("control socket: {path}");
            Some(s)
        }
        None => None,
    };
    if let Some(c) = &control {
        // Traffic starts once interfaces have carrier and their groups, as a
        // host's applications would; send-only joins happen on first use.
        let wait = cfg.control.join_timeout() * 2;
        if c.wait_ready(wait) {
            println!("control: carrier on every interface, full-member groups joined");
        } else {
            tracing::warn!("not every interface was up after {wait:?}: starting traffic anyway");
        }
    }
    let lcore_stop = Arc::new(AtomicBool::new(false));
    let (handles, pinning) = spawn_lcores(lcores, &cfg.dataplane.lcores, lcore_stop.clone())
        .map_err(|e| format!("cannot start lcores: {e}"))?;
    if let (Some(first), false) = (cfg.interfaces.first(), opts.pings.is_empty()) {
        if let Some(t) = &first.tun {
            tracing::warn!(
                "--ping: {} has TUN device {}, whose kernel takes the echo replies; \
                 ping from the host instead",
                first.name,
                t.name
            );
        }
    }
    if let (Some(c), false) = (&control, opts.pings.is_empty()) {
        // From the first interface's stack, 200 ms after the lcores start
        // (a slow start-up must not queue every request before they run);
        // PING_COUNT rounds, 100 ms apart.
        let targets = opts.pings.clone();
        let job: ipoib_app::control_plane::ControlJob = Box::new(move |ctx| {
            let start = ctx.now + Duration::from_millis(200);
            if let Some(first) = ctx.resolvers.first_mut() {
                first.plan_pings(targets, PING_COUNT, Duration::from_millis(100), start);
            }
        });
        c.jobs()
            .send(job)
            .map_err(|_| "the control thread stopped before the pings".to_string())?;
    }
    match pinning {
        Pinning::Shared { cores, lcores } => {
            tracing::warn!(
                "{lcores} lcores share {cores} core(s): expect lower rates than with one core each"
            )
        }
        Pinning::Unpinned => tracing::warn!("cannot pin lcores to cores here; they run unpinned"),
        Pinning::Dedicated => {}
    }
    let start = Instant::now();
    let mut interval = reloader.stats_interval();
    let deadline = cfg.run.duration().map(|d| start + d);
    let mut live = Live::default();
    let mut next = start + interval;
    loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| now >= d) {
            break;
        }
        if hup.swap(false, Ordering::Relaxed) {
            // The outcome is logged by the reloader.
            let _ = reloader.reload();
        }
        // A reload (SIGHUP or the control socket) may change the interval.
        if reloader.stats_interval() != interval {
            interval = reloader.stats_interval();
            next = now + interval;
        }
        if now >= next {
            println!(
                "{}",
                live.line(now - start, interval, &hosts, fabric.as_deref())
            );
            next += interval;
        }
        let wake = deadline.map_or(next, |d| d.min(next));
        std::thread::sleep(
            wake.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50)),
        );
    }
    if !stop.load(Ordering::Relaxed) && !opts.pings.is_empty() {
        if let Some(c) = &control {
            wait_for_pings(c);
        }
    }
    let elapsed = start.elapsed();
    // No requests into a control plane that is about to stop.
    if let Some(s) = server {
        s.stop();
    }
    if let Some(m) = metrics {
        m.stop();
    }
    lcore_stop.store(true, Ordering::Relaxed);
    let mut stopped = Vec::new();
    for h in handles {
        stopped.push(h.join().map_err(|_| "an lcore panicked".to_string())?);
    }
    for l in &mut stopped {
        l.drain();
    }
    drop(stopped);
    // The lcores are stopped: every frame they captured is in the file.
    if let Ok(c) = capture.stop() {
        println!(
            "capture: {} record(s) of {} written to {}, {} dropped{}",
            c.written,
            c.interfaces.join(" "),
            c.file.display(),
            c.drops,
            c.error.map(|e| format!(" ({e})")).unwrap_or_default()
        );
    }
    print!("\n{}", report::summary(&hosts, fabric.as_deref(), elapsed));
    print!("{}", report::tun_lines(&hosts));
    let mut ok = true;
    if let Some(control) = control {
        print!("\nmulticast groups at stop:\n{}", control.groups_report());
        let r = control.shutdown();
        println!(
            "control: joins={} leaves={} failed={} unanswered={} sa_restarts={} unbalanced={} violations={}",
            r.sa.joined,
            r.sa.leaves,
            r.sa.failed,
            r.sa.unanswered,
            r.sa.restarts,
            r.unbalanced,
            r.violations.len()
        );
        for v in &r.violations {
            println!("  violation: {v}");
        }
        // Every membership joined at stop is left (IGMP and rdma_cm keep no
        // SA books to balance; this is their count).
        println!("control: {} membership(s) left at stop", r.leaves);
        print!(
            "\nneighbours at stop:\n{}",
            report::neighbours(&r.neighbours)
        );
        for line in &r.resolution {
            println!("resolution {line}");
        }
        for p in &r.pings {
            println!("{}", report::ping_line(p));
        }
        if let Some(f) = r.port_flushes {
            println!("port events: {f} flush(es)");
        }
        ok &= r.is_ok();
    }
    if let Some(v) = &verbs {
        // rdma_cm's books: every membership joined was left.
        for ((service, _), h) in v.mcast.iter().zip(&hosts) {
            service.shutdown();
            let st = service.stats();
            println!(
                "rdma_cm {}: joins={} sendonly_joins={} leaves={} failed={} cancels={} errors={} outstanding={}",
                h.name,
                st.joins,
                st.sendonly_joins,
                st.leaves,
                st.failed,
                st.cancels,
                st.errors,
                st.outstanding()
            );
            ok &= st.outstanding() == 0;
        }
    }
    let leaked = pool.capacity() - pool.available();
    ok &= leaked == 0;
    println!(
        "mempool: {}/{} buffers free after stop{}",
        pool.available(),
        pool.capacity(),
        if leaked == 0 {
            " (no leak)"
        } else {
            " — LEAK"
        }
    );
    if let Some(spec) = &opts.faults {
        // Thousands of synthetic joins and leaves: their lines would bury
        // the run's own; errors still show.
        let _ = reloader.log().set_level(ipoib_config::LogLevel::Error);
        let summary = run_fault_scenario(spec, opts.seed, opts.fault_rounds);
        println!("sa-faults scenario: {summary}");
        ok &= summary.is_ok();
    }
    Ok(ok)
}
