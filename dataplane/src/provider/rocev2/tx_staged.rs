//! Send of short messages: each is written whole (BTH, DETH, message, pad,
//! ICRC) into one staging buffer, so a GSO run leaves from one contiguous
//! iovec. The kernel copies a run in one piece instead of one iovec per
//! message (about 13 ns a message less at 64 bytes), the mbufs are only
//! read (shared ones need no copy), and an unsent request needs no undo.
//! Longer messages keep the zero-copy path (`tx.rs`): their copy would
//! cost more than the iovecs it saves.

use super::socket::to_storage;
use super::tx::{opcode_for, HeadersKey, HEADERS_LEN, MAX_GSO_BYTES, MAX_GSO_SEGMENTS};
use super::{addr, pseudo, Rocev2Ah, Rocev2Provider, MAX_BURST};
use crate::provider::SendWr;
use crate::wire::roce::bth::{self, PSN_MASK};
use crate::wire::roce::frame::pad_count_for;
use crate::wire::roce::{IcrcHeaders, ICRC_LEN, IMMDT_LEN};
use arrayvec::ArrayVec;
use std::net::SocketAddr;

/// Messages up to this long are staged.
pub(super) const STAGED_MAX: usize = 256;
/// Most messages one call stages: eight full GSO runs, so a caller that
/// offers that many pays one system call for them all.
pub(super) const STAGED_BURST: usize = 8 * MAX_GSO_SEGMENTS;
/// Room for one staged message: headers, message, pad, ICRC.
const SLOT: usize = HEADERS_LEN + IMMDT_LEN + STAGED_MAX + 3 + ICRC_LEN;

/// The staging buffer of one QP: a burst's messages, back to back.
pub(super) struct TxStage {
    bytes: Box<[u8]>,
}

impl TxStage {
    pub(super) fn new() -> TxStage {
        TxStage {
            bytes: vec![0u8; STAGED_BURST * SLOT].into_boxed_slice(),
        }
    }
}

/// Messages that leave as one send: `count` of `wire` bytes each at `off`
/// in the stage.
#[derive(Clone, Copy)]
struct Run {
    count: usize,
    off: usize,
    wire: usize,
    dst: SocketAddr,
}

impl Rocev2Provider {
    /// Sends the short messages at the front of `wrs` (those up to
    /// `STAGED_MAX` bytes; the caller sends the others). Returns how many
    /// requests were consumed (sent, or dropped and counted); the rest stay
    /// in `wrs` untouched.
    pub(super) fn send_staged<const N: usize>(
        &mut self,
        wrs: &mut ArrayVec<SendWr<Rocev2Ah>, N>,
        imm: Option<u32>,
    ) -> usize {
        let headers_len = HEADERS_LEN + if imm.is_some() { IMMDT_LEN } else { 0 };
        let opcode = opcode_for(imm);
        let max_msg = usize::from(self.cfg.max_msg);
        let mut stage = std::mem::take(&mut self.tx_stage.bytes);
        let mut runs: ArrayVec<Run, MAX_BURST> = ArrayVec::new();
        let (mut n, mut off, mut dropped) = (0, 0, 0);
        let mut psn = self.psn;
        // One run per turn: its first request is checked, the ones like it
        // follow it, then each is written and gets its ICRC.
        while n < wrs.len().min(STAGED_BURST) && !runs.is_full() {
            let limit = wrs.len().min(STAGED_BURST);
            let wr = &wrs[n];
            let len = wr.mbuf.len();
            if len > STAGED_MAX {
                break;
            }
            let pad = pad_count_for(len);
            let wire = headers_len + len + usize::from(pad) + ICRC_LEN;
            let dst = addr::socket_addr(wr.ah.dst, self.cfg.port);
            let key = self.headers_key(wr, opcode, pad);
            let headers = pseudo::headers(self.tx_addr, dst, wire)
                .filter(|_| len <= max_msg && self.headers_template(key));
            let Some(headers) = headers else {
                // Too long, or families differ: nothing can carry it.
                let wr = wrs.remove(n);
                self.cache.free(wr.mbuf);
                self.counters.tx_errors += 1;
                dropped += 1;
                continue;
            };
            let mut count = 1 + self.run_length(&wrs[n..limit], wire);
            // Stretches of one Q_Key (mostly the whole run): each its own
            // headers, and ICRCs that go on from them.
            let mut k = 0;
            while k < count {
                let qkey = wrs[n + k].remote_qkey;
                let end = k
                    + 1
                    + wrs[n + k + 1..n + count]
                        .iter()
                        .take_while(|wr| wr.remote_qkey == qkey)
                        .count();
                if k > 0 && !self.headers_template(self.headers_key(&wrs[n + k], opcode, pad)) {
                    count = k;
                    break;
                }
                let mut at_k = headers;
                at_k.set_ipv4_id(k as u16);
                let stretch = Stretch {
                    template: self.tx_headers.1,
                    imm,
                    headers_len,
                    len,
                    wire,
                };
                let slots = &mut stage[off + k * wire..off + end * wire];
                stretch.write(slots, &wrs[n + k..n + end], at_k, psn, k);
                k = end;
            }
            runs.push(Run {
                count,
                off,
                wire,
                dst,
            });
            n += count;
            off += count * wire;
            psn = (psn + count as u32) & PSN_MASK;
        }
        let consumed = self.send_runs(&stage, &runs, wrs, imm.is_some());
        self.tx_stage.bytes = stage;
        dropped + consumed
    }

    /// How many requests after the first of `wrs` go in its send: with
    /// GSO, those of the same length to the same destination QP (a
    /// receiver may pick the socket for a whole GSO datagram by its first
    /// BTH: P_Key children share an address), as many as a send takes.
    #[inline]
    fn run_length(&self, wrs: &[SendWr<Rocev2Ah>], wire: usize) -> usize {
        if !self.cfg.gso {
            return 0;
        }
        let most = MAX_GSO_SEGMENTS.min(MAX_GSO_BYTES / wire).min(wrs.len());
        let first = &wrs[0];
        let len = first.mbuf.len();
        wrs[1..most]
            .iter()
            .take_while(|wr| {
                wr.mbuf.len() == len && wr.ah == first.ah && wr.remote_qpn == first.remote_qpn
            })
            .count()
    }

    /// One `sendmmsg` of the staged runs; frees what went (or failed for
    /// good) and returns how many requests that was.
    fn send_runs<const N: usize>(
        &mut self,
        stage: &[u8],
        runs: &[Run],
        wrs: &mut ArrayVec<SendWr<Rocev2Ah>, N>,
        immediate: bool,
    ) -> usize {
        if runs.is_empty() {
            return 0;
        }
        let name_len = to_storage(self.tx_addr, &mut self.tx_slots.names[0]);
        for (i, r) in runs.iter().enumerate() {
            to_storage(r.dst, &mut self.tx_slots.names[i]);
            // sendmmsg only reads through this pointer.
            let base = stage[r.off..].as_ptr().cast_mut();
            self.tx_slots.set_iov(i, base, r.count * r.wire);
            let segment = (r.count > 1).then_some(r.wire as u16);
            self.tx_slots.link_run(i, i, 1, name_len, segment);
        }
        // SAFETY: the first `runs.len()` messages point at the stage, alive
        // and unchanged during the call, and at this QP's address and
        // control slots; the kernel only reads them.
        let (sent_runs, failed_runs) = unsafe { self.send_linked(runs.len()) };
        let count = |rs: &[Run]| rs.iter().map(|r| r.count).sum::<usize>();
        let sent = count(&runs[..sent_runs]);
        let failed = count(&runs[sent_runs..sent_runs + failed_runs]);
        if sent_runs + failed_runs < runs.len() {
            self.counters.tx_full += 1;
        }
        // Unsent requests stay as they came, for the caller to retry; their
        // PSNs are handed out again.
        self.psn = (self.psn + (sent + failed) as u32) & PSN_MASK;
        self.counters.tx_packets += sent as u64;
        self.counters.tx_bytes += runs[..sent_runs]
            .iter()
            .map(|r| (r.count * r.wire) as u64)
            .sum::<u64>();
        self.counters.tx_gso_sends +=
            runs[..sent_runs].iter().filter(|r| r.count > 1).count() as u64;
        self.counters.tx_errors += failed as u64;
        if immediate {
            self.counters.tx_immediate += sent as u64;
        }
        for wr in wrs.drain(..sent + failed) {
            self.cache.free(wr.mbuf);
        }
        // Next to the send system call, publishing costs nothing.
        self.publish();
        sent + failed
    }

    /// Makes `tx_headers` the BTH and DETH of `key` (PSN aside); false
    /// when they cannot be emitted.
    #[inline]
    pub(super) fn headers_template(&mut self, key: HeadersKey) -> bool {
        self.tx_headers.0 == Some(key) || self.emit_template(key)
    }

    #[inline(never)]
    fn emit_template(&mut self, key: HeadersKey) -> bool {
        self.tx_headers.0 = None;
        let Some(headers) = super::tx::emit_headers(key, self.cfg.pkey, self.cfg.qpn) else {
            return false;
        };
        self.tx_headers = (Some(key), headers);
        true
    }
}

/// Messages of one length and one set of headers (the PSN aside), written
/// one after the other.
struct Stretch {
    template: [u8; HEADERS_LEN],
    imm: Option<u32>,
    headers_len: usize,
    len: usize,
    wire: usize,
}

impl Stretch {
    /// Writes the messages of `wrs` into `slots`, `wire` bytes each, as
    /// segments `first`, `first + 1`, ... of a run behind `headers` (with
    /// the IPv4 identification of segment `first` set) whose segment 0 has
    /// PSN `psn`.
    fn write(
        &self,
        slots: &mut [u8],
        wrs: &[SendWr<Rocev2Ah>],
        headers: IcrcHeaders,
        psn: u32,
        first: usize,
    ) {
        let (headers_len, len) = (self.headers_len, self.len);
        let mut first_headers = [0u8; HEADERS_LEN + IMMDT_LEN];
        let first_headers = &mut first_headers[..headers_len];
        let psn = |k: usize| (psn + k as u32) & PSN_MASK;
        write_headers(first_headers, &self.template, psn(first), self.imm);
        let icrc = headers.run(first_headers);
        for (i, (slot, wr)) in slots.chunks_exact_mut(self.wire).zip(wrs).enumerate() {
            let k = first + i;
            let (transport, icrc_bytes) = slot.split_at_mut(self.wire - ICRC_LEN);
            let (bth_deth, rest) = transport.split_at_mut(headers_len);
            write_headers(bth_deth, &self.template, psn(k), self.imm);
            let (payload, pad) = rest.split_at_mut(len);
            payload.copy_from_slice(wr.mbuf.data());
            if !pad.is_empty() {
                pad.fill(0);
            }
            // Segment k of a GSO send carries IPv4 ID k (a lone message, 0).
            // (It cannot fail: the transport holds its headers.)
            let value = icrc
                .icrc_as_written(transport, k as u16, psn(k))
                .unwrap_or(0);
            icrc_bytes.copy_from_slice(&value.to_le_bytes());
        }
    }
}

/// Writes the BTH and DETH of `template` with `psn` (and the ImmDt) into
/// `headers`, which has room for exactly them.
#[inline]
pub(super) fn write_headers(
    headers: &mut [u8],
    template: &[u8; HEADERS_LEN],
    psn: u32,
    imm: Option<u32>,
) {
    let (bth_deth, immdt) = headers.split_at_mut(HEADERS_LEN);
    bth_deth.copy_from_slice(template);
    bth::Packet::new_unchecked(&mut bth_deth[..bth::HEADER_LEN]).set_ack_req_psn(false, psn);
    if let Some(imm) = imm {
        immdt.copy_from_slice(&imm.to_be_bytes());
    }
}
