//! Send: BTH and DETH go into the headroom, the ICRC into the tailroom, and
//! the whole burst leaves with one `sendmmsg`.

use super::socket::to_storage;
use super::{addr, icrc_for, Rocev2Ah, Rocev2Provider, MAX_BURST};
use crate::mem::Mbuf;
use crate::provider::{SendWr, MCAST_QPN};
use crate::wire::roce::bth::{self, PSN_MASK};
use crate::wire::roce::deth::{self, CONTROLLED_QKEY_BIT};
use crate::wire::roce::{BthRepr, DethRepr, ICRC_LEN, OPCODE_UD_SEND_ONLY};
use arrayvec::ArrayVec;
use std::os::fd::AsRawFd;

/// BTH + DETH of a UD SEND_ONLY.
const HEADERS_LEN: usize = bth::HEADER_LEN + deth::HEADER_LEN;

/// What to do with a request before it can go out.
enum Prepared {
    Ready,
    /// No buffer to copy a shared message into: stop the burst here.
    NoBuffer,
    /// Too large for a buffer, or the headers would not fit: drop it.
    Unsendable,
}

impl Rocev2Provider {
    pub(super) fn send_burst<const N: usize>(
        &mut self,
        wrs: &mut ArrayVec<SendWr<Rocev2Ah>, N>,
    ) -> usize {
        let mut dropped = 0;
        let mut n = 0;
        let mut psn = self.psn;
        while n < wrs.len().min(MAX_BURST) {
            match self.prepare(&mut wrs[n], psn) {
                Prepared::Ready => {
                    psn = (psn + 1) & PSN_MASK;
                    n += 1;
                }
                Prepared::NoBuffer => break,
                Prepared::Unsendable => {
                    let wr = wrs.remove(n);
                    self.cache.free(wr.mbuf);
                    self.counters.tx_errors += 1;
                    dropped += 1;
                }
            }
        }
        if n == 0 {
            return dropped;
        }
        let name_len = to_storage(self.tx_addr, &mut self.tx_slots.names[0]);
        for (i, wr) in wrs.iter().take(n).enumerate() {
            let dst = addr::socket_addr(wr.ah.dst, self.cfg.port);
            to_storage(dst, &mut self.tx_slots.names[i]);
            let data = wr.mbuf.data();
            // sendmmsg only reads through this pointer.
            self.tx_slots
                .link(i, data.as_ptr().cast_mut(), data.len(), name_len, false);
        }
        // SAFETY: the first `n` messages point at live mbuf data and address
        // slots (linked just above); the kernel only reads them.
        let rc = unsafe {
            libc::sendmmsg(
                self.tx.as_raw_fd(),
                self.tx_slots.msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        let (sent, failed) = if rc >= 0 {
            (rc as usize, 0)
        } else {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => (0, 0),
                // The first message was refused (unreachable, too big): drop it.
                _ => (0, 1),
            }
        };
        if sent + failed < n {
            self.counters.tx_full += 1;
        }
        // Unsent requests go back as they came, for the caller to retry.
        for wr in wrs.iter_mut().take(n).skip(sent + failed) {
            wr.mbuf.adj(HEADERS_LEN);
            wr.mbuf.trim(ICRC_LEN);
        }
        self.psn = (self.psn + (sent + failed) as u32) & PSN_MASK;
        self.counters.tx_packets += sent as u64;
        self.counters.tx_errors += failed as u64;
        for wr in wrs.drain(..sent + failed) {
            self.counters.tx_bytes += wr.mbuf.len() as u64;
            self.cache.free(wr.mbuf);
        }
        dropped + sent + failed
    }

    /// Makes `wr.mbuf` the whole UDP payload: headers, message, ICRC.
    fn prepare(&mut self, wr: &mut SendWr<Rocev2Ah>, psn: u32) -> Prepared {
        let m = &mut wr.mbuf;
        if m.is_shared() || m.headroom() < HEADERS_LEN || m.tailroom() < ICRC_LEN {
            let Some(mut copy) = self.cache.alloc() else {
                return Prepared::NoBuffer;
            };
            if copy.tailroom() < m.len() + ICRC_LEN {
                self.cache.free(copy);
                return Prepared::Unsendable;
            }
            let Some(dst) = copy.append(m.len()) else {
                self.cache.free(copy);
                return Prepared::Unsendable;
            };
            dst.copy_from_slice(m.data());
            let old = std::mem::replace(m, copy);
            self.cache.free(old);
            self.counters.tx_copies += 1;
        }
        if m.len() > usize::from(self.cfg.max_msg) {
            return Prepared::Unsendable;
        }
        // A controlled Q_Key in the request means "use the QP's own".
        let qkey = if wr.remote_qkey & CONTROLLED_QKEY_BIT != 0 {
            self.cfg.qkey
        } else {
            wr.remote_qkey
        };
        let dest_qpn = if wr.ah.multicast {
            MCAST_QPN
        } else {
            wr.remote_qpn
        };
        let bth = BthRepr {
            opcode: OPCODE_UD_SEND_ONLY,
            pkey: self.cfg.pkey,
            dest_qpn,
            psn,
            ..BthRepr::default()
        };
        let deth = DethRepr {
            qkey,
            src_qpn: self.cfg.qpn,
        };
        if !write_headers(m, &bth, &deth) {
            return Prepared::Unsendable;
        }
        let dst = addr::socket_addr(wr.ah.dst, self.cfg.port);
        let udp_len = m.len() + ICRC_LEN;
        let Some(icrc) = icrc_for(self.tx_addr, dst, udp_len, m.data()) else {
            m.adj(HEADERS_LEN);
            return Prepared::Unsendable;
        };
        match m.append(ICRC_LEN) {
            Some(tail) => tail.copy_from_slice(&icrc.to_le_bytes()),
            None => {
                m.adj(HEADERS_LEN);
                return Prepared::Unsendable;
            }
        }
        Prepared::Ready
    }
}

fn write_headers(m: &mut Mbuf, bth_repr: &BthRepr, deth_repr: &DethRepr) -> bool {
    let Some(h) = m.prepend(HEADERS_LEN) else {
        return false;
    };
    let (b, d) = h.split_at_mut(bth::HEADER_LEN);
    bth_repr.emit(&mut bth::Packet::new_unchecked(b)).is_ok()
        && deth_repr.emit(&mut deth::Packet::new_unchecked(d)).is_ok()
}
