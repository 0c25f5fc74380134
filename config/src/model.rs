//! The validated configuration: plain typed values, every default filled in.
//!
//! TOML names map to Rust names one to one, except that arrays of tables are
//! plural in Rust: `[[interface]]` → `Config::interfaces`, `[[interface.neighbour]]`
//! → `Interface::neighbours`; `[[traffic]]` stays `Config::traffic`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

/// The whole configuration after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub dataplane: Dataplane,
    pub provider: Provider,
    /// `[[interface]]`; at least one.
    pub interfaces: Vec<Interface>,
    /// `[[traffic]]`; may be empty.
    pub traffic: Vec<Traffic>,
    pub control: Control,
    pub run: Run,
    pub log: Log,
    pub metrics: Metrics,
}

impl Config {
    /// The interface called `name`, if configured.
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }
}

/// `[dataplane]`: lcores, rings and buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataplane {
    /// CPU core ids the lcores are pinned to; default `[0]`; no duplicates.
    pub lcores: Vec<usize>,
    /// Packets per burst, 1..=256; default 32.
    pub burst: u16,
    /// TX ring entries, a power of two in 64..=65536; default 1024.
    pub tx_ring_size: u32,
    /// RX ring entries, a power of two in 64..=65536; default 1024.
    pub rx_ring_size: u32,
    /// Mbufs per interface, 256..=1048576; default 8192.
    pub mempool_size: u32,
    /// Per-lcore mempool cache, 0..=512 and at most `mempool_size / 4`; default 256.
    pub mempool_cache: u32,
    /// Bytes per mbuf including 128 B headroom, 256..=16384; default 2176.
    pub buf_size: u32,
    /// Hugepage use; default `auto`.
    pub hugepages: Hugepages,
}

impl Default for Dataplane {
    fn default() -> Self {
        Dataplane {
            lcores: vec![0],
            burst: 32,
            tx_ring_size: 1024,
            rx_ring_size: 1024,
            mempool_size: 8192,
            mempool_cache: 256,
            buf_size: 2176,
            hugepages: Hugepages::Auto,
        }
    }
}

/// `dataplane.hugepages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hugepages {
    /// Try hugepages; fall back to normal pages with one warning.
    #[default]
    Auto,
    /// Require hugepages; fail when none are reserved.
    On,
    /// Never use hugepages.
    Off,
}

impl Hugepages {
    pub fn as_str(self) -> &'static str {
        match self {
            Hugepages::Auto => "auto",
            Hugepages::On => "on",
            Hugepages::Off => "off",
        }
    }
}

/// `[provider]`: which transport carries packets.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Provider {
    /// Default `fabric`.
    pub kind: ProviderKind,
    /// `[provider.fabric]`; read only when `kind = "fabric"`, always filled in.
    pub fabric: Fabric,
    /// `[provider.rocev2]`; read only when `kind = "rocev2"`, always filled in.
    pub rocev2: Rocev2,
    /// `[provider.verbs]`; read only when `kind = "verbs"`, always filled in.
    pub verbs: Verbs,
}

/// `provider.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Sink/loopback: measures the software path alone.
    Null,
    /// In-process soft InfiniBand fabric.
    #[default]
    Fabric,
    /// Userspace soft-RoCE over UDP sockets.
    Rocev2,
    /// libibverbs: hardware or kernel rxe.
    Verbs,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Null => "null",
            ProviderKind::Fabric => "fabric",
            ProviderKind::Rocev2 => "rocev2",
            ProviderKind::Verbs => "verbs",
        }
    }
}

/// `[provider.fabric]`: the soft fabric's link parameters and fault injection.
#[derive(Debug, Clone, PartialEq)]
pub struct Fabric {
    /// InfiniBand link MTU: 256, 512, 1024, 2048 or 4096; default 2048.
    /// Every interface's `mtu` must be at most `ib_mtu - 4` (the IPoIB header).
    pub ib_mtu: u16,
    /// Probability a packet is dropped, 0.0..=1.0; default 0.0.
    pub loss: f64,
    /// Probability a packet is delivered out of order, 0.0..=1.0; default 0.0.
    pub reorder: f64,
    /// Seed for the fabric's random choices; default 1.
    pub seed: u64,
}

impl Default for Fabric {
    fn default() -> Self {
        Fabric {
            ib_mtu: 2048,
            loss: 0.0,
            reorder: 0.0,
            seed: 1,
        }
    }
}

/// `[provider.rocev2]`: the userspace soft-RoCE transport.
#[derive(Debug, Clone, PartialEq)]
pub struct Rocev2 {
    /// UDP port of RoCEv2, 1..=65535; default 4791 (IANA's, what rxe uses).
    pub port: u16,
    /// Deliver this host's own multicast back to it (IP_MULTICAST_LOOP); default true.
    pub multicast_loop: bool,
    /// Send bursts to one peer with UDP GSO; default false.
    pub gso: bool,
    /// Receive with UDP GRO (runs of datagrams from one sender come up as
    /// one buffer, cut into messages by the provider); default false.
    pub gro: bool,
    /// RoCE path MTU: 256, 512, 1024, 2048 or 4096; default 1024 (rxe's on a 1500-byte link).
    /// Every interface's `mtu` must be at most `ib_mtu - 4` (the IPoIB header).
    pub ib_mtu: u16,
    /// Where IPoIB IPv6 groups (ND's solicited-node and all-nodes groups
    /// among them) go on an IPv4 underlay: an IPv4 group in this range,
    /// from a hash of the MGID (between this project's hosts only; rxe has
    /// no such mapping). A prefix /8../24 inside 239.0.0.0/8 (RFC 2365),
    /// not holding 239.255.255.255 (the IPoIB broadcast group's); default
    /// 239.254.0.0/16; `""` (None) refuses IPv6 addresses on IPv4 underlays.
    pub ipv6_group_range: Option<Ipv4Cidr>,
}

impl Default for Rocev2 {
    fn default() -> Self {
        Rocev2 {
            port: 4791,
            multicast_loop: true,
            gso: false,
            gro: false,
            ib_mtu: 1024,
            ipv6_group_range: Some(Ipv4Cidr {
                addr: Ipv4Addr::new(239, 254, 0, 0),
                prefix: 16,
            }),
        }
    }
}

/// `[provider.verbs]`: a real RDMA device through libibverbs (hardware or
/// kernel soft-RoCE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verbs {
    /// Which device: a name (`rxe0`, `mlx5_0`), a node GUID
    /// (`0002:c903:0000:0001` or `0x0002c90300000001`), or `netdev:IFACE`
    /// for the device carrying that network interface; default `""`, the first.
    pub device: String,
    /// Device port, 1..=255; default 1.
    pub port: u8,
    /// Source GID index, 0..=255; default 0. On RoCEv2 over IPv4 use the
    /// `::ffff:a.b.c.d` entry (index 1 on Linux rxe).
    pub gid_index: u8,
    /// P_Key table index of the interfaces' QPs, 0..=65535; default 0.
    pub pkey_index: u16,
}

impl Default for Verbs {
    fn default() -> Self {
        Verbs {
            device: String::new(),
            port: 1,
            gid_index: 0,
            pkey_index: 0,
        }
    }
}

/// An IPv4 address with its prefix length, as written `10.0.0.1/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    /// 0..=32.
    pub prefix: u8,
}

/// An IPv6 address with its prefix length, as written `fd00::1/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Cidr {
    pub addr: Ipv6Addr,
    /// 0..=128.
    pub prefix: u8,
}

/// One `[[interface]]`: an IPoIB interface on a fabric port.
#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    /// 1..=15 characters of `[A-Za-z0-9_.-]`, unique. Required.
    pub name: String,
    /// Fabric port / LID, 1..=0xBFFF (unicast LIDs), unique among parent
    /// interfaces. Required, except on a child, which shares its parent's.
    pub port: u16,
    /// The interface this one is a P_Key child of (like Linux `ib0.8001`):
    /// it shares the parent's port, GUID and `local_ip` but has its own QP,
    /// P_Key, Q_Key and broadcast group; default none.
    pub parent: Option<String>,
    /// 0 for a parent interface; n for the n-th child of its parent, in file
    /// order (providers number the child's QP from it).
    pub child_index: u8,
    /// Index into `dataplane.lcores` of the lcore that polls this interface; default 0.
    pub lcore: usize,
    /// UD queue pairs of the interface, each on its own lcore: queue q on
    /// lcore index `(lcore + q) % lcores`; 1..=16 and at most the number
    /// of lcores; more than one needs the verbs provider. Default 1.
    pub queues: u16,
    /// Partition key, 1..=0xFFFF with the low 15 bits non-zero; default 0xFFFF.
    pub pkey: u16,
    /// Queue key, 0..=0x7FFFFFFF (the high bit marks controlled Q_Keys); default 0x0B1B.
    pub qkey: u32,
    /// IPoIB MTU, 68..=4092; default 2044.
    pub mtu: u16,
    /// Port GUID; default `Interface::default_guid(port)`; unique.
    pub guid: u64,
    /// IPv4 addresses with prefixes; default none.
    pub ipv4: Vec<Ipv4Cidr>,
    /// IPv6 addresses with prefixes; default none.
    pub ipv6: Vec<Ipv6Cidr>,
    /// Multicast groups joined as a full member; default none.
    pub groups: Vec<IpAddr>,
    /// Multicast groups this host only sends to (send-only join); default none.
    pub sendonly: Vec<IpAddr>,
    /// `[[interface.neighbour]]`: static neighbours; default none.
    pub neighbours: Vec<Neighbour>,
    /// Address the rocev2 provider binds and its GID derives from; required
    /// when `provider.kind = "rocev2"`, else optional and unused.
    pub local_ip: Option<IpAddr>,
    /// `[interface.tun]`: a kernel TUN device carrying the interface's
    /// addresses and MTU, so host programs send and receive through the
    /// dataplane; default none.
    pub tun: Option<Tun>,
}

/// `[interface.tun]`: the kernel TUN device of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tun {
    /// Device name, 1..=15 characters of `[A-Za-z0-9_.-]`, unique among the
    /// interfaces' TUN devices; default the interface's name.
    pub name: String,
}

impl Interface {
    /// Most children one parent interface may have.
    pub const MAX_CHILDREN: usize = 255;

    /// OUI-style prefix of generated port GUIDs.
    pub const GUID_BASE: u64 = 0x0002_c903_0000_0000;

    /// The GUID an interface gets when none is configured: `0x0002c90300000000 | port`.
    pub fn default_guid(port: u16) -> u64 {
        Self::GUID_BASE | u64::from(port)
    }

    /// The link-local port GID matching `guid`: `fe80::/64` + GUID as interface id.
    pub fn port_gid(&self) -> Ipv6Addr {
        let g = self.guid;
        Ipv6Addr::new(
            0xfe80,
            0,
            0,
            0,
            (g >> 48) as u16,
            (g >> 32) as u16,
            (g >> 16) as u16,
            g as u16,
        )
    }

    /// Largest UD payload on the wire for this interface: the IPoIB MTU plus its 4-byte header.
    pub fn datagram_size(&self) -> usize {
        usize::from(self.mtu) + 4
    }
}

/// One `[[interface.neighbour]]`: a statically resolved peer.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbour {
    /// The peer's IP address; the interface must have an address of the same family.
    pub ip: IpAddr,
    /// The peer's UD queue pair number, 1..=0xFFFFFF.
    pub qpn: u32,
    /// The peer's port GID, written in IPv6 syntax.
    pub gid: Ipv6Addr,
}

/// One `[[traffic]]`: a UDP flow generated by simple runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// Name of the sending interface. Required.
    pub from: String,
    /// Destination: IPv4/IPv6, unicast or multicast. Required.
    pub to: IpAddr,
    /// IP packet size in bytes, from 28 (IPv4) or 48 (IPv6) up to the interface MTU; default 64.
    pub size: u16,
    /// Packets per second; 0 = as fast as possible; default 0.
    pub rate_pps: u64,
    /// UDP destination port; default 9 (discard).
    pub dst_port: u16,
    /// UDP source port; default 9.
    pub src_port: u16,
}

/// `[control]`: the control plane's timers and queues.
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    /// Time a multicast join may take before it counts as failed, 10..=60000 ms; default 1000.
    pub join_timeout_ms: u32,
    /// Cap of the exponential join backoff, 1..=300 s; default 16.
    pub backoff_max_s: u32,
    /// Idle time after which a send-only group is left, 1..=86400 s; default 60.
    pub sendonly_gc_s: u32,
    /// Capacity of the lcores' join request queue, 16..=65536; default 1024.
    pub request_queue: u32,
    /// Packets held per unresolved neighbour, 1..=64; default 3.
    pub neigh_queue: u32,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            join_timeout_ms: 1000,
            backoff_max_s: 16,
            sendonly_gc_s: 60,
            request_queue: 1024,
            neigh_queue: 3,
        }
    }
}

impl Control {
    pub fn join_timeout(&self) -> Duration {
        Duration::from_millis(self.join_timeout_ms.into())
    }

    pub fn backoff_max(&self) -> Duration {
        Duration::from_secs(self.backoff_max_s.into())
    }

    pub fn sendonly_gc(&self) -> Duration {
        Duration::from_secs(self.sendonly_gc_s.into())
    }
}

/// `[run]`: how long to run and how often to report.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Seconds to run, 0.0..=86400.0; 0 = until a signal; default 5.0.
    pub duration_s: f64,
    /// Stats print interval, 100..=60000 ms; default 1000.
    pub stats_interval_ms: u32,
}

impl Default for Run {
    fn default() -> Self {
        Run {
            duration_s: 5.0,
            stats_interval_ms: 1000,
        }
    }
}

impl Run {
    /// `None` means run until a signal.
    pub fn duration(&self) -> Option<Duration> {
        // `try_` so that a hand-built NaN or negative value cannot panic.
        Duration::try_from_secs_f64(self.duration_s)
            .ok()
            .filter(|d| !d.is_zero())
    }

    pub fn stats_interval(&self) -> Duration {
        Duration::from_millis(self.stats_interval_ms.into())
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metrics {
    /// Address `GET /metrics` is served on, e.g. `127.0.0.1:9464`; default
    /// none (no endpoint). Port 0 picks a free port (printed at start).
    pub listen: Option<SocketAddr>,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Log {
    /// Default `info`.
    pub level: LogLevel,
}

/// `log.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}
