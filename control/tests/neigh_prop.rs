//! Random event sequences: the neighbour cache and the resolver never
//! panic, queues stay within their bound, and every packet token is
//! exactly one of delivered, dropped-and-counted, or still queued.

mod neigh_support;

use ipoib_control::mcast::FlushLevel;
use ipoib_control::neigh::{arp_frame, NeighCache, NeighConfig, NeighState, Output, Resolver};
use ipoib_control::path::{
    PathCache, PathConfig, RecordedAh, RecordingAhFactory, SoftPathConfig, SoftPathService,
};
use ipoib_dataplane::provider::fabric::{Fabric, FabricConfig, PortSpec};
use ipoib_dataplane::wire::{ArpOperation, ArpRepr, HwAddr};
use neigh_support::*;
use proptest::prelude::*;
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::sync::Arc;

#[derive(Debug, Clone)]
enum Ev {
    Miss { host: usize, peer: u8, v6: bool },
    Advance { ms: u64 },
    Loss(bool),
    Flush { host: usize },
    NewGid { host: usize, gid: u8 },
    Down { host: usize },
    Up { host: usize },
    Touch { host: usize, peer: u8 },
    Garbage { host: usize, bytes: Vec<u8> },
    ForgedReply { host: usize, peer: u8, gid: u8 },
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        6 => (0..3usize, 1..=4u8, any::<bool>()).prop_map(|(host, peer, v6)| Ev::Miss { host, peer, v6 }),
        4 => (1..5000u64).prop_map(|ms| Ev::Advance { ms }),
        2 => any::<bool>().prop_map(Ev::Loss),
        1 => (0..3usize).prop_map(|host| Ev::Flush { host }),
        1 => (0..3usize, 50..60u8).prop_map(|(host, gid)| Ev::NewGid { host, gid }),
        1 => (0..3usize).prop_map(|host| Ev::Down { host }),
        1 => (0..3usize).prop_map(|host| Ev::Up { host }),
        2 => (0..3usize, 1..=4u8).prop_map(|(host, peer)| Ev::Touch { host, peer }),
        1 => (0..3usize, proptest::collection::vec(any::<u8>(), 0..120))
            .prop_map(|(host, bytes)| Ev::Garbage { host, bytes }),
        1 => (0..3usize, 1..=4u8, 1..=4u8).prop_map(|(host, peer, gid)| Ev::ForgedReply { host, peer, gid }),
    ]
}

fn forged_reply(to: HwAddr, peer: u8, gid: u8) -> Vec<u8> {
    let repr = ArpRepr {
        operation: ArpOperation::Reply,
        source_hardware_addr: hwaddr(gid),
        source_protocol_addr: Ipv4Addr::new(10, 0, 0, peer),
        target_hardware_addr: to,
        target_protocol_addr: Ipv4Addr::new(10, 0, 0, 1),
    };
    arp_frame(&repr).unwrap_or_default()
}

fn check_cache(net: &Net, tokens: &Tokens, bound: usize) -> Result<(), TestCaseError> {
    let mut queued = 0;
    for host in &net.hosts {
        for e in host.iter() {
            prop_assert!(e.queued <= bound, "queue over its bound: {e:?}");
            let resolved = matches!(e.state, NeighState::Reachable | NeighState::Stale);
            prop_assert_eq!(resolved, e.hwaddr.is_some(), "{:?}", e);
            if e.state != NeighState::Incomplete {
                prop_assert_eq!(e.queued, 0, "{:?}", e);
            }
            queued += e.queued;
        }
    }
    let dropped: u64 = net.hosts.iter().map(|h| h.stats().dropped()).sum();
    let released: u64 = net.hosts.iter().map(|h| h.stats().released).sum();
    prop_assert_eq!(dropped as usize, net.dropped.len());
    prop_assert_eq!(released as usize, net.delivered.len());
    prop_assert_eq!(
        net.delivered.len() + net.dropped.len() + queued,
        tokens.next_id()
    );
    prop_assert_eq!(tokens.live(), tokens.next_id());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn neighbour_cache_keeps_its_invariants(events in proptest::collection::vec(ev(), 1..60)) {
        let tokens = Tokens::new();
        let cfg = NeighConfig::default();
        let mut net = Net::up(3, cfg);
        let lossy = Rc::new(Cell::new(false));
        let flag = Rc::clone(&lossy);
        let mut rng = ipoib_control::sa::SplitMix64::new(3);
        net.drop_rule = Box::new(move |_, _| flag.get() && rng.chance(0.5));
        for ev in events {
            let now = net.now;
            match ev {
                Ev::Miss { host, peer, v6 } => {
                    let ip = if v6 { ip6(peer) } else { ip4(peer) };
                    net.miss(host, ip, tokens.token());
                }
                Ev::Advance { ms: d } => net.advance(now + ms(d), ms(250)),
                Ev::Loss(on) => lossy.set(on),
                Ev::Flush { host } => {
                    let a = net.hosts[host].flush(FlushLevel::Light, now);
                    net.apply(host, a);
                }
                Ev::NewGid { host, gid } => {
                    let hw = HwAddr::new(0, 0x100 + host as u32 + 1, port_gid(gid));
                    let a = net.hosts[host].set_hwaddr(hw, now);
                    net.apply(host, a);
                }
                Ev::Down { host } => {
                    let a = net.hosts[host].interface_down(now);
                    net.apply(host, a);
                }
                Ev::Up { host } => {
                    let a = net.hosts[host].interface_up(now);
                    net.apply(host, a);
                }
                Ev::Touch { host, peer } => {
                    let a = net.hosts[host].touch(ip4(peer), now);
                    net.apply(host, a);
                }
                Ev::Garbage { host, bytes } => {
                    let a = net.hosts[host].on_frame(&bytes, now);
                    net.apply(host, a);
                }
                Ev::ForgedReply { host, peer, gid } => {
                    let to = net.hosts[host].link().hwaddr;
                    let a = net.hosts[host].on_frame(&forged_reply(to, peer, gid), now);
                    net.apply(host, a);
                }
            }
            net.run();
            check_cache(&net, &tokens, cfg.queue_len)?;
        }
        // Everything still queued comes back when the links go down.
        for host in 0..net.hosts.len() {
            let now = net.now;
            let a = net.hosts[host].interface_down(now);
            net.apply(host, a);
        }
        check_cache(&net, &tokens, cfg.queue_len)?;
        prop_assert_eq!(net.hosts.iter().map(|h| h.queued()).sum::<usize>(), 0);
        net.delivered.clear();
        net.dropped.clear();
        prop_assert_eq!(tokens.live(), 0);
    }

    #[test]
    fn resolver_accounts_for_every_packet_and_handle(
        events in proptest::collection::vec(ev(), 1..60),
        seed in any::<u64>(),
    ) {
        let tokens = Tokens::new();
        let specs: Vec<PortSpec> = (1..=4u8)
            .map(|i| PortSpec {
                lid: u16::from(i) * 10,
                gid: port_gid(i),
                qpn: hwaddr(i).qpn,
                pkey: 0xffff,
                qkey: 0x0B1B,
            })
            .collect();
        let fabric: Arc<Fabric> = Fabric::new(FabricConfig::default(), &specs)
            .map_err(TestCaseError::fail)?;
        let svc = SoftPathConfig { loss: 0.2, failure: 0.2, seed, ..SoftPathConfig::default() };
        let mut host: Resolver<Token, RecordingAhFactory, SoftPathService> = Resolver::new(
            NeighCache::new(NeighConfig::default(), link(1)),
            PathCache::new(PathConfig::default(), RecordingAhFactory::new()),
            SoftPathService::new(fabric, svc),
        );
        let mut now = std::time::Duration::ZERO;
        let sent = Cell::new(0usize);
        let dropped = Cell::new(0usize);
        let take = |out: Vec<Output<Token, RecordedAh>>| {
            for o in out {
                match o {
                    Output::Send { packets, .. } => sent.set(sent.get() + packets.len()),
                    Output::Drop { packets, .. } => dropped.set(dropped.get() + packets.len()),
                    Output::Multicast(_) | Output::Unicast { .. } => {}
                }
            }
        };
        take(host.interface_up(now));
        take(host.add_address(ip4(1), now));
        for ev in events {
            match ev {
                Ev::Miss { peer, v6, .. } => {
                    let ip: IpAddr = if v6 { ip6(peer) } else { ip4(peer) };
                    take(host.tx_miss(ip, tokens.token(), now));
                }
                Ev::Advance { ms: d } => {
                    now += ms(d);
                    take(host.poll(now));
                }
                Ev::Loss(on) => {
                    let p = if on { 0.8 } else { 0.0 };
                    host.service_mut().set_faults(p, p / 2.0);
                }
                Ev::Flush { .. } => take(host.flush(FlushLevel::Normal, now)),
                Ev::NewGid { gid, .. } => {
                    take(host.set_hwaddr(HwAddr::new(0, 0x101, port_gid(gid)), now));
                }
                Ev::Down { .. } => take(host.interface_down(now)),
                Ev::Up { .. } => take(host.interface_up(now)),
                Ev::Touch { peer, .. } => take(host.touch(ip4(peer), now)),
                Ev::Garbage { bytes, .. } => take(host.rx_frame(&bytes, now)),
                Ev::ForgedReply { peer, gid, .. } => {
                    let to = host.neigh().link().hwaddr;
                    take(host.rx_frame(&forged_reply(to, peer, gid), now));
                }
            }
            // Sent and dropped tokens were dropped by `take`: what lives is queued.
            prop_assert_eq!(tokens.live(), host.queued());
            prop_assert_eq!(tokens.next_id(), sent.get() + dropped.get() + host.queued());
            let factory = host.paths().factory();
            prop_assert!(factory.double_destroys.is_empty());
            prop_assert!(factory.live() <= host.paths().len());
            // Every published entry uses a live handle.
            for n in host.neigh().iter() {
                if let Some(e) = host.table().load().lookup(n.ip) {
                    prop_assert!(factory.attr(e.ah).is_some(), "{:?}", n);
                }
            }
        }
        take(host.interface_down(now));
        prop_assert_eq!(host.queued(), 0);
        prop_assert_eq!(tokens.live(), 0);
        prop_assert_eq!(host.paths().factory().live(), 0);
        prop_assert!(host.table().load().is_empty());
    }
}
