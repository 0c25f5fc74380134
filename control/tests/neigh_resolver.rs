//! The resolver: neighbours joined to path records and shared address
//! handles, published to the lcores' table; GC and GID change release
//! handles; path timeouts and failures drop and count the packets.

mod neigh_support;

use ipoib_control::mcast::FlushLevel;
use ipoib_control::neigh::{DropReason, NeighCache, NeighConfig, Output, Resolver};
use ipoib_control::path::{
    PathCache, PathConfig, RecordedAh, RecordingAhFactory, SoftPathConfig, SoftPathService,
};
use ipoib_dataplane::lcore::NeighEntry;
use ipoib_dataplane::provider::fabric::{Fabric, FabricConfig, PortSpec};
use ipoib_dataplane::wire::HwAddr;
use neigh_support::*;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

type Host = Resolver<Token, RecordingAhFactory, SoftPathService>;

fn fabric(n: u8) -> Arc<Fabric> {
    let specs: Vec<PortSpec> = (1..=n)
        .map(|i| PortSpec {
            lid: u16::from(i) * 10,
            gid: port_gid(i),
            qpn: hwaddr(i).qpn,
            pkey: 0xffff,
            qkey: 0x0B1B,
        })
        .chain(std::iter::once(PortSpec {
            lid: MOVED_LID,
            gid: port_gid(MOVED_GID),
            qpn: hwaddr(1).qpn,
            pkey: 0xffff,
            qkey: 0x0B1B,
        }))
        .collect();
    Fabric::new(FabricConfig::default(), &specs).expect("fabric")
}

/// Where host 1's port is after its GID change.
const MOVED_GID: u8 = 77;
const MOVED_LID: u16 = 770;

/// The host behind a LID: host i has LID 10 * (i + 1), and host 0 also
/// answers at its moved LID.
fn host_by_lid(lid: u16) -> usize {
    if lid == MOVED_LID {
        0
    } else {
        usize::from(lid / 10).saturating_sub(1)
    }
}

struct World {
    hosts: Vec<Host>,
    now: Duration,
    sent: Vec<(usize, IpAddr, NeighEntry<RecordedAh>, Token)>,
    dropped: Vec<(usize, IpAddr, DropReason, Token)>,
    /// (destination host, or None for every host, frame).
    frames: VecDeque<(Option<usize>, Vec<u8>)>,
}

impl World {
    fn new(n: u8, neigh: NeighConfig, path: PathConfig, svc: SoftPathConfig) -> Self {
        let fabric = fabric(n);
        let hosts = (1..=n)
            .map(|i| {
                Resolver::new(
                    NeighCache::new(neigh, link(i)),
                    PathCache::new(path, RecordingAhFactory::new()),
                    SoftPathService::new(Arc::clone(&fabric), svc),
                )
            })
            .collect();
        let mut world = World {
            hosts,
            now: Duration::ZERO,
            sent: Vec::new(),
            dropped: Vec::new(),
            frames: VecDeque::new(),
        };
        for i in 0..world.hosts.len() {
            let n = i as u8 + 1;
            let now = world.now;
            let mut out = world.hosts[i].interface_up(now);
            out.extend(world.hosts[i].add_address(ip4(n), now));
            out.extend(world.hosts[i].add_address(ip6(n), now));
            world.take(i, out);
        }
        world.run();
        world
    }

    fn default(n: u8) -> Self {
        World::new(
            n,
            NeighConfig::default(),
            PathConfig::default(),
            SoftPathConfig::default(),
        )
    }

    fn take(&mut self, host: usize, out: Vec<Output<Token, RecordedAh>>) {
        for o in out {
            match o {
                Output::Multicast(t) => {
                    assert!(t.dest.is_multicast());
                    self.frames.push_back((None, t.frame));
                }
                Output::Unicast { entry, frame } => {
                    // The handle says which LID, the QPN which QP behind it.
                    let dlid = self.hosts[host]
                        .paths()
                        .factory()
                        .attr(entry.ah)
                        .map(|a| a.dlid);
                    let to = dlid.map(host_by_lid).filter(|&i| {
                        self.hosts
                            .get(i)
                            .is_some_and(|h| h.neigh().link().hwaddr.qpn == entry.qpn)
                    });
                    if let Some(to) = to {
                        self.frames.push_back((Some(to), frame));
                    }
                }
                Output::Send { ip, entry, packets } => {
                    for p in packets {
                        self.sent.push((host, ip, entry, p));
                    }
                }
                Output::Drop {
                    ip,
                    reason,
                    packets,
                } => {
                    for p in packets {
                        self.dropped.push((host, ip, reason, p));
                    }
                }
            }
        }
    }

    fn run(&mut self) {
        let mut budget = 10_000;
        while let Some((dest, frame)) = self.frames.pop_front() {
            budget -= 1;
            assert!(budget > 0, "the link never went quiet");
            for to in 0..self.hosts.len() {
                if dest.is_none() || dest == Some(to) {
                    let out = self.hosts[to].rx_frame(&frame, self.now);
                    self.take(to, out);
                }
            }
        }
    }

    fn miss(&mut self, host: usize, ip: IpAddr, token: Token) {
        let out = self.hosts[host].tx_miss(ip, token, self.now);
        self.take(host, out);
        self.run();
    }

    fn advance(&mut self, until: Duration, step: Duration) {
        while self.now < until {
            self.now = (self.now + step).min(until);
            for i in 0..self.hosts.len() {
                let out = self.hosts[i].poll(self.now);
                self.take(i, out);
            }
            self.run();
        }
    }

    fn lookup(&self, host: usize, ip: IpAddr) -> Option<NeighEntry<RecordedAh>> {
        self.hosts[host].table().load().lookup(ip).copied()
    }
}

#[test]
fn first_packets_wait_then_leave_with_the_path_handle_and_the_table_is_published() {
    let tokens = Tokens::new();
    let mut w = World::default(2);
    assert!(w.lookup(0, ip4(2)).is_none());
    w.miss(0, ip4(2), tokens.token());
    w.miss(0, ip4(2), tokens.token());
    // ARP resolved at once; the path answer takes the service's latency.
    assert!(w.sent.is_empty());
    assert_eq!(w.hosts[0].queued(), 2);
    w.advance(ms(10), ms(1));
    assert_eq!(w.sent.len(), 2);
    let entry = w.sent[0].2;
    assert_eq!(entry.qpn, hwaddr(2).qpn);
    let attr = w.hosts[0].paths().factory().attr(entry.ah).copied();
    assert_eq!(attr.map(|a| a.dlid), Some(20));
    assert_eq!(w.lookup(0, ip4(2)), Some(entry));
    assert_eq!(w.hosts[0].queued(), 0);
    w.sent.clear();
    assert_eq!(tokens.live(), 0);
}

#[test]
fn two_neighbours_on_one_path_share_one_address_handle() {
    let tokens = Tokens::new();
    let mut w = World::default(3);
    w.miss(0, ip4(2), tokens.token());
    w.miss(0, ip6(2), tokens.token());
    w.miss(0, ip4(3), tokens.token());
    w.advance(ms(10), ms(1));
    assert_eq!(w.sent.len(), 3);
    let v4 = w.lookup(0, ip4(2)).expect("v4 published");
    let v6 = w.lookup(0, ip6(2)).expect("v6 published");
    let other = w.lookup(0, ip4(3)).expect("host 3 published");
    assert_eq!(v4.ah, v6.ah);
    assert_ne!(v4.ah, other.ah);
    let factory = w.hosts[0].paths().factory();
    assert_eq!(factory.created.len(), 2, "one handle per path");
    assert_eq!(w.hosts[0].paths().users(&port_gid(2)), 2);
    assert_eq!(w.hosts[0].service().stats().queries, 2);
}

#[test]
fn gc_removes_idle_neighbours_and_releases_their_handles() {
    let tokens = Tokens::new();
    let neigh = NeighConfig {
        reachable_time: secs(5),
        gc_idle: secs(30),
        ..NeighConfig::default()
    };
    let mut w = World::new(3, neigh, PathConfig::default(), SoftPathConfig::default());
    w.miss(0, ip4(2), tokens.token());
    w.miss(0, ip6(2), tokens.token());
    w.miss(0, ip4(3), tokens.token());
    w.advance(secs(20), ms(500));
    // Host 3 keeps being used; host 2's two entries go idle.
    for t in [20, 40] {
        w.advance(secs(t), ms(500));
        let out = w.hosts[0].touch(ip4(3), w.now);
        w.take(0, out);
        w.run();
    }
    w.advance(secs(45), ms(500));
    assert!(w.lookup(0, ip4(2)).is_none());
    assert!(w.lookup(0, ip6(2)).is_none());
    assert!(w.lookup(0, ip4(3)).is_some());
    let factory = w.hosts[0].paths().factory();
    assert_eq!(factory.live(), 1, "host 2's handle is gone, host 3's stays");
    assert_eq!(factory.destroyed.len(), 1);
    assert!(factory.double_destroys.is_empty());
    assert_eq!(w.hosts[0].paths().users(&port_gid(2)), 0);
    assert_eq!(w.hosts[0].neigh().stats().gc_removed, 2);
}

#[test]
fn gid_change_flushes_releases_handles_and_re_resolves() {
    let tokens = Tokens::new();
    let mut w = World::default(2);
    w.miss(0, ip4(2), tokens.token());
    w.advance(ms(10), ms(1));
    let before = w.lookup(0, ip4(2)).expect("published");

    let new_hw = HwAddr::new(0, hwaddr(1).qpn, port_gid(MOVED_GID));
    let out = w.hosts[0].set_hwaddr(new_hw, w.now);
    w.take(0, out);
    w.run();
    assert!(w.lookup(0, ip4(2)).is_none(), "flushed from the table");
    assert_eq!(w.hosts[0].paths().factory().live(), 0);
    assert_eq!(w.hosts[0].paths().factory().destroyed, vec![before.ah]);
    // Host 2 followed the gratuitous ARP to the new GID.
    assert_eq!(
        w.hosts[1].neigh().get(ip4(1)).and_then(|e| e.hwaddr),
        Some(new_hw)
    );

    w.miss(0, ip4(2), tokens.token());
    w.advance(ms(20), ms(1));
    assert_eq!(w.sent.len(), 2);
    let after = w.lookup(0, ip4(2)).expect("re-resolved");
    assert_ne!(after.ah, before.ah, "a new handle after the flush");
    assert_eq!(w.hosts[0].paths().factory().live(), 1);
}

#[test]
fn port_event_flush_re_resolves_everything() {
    let tokens = Tokens::new();
    let mut w = World::default(2);
    w.miss(0, ip4(2), tokens.token());
    w.advance(ms(10), ms(1));
    let out = w.hosts[0].flush(FlushLevel::Normal, w.now);
    w.take(0, out);
    w.run();
    assert!(w.hosts[0].table().load().is_empty());
    w.miss(0, ip4(2), tokens.token());
    w.advance(ms(20), ms(1));
    assert!(w.lookup(0, ip4(2)).is_some());
    assert_eq!(w.sent.len(), 2);
}

#[test]
fn path_query_timeout_drops_and_counts_the_waiting_packets() {
    let tokens = Tokens::new();
    let mut w = World::default(2);
    // Only host 1's path queries go unanswered; the peer still replies.
    w.hosts[0].service_mut().set_faults(1.0, 0.0);
    for _ in 0..3 {
        w.miss(0, ip4(2), tokens.token());
    }
    // Host 2's reply leaves once its own path to host 1 is answered (1 ms);
    // host 1 then asks for its path to host 2 and never hears back.
    w.advance(ms(10), ms(1));
    assert!(w.hosts[0]
        .neigh()
        .get(ip4(2))
        .is_some_and(|e| e.hwaddr.is_some()));
    assert_eq!(w.hosts[0].queued(), 3);
    w.advance(ms(1000), ms(1));
    assert!(w.dropped.is_empty());
    w.advance(ms(1001), ms(1));
    assert_eq!(w.dropped.len(), 3);
    assert!(w.dropped.iter().all(|d| d.2 == DropReason::NoPath));
    assert_eq!(w.hosts[0].stats().drop_no_path, 3);
    assert_eq!(w.hosts[0].paths().stats().timeouts, 1);
    assert!(w.lookup(0, ip4(2)).is_none());
    w.dropped.clear();
    assert_eq!(tokens.live(), 0);

    // The SA answers again: the next miss asks again and succeeds.
    w.hosts[0].service_mut().set_faults(0.0, 0.0);
    w.miss(0, ip4(2), tokens.token());
    w.advance(ms(1020), ms(1));
    assert_eq!(w.sent.len(), 1);
    assert!(w.lookup(0, ip4(2)).is_some());
}

#[test]
fn path_query_failure_drops_and_counts() {
    let tokens = Tokens::new();
    let mut w = World::default(2);
    w.hosts[0].service_mut().set_faults(0.0, 1.0);
    w.miss(0, ip6(2), tokens.token());
    w.advance(ms(10), ms(1));
    assert_eq!(w.dropped.len(), 1);
    assert_eq!(w.dropped[0].2, DropReason::NoPath);
    assert_eq!(w.hosts[0].paths().stats().failures, 1);
    assert_eq!(w.hosts[0].paths().factory().live(), 0);
}

#[test]
fn packets_waiting_for_a_path_are_bounded() {
    let tokens = Tokens::new();
    let mut w = World::default(2);
    // Only host 1's path queries go unanswered; the peer still replies.
    w.hosts[0].service_mut().set_faults(1.0, 0.0);
    for _ in 0..3 {
        w.miss(0, ip4(2), tokens.token());
    }
    w.advance(ms(10), ms(1));
    // Resolved; the packets now wait for the path, and so do the next ones.
    for _ in 0..2 {
        w.miss(0, ip4(2), tokens.token());
    }
    assert_eq!(w.hosts[0].queued(), 3);
    assert_eq!(w.hosts[0].stats().drop_path_queue_full, 2);
    assert_eq!(w.dropped.len(), 2);
}

#[test]
fn interface_down_releases_everything() {
    let tokens = Tokens::new();
    let mut w = World::default(3);
    w.miss(0, ip4(2), tokens.token());
    w.miss(0, ip4(3), tokens.token());
    w.advance(ms(10), ms(1));
    w.miss(0, ip4(9), tokens.token());
    let out = w.hosts[0].interface_down(w.now);
    w.take(0, out);
    assert!(w.hosts[0].table().load().is_empty());
    assert_eq!(w.hosts[0].paths().factory().live(), 0);
    assert_eq!(w.hosts[0].queued(), 0);
    assert_eq!(w.dropped.len(), 1);
    w.sent.clear();
    w.dropped.clear();
    assert_eq!(tokens.live(), 0);
}

#[test]
fn lcore_requests_are_drained_from_the_lock_free_queue() {
    use ipoib_dataplane::tables::RequestQueue;
    let tokens = Tokens::new();
    let mut w = World::default(2);
    let queue: RequestQueue<(IpAddr, Token)> = RequestQueue::new(8);
    for _ in 0..4 {
        assert!(queue.push((ip4(2), tokens.token())));
    }
    let out = w.hosts[0].drain_requests(&queue, 3, w.now);
    w.take(0, out);
    w.run();
    assert_eq!(queue.len(), 1, "at most `max` per call");
    let out = w.hosts[0].drain_requests(&queue, 3, w.now);
    w.take(0, out);
    w.advance(ms(10), ms(1));
    assert_eq!(w.sent.len(), 3);
    assert_eq!(w.dropped.len(), 1, "the fourth exceeded the queue bound");
    assert!(queue.is_empty());
}
