//! IPv6 neighbour discovery over IPoIB between simulated hosts: NS to the
//! solicited-node group with the IPoIB link-layer option, NA unicast,
//! link-local addresses from the port GUID, losses, failures, bad frames.

mod neigh_support;

use ipoib_control::neigh::{
    link_local_from_guid, nd_frame, parse_frame, solicited_node, Inbound, NdMessage, NeighConfig,
    NeighState, ALL_NODES,
};
use ipoib_dataplane::wire::{mgid_for_ip, HwAddr, NdRepr, NeighborFlags};
use neigh_support::*;
use std::net::{IpAddr, Ipv6Addr};

fn nd_of(sent: &Sent) -> NdMessage {
    match parse_frame(&sent.transmit.frame) {
        Ok(Inbound::Nd(msg)) => msg,
        other => panic!("expected an ND frame, got {other:?}"),
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V6(v6) => v6,
        IpAddr::V4(_) => panic!("not IPv6"),
    }
}

fn group_hwaddr(group: Ipv6Addr) -> HwAddr {
    HwAddr::multicast(mgid_for_ip(IpAddr::V6(group), 0xffff, 2).expect("multicast"))
}

#[test]
fn solicitation_goes_to_the_solicited_node_group_advertisement_comes_back_unicast() {
    let tokens = Tokens::new();
    let mut net = Net::up(2, NeighConfig::default());
    net.log.clear();
    net.miss(0, ip6(2), tokens.token());

    let ns = &net.log[0];
    let group = solicited_node(v6(ip6(2)));
    assert_eq!(group, "ff02::1:ff00:2".parse::<Ipv6Addr>().unwrap());
    assert_eq!(ns.transmit.dest, group_hwaddr(group));
    let msg = nd_of(ns);
    assert_eq!(msg.dst, group);
    assert_eq!(msg.src, link_local_from_guid(GUID_BASE | 1));
    assert_eq!(
        msg.repr,
        NdRepr::NeighborSolicit {
            target_addr: v6(ip6(2)),
            source_lladdr: Some(hwaddr(1)),
        }
    );
    // RFC 4391 §9: option type 1, length 3 (24 bytes), two zero pad bytes,
    // then the 20-byte hardware address; hop limit 255.
    let frame = &ns.transmit.frame;
    assert_eq!(frame.len(), 4 + 40 + 24 + 24);
    assert_eq!(frame[4 + 7], 255);
    let option = &frame[4 + 40 + 24..];
    assert_eq!(&option[..4], &[1, 3, 0, 0]);
    assert_eq!(&option[4..], &hwaddr(1).to_bytes());

    let na = net
        .log
        .iter()
        .find(|s| s.from == 1)
        .expect("an advertisement");
    assert_eq!(na.transmit.dest, hwaddr(1));
    let msg = nd_of(na);
    assert_eq!(msg.dst, link_local_from_guid(GUID_BASE | 1));
    assert_eq!(
        msg.repr,
        NdRepr::NeighborAdvert {
            flags: NeighborFlags {
                router: false,
                solicited: true,
                override_: true,
            },
            target_addr: v6(ip6(2)),
            target_lladdr: Some(hwaddr(2)),
        }
    );
    assert_eq!(net.delivered_ids(0), vec![0]);
    assert_eq!(
        net.hosts[0].get(ip6(2)).map(|e| e.state),
        Some(NeighState::Reachable)
    );
    // B learned A's link-local address from the solicitation.
    let a_ll = IpAddr::V6(link_local_from_guid(GUID_BASE | 1));
    assert_eq!(
        net.hosts[1].get(a_ll).and_then(|e| e.hwaddr),
        Some(hwaddr(1))
    );
}

#[test]
fn link_local_addresses_from_the_port_guid_resolve() {
    let tokens = Tokens::new();
    let mut net = Net::up(3, NeighConfig::default());
    let c_ll = IpAddr::V6(link_local_from_guid(GUID_BASE | 3));
    assert_eq!(
        c_ll,
        "fe80::202:c903:0:3".parse::<IpAddr>().unwrap(),
        "the universal/local bit of the GUID is inverted"
    );
    net.miss(0, c_ll, tokens.token());
    assert_eq!(net.delivered_ids(0), vec![0]);
    assert_eq!(net.delivered[0].2, hwaddr(3));
}

#[test]
fn lost_solicitation_and_advertisement_are_retried() {
    let tokens = Tokens::new();
    let mut net = Net::up(2, NeighConfig::default());
    net.log.clear();
    let mut losses = 0;
    net.drop_rule = Box::new(move |_, _| {
        losses += 1;
        // Lose the first NS, deliver the second, lose the NA it causes.
        losses == 1 || losses == 3
    });
    net.miss(0, ip6(2), tokens.token());
    net.advance(secs(10), ms(100));
    assert_eq!(net.delivered_ids(0), vec![0]);
    assert_eq!(net.hosts[0].stats().ns_sent, 3);
}

#[test]
fn unanswered_solicitation_fails_and_drops_the_queue() {
    let tokens = Tokens::new();
    let mut net = Net::up(2, NeighConfig::default());
    for _ in 0..4 {
        net.miss(0, ip6(9), tokens.token());
    }
    net.advance(secs(20), ms(500));
    let stats = *net.hosts[0].stats();
    assert_eq!(stats.drop_queue_full, 1);
    assert_eq!(stats.drop_failed, 3);
    assert_eq!(stats.ns_sent, 4);
    assert_eq!(
        net.hosts[0].get(ip6(9)).map(|e| e.state),
        Some(NeighState::Failed)
    );
    net.dropped.clear();
    assert_eq!(tokens.live(), 0);
}

#[test]
fn duplicate_address_probe_is_answered_to_all_nodes() {
    let mut net = Net::up(2, NeighConfig::default());
    let probe = NdMessage {
        src: Ipv6Addr::UNSPECIFIED,
        dst: solicited_node(v6(ip6(2))),
        repr: NdRepr::NeighborSolicit {
            target_addr: v6(ip6(2)),
            source_lladdr: None,
        },
    };
    let actions = net.hosts[1].on_nd(&probe, net.now);
    let answer = actions
        .iter()
        .find_map(|a| a.transmit())
        .expect("an advertisement");
    assert_eq!(answer.dest, group_hwaddr(ALL_NODES));
    match parse_frame(&answer.frame) {
        Ok(Inbound::Nd(msg)) => {
            assert_eq!(msg.dst, ALL_NODES);
            assert!(matches!(
                msg.repr,
                NdRepr::NeighborAdvert { flags, .. } if !flags.solicited && flags.override_
            ));
        }
        other => panic!("expected an NA, got {other:?}"),
    }
    // Nothing was learned from the unspecified source.
    assert_eq!(net.hosts[1].len(), 0);
}

#[test]
fn bad_checksum_and_forwarded_messages_are_counted_and_ignored() {
    let mut net = Net::up(2, NeighConfig::default());
    let ns = NdMessage {
        src: link_local_from_guid(GUID_BASE | 1),
        dst: v6(ip6(2)),
        repr: NdRepr::NeighborSolicit {
            target_addr: v6(ip6(2)),
            source_lladdr: Some(hwaddr(1)),
        },
    };
    let good = nd_frame(&ns).expect("frame");
    let mut corrupt = good.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x40;
    let mut forwarded = good.clone();
    forwarded[4 + 7] = 254;
    for frame in [&corrupt, &forwarded, &good[..30]] {
        let actions = net.hosts[1].on_frame(frame, net.now);
        assert!(actions.is_empty());
    }
    assert_eq!(net.hosts[1].stats().invalid, 3);
    assert!(net.hosts[1].is_empty());
    // The good one is answered.
    let actions = net.hosts[1].on_frame(&good, net.now);
    assert!(actions.iter().any(|a| a.transmit().is_some()));
}

#[test]
fn unsolicited_advertisement_updates_only_with_override() {
    let tokens = Tokens::new();
    let mut net = Net::up(2, NeighConfig::default());
    net.miss(0, ip6(2), tokens.token());
    let moved = HwAddr::new(0, 0x202, port_gid(42));
    let advert = |override_| NdMessage {
        src: v6(ip6(2)),
        dst: ALL_NODES,
        repr: NdRepr::NeighborAdvert {
            flags: NeighborFlags {
                router: false,
                solicited: false,
                override_,
            },
            target_addr: v6(ip6(2)),
            target_lladdr: Some(moved),
        },
    };
    let actions = net.hosts[0].on_nd(&advert(false), net.now);
    net.apply(0, actions);
    let entry = net.hosts[0].get(ip6(2)).expect("entry");
    assert_eq!(entry.hwaddr, Some(hwaddr(2)));
    assert_eq!(entry.state, NeighState::Stale);

    let actions = net.hosts[0].on_nd(&advert(true), net.now);
    net.apply(0, actions);
    assert_eq!(net.hosts[0].get(ip6(2)).and_then(|e| e.hwaddr), Some(moved));
    assert!(net
        .forgotten
        .iter()
        .any(|f| f.1 == ip6(2) && f.2 == hwaddr(2)));
}

#[test]
fn interface_up_announces_every_address() {
    let mut net = Net::new(1, NeighConfig::default());
    let actions = net.hosts[0].add_address(ip4(1), net.now);
    assert!(actions.is_empty(), "nothing is sent while down");
    let actions = net.hosts[0].add_address(ip6(1), net.now);
    assert!(actions.is_empty());
    let actions = net.hosts[0].interface_up(net.now);
    let sends: Vec<_> = actions.iter().filter_map(|a| a.transmit()).collect();
    // Link-local NA, gratuitous ARP, global NA.
    assert_eq!(sends.len(), 3);
    let targets: Vec<_> = sends
        .iter()
        .map(|t| match parse_frame(&t.frame) {
            Ok(Inbound::Arp(arp)) => IpAddr::V4(arp.target_protocol_addr),
            Ok(Inbound::Nd(msg)) => match msg.repr {
                NdRepr::NeighborAdvert { target_addr, .. } => IpAddr::V6(target_addr),
                NdRepr::NeighborSolicit { .. } => panic!("not an announcement"),
            },
            Err(err) => panic!("bad frame: {err}"),
        })
        .collect();
    assert_eq!(
        targets,
        vec![
            IpAddr::V6(link_local_from_guid(GUID_BASE | 1)),
            ip4(1),
            ip6(1)
        ]
    );
}

#[test]
fn multicast_groups_cover_broadcast_all_nodes_and_each_solicited_node_group() {
    let mut net = Net::up(1, NeighConfig::default());
    let ll = link_local_from_guid(GUID_BASE | 1);
    // fe80::202:c903:0:1 and 2001:db8::1 share their low 24 bits, so
    // their solicited-node group, which is listed once.
    assert_eq!(solicited_node(ll), solicited_node(v6(ip6(1))));
    let extra = v6(ip6(0x42));
    let actions = net.hosts[0].add_address(IpAddr::V6(extra), net.now);
    net.apply(0, actions);
    let expected = vec![
        ipoib_dataplane::wire::broadcast_mgid(0xffff, 2),
        group_hwaddr(ALL_NODES).gid,
        group_hwaddr(solicited_node(ll)).gid,
        group_hwaddr(solicited_node(extra)).gid,
    ];
    assert_eq!(net.hosts[0].multicast_groups(), expected);
}
