//! One host's IP stack: a smoltcp `Interface` on a [`QueueDevice`], which
//! answers ICMP and ICMPv6 echo by itself, plus an echo client and UDP
//! sockets. Time comes in as a `Duration`, like everywhere in control.

use super::device::QueueDevice;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{ChecksumCapabilities, Device};
use smoltcp::socket::{icmp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{
    HardwareAddress, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpAddress, IpCidr,
    IpEndpoint,
};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Settings of one stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackConfig {
    /// Addresses with their prefix lengths.
    pub addrs: Vec<(IpAddr, u8)>,
    /// IP MTU of the link.
    pub mtu: usize,
    /// Packets each device queue holds.
    pub queue_len: usize,
    /// Seeds smoltcp's port and sequence choices.
    pub seed: u64,
    /// ICMP identifier of this host's echo requests.
    pub echo_ident: u16,
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            addrs: Vec::new(),
            mtu: 2044,
            queue_len: 256,
            seed: 1,
            echo_ident: 0x1b1b,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StackError {
    #[error("too many addresses for one interface")]
    TooManyAddresses,
    #[error("invalid address {0}/{1}")]
    InvalidAddress(IpAddr, u8),
    #[error("UDP port {0} is already bound")]
    PortInUse(u16),
    #[error("UDP port {0} is not bound")]
    NotBound(u16),
    #[error("cannot bind: {0}")]
    Bind(String),
    #[error("cannot send: {0}")]
    Send(String),
}

/// An echo reply the echo client received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoReply {
    pub from: IpAddr,
    pub seq: u16,
    pub data: Vec<u8>,
}

const ICMP_BUFFER: usize = 16 * 1024;
const UDP_BUFFER: usize = 64 * 1024;
const PACKETS_PER_SOCKET: usize = 64;

fn instant(now: Duration) -> Instant {
    Instant::from_micros(i64::try_from(now.as_micros()).unwrap_or(i64::MAX))
}

/// A host's IP stack on the IPoIB link.
pub struct IpStack {
    iface: Interface,
    device: QueueDevice,
    sockets: SocketSet<'static>,
    icmp: SocketHandle,
    echo_ident: u16,
    udp: BTreeMap<u16, SocketHandle>,
}

impl IpStack {
    pub fn new(cfg: &StackConfig, now: Duration) -> Result<Self, StackError> {
        let mut device = QueueDevice::new(cfg.mtu, cfg.queue_len);
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = cfg.seed;
        let mut iface = Interface::new(config, &mut device, instant(now));
        let mut result = Ok(());
        iface.update_ip_addrs(|addrs| {
            for &(ip, prefix) in &cfg.addrs {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                // smoltcp refuses (panics on) group addresses as interface addresses.
                let group = match ip {
                    IpAddr::V4(v4) => v4.is_multicast() || v4.is_broadcast(),
                    IpAddr::V6(v6) => v6.is_multicast(),
                };
                if prefix > max || group {
                    result = Err(StackError::InvalidAddress(ip, prefix));
                    return;
                }
                if addrs
                    .push(IpCidr::new(IpAddress::from(ip), prefix))
                    .is_err()
                {
                    result = Err(StackError::TooManyAddresses);
                    return;
                }
            }
        });
        result?;
        let mut sockets = SocketSet::new(Vec::new());
        let mut socket = icmp::Socket::new(
            icmp::PacketBuffer::new(
                vec![icmp::PacketMetadata::EMPTY; PACKETS_PER_SOCKET],
                vec![0; ICMP_BUFFER],
            ),
            icmp::PacketBuffer::new(
                vec![icmp::PacketMetadata::EMPTY; PACKETS_PER_SOCKET],
                vec![0; ICMP_BUFFER],
            ),
        );
        socket
            .bind(icmp::Endpoint::Ident(cfg.echo_ident))
            .map_err(|e| StackError::Bind(e.to_string()))?;
        let icmp = sockets.add(socket);
        Ok(IpStack {
            iface,
            device,
            sockets,
            icmp,
            echo_ident: cfg.echo_ident,
            udp: BTreeMap::new(),
        })
    }

    /// A received IP packet for this host; false if the queue was full.
    pub fn receive(&mut self, packet: Vec<u8>) -> bool {
        self.device.push_rx(packet)
    }

    /// Processes received packets and sends what is due. True if anything
    /// happened.
    pub fn poll(&mut self, now: Duration) -> bool {
        let result = self
            .iface
            .poll(instant(now), &mut self.device, &mut self.sockets);
        result == smoltcp::iface::PollResult::SocketStateChanged
            || self.device.tx_len() > 0
            || self.device.rx_len() > 0
    }

    /// IP packets the stack sent, oldest first.
    pub fn take_transmitted(&mut self) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.device.pop_tx()).collect()
    }

    /// How long until `poll` has work again without new packets.
    pub fn poll_delay(&mut self, now: Duration) -> Option<Duration> {
        self.iface
            .poll_delay(instant(now), &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()))
    }

    pub fn device(&self) -> &QueueDevice {
        &self.device
    }

    /// Sends an echo request to `to`; replies come from [`IpStack::echo_replies`].
    pub fn ping(&mut self, to: IpAddr, seq: u16, data: &[u8]) -> Result<(), StackError> {
        let checksum = ChecksumCapabilities::default();
        let src_v6 = match to {
            IpAddr::V6(dst) => Some(self.iface.get_source_address_ipv6(&dst)),
            IpAddr::V4(_) => None,
        };
        let ident = self.echo_ident;
        let socket = self.sockets.get_mut::<icmp::Socket>(self.icmp);
        match (to, src_v6) {
            (IpAddr::V6(dst), Some(src)) => {
                let repr = Icmpv6Repr::EchoRequest {
                    ident,
                    seq_no: seq,
                    data,
                };
                let buf = socket
                    .send(repr.buffer_len(), IpAddress::Ipv6(dst))
                    .map_err(|e| StackError::Send(e.to_string()))?;
                repr.emit(&src, &dst, &mut Icmpv6Packet::new_unchecked(buf), &checksum);
            }
            _ => {
                let repr = Icmpv4Repr::EchoRequest {
                    ident,
                    seq_no: seq,
                    data,
                };
                let buf = socket
                    .send(repr.buffer_len(), IpAddress::from(to))
                    .map_err(|e| StackError::Send(e.to_string()))?;
                repr.emit(&mut Icmpv4Packet::new_unchecked(buf), &checksum);
            }
        }
        Ok(())
    }

    /// Echo replies received so far (other ICMP messages are skipped).
    pub fn echo_replies(&mut self) -> Vec<EchoReply> {
        let checksum = ChecksumCapabilities::default();
        let mut replies = Vec::new();
        loop {
            let socket = self.sockets.get_mut::<icmp::Socket>(self.icmp);
            let Ok((payload, from)) = socket.recv() else {
                break;
            };
            let payload = payload.to_vec();
            let reply = match from {
                IpAddress::Ipv4(_) => Icmpv4Packet::new_checked(&payload[..]).ok().and_then(|p| {
                    match Icmpv4Repr::parse(&p, &checksum) {
                        Ok(Icmpv4Repr::EchoReply { seq_no, data, .. }) => {
                            Some((seq_no, data.to_vec()))
                        }
                        _ => None,
                    }
                }),
                IpAddress::Ipv6(src) => {
                    let dst = self.iface.get_source_address_ipv6(&src);
                    Icmpv6Packet::new_checked(&payload[..]).ok().and_then(|p| {
                        match Icmpv6Repr::parse(&src, &dst, &p, &checksum) {
                            Ok(Icmpv6Repr::EchoReply { seq_no, data, .. }) => {
                                Some((seq_no, data.to_vec()))
                            }
                            _ => None,
                        }
                    })
                }
            };
            if let Some((seq, data)) = reply {
                replies.push(EchoReply {
                    from: IpAddr::from(from),
                    seq,
                    data,
                });
            }
        }
        replies
    }

    /// Opens a UDP socket on `port` (every local address).
    pub fn udp_bind(&mut self, port: u16) -> Result<(), StackError> {
        if self.udp.contains_key(&port) {
            return Err(StackError::PortInUse(port));
        }
        let mut socket = udp::Socket::new(
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; PACKETS_PER_SOCKET],
                vec![0; UDP_BUFFER],
            ),
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; PACKETS_PER_SOCKET],
                vec![0; UDP_BUFFER],
            ),
        );
        socket
            .bind(port)
            .map_err(|e| StackError::Bind(e.to_string()))?;
        let handle = self.sockets.add(socket);
        self.udp.insert(port, handle);
        Ok(())
    }

    pub fn udp_send(&mut self, port: u16, to: SocketAddr, data: &[u8]) -> Result<(), StackError> {
        let handle = *self.udp.get(&port).ok_or(StackError::NotBound(port))?;
        self.sockets
            .get_mut::<udp::Socket>(handle)
            .send_slice(data, IpEndpoint::from(to))
            .map_err(|e| StackError::Send(e.to_string()))
    }

    /// The next datagram received on `port`, with its sender.
    pub fn udp_recv(&mut self, port: u16) -> Option<(SocketAddr, Vec<u8>)> {
        let handle = *self.udp.get(&port)?;
        let socket = self.sockets.get_mut::<udp::Socket>(handle);
        let (data, meta) = socket.recv().ok()?;
        let from = SocketAddr::new(IpAddr::from(meta.endpoint.addr), meta.endpoint.port);
        Some((from, data.to_vec()))
    }

    /// The device's capabilities, as smoltcp sees them.
    pub fn capabilities(&self) -> smoltcp::phy::DeviceCapabilities {
        self.device.capabilities()
    }
}
