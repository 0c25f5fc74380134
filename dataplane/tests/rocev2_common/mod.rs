//! Helpers shared by the rocev2 tests: a pool, providers on loopback
//! addresses with a free port, sends, and bounded receive loops.

#![allow(dead_code)]

use ipoib_dataplane::mem::{HugepageMode, LcoreCache, Mempool, MempoolConfig};
use ipoib_dataplane::provider::rocev2::{Rocev2Ah, Rocev2Config, Rocev2Provider};
use ipoib_dataplane::provider::{AhAttr, Burst, Provider, RecvCompletion, SendWr};
use ipoib_dataplane::wire::Gid;
use std::net::{IpAddr, UdpSocket};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const QKEY: u32 = 0x0B1B;

pub fn pool() -> &'static Mempool {
    static POOL: OnceLock<&'static Mempool> = OnceLock::new();
    POOL.get_or_init(|| {
        Mempool::new(MempoolConfig {
            name: "rocev2-test".into(),
            count: 8192,
            buf_size: 8192,
            hugepages: HugepageMode::Off,
        })
        .expect("mempool")
    })
}

pub fn cache() -> LcoreCache {
    pool().cache(64)
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// A UDP port nobody uses right now on `at` (the kernel's pick).
pub fn free_port(at: &str) -> u16 {
    let s = UdpSocket::bind((ip(at), 0)).expect("ephemeral bind");
    s.local_addr().expect("local addr").port()
}

pub fn provider(local: &str, qpn: u32, port: u16, multicast: bool) -> Rocev2Provider {
    let cfg = Rocev2Config {
        port,
        multicast,
        ..Rocev2Config::new(ip(local), qpn)
    };
    Rocev2Provider::new(cfg, cache()).expect("rocev2 provider")
}

pub fn ah_to(p: &mut Rocev2Provider, dst: IpAddr) -> Rocev2Ah {
    let dgid = ipoib_dataplane::provider::rocev2::addr::gid_of(dst);
    p.create_ah(&AhAttr {
        dlid: 0,
        dgid: Some(dgid),
        sl: 0,
    })
    .expect("address handle")
}

/// Sends every payload (bursts of 32), retrying while the socket is full,
/// until a deadline.
pub fn send_all(
    p: &mut Rocev2Provider,
    ah: Rocev2Ah,
    remote_qpn: u32,
    remote_qkey: u32,
    payloads: &[Vec<u8>],
) {
    let mut cache = cache();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut wrs: Burst<SendWr<Rocev2Ah>> = Burst::new();
    let mut next = 0;
    while next < payloads.len() || !wrs.is_empty() {
        while !wrs.is_full() && next < payloads.len() {
            let mut m = cache.alloc().expect("mbuf");
            m.append(payloads[next].len())
                .expect("room")
                .copy_from_slice(&payloads[next]);
            wrs.push(SendWr {
                mbuf: m,
                ah,
                remote_qpn,
                remote_qkey,
            });
            next += 1;
        }
        p.post_send(&mut wrs);
        assert!(Instant::now() < deadline, "sends did not drain");
    }
}

/// One received message, copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub data: Vec<u8>,
    pub src_qpn: u32,
    pub sgid: Option<Gid>,
    pub dgid: Option<Gid>,
    pub multicast: bool,
    pub own: bool,
}

/// Polls until `n` messages arrived or `timeout` passed.
pub fn recv_n(p: &mut Rocev2Provider, n: usize, timeout: Duration) -> Vec<Got> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut out: Burst<RecvCompletion> = Burst::new();
    let mut cache = cache();
    while got.len() < n && Instant::now() < deadline {
        p.poll_recv(&mut out);
        for c in out.drain(..) {
            got.push(Got {
                data: c.mbuf.data().to_vec(),
                src_qpn: c.src_qpn,
                sgid: c.sgid(),
                dgid: c.dgid(),
                multicast: c.multicast,
                own: p.is_own(&c),
            });
            cache.free(c.mbuf);
        }
        std::thread::yield_now();
    }
    got
}

/// Polls until `done` holds for the provider or `timeout` passed.
pub fn poll_until(
    p: &mut Rocev2Provider,
    timeout: Duration,
    done: impl Fn(&Rocev2Provider) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut out: Burst<RecvCompletion> = Burst::new();
    let mut cache = cache();
    loop {
        p.poll_recv(&mut out);
        for c in out.drain(..) {
            cache.free(c.mbuf);
        }
        if done(p) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::yield_now();
    }
}

/// A payload that says which message it is.
pub fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|b| (b + i * 7) as u8).collect()
}
