//! A peer for Linux kernel rxe (soft-RoCE) made of the rocev2 provider: it
//! speaks to `ibv_ud_pingpong` and rdma_cm's `mckey` on a real rxe device.
//!
//! ```text
//! rxe_peer ud-server   --local IP [--iters N] [--size B] [--qpn N] [--secs S]
//! rxe_peer ud-client   --local IP --server IP [--iters N] [--size B] [--qpn N] [--secs S]
//! rxe_peer mckey-recv  --local IP --group G [--count N] [--size B] [--qpn N] [--secs S]
//! rxe_peer mckey-send  --local IP --group G [--count N] [--size B] [--qpn N] [--secs S]
//!                      [--interval S] [--until-file FILE --until-text TEXT] [--gso 1]
//! ```
//!
//! `ud-server` / `ud-client` are the two sides of `ibv_ud_pingpong`: the
//! out-of-band exchange on TCP port 18515 (the client sends its 52-byte
//! `LLLL:QQQQQQ:PPPPPP:GID` message, the server answers with its own, the
//! client sends `done`), then `--iters` UD messages of `--size` bytes each
//! way with Q_Key 0x11111111, the client first, each side answering every
//! message it receives. `mckey-recv` joins `--group` (IGMP) and receives
//! (with UDP GRO on) `--count` messages to destination QPN 0xFFFFFF with
//! rdma_cm's Q_Key 0x01234567; `mckey-send` sends `--count` such messages (opcode 0x65, the
//! immediate data is its QPN, as `mckey` does) every `--interval` seconds
//! until `--until-file` contains `--until-text` (a guest's console log) or
//! `--secs` pass; with `--gso 1` each round leaves as one UDP GSO send, which
//! the receiver sees as ordinary datagrams. Each prints one result line; exit 0 on success, 1 on a
//! failed exchange, 2 on bad usage.

use ipoib_dataplane::mem::{HugepageMode, LcoreCache, Mempool, MempoolConfig};
use ipoib_dataplane::provider::rocev2::{addr, Rocev2Ah, Rocev2Config, Rocev2Provider};
use ipoib_dataplane::provider::{AhAttr, Burst, Provider, RecvCompletion, SendWr, MCAST_QPN};
use ipoib_dataplane::wire::Gid;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// `ibv_ud_pingpong`'s Q_Key and out-of-band TCP port.
const PINGPONG_QKEY: u32 = 0x1111_1111;
const OOB_PORT: u16 = 18515;
/// The Q_Key rdma_cm gives UD QPs and multicast groups (RDMA_UDP_QKEY).
const RDMA_CM_QKEY: u32 = 0x0123_4567;
/// The out-of-band message: "LLLL:QQQQQQ:PPPPPP:" + 32 hex digits + NUL.
const OOB_LEN: usize = 52;
/// rxe's active MTU in the guests (the largest UD message).
const RXE_MTU: u16 = 1024;

struct Args {
    mode: String,
    local: Option<IpAddr>,
    server: Option<IpAddr>,
    group: Option<IpAddr>,
    qpn: u32,
    iters: u64,
    count: u64,
    size: usize,
    secs: f64,
    interval: f64,
    until_file: Option<String>,
    until_text: Option<String>,
    gso: bool,
}

const USAGE: &str =
    "usage: rxe_peer ud-server|ud-client|mckey-recv|mckey-send --local IP [options]";

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it.next().ok_or(USAGE)?;
    let mut a = Args {
        mode,
        local: None,
        server: None,
        group: None,
        qpn: 0x100,
        iters: 20,
        count: 10,
        size: 0,
        secs: 120.0,
        interval: 0.2,
        until_file: None,
        until_text: None,
        gso: false,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = || format!("bad value for {flag}: {value}");
        match flag.as_str() {
            "--local" => a.local = Some(value.parse().map_err(|_| bad())?),
            "--server" => a.server = Some(value.parse().map_err(|_| bad())?),
            "--group" => a.group = Some(value.parse().map_err(|_| bad())?),
            "--qpn" => a.qpn = parse_u32(&value).ok_or_else(bad)?,
            "--iters" => a.iters = value.parse().map_err(|_| bad())?,
            "--count" => a.count = value.parse().map_err(|_| bad())?,
            "--size" => a.size = value.parse().map_err(|_| bad())?,
            "--secs" => a.secs = value.parse().map_err(|_| bad())?,
            "--interval" => a.interval = value.parse().map_err(|_| bad())?,
            "--until-file" => a.until_file = Some(value),
            "--until-text" => a.until_text = Some(value),
            "--gso" => a.gso = value == "1" || value == "on",
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if !(a.secs.is_finite() && a.secs > 0.0 && a.interval.is_finite() && a.interval >= 0.0) {
        return Err("--secs must be above 0 and --interval at least 0".into());
    }
    if a.qpn == 0 || a.qpn >= MCAST_QPN {
        return Err(format!("--qpn must be in 1..{MCAST_QPN:#x}"));
    }
    Ok(a)
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// One side's out-of-band message, as `ibv_ud_pingpong` reads and writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dest {
    lid: u16,
    qpn: u32,
    psn: u32,
    gid: Gid,
}

impl Dest {
    fn encode(&self) -> [u8; OOB_LEN] {
        let gid: String = self.gid.0.iter().map(|b| format!("{b:02x}")).collect();
        let text = format!("{:04x}:{:06x}:{:06x}:{gid}", self.lid, self.qpn, self.psn);
        let mut msg = [0u8; OOB_LEN];
        msg[..OOB_LEN - 1].copy_from_slice(text.as_bytes());
        msg
    }

    fn decode(msg: &[u8; OOB_LEN]) -> Result<Dest, String> {
        let bad = || format!("bad out-of-band message {:?}", String::from_utf8_lossy(msg));
        let text = std::str::from_utf8(&msg[..OOB_LEN - 1]).map_err(|_| bad())?;
        if msg[OOB_LEN - 1] != 0 {
            return Err(bad());
        }
        let mut parts = text.split(':');
        let mut field = |digits: usize| {
            parts
                .next()
                .filter(|p| p.len() == digits && p.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(bad)
        };
        let lid = u16::from_str_radix(field(4)?, 16).map_err(|_| bad())?;
        let qpn = u32::from_str_radix(field(6)?, 16).map_err(|_| bad())?;
        let psn = u32::from_str_radix(field(6)?, 16).map_err(|_| bad())?;
        let hex = field(32)?;
        let mut gid = [0u8; 16];
        for (i, b) in gid.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Dest {
            lid,
            qpn,
            psn,
            gid: Gid(gid),
        })
    }
}

fn read_exact_by(s: &mut TcpStream, buf: &mut [u8], what: &str) -> Result<(), String> {
    s.read_exact(buf)
        .map_err(|e| format!("out-of-band {what}: {e}"))
}

fn pool() -> Result<&'static Mempool, String> {
    Mempool::new(MempoolConfig {
        name: "rxe-peer".into(),
        count: 2048,
        buf_size: 2304,
        hugepages: HugepageMode::Off,
    })
    .map_err(|e| e.to_string())
}

fn open(
    local: IpAddr,
    qpn: u32,
    qkey: u32,
    multicast: bool,
    gso: bool,
    pool: &'static Mempool,
) -> Result<Rocev2Provider, String> {
    let cfg = Rocev2Config {
        qkey,
        gso,
        max_msg: RXE_MTU,
        multicast,
        multicast_loop: false,
        ..Rocev2Config::new(local, qpn)
    };
    Rocev2Provider::new(cfg, pool.cache(64)).map_err(|e| format!("rocev2 QP at {local}: {e}"))
}

fn ah(p: &mut Rocev2Provider, dgid: Gid) -> Result<Rocev2Ah, String> {
    p.create_ah(&AhAttr {
        dlid: 0,
        dgid: Some(dgid),
        sl: 0,
    })
    .map_err(|e| e.to_string())
}

/// Sends `count` messages of `size` bytes whose first byte is 0 (what
/// `ibv_ud_pingpong -c` checks), with `imm` as SEND_ONLY_WITH_IMMEDIATE.
#[allow(clippy::too_many_arguments)]
fn send(
    p: &mut Rocev2Provider,
    cache: &mut LcoreCache,
    ah: Rocev2Ah,
    qpn: u32,
    qkey: u32,
    size: usize,
    count: u64,
    imm: Option<u32>,
    fill: u8,
) -> Result<(), String> {
    let mut wrs: Burst<SendWr<Rocev2Ah>> = Burst::new();
    let mut made = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while made < count || !wrs.is_empty() {
        while !wrs.is_full() && made < count {
            let mut m = cache.alloc().ok_or("no buffer")?;
            let data = m.append(size).ok_or("message too large for a buffer")?;
            data.fill(fill);
            if let Some(first) = data.first_mut() {
                *first = 0;
            }
            wrs.push(SendWr {
                mbuf: m,
                ah,
                remote_qpn: qpn,
                remote_qkey: qkey,
            });
            made += 1;
        }
        let errors = p.counters.tx_errors;
        match imm {
            Some(imm) => p.post_send_imm(&mut wrs, imm),
            None => p.post_send(&mut wrs),
        };
        if p.counters.tx_errors != errors {
            return Err(format!("the kernel refused a send ({:?})", p.counters));
        }
        if Instant::now() > deadline {
            return Err("sends did not drain".into());
        }
    }
    Ok(())
}

/// A message that arrived, as far as the checks need it.
struct Got {
    len: usize,
    src_qpn: u32,
    sgid: Option<Gid>,
    dgid: Option<Gid>,
    multicast: bool,
    imm: Option<u32>,
}

/// Polls until a message arrives or the deadline passes.
fn recv_one(p: &mut Rocev2Provider, cache: &mut LcoreCache, deadline: Instant) -> Option<Got> {
    let mut out: ArrayBurst<RecvCompletion> = ArrayBurst::new();
    let mut imms: ArrayBurst<Option<u32>> = ArrayBurst::new();
    while Instant::now() < deadline {
        if p.poll_recv_imm(&mut out, &mut imms) == 0 {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let c = out.remove(0);
        let got = Got {
            len: c.mbuf.len(),
            src_qpn: c.src_qpn,
            sgid: c.sgid(),
            dgid: c.dgid(),
            multicast: c.multicast,
            imm: imms.remove(0),
        };
        cache.free(c.mbuf);
        return Some(got);
    }
    None
}

/// One message at a time: a peer that answers each message keeps at most one in flight.
type ArrayBurst<T> = arrayvec::ArrayVec<T, 1>;

fn ud_server(a: &Args, local: IpAddr, deadline: Instant) -> Result<String, String> {
    let listener = TcpListener::bind(SocketAddr::new(local, OOB_PORT))
        .map_err(|e| format!("listen on {local}:{OOB_PORT}: {e}"))?;
    println!("listening on {local}:{OOB_PORT}");
    let (mut s, from) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut msg = [0u8; OOB_LEN];
    read_exact_by(&mut s, &mut msg, "read")?;
    let remote = Dest::decode(&msg)?;
    let pool = pool()?;
    let mut p = open(local, a.qpn, PINGPONG_QKEY, false, false, pool)?;
    p.set_psn(0x2468ac);
    let me = Dest {
        lid: 0,
        qpn: a.qpn,
        psn: p.next_psn(),
        gid: addr::gid_of(local),
    };
    // The QP is open before the client learns of it: its first message finds us.
    s.write_all(&me.encode())
        .map_err(|e| format!("out-of-band write: {e}"))?;
    let mut done = [0u8; 5];
    read_exact_by(&mut s, &mut done, "done")?;
    if &done != b"done\0" {
        return Err(format!("expected done, got {done:?}"));
    }
    let to = ah(&mut p, remote.gid)?;
    let mut cache = pool.cache(64);
    for i in 0..a.iters {
        let got = recv_one(&mut p, &mut cache, deadline)
            .ok_or(format!("no message {i} from the client ({:?})", p.counters))?;
        check_pingpong(&got, &remote, a.size, i)?;
        send(
            &mut p,
            &mut cache,
            to,
            remote.qpn,
            PINGPONG_QKEY,
            a.size,
            1,
            None,
            i as u8,
        )?;
    }
    Ok(format!(
        "ud-server: {} x {} bytes each way with {} (QPN {:#x}, GID {}), rx drops {}, rx non-zero IPv4 IDs {}",
        a.iters,
        a.size,
        from.ip(),
        remote.qpn,
        Ipv6Addr::from(remote.gid.0),
        p.counters.rx_drops(),
        p.counters.rx_nonzero_ip_id
    ))
}

fn ud_client(a: &Args, local: IpAddr, deadline: Instant) -> Result<String, String> {
    let server = a.server.ok_or("--server is required")?;
    let pool = pool()?;
    let mut p = open(local, a.qpn, PINGPONG_QKEY, false, false, pool)?;
    p.set_psn(0x13579b);
    let mut s = loop {
        match TcpStream::connect_timeout(&SocketAddr::new(server, OOB_PORT), Duration::from_secs(2))
        {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => {
                return Err(format!("{server}:{OOB_PORT} never accepted: {e}"))
            }
            // The server may still be booting.
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let me = Dest {
        lid: 0,
        qpn: a.qpn,
        psn: p.next_psn(),
        gid: addr::gid_of(local),
    };
    s.write_all(&me.encode())
        .map_err(|e| format!("out-of-band write: {e}"))?;
    let mut msg = [0u8; OOB_LEN];
    read_exact_by(&mut s, &mut msg, "read")?;
    let remote = Dest::decode(&msg)?;
    s.write_all(b"done\0")
        .map_err(|e| format!("out-of-band done: {e}"))?;
    let to = ah(&mut p, remote.gid)?;
    let mut cache = pool.cache(64);
    let start = Instant::now();
    for i in 0..a.iters {
        send(
            &mut p,
            &mut cache,
            to,
            remote.qpn,
            PINGPONG_QKEY,
            a.size,
            1,
            None,
            i as u8,
        )?;
        let got = recv_one(&mut p, &mut cache, deadline)
            .ok_or(format!("no answer to message {i} ({:?})", p.counters))?;
        check_pingpong(&got, &remote, a.size, i)?;
    }
    let usec = start.elapsed().as_secs_f64() * 1e6 / a.iters.max(1) as f64;
    Ok(format!(
        "ud-client: {} x {} bytes each way with {server} (QPN {:#x}), {usec:.0} usec/iter, rx drops {}, rx non-zero IPv4 IDs {}",
        a.iters,
        a.size,
        remote.qpn,
        p.counters.rx_drops(),
        p.counters.rx_nonzero_ip_id
    ))
}

fn check_pingpong(got: &Got, remote: &Dest, size: usize, i: u64) -> Result<(), String> {
    if got.src_qpn != remote.qpn || got.sgid != Some(remote.gid) || got.len != size || got.multicast
    {
        return Err(format!(
            "message {i}: {} bytes from QPN {:#x} GID {:?}, expected {size} from {:#x} {:?}",
            got.len, got.src_qpn, got.sgid, remote.qpn, remote.gid
        ));
    }
    Ok(())
}

fn mckey_recv(a: &Args, local: IpAddr, deadline: Instant) -> Result<String, String> {
    let group = a.group.ok_or("--group is required")?;
    let pool = pool()?;
    let mut p = open(local, a.qpn, RDMA_CM_QKEY, true, true, pool)?;
    let socket = p.mcast_socket().ok_or("no multicast socket")?;
    socket
        .join(group)
        .map_err(|e| format!("join {group}: {e}"))?;
    println!("ready: joined {group}");
    let mut cache = pool.cache(64);
    let (mut n, mut with_imm) = (0u64, 0u64);
    let mut from = None;
    while n < a.count {
        let got = recv_one(&mut p, &mut cache, deadline).ok_or(format!(
            "received {n} of {} messages to {group} ({:?})",
            a.count, p.counters
        ))?;
        if !got.multicast || got.dgid != Some(addr::gid_of(group)) {
            return Err(format!("a message not to {group}: {:?}", got.dgid));
        }
        if a.size != 0 && got.len != a.size {
            return Err(format!("a {}-byte message, expected {}", got.len, a.size));
        }
        // mckey sends its own QPN as the immediate data.
        if got.imm == Some(got.src_qpn) {
            with_imm += 1;
        }
        from = got.sgid.map(|g| (addr::ip_of(g), got.src_qpn));
        n += 1;
    }
    let (ip, qpn) = from.ok_or("nothing received")?;
    Ok(format!(
        "mckey-recv: received {n} messages to {group} from {ip} QPN {qpn:#x}, {with_imm} with the sender's QPN as immediate data, rx drops {}, rx non-zero IPv4 IDs {}",
        p.counters.rx_drops(),
        p.counters.rx_nonzero_ip_id
    ))
}

fn mckey_send(a: &Args, local: IpAddr, deadline: Instant) -> Result<String, String> {
    let group = a.group.ok_or("--group is required")?;
    let pool = pool()?;
    let mut p = open(local, a.qpn, RDMA_CM_QKEY, false, a.gso, pool)?;
    let to = ah(&mut p, addr::gid_of(group))?;
    if !to.multicast {
        return Err(format!("{group} is not a multicast group"));
    }
    let mut cache = pool.cache(64);
    let size = if a.size == 0 { 100 } else { a.size };
    let stop = || match (&a.until_file, &a.until_text) {
        (Some(f), Some(t)) => std::fs::read(f)
            .map(|b| b.windows(t.len()).any(|w| w == t.as_bytes()))
            .unwrap_or(false),
        _ => false,
    };
    let mut rounds = 0u64;
    let mut stopped = false;
    while Instant::now() < deadline {
        if stop() {
            stopped = true;
            break;
        }
        send(
            &mut p,
            &mut cache,
            to,
            MCAST_QPN,
            RDMA_CM_QKEY,
            size,
            a.count,
            Some(a.qpn),
            rounds as u8,
        )?;
        rounds += 1;
        std::thread::sleep(Duration::from_secs_f64(a.interval));
    }
    let line = format!(
        "mckey-send: sent {} messages of {size} bytes to {group} (opcode 0x65, immediate {:#x}) in {rounds} rounds, {} UDP GSO sends",
        p.counters.tx_packets, a.qpn, p.counters.tx_gso_sends
    );
    if a.until_file.is_some() && !stopped {
        return Err(format!("{line}; the stop text never appeared"));
    }
    Ok(line)
}

fn run(a: Args) -> Result<String, String> {
    let local = a.local.ok_or("--local is required")?;
    let deadline = Instant::now() + Duration::from_secs_f64(a.secs);
    let mut a = a;
    match a.mode.as_str() {
        "ud-server" | "ud-client" => {
            if a.size == 0 {
                a.size = 512;
            }
            if a.size > usize::from(RXE_MTU) {
                return Err(format!("--size above the rxe MTU {RXE_MTU}"));
            }
            if a.mode == "ud-server" {
                ud_server(&a, local, deadline)
            } else {
                ud_client(&a, local, deadline)
            }
        }
        "mckey-recv" => mckey_recv(&a, local, deadline),
        "mckey-send" => mckey_send(&a, local, deadline),
        other => Err(format!("unknown mode {other}\n{USAGE}")),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rxe_peer: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rxe_peer: {e}");
            ExitCode::from(1)
        }
    }
}
