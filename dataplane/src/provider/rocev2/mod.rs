//! The `rocev2` provider: a userspace soft-RoCE. Real RoCEv2 UD packets
//! (UDP port 4791, BTH, DETH, ICRC) over plain UDP sockets, with one
//! `sendmmsg`/`recvmmsg` per burst, wire-compatible with Linux rxe.
//!
//! A QP's address is (GID, QPN) with GID = its IP address (IPv4-mapped
//! `::ffff:a.b.c.d` or IPv6). Each QP has three sockets: one bound to
//! (local IP, rxe's UDP source port for its QPN) that sends, one bound to
//! (local IP, RoCEv2 port) that receives unicast, and one bound to (any,
//! RoCEv2 port) that receives the multicast groups joined through its
//! [`McastSocket`]. All use SO_REUSEPORT so several lcores or processes
//! can share a host.
//!
//! Several QPs may share one local address (an interface and its P_Key
//! children): their unicast sockets then form one reuseport group, and
//! [`steer_unicast`] has the kernel hand each datagram to the socket of the
//! QP its BTH names, so nothing is demultiplexed per packet here; each QP
//! still checks the QPN and its own P_Key.
//!
//! Received messages carry a GRH in the headroom (source and destination
//! IP as GIDs), so the layer above can tell its own multicast, looped back
//! by the host, from a peer's (see [`Rocev2Provider::is_own`]).

pub mod addr;
mod counters;
mod ipid;
mod pseudo;
mod rx;
mod rx_gro;
mod slots;
mod socket;
mod tx;
mod tx_staged;

pub use counters::{DropReason, Rocev2Counters};
pub use ipid::recover_ipv4_id;
pub use pseudo::{icrc_for, icrc_with_ip_id};
pub use slots::MAX_BURST;
pub use socket::McastSocket;

use super::{AhAttr, PortAttr, Provider, ProviderError, ProviderXstats, RecvCompletion, SendWr};
use crate::mem::{LcoreCache, Mbuf};
use crate::wire::roce::{rxe_udp_sport, ROCEV2_UDP_PORT};
use crate::wire::Gid;
use arrayvec::ArrayVec;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// What a `rocev2` QP is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rocev2Config {
    /// The address this QP sends from and receives on; its GID.
    pub local: IpAddr,
    /// The RoCEv2 UDP port (4791; tests may pick another).
    pub port: u16,
    pub qpn: u32,
    pub qkey: u32,
    pub pkey: u16,
    /// Largest UD message (the IB MTU).
    pub max_msg: u16,
    /// Open the socket multicast is received on.
    pub multicast: bool,
    /// Let this host's sockets see this QP's multicast sends (as rxe does).
    pub multicast_loop: bool,
    /// Accept an IPv4 ICRC made with a non-zero IP ID (Linux rxe's), which
    /// the socket does not show: it is solved for, at the cost of 16 bits
    /// of the check. Off: only ID 0 (what DF senders on sockets use).
    pub accept_nonzero_ip_id: bool,
    /// Send runs of equal-sized messages to one destination as one UDP GSO
    /// send (each segment a whole RoCEv2 packet with its own ICRC). The
    /// kernel then numbers the segments' IPv4 IDs 0, 1, 2, ... and needs a
    /// UDP checksum (rxe sends 0; the ICRC masks it).
    pub gso: bool,
    /// Receive with UDP GRO: runs of datagrams from one sender come up as
    /// one buffer and are cut into messages here (a copy each into an mbuf,
    /// instead of a kernel pass each). Senders see no difference.
    pub gro: bool,
    /// On an IPv4 underlay, where IPv6 multicast GIDs (IPoIB's IPv6 and ND
    /// groups) are sent: an IPv4 group of this range ([`addr::underlay_ip`]).
    /// `None`: such GIDs are refused as addresses of the other family.
    pub v6_groups: Option<addr::V6GroupRange>,
}

impl Rocev2Config {
    /// A QP at `local` with rxe's defaults: port 4791, P_Key 0xFFFF, the
    /// IPoIB Q_Key 0x0B1B, a 2048-byte MTU, multicast on and looped back,
    /// rxe's IPv4 IDs accepted.
    pub fn new(local: IpAddr, qpn: u32) -> Self {
        Rocev2Config {
            local,
            port: ROCEV2_UDP_PORT,
            qpn,
            qkey: 0x0B1B,
            pkey: 0xFFFF,
            max_msg: 2048,
            multicast: true,
            multicast_loop: true,
            accept_nonzero_ip_id: true,
            gso: false,
            gro: false,
            v6_groups: None,
        }
    }
}

/// Where a send goes: an IP address (unicast or a group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rocev2Ah {
    pub dst: IpAddr,
    pub multicast: bool,
}

/// One RoCEv2 UD QP over UDP sockets, driven by one lcore.
pub struct Rocev2Provider {
    cfg: Rocev2Config,
    tx: OwnedFd,
    /// The sending socket's address: the UDP source the ICRC covers.
    tx_addr: SocketAddr,
    rx: OwnedFd,
    mcast: Option<McastSocket>,
    mcast_fd: Option<Arc<OwnedFd>>,
    mcast_groups: Arc<AtomicUsize>,
    cache: LcoreCache,
    /// Next PSN (24 bits).
    psn: u32,
    tx_slots: Box<slots::Slots>,
    rx_slots: Box<slots::Slots>,
    /// Receive buffers posted for the next `recvmmsg`, windows spanning the
    /// whole buffer.
    rx_bufs: ArrayVec<Mbuf, MAX_BURST>,
    /// Staging buffers when receiving with UDP GRO.
    gro: Option<Box<rx_gro::GroRx>>,
    /// The ICRC headers of the last flow received from.
    icrc_headers: pseudo::HeadersCache,
    /// The BTH and DETH last sent (PSN aside), and what they were made of.
    tx_headers: (Option<tx::HeadersKey>, [u8; tx::HEADERS_LEN]),
    /// Where short messages are written whole before they are sent.
    tx_stage: tx_staged::TxStage,
    pub counters: Rocev2Counters,
    /// `counters` as last published for other threads (after each burst).
    published: Arc<ProviderXstats>,
}

impl Rocev2Provider {
    /// Opens the QP's sockets. `cache` supplies receive buffers and takes
    /// sent ones back.
    pub fn new(cfg: Rocev2Config, cache: LcoreCache) -> io::Result<Self> {
        let tx_addr = SocketAddr::new(cfg.local, rxe_udp_sport(cfg.qpn));
        let tx = socket::bind_udp(tx_addr, cfg.multicast_loop, cfg.gso)?;
        if let IpAddr::V4(local) = cfg.local {
            socket::set_multicast_if(tx.as_raw_fd(), local)?;
        }
        let rx = socket::bind_udp(
            SocketAddr::new(cfg.local, cfg.port),
            cfg.multicast_loop,
            false,
        )?;
        if cfg.gro {
            socket::set_udp_gro(rx.as_raw_fd())?;
        }
        let mcast_groups = Arc::new(AtomicUsize::new(0));
        let (mcast, mcast_fd) = if cfg.multicast {
            let any: IpAddr = match cfg.local {
                IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
                IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
            };
            let fd = Arc::new(socket::bind_udp(
                SocketAddr::new(any, cfg.port),
                cfg.multicast_loop,
                false,
            )?);
            if cfg.gro {
                socket::set_udp_gro(fd.as_raw_fd())?;
            }
            let handle = McastSocket::new(fd.clone(), cfg.local, mcast_groups.clone());
            (Some(handle), Some(fd))
        } else {
            (None, None)
        };
        Ok(Rocev2Provider {
            cfg,
            tx,
            tx_addr,
            rx,
            mcast,
            mcast_fd,
            mcast_groups,
            cache,
            psn: 0,
            tx_slots: slots::Slots::new(),
            rx_slots: slots::Slots::new(),
            rx_bufs: ArrayVec::new(),
            gro: cfg.gro.then(|| rx_gro::GroRx::new(cfg.local)),
            icrc_headers: pseudo::HeadersCache::default(),
            tx_headers: (None, [0; tx::HEADERS_LEN]),
            tx_stage: tx_staged::TxStage::new(),
            published: ProviderXstats::new("rocev2_", &Rocev2Counters::names()),
            counters: Rocev2Counters::default(),
        })
    }

    pub fn config(&self) -> &Rocev2Config {
        &self.cfg
    }

    /// The handle full-member joins go through (`None` without multicast).
    pub fn mcast_socket(&self) -> Option<McastSocket> {
        self.mcast.clone()
    }

    /// The UDP source port this QP sends from (rxe's, from the QPN).
    pub fn udp_src_port(&self) -> u16 {
        self.tx_addr.port()
    }

    /// True for a message this very QP sent (multicast looped back by the host).
    pub fn is_own(&self, c: &RecvCompletion) -> bool {
        c.src_qpn == self.cfg.qpn && c.sgid() == Some(addr::gid_of(self.cfg.local))
    }

    /// Sizes the receive buffers of the unicast and multicast sockets, so a
    /// burst that arrives while the lcore is away waits instead of dropping.
    pub fn set_recv_buffer(&self, bytes: usize) -> io::Result<()> {
        socket::set_recv_buffer(self.rx.as_raw_fd(), bytes)?;
        if let Some(fd) = &self.mcast_fd {
            socket::set_recv_buffer(fd.as_raw_fd(), bytes)?;
        }
        Ok(())
    }

    /// A buffer from this QP's own cache, where sent buffers return: a
    /// program that sends from here keeps cycling the same warm buffers.
    pub fn alloc(&mut self) -> Option<Mbuf> {
        self.cache.alloc()
    }

    /// Gives a delivered buffer back to this QP's own cache, which posts it
    /// again on the next receive while it is still warm.
    pub fn recycle(&mut self, m: Mbuf) {
        self.cache.free(m);
    }

    /// The next PSN this QP sends.
    pub fn next_psn(&self) -> u32 {
        self.psn
    }

    /// Starts the PSN sequence at `psn` (24 bits).
    pub fn set_psn(&mut self, psn: u32) {
        self.psn = psn & crate::wire::roce::bth::PSN_MASK;
    }
}

/// Has the kernel deliver unicast for `qps` — QPs on one local address and
/// RoCEv2 port, opened in this order and before any other socket of this
/// process on that address — to the socket of the QP the BTH's destination
/// QPN names (a classic BPF program on their reuseport group). Without it a
/// group of several sockets is balanced by hash, and a QP would see (and
/// drop) its siblings' messages.
pub fn steer_unicast(qps: &[&Rocev2Provider]) -> io::Result<()> {
    let Some(first) = qps.first() else {
        return Ok(());
    };
    let (local, port) = (first.cfg.local, first.cfg.port);
    if qps
        .iter()
        .any(|q| q.cfg.local != local || q.cfg.port != port)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "QPs steered together must share their local address and port",
        ));
    }
    let qpns: Vec<u32> = qps.iter().map(|q| q.cfg.qpn).collect();
    socket::steer_by_qpn(first.rx.as_raw_fd(), &qpns)
}

impl Provider for Rocev2Provider {
    type Ah = Rocev2Ah;

    fn port(&self) -> PortAttr {
        PortAttr {
            lid: 0,
            gid: addr::gid_of(self.cfg.local),
            qpn: self.cfg.qpn,
            pkey: self.cfg.pkey,
            qkey: self.cfg.qkey,
            max_msg: self.cfg.max_msg,
        }
    }

    /// RoCE is always globally routed: the GID names the peer (or group).
    fn create_ah(&mut self, attr: &AhAttr) -> Result<Rocev2Ah, ProviderError> {
        let gid = attr
            .dgid
            .ok_or(ProviderError::InvalidAh("RoCEv2 needs a destination GID"))?;
        let dst = addr::underlay_ip(gid, self.cfg.local, self.cfg.v6_groups);
        if dst.is_ipv4() != self.cfg.local.is_ipv4() {
            return Err(ProviderError::InvalidAh(
                "destination and local address differ in IP version",
            ));
        }
        if dst.is_unspecified() {
            return Err(ProviderError::InvalidAh("unspecified destination address"));
        }
        Ok(Rocev2Ah {
            dst,
            multicast: dst.is_multicast(),
        })
    }

    fn ah_dgid(&self, ah: &Rocev2Ah) -> Option<Gid> {
        Some(addr::gid_of(ah.dst))
    }

    fn post_send<const N: usize>(&mut self, wrs: &mut ArrayVec<SendWr<Rocev2Ah>, N>) -> usize {
        self.send_burst(wrs, None)
    }

    fn poll_recv<const N: usize>(&mut self, out: &mut ArrayVec<RecvCompletion, N>) -> usize {
        self.poll(out, None)
    }

    fn xstats(&self) -> Option<Arc<ProviderXstats>> {
        Some(self.published.clone())
    }
}

impl Rocev2Provider {
    /// As `post_send`, with every message a SEND_ONLY_WITH_IMMEDIATE (opcode
    /// 0x65) carrying `imm` (rdma_cm's `mckey` sends its QPN this way).
    pub fn post_send_imm<const N: usize>(
        &mut self,
        wrs: &mut ArrayVec<SendWr<Rocev2Ah>, N>,
        imm: u32,
    ) -> usize {
        self.send_burst(wrs, Some(imm))
    }

    /// As `poll_recv`, and for each message appended to `out` the immediate
    /// data it carried (`None` for SEND_ONLY) appended to `imms`. Keep both
    /// at the same length between calls.
    pub fn poll_recv_imm<const N: usize>(
        &mut self,
        out: &mut ArrayVec<RecvCompletion, N>,
        imms: &mut ArrayVec<Option<u32>, N>,
    ) -> usize {
        self.poll(out, Some(imms))
    }

    fn poll<const N: usize>(
        &mut self,
        out: &mut ArrayVec<RecvCompletion, N>,
        mut imms: Option<&mut ArrayVec<Option<u32>, N>>,
    ) -> usize {
        let before = out.len();
        let rx = self.rx.as_raw_fd();
        let gro = self.gro.is_some();
        if gro {
            self.recv_gro(rx, out, imms.as_deref_mut());
        } else {
            self.recv_burst(rx, out, imms.as_deref_mut());
        }
        if self.mcast_groups.load(Ordering::Relaxed) > 0 && !out.is_full() {
            if let Some(fd) = self.mcast_fd.as_ref().map(|f| f.as_raw_fd()) {
                if gro {
                    self.recv_gro(fd, out, imms);
                } else {
                    self.recv_burst(fd, out, imms);
                }
            }
        }
        // Next to the receive system call, 21 stores cost nothing.
        self.publish();
        out.len() - before
    }

    /// Copies the counters for readers on other threads.
    pub(super) fn publish(&self) {
        self.published
            .publish(self.counters.xstats().map(|(_, v)| v));
    }
}
