//! Neighbour resolution on arbitrary received frames: parsing never panics,
//! and a cache that is up takes any frame (answers, learns or counts it)
//! without losing the packets it holds.
#![no_main]

use std::net::IpAddr;
use std::time::Duration;

use ipoib_control::neigh::{parse_frame, Action, LocalLink};
use ipoib_control::{NeighCache, NeighConfig};
use ipoib_dataplane::wire::{Gid, HwAddr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_frame(data);
    let link = LocalLink {
        hwaddr: HwAddr::new(0, 0x101, Gid::link_local(0x0002_c903_0000_0001)),
        pkey: 0xffff,
        scope: 2,
    };
    let mut cache: NeighCache<u32> = NeighCache::new(NeighConfig::default(), link);
    let now = Duration::from_secs(1);
    let _ = cache.add_address("10.0.0.1".parse::<IpAddr>().unwrap(), now);
    let _ = cache.add_address("fd00::1".parse::<IpAddr>().unwrap(), now);
    let _ = cache.interface_up(now);
    // Two packets wait for a neighbour; whatever the frame does, each comes
    // back at most once.
    let mut back = 0;
    for (i, ip) in ["10.0.0.2", "fd00::2"].iter().enumerate() {
        for a in cache.on_tx_miss(ip.parse().unwrap(), i as u32, now) {
            back += released(&a);
        }
    }
    for a in cache.on_frame(data, now) {
        back += released(&a);
    }
    for a in cache.on_timer(now + Duration::from_secs(60)) {
        back += released(&a);
    }
    assert!(back + cache.queued() <= 2);
});

fn released(a: &Action<u32>) -> usize {
    match a {
        Action::Resolved { packets, .. } | Action::Dropped { packets, .. } => packets.len(),
        _ => 0,
    }
}
