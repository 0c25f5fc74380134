//! The kernel's UDP ceiling: a minimal blaster with UDP GSO sends and a sink
//! with UDP GRO receives, no RoCE processing at all. The rocev2 benchmark
//! compares the provider's delivered rate with this.
//!
//! ```text
//! udp_blaster send --from IP --to IP:PORT --size B --secs S
//! udp_blaster recv --bind IP:PORT --size B --secs S
//! ```
//!
//! `send` sends `--size`-byte datagrams for `--secs` seconds, up to 64 per GSO
//! send, 8 sends per `sendmmsg`. `recv` waits for the first datagram, skips
//! a quarter second of warm-up, counts the datagrams delivered in the next
//! `--secs` seconds (a GRO buffer of L bytes with segment size G holds
//! ceil(L / G)) and prints `delivered N in T s = X Mpps`.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const SEGMENTS: usize = 64;
const MSGS: usize = 8;
const BUF: usize = 65_536;
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;

fn setopt(s: &UdpSocket, level: libc::c_int, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: `v` is a live c_int and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn send(from: IpAddr, to: SocketAddr, size: usize, secs: f64) -> io::Result<String> {
    // At most 64 segments and 64 KiB per GSO send.
    if size == 0 || size > 9000 {
        return Err(io::Error::other("--size must be in 1..=9000"));
    }
    let segments = (65_000 / size).clamp(1, SEGMENTS);
    let s = UdpSocket::bind((from, 0))?;
    s.connect(to)?;
    setopt(&s, libc::SOL_UDP, UDP_SEGMENT, size as libc::c_int)?;
    let data = vec![0x5au8; size * segments];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: mmsghdr is plain old data; all zeroes is valid.
    let mut msgs: [libc::mmsghdr; MSGS] = unsafe { std::mem::zeroed() };
    for m in msgs.iter_mut() {
        m.msg_hdr.msg_iov = &mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    while Instant::now() < end {
        // SAFETY: the messages point at `iov` and `data`, alive for the call.
        let rc = unsafe { libc::sendmmsg(s.as_raw_fd(), msgs.as_mut_ptr(), MSGS as u32, 0) };
        if rc > 0 {
            sent += rc as u64 * segments as u64;
        }
    }
    Ok(format!("sent {sent}"))
}

fn recv(bind: SocketAddr, secs: f64) -> io::Result<String> {
    let s = UdpSocket::bind(bind)?;
    setopt(&s, libc::SOL_UDP, UDP_GRO, 1)?;
    setopt(&s, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 32 << 20).ok();
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    println!("ready");
    let mut bufs = vec![0u8; BUF * MSGS];
    let mut iovs: Vec<libc::iovec> = bufs
        .chunks_mut(BUF)
        .map(|c| libc::iovec {
            iov_base: c.as_mut_ptr().cast(),
            iov_len: BUF,
        })
        .collect();
    let mut cmsgs = [[0u64; 8]; MSGS];
    // SAFETY: mmsghdr is plain old data; all zeroes is valid.
    let mut msgs: [libc::mmsghdr; MSGS] = unsafe { std::mem::zeroed() };
    let wait_until = Instant::now() + Duration::from_secs(10);
    let mut first = None;
    let mut count = 0u64;
    let mut window = None;
    loop {
        for (i, m) in msgs.iter_mut().enumerate() {
            m.msg_hdr.msg_iov = &mut iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_control = cmsgs[i].as_mut_ptr().cast();
            m.msg_hdr.msg_controllen = size_of::<[u64; 8]>();
        }
        // SAFETY: the messages point at live buffers and control slots.
        let rc = unsafe {
            libc::recvmmsg(
                s.as_raw_fd(),
                msgs.as_mut_ptr(),
                MSGS as u32,
                0,
                std::ptr::null_mut(),
            )
        };
        let now = Instant::now();
        if rc > 0 && first.is_none() {
            first = Some(now);
            window = Some((
                now + Duration::from_millis(250),
                now + Duration::from_secs_f64(0.25 + secs),
            ));
        }
        let Some((from, to)) = window else {
            if now > wait_until {
                return Err(io::Error::other("nothing arrived"));
            }
            continue;
        };
        if now >= to {
            break;
        }
        if rc > 0 && now >= from {
            for m in &msgs[..rc as usize] {
                let len = m.msg_len as usize;
                let seg = gro_size(&m.msg_hdr).unwrap_or(len).max(1);
                count += len.div_ceil(seg) as u64;
            }
        }
    }
    let mpps = count as f64 / secs / 1e6;
    Ok(format!("delivered {count} in {secs:.2} s = {mpps:.3} Mpps"))
}

fn gro_size(hdr: &libc::msghdr) -> Option<usize> {
    // SAFETY: the CMSG_* helpers stay inside the control buffer the kernel
    // filled; the payload is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let v: libc::c_int = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return usize::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    None
}

fn run() -> Result<String, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args
        .first()
        .ok_or("usage: udp_blaster send|recv [options]")?;
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .ok_or(format!("{name} is required"))
    };
    let size: usize = get("--size")?.parse().map_err(|_| "bad --size")?;
    let secs: f64 = get("--secs")?.parse().map_err(|_| "bad --secs")?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err("--secs must be above 0".into());
    }
    match mode.as_str() {
        "send" => {
            let from: IpAddr = get("--from")?.parse().map_err(|_| "bad --from")?;
            let to: SocketAddr = get("--to")?.parse().map_err(|_| "bad --to")?;
            send(from, to, size, secs).map_err(|e| e.to_string())
        }
        "recv" => {
            let bind: SocketAddr = get("--bind")?.parse().map_err(|_| "bad --bind")?;
            recv(bind, secs).map_err(|e| e.to_string())
        }
        other => Err(format!("unknown mode {other}")),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("udp_blaster: {e}");
            ExitCode::from(1)
        }
    }
}
