//! Turning a received latency probe into its reflection, in place: the
//! addresses and ports are swapped (so the packet goes back to its sender
//! through the neighbour table like any unicast packet), the stamp is marked
//! reflected with its send time untouched, and the reflecting sink's receive
//! time follows the stamp when the payload has room. The UDP checksum is
//! updated incrementally (RFC 1624); swapping fields changes no sum.

use super::stamp::{FLAG_PEER_TIME, FLAG_REFLECTED, STAMP_LEN};

/// Where the UDP header starts, and whether the packet goes to a unicast
/// address from a unicast address (only those are reflected: a multicast
/// probe would come back once per member).
#[inline]
fn udp_at_unicast(pkt: &[u8]) -> Option<usize> {
    match pkt.first()? >> 4 {
        4 => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            let (src, dst) = (*pkt.get(12)?, *pkt.get(16)?);
            let bcast = pkt.get(16..20)? == [0xff; 4];
            let special = |b: u8| (0xe0..=0xef).contains(&b) || b == 0;
            (ihl >= 20 && !special(src) && !special(dst) && !bcast).then_some(ihl)
        }
        6 => {
            let (src, dst) = (*pkt.get(8)?, *pkt.get(24)?);
            (src != 0xff && dst != 0xff && pkt.get(8..24)? != [0; 16]).then_some(40)
        }
        _ => None,
    }
}

/// Adds the change from `old` to `new` (equal lengths, 16-bit aligned in the
/// checksummed data) to the unfolded sum `acc`.
#[inline]
fn sum_change(acc: &mut u64, old: &[u8], new: &[u8]) {
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        *acc += u64::from(!u16::from_be_bytes([o[0], o[1]]));
        *acc += u64::from(u16::from_be_bytes([n[0], n[1]]));
    }
}

#[inline]
fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Rewrites the stamped UDP packet `pkt` (IPv4 or IPv6, already checked to
/// carry a stamp) into the reflection of itself at `now_ns` on this host's
/// clock. Returns `false`, leaving the packet as it was, when it is not
/// unicast both ways.
pub fn reflect(pkt: &mut [u8], now_ns: u64) -> bool {
    let Some(udp) = udp_at_unicast(pkt) else {
        return false;
    };
    let payload = udp + 8;
    if pkt.len() < payload + STAMP_LEN {
        return false;
    }
    // The IPv4 header checksum covers both addresses: a swap keeps it.
    let addrs = if pkt[0] >> 4 == 4 { 12..20 } else { 8..40 };
    let half = addrs.len() / 2;
    let (s, d) = pkt[addrs].split_at_mut(half);
    s.swap_with_slice(d);
    let (sp, dp) = pkt[udp..udp + 4].split_at_mut(2);
    sp.swap_with_slice(dp);
    let csum = u16::from_be_bytes([pkt[udp + 6], pkt[udp + 7]]);
    let mut acc = u64::from(!csum);
    let flags_at = payload + 6;
    let old_flags = [pkt[flags_at], pkt[flags_at + 1]];
    let time_at = payload + STAMP_LEN;
    let room = pkt.len() >= time_at + 8;
    let flags = FLAG_REFLECTED | if room { FLAG_PEER_TIME } else { 0 };
    let new_flags = flags.to_be_bytes();
    sum_change(&mut acc, &old_flags, &new_flags);
    pkt[flags_at..flags_at + 2].copy_from_slice(&new_flags);
    if room {
        let new = now_ns.to_be_bytes();
        sum_change(&mut acc, &pkt[time_at..time_at + 8], &new);
        pkt[time_at..time_at + 8].copy_from_slice(&new);
    }
    // An IPv4 UDP checksum of 0 means "none": keep it so.
    if csum != 0 || pkt[0] >> 4 == 6 {
        let c = !fold(acc);
        let c = if c == 0 { 0xffff } else { c };
        pkt[udp + 6..udp + 8].copy_from_slice(&c.to_be_bytes());
    }
    true
}

/// The reflecting sink's receive time a reflection carries, if it does.
#[inline]
pub fn peer_time(payload: &[u8]) -> Option<u64> {
    let b = payload.get(STAMP_LEN..STAMP_LEN + 8)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    Some(u64::from_be_bytes(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lcore::{build_udp_packet, FlowSpec};
    use crate::pktgen::stamp::{udp_payload, Stamp, FLAG_PROBE};
    use std::net::IpAddr;

    fn ones_sum(b: &[u8]) -> u64 {
        b.chunks(2)
            .map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
            .sum()
    }

    /// A full recomputation of the UDP checksum over the pseudo-header.
    fn udp_ok(p: &[u8]) -> bool {
        let (udp, pseudo) = if p[0] >> 4 == 4 {
            let l = p.len() - 20;
            (20, ones_sum(&p[12..20]) + 17 + l as u64)
        } else {
            (40, ones_sum(&p[8..40]) + 17 + (p.len() - 40) as u64)
        };
        fold(pseudo + ones_sum(&p[udp..])) == 0xffff
    }

    fn probe(src: &str, dst: &str, size: usize) -> Vec<u8> {
        let mut p = build_udp_packet(&FlowSpec {
            src: src.parse::<IpAddr>().unwrap(),
            dst: dst.parse::<IpAddr>().unwrap(),
            src_port: 1000,
            dst_port: 2000,
            size,
            rate_pps: 0,
        })
        .unwrap();
        let at = if p[0] >> 4 == 4 { 28 } else { 48 };
        let st = Stamp {
            stream: 3,
            flags: FLAG_PROBE,
            seq: 77,
            ts_ns: 123_456_789,
        };
        st.write((&mut p[at..at + STAMP_LEN]).try_into().unwrap());
        // Fill the checksum again after the stamp went in.
        p[at - 2..at].copy_from_slice(&[0, 0]);
        let sum = if p[0] >> 4 == 4 {
            ones_sum(&p[12..20]) + 17 + (size - 20) as u64 + ones_sum(&p[20..])
        } else {
            ones_sum(&p[8..40]) + 17 + (size - 40) as u64 + ones_sum(&p[40..])
        };
        let c = !fold(sum);
        p[at - 2..at].copy_from_slice(&c.to_be_bytes());
        assert!(udp_ok(&p));
        p
    }

    #[test]
    fn a_reflection_swaps_addresses_and_ports_and_keeps_the_send_time() {
        for (src, dst, size) in [
            ("10.0.0.1", "10.0.0.2", 64),
            ("10.0.0.1", "10.0.0.2", 52),
            ("fd00::1", "fd00::2", 100),
            ("fd00::1", "fd00::2", 72),
        ] {
            let mut p = probe(src, dst, size);
            let orig = p.clone();
            assert!(reflect(&mut p, 999_000));
            assert!(udp_ok(&p), "{src} {size}: checksum after reflection");
            let back = probe(dst, src, size);
            let ip_hdr = if src.contains(':') { 40 } else { 20 };
            // Addresses and ports as a packet from the receiver would have them.
            assert_eq!(p[..ip_hdr], back[..ip_hdr], "{src}: IP header");
            assert_eq!(
                p[ip_hdr..ip_hdr + 4],
                [7, 208, 3, 232],
                "ports 2000 -> 1000"
            );
            let st = Stamp::from_ip(&p).unwrap();
            let was = Stamp::from_ip(&orig).unwrap();
            assert_eq!((st.stream, st.seq, st.ts_ns), (3, 77, 123_456_789));
            assert_eq!(was.flags, FLAG_PROBE);
            assert_ne!(st.flags & FLAG_REFLECTED, 0);
            let pay = udp_payload(&p).unwrap();
            if pay.len() >= STAMP_LEN + 8 {
                assert_ne!(st.flags & FLAG_PEER_TIME, 0);
                assert_eq!(peer_time(pay), Some(999_000));
            } else {
                assert_eq!(st.flags & FLAG_PEER_TIME, 0, "{size}: no room");
            }
        }
    }

    #[test]
    fn multicast_and_broadcast_probes_are_not_reflected() {
        for (src, dst) in [
            ("10.0.0.1", "239.1.2.3"),
            ("10.0.0.1", "255.255.255.255"),
            ("0.0.0.0", "10.0.0.2"),
            ("fd00::1", "ff12::1"),
        ] {
            let mut p = probe(src, dst, 100);
            let orig = p.clone();
            assert!(!reflect(&mut p, 1), "{src} -> {dst}");
            assert_eq!(p, orig, "left as it was");
        }
        assert!(!reflect(&mut [], 1));
        assert!(!reflect(&mut [0x45; 30], 1), "too short for a stamp");
    }
}
