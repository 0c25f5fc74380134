//! A sink provider gives sent buffers back to the sending lcore's cache
//! (`Provider::reap`), so they never touch the pool's shared list.

use ipoib_dataplane::lcore::{
    build_udp_packet, FlowSpec, Iface, IfaceConfig, IfaceWiring, NeighEntry, NeighTable,
};
use ipoib_dataplane::mem::{HugepageMode, Mempool, MempoolConfig};
use ipoib_dataplane::provider::null::{NullAh, NullMode, NullProvider};
use ipoib_dataplane::provider::PortAttr;
use ipoib_dataplane::ring::spsc;
use ipoib_dataplane::stats::IfaceStats;
use ipoib_dataplane::tables::{published, JoinRequestQueue, McastTable};
use ipoib_dataplane::wire::Gid;
use std::net::IpAddr;
use std::sync::Arc;

#[test]
fn sent_buffers_return_to_the_senders_cache() {
    let pool = Mempool::new(MempoolConfig {
        name: "reap".into(),
        count: 1024,
        buf_size: 2176,
        hugepages: HugepageMode::Off,
    })
    .unwrap();
    let port = PortAttr {
        lid: 1,
        gid: Gid::link_local(1),
        qpn: 0x101,
        pkey: 0xffff,
        qkey: 0x0B1B,
        max_msg: 2048,
    };
    let sink = NullProvider::new(port, NullMode::Sink, pool.cache(256), 0);
    let peer: IpAddr = "10.0.0.2".parse().unwrap();
    let (mut tx, tx_in) = spsc::channel(64);
    let mut iface = Iface::new(
        IfaceConfig {
            name: "ib0".into(),
            ifindex: 0,
            mtu: 2044,
            pkey: 0xffff,
            scope: 2,
        },
        sink,
        IfaceWiring {
            tx_in: vec![tx_in],
            rx_out: None,
            neigh: published(NeighTable::new([(
                peer,
                NeighEntry {
                    ah: NullAh { dlid: 2 },
                    qpn: 0x102,
                },
            )])),
            mcast: published(McastTable::default()),
            join_requests: Arc::new(JoinRequestQueue::new(16)),
            stats: Arc::new(IfaceStats::default()),
        },
    );
    let bytes = build_udp_packet(&FlowSpec {
        src: "10.0.0.1".parse().unwrap(),
        dst: peer,
        src_port: 9,
        dst_port: 9,
        size: 64,
        rate_pps: 0,
    })
    .unwrap();
    let mut cache = pool.cache(512);
    for _ in 0..32 {
        let mut m = cache.alloc().unwrap();
        m.append(bytes.len()).unwrap().copy_from_slice(&bytes);
        tx.push(m).unwrap();
    }
    let shared_before = pool.available();
    let cached_before = cache.len();
    assert_eq!(iface.tx_burst(&mut cache), 32);
    assert_eq!(
        cache.len(),
        cached_before + 32,
        "every sent buffer came back to this cache"
    );
    assert_eq!(
        pool.available(),
        shared_before,
        "none went through the shared list"
    );
    drop(cache);
    drop(iface);
    assert_eq!(pool.available(), pool.capacity());
}
