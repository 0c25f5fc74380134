//! `ipoibd pktgen` command-line flags.

use std::net::IpAddr;
use std::path::PathBuf;

/// Generate stamped UDP streams and measure them in sinks on every interface.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PktgenArgs {
    /// Scenario file (TOML): hosts, streams and phases. Flags below override
    /// its provider, fabric and output settings; stream flags are ignored with it.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Hosts configuration (TOML). Default: the embedded one (three soft hosts).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Provider: "fabric" (soft InfiniBand), "null" (software ceiling),
    /// "rocev2" (RoCEv2 over UDP) or "verbs" (an RDMA device through
    /// libibverbs). On rocev2 and verbs: one process per host, peers as
    /// static neighbours or other interfaces of the configuration.
    #[arg(long, value_parser = ["fabric", "null", "rocev2", "verbs"])]
    pub provider: Option<String>,
    /// Sink role: generate nothing, measure what arrives on every interface
    /// from generators in other processes or hosts; stops once every stream
    /// seen has announced its end and the interfaces are quiet, at
    /// --duration seconds, or on SIGINT/SIGTERM. Latency probes (a
    /// generator's --latency rtt) are reflected back to their sender.
    #[arg(long, conflicts_with_all = ["scenario", "to", "pcap", "count", "warmup"])]
    pub sink: bool,
    /// Sink role: stream ids 0..N are measured (default 16).
    #[arg(long, value_name = "N", requires = "sink")]
    pub sink_streams: Option<u16>,
    /// Sending interface (default: the first).
    #[arg(long)]
    pub from: Option<String>,
    /// Destination address, repeatable: one stream each. Default: the sender's
    /// first IPv4 neighbour.
    #[arg(long)]
    pub to: Vec<IpAddr>,
    /// IP packet bytes (default 64).
    #[arg(long)]
    pub size: Option<usize>,
    #[arg(long, value_parser = ["single", "range", "random"])]
    pub mode: Option<String>,
    /// Seed of random mode (default 1).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Rate in packets per second per stream.
    #[arg(long, value_name = "PPS", conflicts_with_all = ["rate_bps", "rate_pct"])]
    pub rate_pps: Option<f64>,
    /// Rate in IP bits per second per stream.
    #[arg(long, value_name = "BPS", conflicts_with = "rate_pct")]
    pub rate_bps: Option<f64>,
    /// Rate in percent of --link-gbps per stream.
    #[arg(long, value_name = "PCT")]
    pub rate_pct: Option<f64>,
    /// Link rate that --rate-pct refers to (default 100).
    #[arg(long, value_name = "GBPS")]
    pub link_gbps: Option<f64>,
    /// Measured packets per stream.
    #[arg(long)]
    pub count: Option<u64>,
    /// Measured seconds per stream (default 5 unless --count is given).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Seconds sent before measurement, left out of the results.
    #[arg(long, value_name = "SECONDS")]
    pub warmup: Option<f64>,
    /// Packets per paced burst, 1..=32.
    #[arg(long)]
    pub burst: Option<usize>,
    /// Range/random mode: destination addresses `MIN,MAX[/STEP]`.
    #[arg(long, value_name = "RANGE")]
    pub dst_range: Option<String>,
    /// Range/random mode: source ports `MIN-MAX[/STEP]`.
    #[arg(long, value_name = "RANGE")]
    pub src_port_range: Option<String>,
    /// Range/random mode: destination ports `MIN-MAX[/STEP]`.
    #[arg(long, value_name = "RANGE")]
    pub dst_port_range: Option<String>,
    /// Range/random mode: packet sizes `MIN-MAX[/STEP]`.
    #[arg(long, value_name = "RANGE")]
    pub size_range: Option<String>,
    /// Latency to measure: "one-way" (default; the sink's clock against the
    /// sender's, meaningful only when both share a machine) or "rtt": a few
    /// packets a second are probes that the sink reflects back, timed on
    /// the sender's clock (valid across hosts).
    #[arg(long, value_parser = ["one-way", "rtt"])]
    pub latency: Option<String>,
    /// Latency probes per second per stream with --latency rtt (default
    /// 1000, at most 10000).
    #[arg(long, value_name = "PPS")]
    pub probe_pps: Option<f64>,
    /// Replay this capture (LINKTYPE_IPOIB 242 or raw IP) from --from instead
    /// of generating stamped streams.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Replay as fast as possible instead of at the recorded spacing.
    #[arg(long, requires = "pcap")]
    pub pcap_fast: bool,
    /// Replay passes over the capture (default 1).
    #[arg(long, requires = "pcap")]
    pub loops: Option<u64>,
    /// Fabric: probability of injected loss.
    #[arg(long)]
    pub loss: Option<f64>,
    /// Fabric: probability of injected reordering.
    #[arg(long)]
    pub reorder: Option<f64>,
    /// Fabric: seed of the injection dice.
    #[arg(long)]
    pub fabric_seed: Option<u64>,
    /// Write every figure as JSON (schema: src/pktgen/SCHEMA.md).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write every figure as CSV, one row per stream and receiver, then per port.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Draw the rate over time and the latency distributions into an SVG or
    /// PNG file (by its extension).
    #[arg(long, value_name = "FILE.svg|png")]
    pub plot: Option<PathBuf>,
    /// No live screen.
    #[arg(long, short)]
    pub quiet: bool,
    /// Check the flags and scenario, print the plan, and exit without running.
    #[arg(long)]
    pub dry_run: bool,
}
