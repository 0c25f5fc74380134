//! Mempool, cache and mbuf behaviour: accounting, refcounts, headroom.

use arrayvec::ArrayVec;
use ipoib_dataplane::mem::{HugepageMode, Mempool, MempoolConfig, HEADROOM};

fn pool(name: &str, count: u32) -> &'static Mempool {
    Mempool::new(MempoolConfig {
        name: name.into(),
        count,
        buf_size: 2176,
        hugepages: HugepageMode::Off,
    })
    .expect("pool")
}

#[test]
fn every_buffer_returns_after_alloc_and_free() {
    let p = pool("a", 512);
    let mut cache = p.cache(64);
    let mut held = Vec::new();
    while let Some(m) = cache.alloc() {
        held.push(m);
    }
    assert_eq!(
        held.len(),
        512,
        "the cache must fall back to the shared list until the pool is empty"
    );
    assert_eq!(p.available(), 0);
    for m in held {
        cache.free(m);
    }
    drop(cache);
    assert_eq!(p.available(), 512);
}

#[test]
fn fresh_mbuf_has_headroom_for_all_encapsulations() {
    let p = pool("b", 8);
    let mut m = p.alloc().unwrap();
    const { assert!(HEADROOM >= 128) };
    assert_eq!(m.headroom(), HEADROOM);
    assert_eq!(m.tailroom(), 2176 - HEADROOM);
    m.append(64).unwrap().fill(0xab);
    // IPoIB (4) + GRH (40) + Ethernet/IPv6/UDP/BTH/DETH (82) in front, no copy.
    for hdr in [4usize, 40, 82] {
        m.prepend(hdr).unwrap().fill(0);
    }
    assert_eq!(m.len(), 64 + 126);
    assert!(m.data()[126..].iter().all(|&b| b == 0xab));
    assert!(m.prepend(3).is_none(), "only 2 bytes of headroom left");
    assert!(m.adj(126));
    assert_eq!(m.data(), &[0xab; 64][..]);
    assert!(!m.adj(65));
    assert!(m.trim(4));
    assert_eq!(m.len(), 60);
}

#[test]
fn a_buffer_left_with_one_owner_after_sharing_is_writable_again() {
    let p = pool("s", 4);
    let mut m = p.alloc().unwrap();
    m.append(10).unwrap().copy_from_slice(b"0123456789");
    let mut copy = m.share();
    assert!(m.is_shared() && copy.is_shared());
    assert!(copy.prepend(4).is_none());
    drop(m);
    // The handle still carries the maybe-shared mark, but the owner count
    // says it is alone: the slow check lets it write.
    assert!(!copy.is_shared());
    copy.prepend(4).unwrap().copy_from_slice(b"hdr:");
    assert_eq!(copy.data(), b"hdr:0123456789");
    assert!(copy.adj(4));
    assert_eq!(copy.headroom(), HEADROOM);
    copy.reset();
    assert_eq!((copy.headroom(), copy.len()), (HEADROOM, 0));
    drop(copy);
    assert_eq!(p.available(), 4);
}

#[test]
fn buffers_of_32_kib_or_more_are_refused() {
    assert!(Mempool::new(MempoolConfig {
        name: "big".into(),
        count: 2,
        buf_size: 32768,
        hugepages: HugepageMode::Off,
    })
    .is_err());
}

#[test]
fn shared_buffer_is_read_only_and_freed_by_last_owner() {
    let p = pool("c", 4);
    let mut m = p.alloc().unwrap();
    m.append(10).unwrap().copy_from_slice(b"0123456789");
    let copies: Vec<_> = (0..3).map(|_| m.share()).collect();
    assert!(m.is_shared());
    assert!(m.data_mut().is_none());
    assert!(m.prepend(4).is_none());
    assert_eq!(copies[2].data(), b"0123456789");
    assert_eq!(p.available(), 3);
    drop(m);
    drop(copies);
    assert_eq!(
        p.available(),
        4,
        "the last owner returns the buffer exactly once"
    );
}

#[test]
fn freeing_into_another_pools_cache_returns_to_the_right_pool() {
    let a = pool("d1", 16);
    let b = pool("d2", 16);
    let mut cache_b = b.cache(8);
    let m = a.alloc().unwrap();
    cache_b.free(m);
    assert_eq!(a.available(), 16);
    assert_eq!(cache_b.len(), 0);
}

#[test]
fn cache_moves_half_batches_and_flushes_on_drop() {
    let p = pool("e", 256);
    let mut cache = p.cache(32);
    let mut burst: ArrayVec<_, 32> = ArrayVec::new();
    assert_eq!(cache.alloc_burst(&mut burst, 32), 32);
    cache.free_burst(&mut burst);
    assert!(burst.is_empty());
    assert!(cache.len() <= 32);
    assert_eq!(p.available() + cache.len(), 256);
    drop(cache);
    assert_eq!(p.available(), 256);
}

#[test]
fn mbufs_cross_threads_and_come_back() {
    let p = pool("f", 1024);
    let (tx, rx) = std::sync::mpsc::sync_channel(64);
    let producer = std::thread::spawn(move || {
        let mut cache = p.cache(64);
        for i in 0..10_000u32 {
            let mut m = loop {
                if let Some(m) = cache.alloc() {
                    break m;
                }
                std::thread::yield_now();
            };
            m.append(4).unwrap().copy_from_slice(&i.to_be_bytes());
            tx.send(m).unwrap();
        }
    });
    let mut cache = p.cache(64);
    for i in 0..10_000u32 {
        let m = rx.recv().unwrap();
        assert_eq!(m.data(), &i.to_be_bytes());
        cache.free(m);
    }
    producer.join().unwrap();
    drop(cache);
    assert_eq!(p.available(), 1024);
}

#[test]
fn bad_geometry_is_an_error_not_a_panic() {
    for (count, buf) in [(0u32, 2176u32), (8, 64), (8, 128), (8, 70_000)] {
        let r = Mempool::new(MempoolConfig {
            name: "g".into(),
            count,
            buf_size: buf,
            hugepages: HugepageMode::Off,
        });
        assert!(r.is_err(), "count {count} buf {buf}");
    }
}
