//! Send: short messages are staged (`tx_staged.rs`); longer ones go
//! zero-copy: BTH and DETH (and ImmDt for SEND_ONLY_WITH_IMMEDIATE) go into
//! the headroom, pad bytes and the ICRC into the tailroom, and the whole
//! burst leaves with one `sendmmsg` (with UDP GSO, runs of equal-sized
//! messages to one destination are one message each).

use super::slots::MAX_IOVS;
use super::socket::to_storage;
use super::tx_staged::{STAGED_BURST, STAGED_MAX};
use super::{addr, pseudo, Rocev2Ah, Rocev2Provider, MAX_BURST};
use crate::mem::Mbuf;
use crate::provider::{SendWr, MCAST_QPN};
use crate::wire::roce::bth::{self, PSN_MASK};
use crate::wire::roce::deth::{self, CONTROLLED_QKEY_BIT};
use crate::wire::roce::frame::pad_count_for;
use crate::wire::roce::{
    BthRepr, DethRepr, ICRC_LEN, IMMDT_LEN, OPCODE_UD_SEND_ONLY, OPCODE_UD_SEND_ONLY_WITH_IMMEDIATE,
};
use arrayvec::ArrayVec;
use std::os::fd::AsRawFd;

/// BTH + DETH of a UD SEND_ONLY.
pub(super) const HEADERS_LEN: usize = bth::HEADER_LEN + deth::HEADER_LEN;

/// What a message's BTH and DETH are made of, the PSN aside: opcode,
/// destination QPN, Q_Key, pad count.
pub(super) type HeadersKey = (u8, u32, u32, u8);

/// What to do with a request before it can go out.
enum Prepared {
    Ready,
    /// No buffer to copy a shared message into: stop the burst here.
    NoBuffer,
    /// Too large for a buffer, or the headers would not fit: drop it.
    Unsendable,
}

/// Most segments in one UDP GSO send (the kernel's UDP_MAX_SEGMENTS is 64
/// on older kernels).
pub(super) const MAX_GSO_SEGMENTS: usize = 64;
/// Most bytes of UDP payload one GSO send may carry.
pub(super) const MAX_GSO_BYTES: usize = 65_000;

impl Rocev2Provider {
    /// Sends from the front of `wrs`; with `imm`, every message is a
    /// SEND_ONLY_WITH_IMMEDIATE carrying it. Returns how many requests were
    /// consumed (sent, or dropped and counted); the rest stay as they came.
    pub(super) fn send_burst<const N: usize>(
        &mut self,
        wrs: &mut ArrayVec<SendWr<Rocev2Ah>, N>,
        imm: Option<u32>,
    ) -> usize {
        let short = |wr: &SendWr<Rocev2Ah>| wr.mbuf.len() <= STAGED_MAX;
        let prefix = wrs
            .iter()
            .take(STAGED_BURST)
            .take_while(|wr| short(wr))
            .count();
        if prefix == 0 {
            return self.send_zero_copy(wrs, imm);
        }
        let consumed = self.send_staged(wrs, imm);
        if consumed < prefix || wrs.is_empty() {
            return consumed;
        }
        consumed + self.send_zero_copy(wrs, imm)
    }

    /// Sends from the front of `wrs` from the mbufs themselves.
    fn send_zero_copy<const N: usize>(
        &mut self,
        wrs: &mut ArrayVec<SendWr<Rocev2Ah>, N>,
        imm: Option<u32>,
    ) -> usize {
        let headers_len = HEADERS_LEN + if imm.is_some() { IMMDT_LEN } else { 0 };
        let gso = self.cfg.gso;
        let most = if gso { MAX_IOVS } else { MAX_BURST };
        let mut dropped = 0;
        let mut n = 0;
        let mut psn = self.psn;
        // Runs of messages that leave as one send, (first, count): one
        // message each, or with GSO equal-sized messages to one destination
        // QP (a receiver may pick the socket for a whole GSO datagram by
        // its first BTH: P_Key children share an address).
        let mut runs: ArrayVec<(usize, usize), MAX_BURST> = ArrayVec::new();
        // (Dropped requests leave `wrs` shorter.)
        while n < wrs.len().min(most) {
            let wr = &wrs[n];
            let len = wr.mbuf.len();
            let wire = headers_len + len + usize::from(pad_count_for(len)) + ICRC_LEN;
            let joins = gso
                && runs.last().is_some_and(|&(first, count)| {
                    let head = &wrs[first];
                    count < MAX_GSO_SEGMENTS
                        && (count + 1) * wire <= MAX_GSO_BYTES
                        && head.mbuf.len() == headers_len + len + usize::from(pad_count_for(len))
                        && head.ah.dst == wr.ah.dst
                        && head.remote_qpn == wr.remote_qpn
                });
            if !joins && runs.is_full() {
                break;
            }
            match self.prepare(&mut wrs[n], psn, imm, headers_len) {
                Prepared::Ready => {
                    match runs.last_mut() {
                        Some(run) if joins => run.1 += 1,
                        _ => runs.push((n, 1)),
                    }
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
        // The ICRCs: a GSO run's segments get IPv4 IDs 0, 1, 2, ...
        let mut unsendable = None;
        for &(first, count) in &runs {
            // One destination and one size per run: its headers are built once.
            let dst = addr::socket_addr(wrs[first].ah.dst, self.cfg.port);
            let len = wrs[first].mbuf.len();
            let mut headers = pseudo::headers(self.tx_addr, dst, len + ICRC_LEN);
            for k in 0..count {
                let m = &mut wrs[first + k].mbuf;
                let icrc = headers.as_mut().and_then(|h| {
                    h.set_ipv4_id(if count > 1 { k as u16 } else { 0 });
                    h.icrc(m.data()).ok()
                });
                match (icrc, m.append(ICRC_LEN)) {
                    (Some(icrc), Some(tail)) => tail.copy_from_slice(&icrc.to_le_bytes()),
                    _ => unsendable = unsendable.or(Some(first + k)),
                }
            }
        }
        if let Some(bad) = unsendable {
            // Not expected (room was checked): send nothing this time, drop
            // the request that cannot carry an ICRC.
            self.undo(wrs, 0, n, headers_len);
            let wr = wrs.remove(bad);
            self.cache.free(wr.mbuf);
            self.counters.tx_errors += 1;
            return dropped + 1;
        }
        let name_len = to_storage(self.tx_addr, &mut self.tx_slots.names[0]);
        for (i, &(first, count)) in runs.iter().enumerate() {
            let dst = addr::socket_addr(wrs[first].ah.dst, self.cfg.port);
            to_storage(dst, &mut self.tx_slots.names[i]);
            for k in first..first + count {
                let data = wrs[k].mbuf.data();
                // sendmmsg only reads through this pointer.
                self.tx_slots
                    .set_iov(k, data.as_ptr().cast_mut(), data.len());
            }
            let segment = (count > 1).then(|| wrs[first].mbuf.len() as u16);
            self.tx_slots.link_run(i, first, count, name_len, segment);
        }
        // SAFETY: the first `runs.len()` messages point at live mbuf data,
        // address and control slots (linked just above); the kernel only
        // reads them.
        let (sent_runs, failed_runs) = unsafe { self.send_linked(runs.len()) };
        let wrs_of = |r: usize| runs[..r].iter().map(|&(_, c)| c).sum::<usize>();
        let sent = wrs_of(sent_runs);
        let failed = wrs_of(sent_runs + failed_runs) - sent;
        if sent + failed < n {
            self.counters.tx_full += 1;
        }
        // Unsent requests go back as they came, for the caller to retry.
        self.undo(wrs, sent + failed, n, headers_len);
        self.psn = (self.psn + (sent + failed) as u32) & PSN_MASK;
        self.counters.tx_packets += sent as u64;
        self.counters.tx_gso_sends += runs[..sent_runs].iter().filter(|r| r.1 > 1).count() as u64;
        self.counters.tx_errors += failed as u64;
        if imm.is_some() {
            self.counters.tx_immediate += sent as u64;
        }
        for wr in wrs.drain(..sent + failed) {
            self.counters.tx_bytes += wr.mbuf.len() as u64;
            self.cache.free(wr.mbuf);
        }
        // Next to the send system call, publishing costs nothing.
        self.publish();
        dropped + sent + failed
    }

    /// One non-blocking `sendmmsg` of the first `count` linked messages:
    /// how many went, and how many were refused for good (the first unsent
    /// one, on an error other than a full socket: unreachable, too big).
    ///
    /// # Safety
    /// The first `count` messages of `tx_slots` point at memory that stays
    /// alive and unchanged during the call.
    pub(super) unsafe fn send_linked(&mut self, count: usize) -> (usize, usize) {
        let rc = libc::sendmmsg(
            self.tx.as_raw_fd(),
            self.tx_slots.msgs.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT,
        );
        if rc >= 0 {
            return (rc as usize, 0);
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => (0, 0),
            _ => (0, 1),
        }
    }

    /// Strips headers and ICRC from requests `from..to` again.
    fn undo<const N: usize>(
        &self,
        wrs: &mut ArrayVec<SendWr<Rocev2Ah>, N>,
        from: usize,
        to: usize,
        headers_len: usize,
    ) {
        for wr in wrs.iter_mut().take(to).skip(from) {
            let pad = wr.mbuf.data().get(1).map_or(0, |flags| (flags >> 4) & 3);
            wr.mbuf.adj(headers_len);
            wr.mbuf.trim(ICRC_LEN + usize::from(pad));
        }
    }

    /// Makes `wr.mbuf` the whole UDP payload: headers, message, ICRC.
    fn prepare(
        &mut self,
        wr: &mut SendWr<Rocev2Ah>,
        psn: u32,
        imm: Option<u32>,
        headers_len: usize,
    ) -> Prepared {
        // The payload is padded to a multiple of 4, as IBA asks and rxe does.
        let pad = pad_count_for(wr.mbuf.len());
        let key = self.headers_key(wr, opcode_for(imm), pad);
        let m = &mut wr.mbuf;
        let tail = usize::from(pad) + ICRC_LEN;
        if m.is_shared() || m.headroom() < headers_len || m.tailroom() < tail {
            let Some(mut copy) = self.cache.alloc() else {
                return Prepared::NoBuffer;
            };
            if copy.tailroom() < m.len() + tail {
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
        // The headers of a burst's messages differ in their PSN alone, mostly:
        // they are emitted once per destination, Q_Key, padding and opcode.
        if !self.headers_template(key) {
            return Prepared::Unsendable;
        }
        if !write_headers(m, &self.tx_headers.1, psn, imm) {
            return Prepared::Unsendable;
        }
        if m.tailroom() < tail {
            return Prepared::Unsendable;
        }
        if pad > 0 {
            if let Some(zeros) = m.append(usize::from(pad)) {
                zeros.fill(0);
            }
        }
        Prepared::Ready
    }
}

/// The opcode of a UD send, with or without immediate data.
pub(super) fn opcode_for(imm: Option<u32>) -> u8 {
    if imm.is_some() {
        OPCODE_UD_SEND_ONLY_WITH_IMMEDIATE
    } else {
        OPCODE_UD_SEND_ONLY
    }
}

impl Rocev2Provider {
    /// What the BTH and DETH of `wr` are made of, the PSN aside.
    #[inline]
    pub(super) fn headers_key(&self, wr: &SendWr<Rocev2Ah>, opcode: u8, pad: u8) -> HeadersKey {
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
        (opcode, dest_qpn, qkey, pad)
    }
}

/// The BTH and DETH of `key` (PSN 0) from a QP with `pkey` and `src_qpn`.
pub(super) fn emit_headers(key: HeadersKey, pkey: u16, src_qpn: u32) -> Option<[u8; HEADERS_LEN]> {
    let (opcode, dest_qpn, qkey, pad) = key;
    let bth = BthRepr {
        opcode,
        pkey,
        dest_qpn,
        psn: 0,
        pad_count: pad,
        ..BthRepr::default()
    };
    let deth = DethRepr { qkey, src_qpn };
    let mut out = [0u8; HEADERS_LEN];
    let (b, d) = out.split_at_mut(bth::HEADER_LEN);
    bth.emit(&mut bth::Packet::new_unchecked(b)).ok()?;
    deth.emit(&mut deth::Packet::new_unchecked(d)).ok()?;
    Some(out)
}

/// Prepends the BTH and DETH of `template` with `psn` (and the ImmDt).
fn write_headers(m: &mut Mbuf, template: &[u8; HEADERS_LEN], psn: u32, imm: Option<u32>) -> bool {
    let len = HEADERS_LEN + if imm.is_some() { IMMDT_LEN } else { 0 };
    let Some(h) = m.prepend(len) else {
        return false;
    };
    super::tx_staged::write_headers(h, template, psn & PSN_MASK, imm);
    true
}
