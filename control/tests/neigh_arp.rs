//! IPoIB ARP between simulated hosts: resolution, the queue bound, lost
//! requests and replies, no answer, ageing, GC, gratuitous ARP, GID change.

mod neigh_support;

use ipoib_control::mcast::FlushLevel;
use ipoib_control::neigh::{parse_frame, DropReason, Inbound, NeighConfig, NeighState};
use ipoib_dataplane::wire::{broadcast_mgid, ArpOperation, HwAddr};
use neigh_support::*;

fn arp_of(sent: &Sent) -> ipoib_dataplane::wire::ArpRepr {
    match parse_frame(&sent.transmit.frame) {
        Ok(Inbound::Arp(repr)) => repr,
        other => panic!("expected an ARP frame, got {other:?}"),
    }
}

#[test]
fn request_to_broadcast_reply_unicast_queued_packets_released() {
    let tokens = Tokens::new();
    let mut net = Net::up(2, NeighConfig::default());
    net.log.clear();
    net.miss(0, ip4(2), tokens.token());
    net.miss(0, ip4(2), tokens.token());

    let request = &net.log[0];
    assert_eq!(request.from, 0);
    assert_eq!(
        request.transmit.dest,
        HwAddr::multicast(broadcast_mgid(0xffff, 2))
    );
    let repr = arp_of(request);
    assert_eq!(repr.operation, ArpOperation::Request);
    assert_eq!(repr.source_hardware_addr, hwaddr(1));
    assert_eq!(std::net::IpAddr::V4(repr.target_protocol_addr), ip4(2));
    // Only one request for two misses.
    let requests = net.log.iter().filter(|s| s.from == 0).count();
    assert_eq!(requests, 1);

    let reply = net.log.iter().find(|s| s.from == 1).expect("a reply");
    assert_eq!(reply.transmit.dest, hwaddr(1), "replies are unicast");
    assert_eq!(arp_of(reply).operation, ArpOperation::Reply);

    assert_eq!(net.delivered_ids(0), vec![0, 1]);
    assert!(net.delivered.iter().all(|d| d.2 == hwaddr(2)));
    let a = net.hosts[0].get(ip4(2)).expect("entry");
    assert_eq!(a.state, NeighState::Reachable);
    assert_eq!(a.hwaddr, Some(hwaddr(2)));
    // B learned A from the request addressed to it.
    assert_eq!(
        net.hosts[1].get(ip4(1)).and_then(|e| e.hwaddr),
        Some(hwaddr(1))
    );
    assert_eq!(net.hosts[0].stats().resolved, 1);
    assert_eq!(net.hosts[0].stats().released, 2);
    // A saw its own broadcast come back and ignored it.
    assert!(net.hosts[0].stats().ignored_own >= 1);

    // A miss on a resolved entry hands the packet straight back.
    net.miss(0, ip4(2), tokens.token());
    assert_eq!(net.delivered_ids(0), vec![0, 1, 2]);
    drop(net);
    assert_eq!(tokens.live(), 0);
}

#[test]
fn fourth_packet_to_an_unresolved_neighbour_is_dropped_and_counted() {
    let tokens = Tokens::new();
    let mut net = Net::up(2, NeighConfig::default());
    net.drop_rule = Box::new(|_, _| true);
    for _ in 0..4 {
        net.miss(0, ip4(2), tokens.token());
    }
    let entry = net.hosts[0].get(ip4(2)).expect("entry");
    assert_eq!(entry.state, NeighState::Incomplete);
    assert_eq!(entry.queued, 3);
    assert_eq!(net.hosts[0].stats().drop_queue_full, 1);
    assert_eq!(net.dropped.len(), 1);
    assert_eq!(net.dropped[0].2, DropReason::QueueFull);
    assert_eq!(
        net.dropped[0].3.id, 3,
        "the fourth packet is the one dropped"
    );
    assert_eq!(tokens.live(), 4);

    net.drop_rule = Box::new(|_, _| false);
    net.advance(secs(2), ms(100));
    assert_eq!(net.delivered_ids(0), vec![0, 1, 2]);
}

#[test]
fn queue_bound_is_configurable() {
    let tokens = Tokens::new();
    let cfg = NeighConfig {
        queue_len: 5,
        ..NeighConfig::default()
    };
    let mut net = Net::up(2, cfg);
    net.drop_rule = Box::new(|_, _| true);
    for _ in 0..7 {
        net.miss(0, ip4(2), tokens.token());
    }
    assert_eq!(net.hosts[0].get(ip4(2)).map(|e| e.queued), Some(5));
    assert_eq!(net.hosts[0].stats().drop_queue_full, 2);
}

#[test]
fn lost_request_and_lost_reply_are_retried_with_doubling_backoff() {
    let tokens = Tokens::new();
    let mut net = Net::up(2, NeighConfig::default());
    net.log.clear();
    // Lose A's first request, then B's first reply.
    let mut lost_request = false;
    let mut lost_reply = false;
    net.drop_rule = Box::new(move |from, _| {
        if from == 0 && !lost_request {
            lost_request = true;
            return true;
        }
        if from == 1 && !lost_reply {
            lost_reply = true;
            return true;
        }
        false
    });
    net.miss(0, ip4(2), tokens.token());
    assert!(net.delivered.is_empty());
    net.advance(secs(10), ms(100));
    assert_eq!(net.delivered_ids(0), vec![0]);

    let request_times: Vec<_> = net.frames_from(0).iter().map(|s| s.at).collect();
    // First at 0, retry after 1 s (lost reply), retry after 2 more s.
    assert_eq!(request_times, vec![secs(0), secs(1), secs(3)]);
    assert_eq!(net.hosts[0].stats().arp_requests_sent, 3);
    assert_eq!(net.hosts[0].stats().failed, 0);
}

#[test]
fn no_answer_fails_the_entry_drops_and_counts_its_packets_nothing_leaks() {
    let tokens = Tokens::new();
    let mut net = Net::up(2, NeighConfig::default());
    net.log.clear();
    // 10.0.0.9 does not exist.
    for _ in 0..3 {
        net.miss(0, ip4(9), tokens.token());
    }
    net.advance(secs(14), ms(100));
    assert_eq!(
        net.hosts[0].get(ip4(9)).map(|e| e.state),
        Some(NeighState::Incomplete),
        "1 + 2 + 4 + 8 seconds of retries are not over yet"
    );
    net.advance(secs(16), ms(100));
    let entry = net.hosts[0].get(ip4(9)).expect("a failed entry stays");
    assert_eq!(entry.state, NeighState::Failed);
    assert_eq!(entry.queued, 0);
    // The first request and three retries.
    assert_eq!(net.frames_from(0).len(), 4);
    let stats = *net.hosts[0].stats();
    assert_eq!(stats.failed, 1);
    assert_eq!(stats.drop_failed, 3);
    assert_eq!(net.dropped.len(), 3);
    assert!(net.dropped.iter().all(|d| d.2 == DropReason::Failed));
    net.dropped.clear();
    assert_eq!(tokens.live(), 0);

    // A new packet starts resolution again.
    net.miss(0, ip4(9), tokens.token());
    assert_eq!(
        net.hosts[0].get(ip4(9)).map(|e| e.state),
        Some(NeighState::Incomplete)
    );
    assert_eq!(net.frames_from(0).len(), 5);
}

#[test]
fn seeded_loss_every_token_is_delivered_or_dropped_and_counted() {
    let (mut any_retry, mut any_failure) = (false, false);
    for seed in 1..=20 {
        let tokens = Tokens::new();
        let mut net = Net::up(3, NeighConfig::default());
        net.drop_rule = seeded_loss(seed, 0.4);
        for round in 0..4 {
            for host in 0..3u8 {
                for peer in 1..=3u8 {
                    net.miss(host as usize, ip4(peer), tokens.token());
                    net.miss(host as usize, ip6(peer), tokens.token());
                }
            }
            net.advance(secs(20 * (round + 1)), ms(250));
        }
        net.advance(secs(200), secs(1));
        let given = tokens.next_id();
        let dropped: u64 = net.hosts.iter().map(|h| h.stats().dropped()).sum();
        let released: u64 = net.hosts.iter().map(|h| h.stats().released).sum();
        let queued: usize = net.hosts.iter().map(|h| h.queued()).sum();
        assert_eq!(queued, 0, "seed {seed}");
        assert_eq!(dropped as usize, net.dropped.len(), "seed {seed}");
        assert_eq!(released as usize, net.delivered.len(), "seed {seed}");
        assert_eq!(
            net.delivered.len() + net.dropped.len(),
            given,
            "seed {seed}"
        );
        // Whatever was delivered went to the right host.
        for (_, ip, hw, _) in &net.delivered {
            let owner = (1..=3u8).find(|n| ip4(*n) == *ip || ip6(*n) == *ip);
            assert_eq!(owner.map(hwaddr), Some(*hw), "seed {seed}");
        }
        any_retry |= net.log.iter().any(|s| s.lost) && !net.delivered.is_empty();
        any_failure |= net.hosts.iter().any(|h| h.stats().failed > 0);
        net.delivered.clear();
        net.dropped.clear();
        assert_eq!(tokens.live(), 0, "seed {seed}");
    }
    assert!(
        any_retry && any_failure,
        "the loss rate exercises both paths"
    );
}

#[test]
fn only_the_owner_answers_among_three_hosts() {
    let tokens = Tokens::new();
    let mut net = Net::up(3, NeighConfig::default());
    net.log.clear();
    net.miss(0, ip4(3), tokens.token());
    let replies: Vec<_> = net.log.iter().filter(|s| s.from != 0).collect();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].from, 2);
    assert_eq!(net.delivered[0].2, hwaddr(3));
    // Host 2 saw the broadcast request but was not asked: no entry for A.
    assert!(net.hosts[1].get(ip4(1)).is_none());
}

#[test]
fn reachable_turns_stale_and_a_touch_reconfirms_it_unicast() {
    let tokens = Tokens::new();
    let cfg = NeighConfig {
        reachable_time: secs(5),
        gc_idle: secs(60),
        ..NeighConfig::default()
    };
    let mut net = Net::up(2, cfg);
    net.miss(0, ip4(2), tokens.token());
    net.advance(secs(6), secs(1));
    assert_eq!(
        net.hosts[0].get(ip4(2)).map(|e| e.state),
        Some(NeighState::Stale)
    );
    net.log.clear();
    let actions = net.hosts[0].touch(ip4(2), net.now);
    net.apply(0, actions);
    net.run();
    let probe = &net.log[0];
    assert_eq!(
        probe.transmit.dest,
        hwaddr(2),
        "stale entries are probed unicast"
    );
    assert_eq!(
        net.hosts[0].get(ip4(2)).map(|e| e.state),
        Some(NeighState::Reachable)
    );
}

#[test]
fn idle_entries_are_collected_with_a_forget() {
    let tokens = Tokens::new();
    let cfg = NeighConfig {
        reachable_time: secs(5),
        gc_idle: secs(30),
        ..NeighConfig::default()
    };
    let mut net = Net::up(3, cfg);
    net.miss(0, ip4(2), tokens.token());
    net.miss(0, ip4(3), tokens.token());
    net.advance(secs(20), secs(1));
    // Host 3 stays in use.
    let actions = net.hosts[0].touch(ip4(3), net.now);
    net.apply(0, actions);
    net.run();
    net.advance(secs(31), secs(1));
    assert!(net.hosts[0].get(ip4(2)).is_none());
    assert!(net.hosts[0].get(ip4(3)).is_some());
    assert!(net
        .forgotten
        .iter()
        .any(|f| f.0 == 0 && f.1 == ip4(2) && f.2 == hwaddr(2)));
    assert_eq!(net.hosts[0].stats().gc_removed, 1);
}

#[test]
fn gratuitous_arp_on_up_and_address_change_updates_peers() {
    let tokens = Tokens::new();
    let mut net = Net::up(2, NeighConfig::default());
    net.miss(1, ip4(1), tokens.token());
    assert_eq!(
        net.hosts[1].get(ip4(1)).and_then(|e| e.hwaddr),
        Some(hwaddr(1))
    );

    net.log.clear();
    // Host 1 gets a second address: announced at once.
    let extra = ip4(101);
    let actions = net.hosts[0].add_address(extra, net.now);
    net.apply(0, actions);
    net.run();
    let g = &net.log[0];
    assert_eq!(
        g.transmit.dest,
        HwAddr::multicast(broadcast_mgid(0xffff, 2))
    );
    let repr = arp_of(g);
    assert_eq!(repr.source_protocol_addr, repr.target_protocol_addr);
    assert_eq!(net.hosts[0].stats().gratuitous_sent, 2);

    // Host 1's hardware address changes (new GID): host 2 follows the
    // gratuitous ARP and forgets the old address.
    let new_hw = HwAddr::new(0, 0x101, port_gid(77));
    let actions = net.hosts[0].set_hwaddr(new_hw, net.now);
    net.apply(0, actions);
    net.run();
    assert_eq!(
        net.hosts[1].get(ip4(1)).and_then(|e| e.hwaddr),
        Some(new_hw)
    );
    assert!(net
        .forgotten
        .iter()
        .any(|f| f.0 == 1 && f.1 == ip4(1) && f.2 == hwaddr(1)));
}

#[test]
fn gid_change_flushes_learned_entries_and_re_resolves_on_next_use() {
    let tokens = Tokens::new();
    let mut net = Net::up(2, NeighConfig::default());
    net.miss(0, ip4(2), tokens.token());
    assert_eq!(net.hosts[0].len(), 1);
    let new_hw = HwAddr::new(0, 0x101, port_gid(77));
    let actions = net.hosts[0].set_hwaddr(new_hw, net.now);
    net.apply(0, actions);
    net.run();
    assert!(net.hosts[0].get(ip4(2)).is_none(), "flushed");
    assert!(net
        .forgotten
        .iter()
        .any(|f| f.0 == 0 && f.1 == ip4(2) && f.2 == hwaddr(2)));
    assert_eq!(net.hosts[0].stats().flushed, 1);

    net.log.clear();
    net.miss(0, ip4(2), tokens.token());
    assert_eq!(arp_of(&net.log[0]).source_hardware_addr, new_hw);
    assert_eq!(net.delivered_ids(0), vec![0, 1]);
    // Host 2's reply went to the new address.
    assert_eq!(net.log[1].transmit.dest, new_hw);
}

#[test]
fn flush_keeps_resolving_entries_and_their_packets() {
    let tokens = Tokens::new();
    let mut net = Net::up(2, NeighConfig::default());
    net.drop_rule = Box::new(|_, _| true);
    net.miss(0, ip4(2), tokens.token());
    let actions = net.hosts[0].flush(FlushLevel::Normal, net.now);
    net.apply(0, actions);
    net.run();
    assert_eq!(net.hosts[0].get(ip4(2)).map(|e| e.queued), Some(1));
    net.drop_rule = Box::new(|_, _| false);
    net.advance(secs(2), ms(100));
    assert_eq!(net.delivered_ids(0), vec![0]);
}

#[test]
fn interface_down_drops_and_counts_everything() {
    let tokens = Tokens::new();
    let mut net = Net::up(2, NeighConfig::default());
    net.drop_rule = Box::new(|_, _| true);
    net.miss(0, ip4(2), tokens.token());
    net.miss(0, ip4(3), tokens.token());
    let actions = net.hosts[0].interface_down(net.now);
    net.apply(0, actions);
    assert!(net.hosts[0].is_empty());
    assert_eq!(net.hosts[0].stats().drop_down, 2);
    net.miss(0, ip4(2), tokens.token());
    assert_eq!(net.hosts[0].stats().drop_down, 3);
    net.dropped.clear();
    assert_eq!(tokens.live(), 0);
}

#[test]
fn unresolvable_destinations_are_dropped_without_a_request() {
    let tokens = Tokens::new();
    let mut net = Net::up(2, NeighConfig::default());
    net.log.clear();
    for ip in [
        "224.0.0.1".parse().unwrap(),
        "255.255.255.255".parse().unwrap(),
        "0.0.0.0".parse().unwrap(),
        ip4(1),
        "ff02::1".parse().unwrap(),
    ] {
        net.miss(0, ip, tokens.token());
    }
    assert!(net.log.is_empty());
    assert_eq!(net.hosts[0].stats().drop_unresolvable, 5);
    assert!(net.hosts[0].is_empty());
}

#[test]
fn a_frame_claiming_our_address_is_a_conflict_not_learned() {
    let mut net = Net::up(2, NeighConfig::default());
    // Host 2 wrongly announces host 1's address.
    let actions = net.hosts[1].add_address(ip4(1), net.now);
    net.apply(1, actions);
    net.run();
    assert_eq!(net.hosts[0].stats().conflicts, 1);
    assert!(net.hosts[0].get(ip4(1)).is_none());
}

#[test]
fn heavy_flush_moves_requests_to_the_new_partitions_broadcast_group() {
    let tokens = Tokens::new();
    let mut net = Net::up(2, NeighConfig::default());
    net.drop_rule = Box::new(|_, _| true);
    net.miss(0, ip4(2), tokens.token());
    let new_bcast = broadcast_mgid(0x8001, 2);
    let actions = net.hosts[0].flush(FlushLevel::Heavy(Some(new_bcast)), net.now);
    net.apply(0, actions);
    net.run();
    let last = net.log.last().expect("a request after the flush");
    assert_eq!(last.transmit.dest, HwAddr::multicast(new_bcast));
    assert_eq!(net.hosts[0].link().pkey, 0x8001);
    assert_eq!(net.hosts[0].multicast_groups()[0], new_bcast);
}
