//! Receive: one `recvmmsg` into posted mbufs, then per datagram the checks
//! a UD QP makes (opcode, length, ICRC, P_Key, QPN, Q_Key), every drop
//! counted by reason, and the headers stripped in place.

use super::counters::DropReason;
use super::ipid::recover_ipv4_id;
use super::socket::from_storage;
use super::{addr, Rocev2Provider, MAX_BURST};
use crate::mem::Mbuf;
use crate::provider::{GrhTemplate, RecvCompletion, MCAST_QPN};
use crate::wire::roce::frame::extension_len;
use crate::wire::roce::{bth, deth, IcrcHeaders, ICRC_LEN};
use arrayvec::ArrayVec;
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;

/// What a datagram that passed every check delivers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Accepted {
    pub(super) headers_len: usize,
    pub(super) trailer_len: usize,
    pub(super) src_qpn: u32,
    pub(super) multicast: bool,
    /// The ICRC was made with an IPv4 ID other than 0.
    pub(super) nonzero_ip_id: bool,
    /// ImmDt of a SEND_ONLY_WITH_IMMEDIATE.
    pub(super) immediate: Option<u32>,
}

impl Rocev2Provider {
    /// Posts up to `MAX_BURST` buffers (whole windows) for the next receive.
    fn refill(&mut self, want: usize) {
        while self.rx_bufs.len() < want {
            let Some(mut m) = self.cache.alloc() else {
                self.counters.rx_no_mbuf += 1;
                return;
            };
            m.reset();
            let room = m.tailroom();
            if m.append(room).is_none() {
                self.cache.free(m);
                return;
            }
            self.rx_bufs.push(m);
        }
    }

    /// Receives into `out`; with `imms`, pushes each delivered message's
    /// immediate data there too (`None` for a plain SEND_ONLY).
    pub(super) fn recv_burst<const N: usize>(
        &mut self,
        fd: RawFd,
        out: &mut ArrayVec<RecvCompletion, N>,
        mut imms: Option<&mut ArrayVec<Option<u32>, N>>,
    ) {
        let want = out.remaining_capacity().min(MAX_BURST);
        if want == 0 {
            return;
        }
        self.refill(want);
        let posted = self.rx_bufs.len().min(want);
        if posted == 0 {
            return;
        }
        let name_len = size_of::<libc::sockaddr_storage>() as u32;
        for i in 0..posted {
            let Some(data) = self.rx_bufs[i].data_mut() else {
                return;
            };
            let (ptr, len) = (data.as_mut_ptr(), data.len());
            self.rx_slots.link(i, ptr, len, name_len, true);
        }
        // SAFETY: the first `posted` messages point at the windows of
        // buffers this QP owns exclusively, and at its own address and
        // control slots, all alive until the call returns.
        let received = match unsafe { self.rx_slots.recv_batch(fd, posted) } {
            Some(0) => return,
            Some(n) => n,
            None => {
                self.counters.rx_errors += 1;
                return;
            }
        };
        let bufs = std::mem::take(&mut self.rx_bufs);
        for (i, mut m) in bufs.into_iter().enumerate() {
            if i >= received {
                self.rx_bufs.push(m);
                continue;
            }
            let msg = &self.rx_slots.msgs[i];
            let len = msg.msg_len as usize;
            let truncated = msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let src = from_storage(&self.rx_slots.names[i]);
            let dst_ip = self.rx_slots.pktinfo_dst(i).unwrap_or(self.cfg.local);
            let dst = SocketAddr::new(dst_ip, self.cfg.port);
            let verdict = match src {
                Some(src) if !truncated && len <= m.len() => {
                    self.check(&m.data()[..len], src, dst, 0).map(|a| (a, src))
                }
                _ => Err(DropReason::Truncated),
            };
            match verdict {
                Ok((a, src)) => {
                    let keep = len - a.headers_len - a.trailer_len;
                    let extra = m.len() - len;
                    m.trim(extra + a.trailer_len);
                    m.adj(a.headers_len);
                    debug_assert_eq!(m.len(), keep);
                    self.deliver(m, &a, src.ip(), dst_ip, out, imms.as_deref_mut());
                }
                Err(reason) => {
                    self.counters.drop(reason);
                    // The buffer is posted again as it was.
                    self.rx_bufs.push(m);
                }
            }
        }
    }

    /// Hands `m` (the message alone) up with its GRH and completion.
    pub(super) fn deliver<const N: usize>(
        &mut self,
        m: Mbuf,
        a: &Accepted,
        src: IpAddr,
        dst: IpAddr,
        out: &mut ArrayVec<RecvCompletion, N>,
        imms: Option<&mut ArrayVec<Option<u32>, N>>,
    ) {
        let grh = GrhTemplate::new(addr::gid_of(src), addr::gid_of(dst));
        self.deliver_with(m, a, &grh, out, imms);
    }

    /// As `deliver`, with the GRH of the source and destination addresses.
    pub(super) fn deliver_with<const N: usize>(
        &mut self,
        mut m: Mbuf,
        a: &Accepted,
        grh: &GrhTemplate,
        out: &mut ArrayVec<RecvCompletion, N>,
        imms: Option<&mut ArrayVec<Option<u32>, N>>,
    ) {
        let has_grh = grh.put(&mut m);
        self.counters.rx_packets += 1;
        self.counters.rx_bytes += m.len() as u64;
        self.counters.rx_multicast += u64::from(a.multicast);
        self.counters.rx_nonzero_ip_id += u64::from(a.nonzero_ip_id);
        self.counters.rx_immediate += u64::from(a.immediate.is_some());
        if let Some(imms) = imms {
            // Same capacity as `out`, kept in step by the caller.
            let _ = imms.try_push(a.immediate);
        }
        out.push(RecvCompletion {
            mbuf: m,
            src_qpn: a.src_qpn,
            slid: 0,
            multicast: a.multicast,
            has_grh,
        });
    }

    /// The checks of a UD QP on one UDP payload from `src` to `dst`; the
    /// ICRC is tried first with IPv4 ID `ip_id` (a GSO segment's index).
    pub(super) fn check(
        &mut self,
        p: &[u8],
        src: SocketAddr,
        dst: SocketAddr,
        ip_id: u16,
    ) -> Result<Accepted, DropReason> {
        let mut headers = self.icrc_headers.get(src, dst, p.len()).copied();
        let to = Destination {
            multicast: dst.ip().is_multicast(),
            from_ipv4: src.is_ipv4(),
        };
        self.check_with(p, headers.as_mut(), to, ip_id)
    }

    /// As `check`, with the ICRC headers of the payload's flow and size
    /// already built (`None`: the families differ, a bad ICRC).
    pub(super) fn check_with(
        &self,
        p: &[u8],
        headers: Option<&mut IcrcHeaders>,
        to: Destination,
        ip_id: u16,
    ) -> Result<Accepted, DropReason> {
        if p.len() < bth::HEADER_LEN + ICRC_LEN {
            return Err(DropReason::Truncated);
        }
        let b = bth::Packet::new_unchecked(p);
        let ext = extension_len(b.opcode()).ok_or(DropReason::UnsupportedOpcode)?;
        let headers_len = bth::HEADER_LEN + ext;
        let icrc_at = p
            .len()
            .checked_sub(ICRC_LEN)
            .filter(|&at| at >= headers_len)
            .ok_or(DropReason::Truncated)?;
        let found =
            u32::from_le_bytes([p[icrc_at], p[icrc_at + 1], p[icrc_at + 2], p[icrc_at + 3]]);
        let expected = headers
            .and_then(|h| {
                h.set_ipv4_id(ip_id);
                h.icrc(&p[..icrc_at]).ok()
            })
            .ok_or(DropReason::BadIcrc)?;
        // rxe sends IPv4 IDs other than 0; the socket hides them, the ICRC
        // tells (the difference is linear in the ID, whatever was tried).
        let nonzero_ip_id = if expected == found {
            ip_id != 0
        } else if self.cfg.accept_nonzero_ip_id
            && to.from_ipv4
            && recover_ipv4_id(expected ^ found, icrc_at).is_some()
        {
            true
        } else {
            return Err(DropReason::BadIcrc);
        };
        let pad = usize::from(b.pad_count());
        if icrc_at - headers_len < pad {
            return Err(DropReason::Truncated);
        }
        if !pkey_matches(b.pkey(), self.cfg.pkey) {
            return Err(DropReason::PkeyMismatch);
        }
        let dest_qpn = b.dest_qpn();
        let qpn_ok = if to.multicast {
            dest_qpn == MCAST_QPN
        } else {
            dest_qpn == self.cfg.qpn
        };
        if !qpn_ok {
            return Err(DropReason::WrongQpn);
        }
        let d = deth::Packet::new_unchecked(&p[bth::HEADER_LEN..]);
        if d.qkey() != self.cfg.qkey {
            return Err(DropReason::QkeyMismatch);
        }
        let immediate = (ext > deth::HEADER_LEN).then(|| {
            let at = bth::HEADER_LEN + deth::HEADER_LEN;
            u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
        });
        Ok(Accepted {
            headers_len,
            trailer_len: pad + ICRC_LEN,
            src_qpn: d.src_qpn(),
            multicast: to.multicast,
            nonzero_ip_id,
            immediate,
        })
    }
}

/// What `check_with` needs to know of the addresses a payload came with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Destination {
    /// Sent to a group.
    pub(super) multicast: bool,
    /// Sent from an IPv4 address.
    pub(super) from_ipv4: bool,
}

/// IBA 10.9.3: the low 15 bits match and at least one side is a full member.
fn pkey_matches(packet: u16, port: u16) -> bool {
    const FULL: u16 = 0x8000;
    packet & !FULL == port & !FULL && (packet | port) & FULL != 0 && packet & !FULL != 0
}
