//! The rocev2 provider allocates nothing per packet: after warm-up, a
//! counting global allocator sees no allocation on the thread that sends
//! and receives thousands of messages between two loopback QPs.

mod rocev2_common;

use ipoib_dataplane::provider::rocev2::Rocev2Ah;
use ipoib_dataplane::provider::{Burst, Provider, RecvCompletion, SendWr};
use rocev2_common::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// Counts allocations made by the thread that switched counting on.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Sends `rounds` bursts of 32 from `a` to `b` and receives them; returns
/// the messages delivered.
fn exchange(
    a: &mut ipoib_dataplane::provider::rocev2::Rocev2Provider,
    b: &mut ipoib_dataplane::provider::rocev2::Rocev2Provider,
    ah: Rocev2Ah,
    cache: &mut ipoib_dataplane::mem::LcoreCache,
    rounds: usize,
) -> usize {
    let mut wrs: Burst<SendWr<Rocev2Ah>> = Burst::new();
    let mut out: Burst<RecvCompletion> = Burst::new();
    let mut delivered = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    for _ in 0..rounds {
        while !wrs.is_full() {
            let Some(mut m) = cache.alloc() else { break };
            if let Some(d) = m.append(64) {
                d.fill(7);
            }
            wrs.push(SendWr {
                mbuf: m,
                ah,
                remote_qpn: b.config().qpn,
                remote_qkey: QKEY,
            });
        }
        while !wrs.is_empty() && Instant::now() < deadline {
            a.post_send(&mut wrs);
        }
        let want = delivered + 32;
        while delivered < want && Instant::now() < deadline {
            b.poll_recv(&mut out);
            for c in out.drain(..) {
                delivered += 1;
                cache.free(c.mbuf);
            }
        }
    }
    delivered
}

#[test]
fn steady_state_send_and_receive_allocate_nothing() {
    let port = free_port("127.0.9.1");
    let mut a = provider("127.0.9.1", 0x81, port, false);
    let mut b = provider("127.0.9.2", 0x82, port, false);
    let ah = ah_to(&mut a, ip("127.0.9.2"));
    let mut cache = cache();
    assert_eq!(exchange(&mut a, &mut b, ah, &mut cache, 20), 20 * 32);

    COUNTING.with(|c| c.set(true));
    let delivered = exchange(&mut a, &mut b, ah, &mut cache, 200);
    COUNTING.with(|c| c.set(false));
    assert_eq!(delivered, 200 * 32, "b: {:?}", b.counters);
    assert_eq!(COUNT.with(Cell::get), 0, "allocations in the steady state");

    // The counter works: an allocation on this thread is seen.
    COUNTING.with(|c| c.set(true));
    let v = std::hint::black_box(vec![1u8; 10]);
    COUNTING.with(|c| c.set(false));
    drop(v);
    assert!(COUNT.with(Cell::get) > 0);
}

#[test]
fn gso_sends_and_gro_receives_allocate_nothing_either() {
    use ipoib_dataplane::provider::rocev2::{Rocev2Config, Rocev2Provider};
    let port = free_port("127.0.9.3");
    let qp = |local: &str, qpn: u32| {
        let cfg = Rocev2Config {
            port,
            multicast: false,
            gso: true,
            gro: true,
            ..Rocev2Config::new(ip(local), qpn)
        };
        Rocev2Provider::new(cfg, cache()).expect("rocev2 QP")
    };
    let mut a = qp("127.0.9.3", 0x83);
    let mut b = qp("127.0.9.4", 0x84);
    let ah = ah_to(&mut a, ip("127.0.9.4"));
    let mut cache = cache();
    assert_eq!(exchange(&mut a, &mut b, ah, &mut cache, 20), 20 * 32);

    COUNTING.with(|c| c.set(true));
    let delivered = exchange(&mut a, &mut b, ah, &mut cache, 200);
    COUNTING.with(|c| c.set(false));
    assert_eq!(delivered, 200 * 32, "b: {:?}", b.counters);
    assert_eq!(COUNT.with(Cell::get), 0, "allocations in the steady state");
    assert!(b.counters.rx_gro_buffers > 0, "b: {:?}", b.counters);
}
