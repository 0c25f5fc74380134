//! The null provider: a sink, or a loopback that hands every send back as a
//! receive. It measures the software path alone.

use super::{AhAttr, PortAttr, Provider, ProviderError, RecvCompletion, SendWr};
use crate::mem::{LcoreCache, Mbuf};
use arrayvec::ArrayVec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NullMode {
    /// Frees every sent mbuf.
    Sink,
    /// Queues every send as a receive from this same QP (bounded).
    Loopback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NullAh {
    pub dlid: u16,
}

pub struct NullProvider {
    port: PortAttr,
    mode: NullMode,
    cache: LcoreCache,
    /// Looped-back messages, oldest first, already as completions: a poll
    /// hands them over in one copy.
    looped: Vec<RecvCompletion>,
    /// Sink mode: sent buffers waiting for `reap` (fixed capacity).
    sent: Vec<Mbuf>,
    depth: usize,
    /// QPN and LID looped-back messages claim to come from, as the
    /// completion tail they are written with.
    loop_tail: u64,
    /// Sends refused because the loopback queue was full.
    pub overflows: u64,
}

impl NullProvider {
    /// `cache` receives the freed mbufs in sink mode; `depth` bounds the
    /// loopback queue (allocated now, never grown).
    pub fn new(port: PortAttr, mode: NullMode, cache: LcoreCache, depth: usize) -> Self {
        let loop_tail = RecvCompletion::tail(port.qpn, port.lid, false, false);
        NullProvider {
            port,
            mode,
            cache,
            looped: Vec::with_capacity(depth),
            sent: Vec::with_capacity(SENT_STASH),
            depth,
            loop_tail,
            overflows: 0,
        }
    }

    /// Makes looped-back messages appear to come from the QP `qpn` at `lid`
    /// instead of this one, so the receive path delivers them (decapsulation
    /// included) rather than dropping its own traffic.
    pub fn with_loopback_peer(mut self, qpn: u32, lid: u16) -> Self {
        self.loop_tail = RecvCompletion::tail(qpn, lid, false, false);
        self
    }
}

/// Sent buffers a sink keeps until the next `reap`: a few bursts.
const SENT_STASH: usize = 4 * super::BURST;

impl Provider for NullProvider {
    type Ah = NullAh;

    fn port(&self) -> PortAttr {
        self.port
    }

    fn create_ah(&mut self, attr: &AhAttr) -> Result<NullAh, ProviderError> {
        Ok(NullAh { dlid: attr.dlid })
    }

    #[inline]
    fn post_send<const N: usize>(&mut self, wrs: &mut ArrayVec<SendWr<NullAh>, N>) -> usize {
        let n = wrs.len();
        match self.mode {
            NullMode::Sink => {
                for wr in wrs.drain(..) {
                    // Kept for the lcore's `reap`; only without room (no reap
                    // called) into our own cache.
                    if self.sent.len() < SENT_STASH {
                        self.sent.push(wr.mbuf);
                    } else {
                        self.cache.free(wr.mbuf);
                    }
                }
                n
            }
            NullMode::Loopback => {
                let take = n.min(self.depth - self.looped.len());
                self.overflows += (n - take) as u64;
                let tail = self.loop_tail;
                let len = self.looped.len();
                let dst = self.looped.as_mut_ptr();
                let src = wrs.as_mut_ptr();
                for i in 0..take {
                    // SAFETY: i < take <= wrs.len(); each mbuf moves once
                    // (the rest of a request is `Copy` and needs no drop),
                    // into a slot of its own: len + take <= depth <= capacity.
                    unsafe {
                        let mbuf = std::ptr::read(&(*src.add(i)).mbuf);
                        RecvCompletion::write_with_tail(dst.add(len + i), mbuf, tail);
                    }
                }
                // SAFETY: the `take` slots after `len` were just written; the
                // requests not taken (rare: a full queue) move to the front.
                unsafe {
                    self.looped.set_len(len + take);
                    if take < n {
                        std::ptr::copy(src.add(take), src, n - take);
                    }
                    wrs.set_len(n - take);
                }
                take
            }
        }
    }

    #[inline]
    fn poll_recv<const N: usize>(&mut self, out: &mut ArrayVec<RecvCompletion, N>) -> usize {
        let n = out.remaining_capacity().min(self.looped.len());
        if n == 0 {
            return 0;
        }
        let len = out.len();
        let src = self.looped.as_mut_ptr();
        let rest = self.looped.len() - n;
        // SAFETY: the first n completions move out in one copy (their slots
        // are given up below), into n free slots of `out`; the rest move to
        // the front of the queue.
        unsafe {
            std::ptr::copy_nonoverlapping(src, out.as_mut_ptr().add(len), n);
            out.set_len(len + n);
            if rest > 0 {
                std::ptr::copy(src.add(n), src, rest);
            }
            self.looped.set_len(rest);
        }
        n
    }

    #[inline]
    fn peek_recv(&mut self, max: usize) -> Option<(*mut RecvCompletion, usize)> {
        Some((self.looped.as_mut_ptr(), max.min(self.looped.len())))
    }

    #[inline]
    unsafe fn consume_recv(&mut self, n: usize) {
        let rest = self.looped.len() - n;
        let src = self.looped.as_mut_ptr();
        // SAFETY: the first n moved out (the caller's promise); the rest
        // move to the front of the queue.
        if rest > 0 {
            std::ptr::copy(src.add(n), src, rest);
        }
        self.looped.set_len(rest);
    }

    #[inline]
    fn reap(&mut self, cache: &mut LcoreCache) {
        if self.sent.is_empty() {
            return;
        }
        for m in self.sent.drain(..) {
            cache.free(m);
        }
    }
}
