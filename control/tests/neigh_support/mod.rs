//! Shared by the neighbour tests: hosts on a simulated IPoIB link that
//! delivers each host's send actions to the others as frames, packet tokens
//! that count their live instances, and a seeded or scripted drop rule.
#![allow(dead_code)]

use ipoib_control::neigh::{Action, DropReason, LocalLink, NeighCache, NeighConfig, Transmit};
use ipoib_control::sa::SplitMix64;
use ipoib_dataplane::wire::{Gid, HwAddr};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A packet stand-in that knows how many of its kind are alive.
#[derive(Debug)]
pub struct Token {
    pub id: u64,
    live: Arc<AtomicUsize>,
}

impl Drop for Token {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl Eq for Token {}

/// Makes tokens and tells how many are alive.
#[derive(Debug, Default, Clone)]
pub struct Tokens {
    live: Arc<AtomicUsize>,
    next: Arc<AtomicUsize>,
}

impl Tokens {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn token(&self) -> Token {
        self.live.fetch_add(1, Ordering::SeqCst);
        let id = self.next.fetch_add(1, Ordering::SeqCst) as u64;
        Token {
            id,
            live: Arc::clone(&self.live),
        }
    }
    /// How many tokens were made.
    pub fn next_id(&self) -> usize {
        self.next.load(Ordering::SeqCst)
    }
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

pub const GUID_BASE: u64 = 0x0002_c903_0000_0000;

pub fn port_gid(n: u8) -> Gid {
    Gid::link_local(GUID_BASE | u64::from(n))
}

pub fn hwaddr(n: u8) -> HwAddr {
    HwAddr::new(0, 0x100 + u32::from(n), port_gid(n))
}

pub fn link(n: u8) -> LocalLink {
    LocalLink {
        hwaddr: hwaddr(n),
        pkey: 0xffff,
        scope: 2,
    }
}

pub fn ip4(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
}

pub fn ip6(n: u8) -> IpAddr {
    IpAddr::V6(std::net::Ipv6Addr::new(
        0x2001,
        0xdb8,
        0,
        0,
        0,
        0,
        0,
        u16::from(n),
    ))
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// Decides whether a frame from `from` is lost.
pub type DropRule = Box<dyn FnMut(usize, &Transmit) -> bool>;

/// Loses each frame with probability `p`, seeded.
pub fn seeded_loss(seed: u64, p: f64) -> DropRule {
    let mut rng = SplitMix64::new(seed);
    Box::new(move |_, _| rng.chance(p))
}

/// A frame as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub from: usize,
    pub at: Duration,
    pub transmit: Transmit,
    pub lost: bool,
}

/// Hosts 1..=n on one link: host index i has hardware address `hwaddr(i+1)`
/// and the addresses `ip4(i+1)` and `ip6(i+1)`.
pub struct Net {
    pub hosts: Vec<NeighCache<Token>>,
    pub drop_rule: DropRule,
    pub now: Duration,
    /// (host, ip, hwaddr, token) for every token released to be sent.
    pub delivered: Vec<(usize, IpAddr, HwAddr, Token)>,
    pub dropped: Vec<(usize, IpAddr, DropReason, Token)>,
    /// (host, ip, hwaddr) for every Forget.
    pub forgotten: Vec<(usize, IpAddr, HwAddr)>,
    pub log: Vec<Sent>,
    pending: VecDeque<(usize, Transmit)>,
}

impl Net {
    pub fn new(n: u8, cfg: NeighConfig) -> Self {
        let hosts = (1..=n).map(|i| NeighCache::new(cfg, link(i))).collect();
        Net {
            hosts,
            drop_rule: Box::new(|_, _| false),
            now: Duration::ZERO,
            delivered: Vec::new(),
            dropped: Vec::new(),
            forgotten: Vec::new(),
            log: Vec::new(),
            pending: VecDeque::new(),
        }
    }

    /// Every host up with its IPv4 and IPv6 address; announcements delivered.
    pub fn up(n: u8, cfg: NeighConfig) -> Self {
        let mut net = Net::new(n, cfg);
        for i in 0..net.hosts.len() {
            let now = net.now;
            let n = i as u8 + 1;
            let mut actions = net.hosts[i].interface_up(now);
            actions.extend(net.hosts[i].add_address(ip4(n), now));
            actions.extend(net.hosts[i].add_address(ip6(n), now));
            net.apply(i, actions);
        }
        net.run();
        net
    }

    /// Records what `host`'s actions ask for and queues its frames.
    pub fn apply(&mut self, host: usize, actions: Vec<Action<Token>>) {
        for action in actions {
            if let Some(transmit) = action.transmit() {
                self.pending.push_back((host, transmit));
                continue;
            }
            match action {
                Action::Resolved {
                    ip,
                    hwaddr,
                    packets,
                } => {
                    for t in packets {
                        self.delivered.push((host, ip, hwaddr, t));
                    }
                }
                Action::Dropped {
                    ip,
                    reason,
                    packets,
                } => {
                    for t in packets {
                        self.dropped.push((host, ip, reason, t));
                    }
                }
                Action::Forget { ip, hwaddr } => self.forgotten.push((host, ip, hwaddr)),
                _ => {}
            }
        }
    }

    /// Delivers queued frames (and the frames they cause) until quiet.
    /// Multicast frames reach every host, the sender included, as on the
    /// fabric; unicast frames reach the host with that hardware address.
    pub fn run(&mut self) {
        let mut budget = 10_000;
        while let Some((from, transmit)) = self.pending.pop_front() {
            budget -= 1;
            assert!(budget > 0, "the link never went quiet");
            let lost = (self.drop_rule)(from, &transmit);
            self.log.push(Sent {
                from,
                at: self.now,
                transmit: transmit.clone(),
                lost,
            });
            if lost {
                continue;
            }
            for to in 0..self.hosts.len() {
                let hw = self.hosts[to].link().hwaddr;
                if transmit.dest.is_multicast() || transmit.dest == hw {
                    let actions = self.hosts[to].on_frame(&transmit.frame, self.now);
                    self.apply(to, actions);
                }
            }
        }
    }

    pub fn miss(&mut self, host: usize, ip: IpAddr, token: Token) {
        let actions = self.hosts[host].on_tx_miss(ip, token, self.now);
        self.apply(host, actions);
        self.run();
    }

    /// Advances time in `step`s to `until`, firing every host's timers.
    pub fn advance(&mut self, until: Duration, step: Duration) {
        while self.now < until {
            self.now = (self.now + step).min(until);
            for i in 0..self.hosts.len() {
                let actions = self.hosts[i].on_timer(self.now);
                self.apply(i, actions);
            }
            self.run();
        }
    }

    pub fn delivered_ids(&self, host: usize) -> Vec<u64> {
        self.delivered
            .iter()
            .filter(|d| d.0 == host)
            .map(|d| d.3.id)
            .collect()
    }

    pub fn frames_from(&self, host: usize) -> Vec<&Sent> {
        self.log.iter().filter(|s| s.from == host).collect()
    }
}
