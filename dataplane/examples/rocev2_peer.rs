//! A small rocev2 peer for multi-host tests and a loopback throughput figure.
//!
//! ```text
//! rocev2_peer recv  --local IP --qpn N [--port P] [--join GROUP]... --count N [--secs S]
//! rocev2_peer send  --local IP --qpn N [--port P] --to IP --to-qpn N --count N [--size B] [--gso 1]
//! rocev2_peer bench --local IP --peer IP [--port P] [--size B] [--secs S] [--gso 1]
//! rocev2_peer blast --local IP --qpn N --to IP --to-qpn N [--size B] [--secs S] [--gso 1]
//! rocev2_peer sink  --local IP --qpn N [--secs S] [--gro 1]
//! ```
//!
//! `recv` prints `received N multicast M drops D` and exits 0 once `--count`
//! messages arrived (1 when `--secs` pass first). `send` sends `--count`
//! messages (to a group when `--to` is one). `bench` runs a sender and a
//! receiver QP on two threads and prints the delivered rate. `blast` sends
//! for `--secs` seconds in bursts of 512; `sink` waits for the first message,
//! skips a quarter second of warm-up and counts the messages delivered (each
//! ICRC checked) in the next `--secs` seconds: `delivered N in T s = X Mpps`.

use arrayvec::ArrayVec;
use ipoib_dataplane::mem::{HugepageMode, LcoreCache, Mempool, MempoolConfig};
use ipoib_dataplane::provider::rocev2::{addr, Rocev2Ah, Rocev2Config, Rocev2Provider};
use ipoib_dataplane::provider::{AhAttr, Burst, Provider, RecvCompletion, SendWr};
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const QKEY: u32 = 0x0B1B;

struct Args {
    mode: String,
    local: Option<IpAddr>,
    peer: Option<IpAddr>,
    to: Option<IpAddr>,
    joins: Vec<IpAddr>,
    qpn: u32,
    to_qpn: u32,
    port: u16,
    count: u64,
    size: usize,
    secs: f64,
    gso: bool,
    gro: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it
        .next()
        .ok_or("usage: rocev2_peer recv|send|bench [options]")?;
    let mut a = Args {
        mode,
        local: None,
        peer: None,
        to: None,
        joins: Vec::new(),
        qpn: 0x100,
        to_qpn: 0x100,
        port: 4791,
        count: 100,
        size: 64,
        secs: 10.0,
        gso: false,
        gro: false,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = format!("bad value for {flag}: {value}");
        match flag.as_str() {
            "--local" => a.local = Some(value.parse().map_err(|_| bad.clone())?),
            "--peer" => a.peer = Some(value.parse().map_err(|_| bad.clone())?),
            "--to" => a.to = Some(value.parse().map_err(|_| bad.clone())?),
            "--join" => a.joins.push(value.parse().map_err(|_| bad.clone())?),
            "--qpn" => a.qpn = parse_u32(&value).ok_or_else(|| bad.clone())?,
            "--to-qpn" => a.to_qpn = parse_u32(&value).ok_or_else(|| bad.clone())?,
            "--port" => a.port = value.parse().map_err(|_| bad.clone())?,
            "--count" => a.count = value.parse().map_err(|_| bad.clone())?,
            "--size" => a.size = value.parse().map_err(|_| bad.clone())?,
            "--secs" => a.secs = value.parse().map_err(|_| bad.clone())?,
            "--gso" => a.gso = value == "1" || value == "on",
            "--gro" => a.gro = value == "1" || value == "on",
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(a)
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn pool() -> Result<&'static Mempool, String> {
    Mempool::new(MempoolConfig {
        name: "rocev2-peer".into(),
        count: 8192,
        buf_size: 2304,
        hugepages: HugepageMode::Off,
    })
    .map_err(|e| e.to_string())
}

fn open(
    local: IpAddr,
    qpn: u32,
    port: u16,
    gso: bool,
    pool: &'static Mempool,
) -> Result<Rocev2Provider, String> {
    open_with(local, qpn, port, gso, false, pool)
}

fn open_with(
    local: IpAddr,
    qpn: u32,
    port: u16,
    gso: bool,
    gro: bool,
    pool: &'static Mempool,
) -> Result<Rocev2Provider, String> {
    let cfg = Rocev2Config {
        port,
        gso,
        gro,
        ..Rocev2Config::new(local, qpn)
    };
    // A cache that holds a whole blast burst.
    Rocev2Provider::new(cfg, pool.cache(1024)).map_err(|e| format!("rocev2 QP at {local}: {e}"))
}

fn ah(p: &mut Rocev2Provider, dst: IpAddr) -> Result<Rocev2Ah, String> {
    p.create_ah(&AhAttr {
        dlid: 0,
        dgid: Some(addr::gid_of(dst)),
        sl: 0,
    })
    .map_err(|e| e.to_string())
}

/// Sends `count` messages of `size` bytes; stops early when `stop` is set.
fn send(
    p: &mut Rocev2Provider,
    cache: &mut LcoreCache,
    ah: Rocev2Ah,
    to_qpn: u32,
    count: u64,
    size: usize,
    stop: &AtomicBool,
) -> u64 {
    let mut wrs: Burst<SendWr<Rocev2Ah>> = Burst::new();
    let mut made = 0;
    let mut sent = 0;
    while sent < count && !stop.load(Ordering::Relaxed) {
        while !wrs.is_full() && made < count {
            let Some(mut m) = cache.alloc() else { break };
            let Some(data) = m.append(size) else {
                cache.free(m);
                break;
            };
            data.fill(made as u8);
            wrs.push(SendWr {
                mbuf: m,
                ah,
                remote_qpn: to_qpn,
                remote_qkey: QKEY,
            });
            made += 1;
        }
        sent += p.post_send(&mut wrs) as u64;
    }
    for wr in wrs.drain(..) {
        cache.free(wr.mbuf);
    }
    sent
}

/// Receives until `count` messages or the deadline; returns (messages, multicast).
fn recv(p: &mut Rocev2Provider, count: u64, deadline: Instant) -> (u64, u64) {
    let mut out: Burst<RecvCompletion> = Burst::new();
    let (mut n, mut mc) = (0, 0);
    while n < count && Instant::now() < deadline {
        if p.poll_recv(&mut out) == 0 {
            std::hint::spin_loop();
        }
        for c in out.drain(..) {
            n += 1;
            mc += u64::from(c.multicast && !p.is_own(&c));
            drop(c.mbuf);
        }
    }
    (n, mc)
}

/// Messages `blast` offers per call: eight GSO runs of 64, sent with one
/// `sendmmsg`, as `udp_blaster` sends them.
const BLAST_BURST: usize = 512;

/// Sends `size`-byte messages in bursts of `BLAST_BURST` until `deadline`;
/// returns how many.
fn blast(p: &mut Rocev2Provider, ah: Rocev2Ah, to_qpn: u32, size: usize, deadline: Instant) -> u64 {
    let mut wrs: ArrayVec<SendWr<Rocev2Ah>, BLAST_BURST> = ArrayVec::new();
    let mut sent = 0;
    while Instant::now() < deadline {
        while !wrs.is_full() {
            let Some(mut m) = p.alloc() else { break };
            if m.append(size).is_none() {
                p.recycle(m);
                break;
            }
            wrs.push(SendWr {
                mbuf: m,
                ah,
                remote_qpn: to_qpn,
                remote_qkey: QKEY,
            });
        }
        sent += p.post_send(&mut wrs) as u64;
    }
    for wr in wrs.drain(..) {
        p.recycle(wr.mbuf);
    }
    sent
}

/// Waits for the first message, then counts deliveries during `secs`
/// seconds after a quarter second of warm-up.
fn sink(p: &mut Rocev2Provider, secs: f64) -> Result<u64, String> {
    let mut out: ArrayVec<RecvCompletion, 64> = ArrayVec::new();
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut window = None;
    let mut n = 0;
    loop {
        let got = p.poll_recv(&mut out);
        let now = Instant::now();
        if got > 0 && window.is_none() {
            let from = now + Duration::from_millis(250);
            window = Some((from, from + Duration::from_secs_f64(secs)));
        }
        match window {
            None if now > give_up => return Err("nothing arrived".into()),
            Some((_, to)) if now >= to => return Ok(n),
            Some((from, _)) if now >= from => n += got as u64,
            _ => {}
        }
        for c in out.drain(..) {
            p.recycle(c.mbuf);
        }
    }
}

fn run(a: Args) -> Result<bool, String> {
    let local = a.local.ok_or("--local is required")?;
    let pool = pool()?;
    let deadline = Instant::now() + Duration::from_secs_f64(a.secs);
    match a.mode.as_str() {
        "recv" => {
            let mut p = open(local, a.qpn, a.port, a.gso, pool)?;
            let socket = p.mcast_socket();
            for g in &a.joins {
                let s = socket.as_ref().ok_or("no multicast socket")?;
                s.join(*g).map_err(|e| format!("join {g}: {e}"))?;
            }
            println!("ready");
            let (n, mc) = recv(&mut p, a.count, deadline);
            println!(
                "received {n} multicast {mc} drops {} bad_icrc {}",
                p.counters.rx_drops(),
                p.counters.rx_bad_icrc
            );
            Ok(n >= a.count)
        }
        "send" => {
            let to = a.to.ok_or("--to is required")?;
            let mut p = open(local, a.qpn, a.port, a.gso, pool)?;
            let ah = ah(&mut p, to)?;
            let mut cache = pool.cache(256);
            let stop = AtomicBool::new(false);
            let sent = send(&mut p, &mut cache, ah, a.to_qpn, a.count, a.size, &stop);
            println!("sent {sent} errors {}", p.counters.tx_errors);
            Ok(sent == a.count)
        }
        "bench" => {
            let peer = a.peer.ok_or("--peer is required")?;
            let mut tx = open(local, 0x201, a.port, a.gso, pool)?;
            let mut rx = open(peer, 0x202, a.port, false, pool)?;
            let ah = ah(&mut tx, peer)?;
            let stop = Arc::new(AtomicBool::new(false));
            let stop_tx = Arc::clone(&stop);
            let size = a.size;
            let sender = std::thread::spawn(move || {
                let mut cache = pool.cache(256);
                send(&mut tx, &mut cache, ah, 0x202, u64::MAX, size, &stop_tx)
            });
            let start = Instant::now();
            let (n, _) = recv(&mut rx, u64::MAX, deadline);
            let secs = start.elapsed().as_secs_f64();
            stop.store(true, Ordering::Relaxed);
            let sent = sender.join().map_err(|_| "sender panicked")?;
            let mpps = n as f64 / secs / 1e6;
            println!(
                "rocev2 loopback, {size}-byte messages, bursts of 32{}: sent {sent} delivered {n} in {secs:.2} s = {mpps:.3} Mpps ({:.2} Gb/s of payload), drops {}",
                if a.gso { ", UDP GSO" } else { "" },
                mpps * 1e6 * size as f64 * 8.0 / 1e9,
                rx.counters.rx_drops()
            );
            Ok(n > 0)
        }
        "blast" => {
            let to = a.to.ok_or("--to is required")?;
            let mut p = open(local, a.qpn, a.port, a.gso, pool)?;
            let ah = ah(&mut p, to)?;
            let sent = blast(&mut p, ah, a.to_qpn, a.size, deadline);
            println!(
                "sent {sent} errors {} gso_sends {} full {}",
                p.counters.tx_errors, p.counters.tx_gso_sends, p.counters.tx_full
            );
            Ok(sent > 0)
        }
        "sink" => {
            let mut p = open_with(local, a.qpn, a.port, false, a.gro, pool)?;
            p.set_recv_buffer(32 << 20).map_err(|e| e.to_string())?;
            println!("ready");
            let n = sink(&mut p, a.secs)?;
            let mpps = n as f64 / a.secs / 1e6;
            println!(
                "delivered {n} in {:.2} s = {mpps:.3} Mpps, bad_icrc {} drops {} gro_buffers {}",
                a.secs,
                p.counters.rx_bad_icrc,
                p.counters.rx_drops(),
                p.counters.rx_gro_buffers
            );
            Ok(n > 0)
        }
        other => Err(format!(
            "unknown mode {other} (recv, send, bench, blast, sink)"
        )),
    }
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("rocev2_peer: {e}");
            ExitCode::from(2)
        }
    }
}
