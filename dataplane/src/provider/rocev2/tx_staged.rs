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

/// Messages that leave as one send: from request `first`, `count` of
/// `wire` bytes each at `off` in the stage.
#[derive(Clone, Copy)]
struct Run {
    first: usize,
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
        let gso = self.cfg.gso;
        let mut stage = std::mem::take(&mut self.tx_stage.bytes);
        let mut runs: ArrayVec<Run, MAX_BURST> = ArrayVec::new();
        let mut icrc: Option<IcrcHeaders> = None;
        let (mut n, mut off, mut dropped) = (0, 0, 0);
        let mut psn = self.psn;
        while n < wrs.len().min(STAGED_BURST) {
            let wr = &wrs[n];
            let len = wr.mbuf.len();
            if len > STAGED_MAX {
                break;
            }
            let pad = pad_count_for(len);
            if len > max_msg || !self.headers_template(self.headers_key(wr, opcode, pad)) {
                let wr = wrs.remove(n);
                self.cache.free(wr.mbuf);
                self.counters.tx_errors += 1;
                dropped += 1;
                continue;
            }
            let wire = headers_len + len + usize::from(pad) + ICRC_LEN;
            // With GSO, equal-sized messages to one destination QP share a
            // send (a receiver may pick the socket for a whole GSO datagram
            // by its first BTH: P_Key children share an address).
            let joins = gso
                && runs.last().is_some_and(|r| {
                    r.wire == wire
                        && r.count < MAX_GSO_SEGMENTS
                        && (r.count + 1) * wire <= MAX_GSO_BYTES
                        && wrs[r.first].ah.dst == wr.ah.dst
                        && wrs[r.first].remote_qpn == wr.remote_qpn
                });
            if !joins {
                if runs.is_full() {
                    break;
                }
                let dst = addr::socket_addr(wr.ah.dst, self.cfg.port);
                icrc = pseudo::headers(self.tx_addr, dst, wire);
                runs.push(Run {
                    first: n,
                    count: 0,
                    off,
                    wire,
                    dst,
                });
            }
            let Some(run) = runs.last_mut() else { break };
            let slot = &mut stage[off..off + wire];
            let (headers, rest) = slot.split_at_mut(headers_len);
            headers[..HEADERS_LEN].copy_from_slice(&self.tx_headers.1);
            bth::Packet::new_unchecked(&mut headers[..bth::HEADER_LEN]).set_ack_req_psn(false, psn);
            if let Some(imm) = imm {
                headers[HEADERS_LEN..].copy_from_slice(&imm.to_be_bytes());
            }
            let (payload, tail) = rest.split_at_mut(len);
            payload.copy_from_slice(wr.mbuf.data());
            if pad > 0 {
                tail[..usize::from(pad)].fill(0);
            }
            // Segment k of a GSO send carries IPv4 ID k (a lone message, 0).
            let value = icrc.as_ref().and_then(|h| {
                h.icrc_with_ipv4_id(&slot[..wire - ICRC_LEN], run.count as u16)
                    .ok()
            });
            let Some(value) = value else {
                // Families differ: nothing can carry this message. A run
                // it opened goes, and the previous run's headers come back.
                if run.count == 0 {
                    runs.pop();
                    icrc = runs
                        .last()
                        .and_then(|r| pseudo::headers(self.tx_addr, r.dst, r.wire));
                }
                let wr = wrs.remove(n);
                self.cache.free(wr.mbuf);
                self.counters.tx_errors += 1;
                dropped += 1;
                continue;
            };
            slot[wire - ICRC_LEN..].copy_from_slice(&value.to_le_bytes());
            run.count += 1;
            off += wire;
            psn = (psn + 1) & PSN_MASK;
            n += 1;
        }
        let consumed = self.send_runs(&stage, &runs, wrs, imm.is_some());
        self.tx_stage.bytes = stage;
        dropped + consumed
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
