//! Receive with UDP GRO: the kernel hands up a run of datagrams from one
//! sender as one buffer (a UDP GSO send arrives whole, without being cut),
//! with the segment size in a control message. One `recvmmsg` then brings
//! up to `GRO_SLOTS` x 64 KiB; each segment is a whole RoCEv2 packet, checked
//! as usual and copied into an mbuf. Segments not handed up yet (the burst
//! was full, or no mbuf) stay staged for the next poll.
//!
//! A GSO sender's segments carry IPv4 IDs 0, 1, 2, ...: segment k's ICRC is
//! tried with ID k first, so the common case costs one CRC.

use super::rx::{Accepted, Destination};
use super::socket::from_storage;
use super::{addr, slots::Slots, DropReason, Rocev2Provider};
use crate::provider::{GrhTemplate, RecvCompletion};
use crate::wire::roce::{IcrcHeaders, ICRC_LEN};
use arrayvec::ArrayVec;
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;

/// Coalesced buffers one `recvmmsg` fills.
pub(super) const GRO_SLOTS: usize = 8;
/// The largest UDP payload, and so the largest coalesced buffer.
const GRO_BUF: usize = 65_536;

/// One received buffer and how far it has been handed up.
#[derive(Debug, Clone, Copy)]
struct Staged {
    len: usize,
    segment: usize,
    off: usize,
    src: Option<SocketAddr>,
    dst: IpAddr,
    truncated: bool,
}

/// Staging area of a QP that receives with UDP GRO.
pub(super) struct GroRx {
    buf: Box<[u8]>,
    slots: Box<Slots>,
    staged: [Staged; GRO_SLOTS],
    count: usize,
    next: usize,
}

impl GroRx {
    pub(super) fn new(local: IpAddr) -> Box<GroRx> {
        let empty = Staged {
            len: 0,
            segment: 1,
            off: 0,
            src: None,
            dst: local,
            truncated: false,
        };
        Box::new(GroRx {
            buf: vec![0u8; GRO_SLOTS * GRO_BUF].into_boxed_slice(),
            slots: Slots::new(),
            staged: [empty; GRO_SLOTS],
            count: 0,
            next: 0,
        })
    }
}

impl Rocev2Provider {
    /// Hands up staged segments, then receives more from `fd` while `out`
    /// has room.
    pub(super) fn recv_gro<const N: usize>(
        &mut self,
        fd: RawFd,
        out: &mut ArrayVec<RecvCompletion, N>,
        mut imms: Option<&mut ArrayVec<Option<u32>, N>>,
    ) {
        let Some(mut g) = self.gro.take() else {
            return;
        };
        loop {
            if !self.drain_staged(&mut g, out, imms.as_deref_mut()) || out.is_full() {
                break;
            }
            if !self.stage(&mut g, fd) {
                break;
            }
        }
        self.gro = Some(g);
    }

    /// One `recvmmsg` into the staging buffers; false when nothing came.
    fn stage(&mut self, g: &mut GroRx, fd: RawFd) -> bool {
        let name_len = size_of::<libc::sockaddr_storage>() as u32;
        for i in 0..GRO_SLOTS {
            let base = g.buf[i * GRO_BUF..].as_mut_ptr();
            g.slots.link(i, base, GRO_BUF, name_len, true);
        }
        // SAFETY: the first GRO_SLOTS messages point at disjoint 64 KiB
        // windows of the staging buffer and at their own address and
        // control slots, all owned by `g` and alive during the call.
        let n = match unsafe { g.slots.recv_batch(fd, GRO_SLOTS) } {
            Some(0) => return false,
            Some(n) => n,
            None => {
                self.counters.rx_errors += 1;
                return false;
            }
        };
        for i in 0..n {
            let msg = &g.slots.msgs[i];
            let len = msg.msg_len as usize;
            let segment = g.slots.gro_segment(i).unwrap_or(len).max(1);
            self.counters.rx_gro_buffers += u64::from(segment < len);
            g.staged[i] = Staged {
                len,
                segment,
                off: 0,
                src: from_storage(&g.slots.names[i]),
                dst: g.slots.pktinfo_dst(i).unwrap_or(self.cfg.local),
                truncated: msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            };
        }
        g.count = n;
        g.next = 0;
        true
    }

    /// Hands up staged segments while `out` has room; false when it stopped
    /// for want of an mbuf.
    fn drain_staged<const N: usize>(
        &mut self,
        g: &mut GroRx,
        out: &mut ArrayVec<RecvCompletion, N>,
        mut imms: Option<&mut ArrayVec<Option<u32>, N>>,
    ) -> bool {
        while g.next < g.count {
            let i = g.next;
            let st = g.staged[i];
            if st.off >= st.len {
                g.next += 1;
                continue;
            }
            if out.is_full() {
                return true;
            }
            let Some(src) = st.src.filter(|_| !st.truncated) else {
                self.counters.drop(DropReason::Truncated);
                g.staged[i].off = st.len;
                continue;
            };
            // What every segment of the buffer shares is worked out once:
            // the ICRC headers of a whole segment, the GRH, the addresses.
            let dst = SocketAddr::new(st.dst, self.cfg.port);
            let mut headers = self.icrc_headers.get(src, dst, st.segment).copied();
            let to = Destination {
                multicast: st.dst.is_multicast(),
                from_ipv4: src.is_ipv4(),
            };
            let grh = GrhTemplate::new(addr::gid_of(src.ip()), addr::gid_of(st.dst));
            let base = i * GRO_BUF;
            let (mut off, mut index) = (st.off, st.off / st.segment);
            // The segments of one buffer mostly differ in their PSN and
            // payload alone: once one passed every check, a segment with
            // the same BTH and DETH (PSN aside) passes them too.
            let mut same: Option<(SameHeaders, Accepted)> = None;
            while off < st.len && !out.is_full() {
                if let (Some(s), Some(h), None) = (same.as_ref(), headers.as_ref(), imms.as_ref()) {
                    let run = &g.buf[base..base + st.len];
                    let at = (&mut off, &mut index);
                    if !self.drain_same(run, st.segment, at, s, h, &grh, out) {
                        g.staged[i].off = off;
                        return false;
                    }
                    if off >= st.len || out.is_full() {
                        break;
                    }
                }
                let seg_len = st.segment.min(st.len - off);
                let p = &g.buf[base + off..base + off + seg_len];
                let ip_id = u16::try_from(index).unwrap_or(0);
                let verdict = if seg_len == st.segment {
                    let known = same.as_ref().and_then(|(h, a)| {
                        let icrc_at = seg_len - ICRC_LEN;
                        let ok = SameHeaders::of(p) == Some(*h)
                            && icrc_matches(headers.as_ref(), p, icrc_at, ip_id);
                        ok.then_some(Accepted {
                            nonzero_ip_id: ip_id != 0,
                            ..*a
                        })
                    });
                    match known {
                        Some(a) => Ok(a),
                        None => {
                            let v = self.check_with(p, headers.as_mut(), to, ip_id);
                            if let Ok(a) = &v {
                                same = SameHeaders::of(p)
                                    .filter(|_| a.immediate.is_none())
                                    .map(|h| (h, *a));
                            }
                            v
                        }
                    }
                } else {
                    // A shorter last segment.
                    self.check(p, src, dst, ip_id)
                };
                match verdict {
                    Ok(a) => {
                        let Some(mut m) = self.cache.alloc() else {
                            self.counters.rx_no_mbuf += 1;
                            g.staged[i].off = off;
                            return false;
                        };
                        let keep = seg_len - a.headers_len - a.trailer_len;
                        match m.append(keep) {
                            Some(d) => {
                                d.copy_from_slice(&p[a.headers_len..a.headers_len + keep]);
                                self.deliver_with(m, &a, &grh, out, imms.as_deref_mut());
                            }
                            None => {
                                self.cache.free(m);
                                self.counters.drop(DropReason::Truncated);
                            }
                        }
                    }
                    Err(reason) => self.counters.drop(reason),
                }
                off += seg_len;
                index += 1;
            }
            g.staged[i].off = off;
        }
        true
    }
}

impl Rocev2Provider {
    /// Hands up the full-size segments of `run` from `at` (offset, index)
    /// while their BTH and DETH are those of `same` (PSN aside) and their
    /// ICRC is right: only the ICRC is checked, counters are added once.
    /// Stops at the first segment that differs (for the caller to check in
    /// full); false when it stopped for want of an mbuf.
    #[allow(clippy::too_many_arguments)]
    fn drain_same<const N: usize>(
        &mut self,
        run: &[u8],
        segment: usize,
        at: (&mut usize, &mut usize),
        same: &(SameHeaders, Accepted),
        headers: &IcrcHeaders,
        grh: &GrhTemplate,
        out: &mut ArrayVec<RecvCompletion, N>,
    ) -> bool {
        let (off, index) = at;
        let (h, a) = *same;
        let icrc_at = segment - ICRC_LEN;
        let keep = segment - a.headers_len - a.trailer_len;
        let (mut packets, mut bytes, mut nonzero_id) = (0u64, 0u64, 0u64);
        let mut fed = true;
        while *off + segment <= run.len() && !out.is_full() {
            let p = &run[*off..*off + segment];
            let ip_id = u16::try_from(*index).unwrap_or(0);
            if SameHeaders::of(p) != Some(h) || !icrc_matches(Some(headers), p, icrc_at, ip_id) {
                break;
            }
            let Some(mut m) = self.cache.alloc() else {
                self.counters.rx_no_mbuf += 1;
                fed = false;
                break;
            };
            let Some(d) = m.append(keep) else {
                // Left to the caller, which counts the drop.
                self.cache.free(m);
                break;
            };
            d.copy_from_slice(&p[a.headers_len..a.headers_len + keep]);
            let has_grh = grh.put(&mut m);
            packets += 1;
            bytes += m.len() as u64;
            nonzero_id += u64::from(ip_id != 0);
            out.push(RecvCompletion {
                mbuf: m,
                src_qpn: a.src_qpn,
                slid: 0,
                multicast: a.multicast,
                has_grh,
            });
            *off += segment;
            *index += 1;
        }
        self.counters.rx_packets += packets;
        self.counters.rx_bytes += bytes;
        self.counters.rx_multicast += if a.multicast { packets } else { 0 };
        self.counters.rx_nonzero_ip_id += nonzero_id;
        fed
    }
}

/// A segment's BTH and DETH with the PSN (and AckReq) masked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SameHeaders(u128, u32);

impl SameHeaders {
    /// BTH bytes 8..12: AckReq, reserved bits and the PSN.
    const PSN_WORD: u128 = 0xffff_ffff << 64;

    /// `None` when `p` is too short to hold them and an ICRC.
    fn of(p: &[u8]) -> Option<SameHeaders> {
        let bth: [u8; 16] = p.get(..16)?.try_into().ok()?;
        let deth: [u8; 4] = p.get(16..20)?.try_into().ok()?;
        (p.len() >= 20 + ICRC_LEN).then_some(SameHeaders(
            u128::from_le_bytes(bth) & !Self::PSN_WORD,
            u32::from_le_bytes(deth),
        ))
    }
}

/// The ICRC at `icrc_at` is the one `headers` give with IPv4 ID `ip_id`.
fn icrc_matches(headers: Option<&IcrcHeaders>, p: &[u8], icrc_at: usize, ip_id: u16) -> bool {
    let (Some(h), Some(found)) = (headers, p.get(icrc_at..icrc_at + ICRC_LEN)) else {
        return false;
    };
    h.icrc_with_ipv4_id(&p[..icrc_at], ip_id)
        .ok()
        .map(u32::to_le_bytes)
        == Some([found[0], found[1], found[2], found[3]])
}
