//! A sliding bitmap of recently seen sequence numbers: exact duplicate and
//! reorder detection within the window, constant memory, no allocation per packet.

/// How a sequence number compares with what was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Higher than every number seen so far.
    InOrder,
    /// New, but a higher number was seen before it.
    Reordered,
    /// Seen before.
    Duplicate,
    /// Older than the window reaches: counted as new and reordered, unverified.
    Late,
}

#[derive(Debug, Clone)]
pub struct SeqWindow {
    bits: Vec<u64>,
    /// Highest sequence number seen; `None` before the first.
    top: Option<u64>,
}

impl SeqWindow {
    /// A window of `size` numbers, rounded up to a multiple of 64.
    pub fn new(size: usize) -> SeqWindow {
        SeqWindow {
            bits: vec![0; size.max(64).div_ceil(64)],
            top: None,
        }
    }
    fn len(&self) -> u64 {
        self.bits.len() as u64 * 64
    }
    pub fn top(&self) -> Option<u64> {
        self.top
    }
    #[inline]
    fn slot(&self, seq: u64) -> (usize, u64) {
        let i = seq % self.len();
        ((i / 64) as usize, 1u64 << (i % 64))
    }
    #[inline]
    fn set(&mut self, seq: u64) -> bool {
        let (w, b) = self.slot(seq);
        let was = self.bits[w] & b != 0;
        self.bits[w] |= b;
        was
    }
    #[inline]
    fn clear(&mut self, seq: u64) {
        let (w, b) = self.slot(seq);
        self.bits[w] &= !b;
    }

    #[inline]
    pub fn observe(&mut self, seq: u64) -> Arrival {
        let Some(top) = self.top else {
            self.top = Some(seq);
            self.set(seq);
            return Arrival::InOrder;
        };
        if seq > top {
            let gap = seq - top;
            if gap >= self.len() {
                self.bits.fill(0);
            } else {
                for s in top + 1..seq {
                    self.clear(s);
                }
            }
            self.clear(seq);
            self.set(seq);
            self.top = Some(seq);
            return Arrival::InOrder;
        }
        if top - seq >= self.len() {
            return Arrival::Late;
        }
        if self.set(seq) {
            Arrival::Duplicate
        } else {
            Arrival::Reordered
        }
    }
}
