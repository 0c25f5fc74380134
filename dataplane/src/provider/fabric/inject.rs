/// Seeded fault injection on the wire: every run with the same seed and the
/// same traffic drops and reorders the same messages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Injection {
    /// Probability that a message is lost (0.0..=1.0).
    pub loss: f64,
    /// Probability that a message is held back and delivered after the next one.
    pub reorder: f64,
    pub seed: u64,
}

impl Default for Injection {
    fn default() -> Self {
        Injection {
            loss: 0.0,
            reorder: 0.0,
            seed: 1,
        }
    }
}

impl Injection {
    pub fn is_active(&self) -> bool {
        self.loss > 0.0 || self.reorder > 0.0
    }
}

/// xorshift64*: tiny, fast and reproducible; quality is ample for fault dice.
#[derive(Debug, Clone)]
pub(crate) struct Dice {
    state: u64,
    loss: u64,
    reorder: u64,
}

impl Dice {
    pub(crate) fn new(inj: &Injection, stream: u64) -> Dice {
        let threshold = |p: f64| (p.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
        let mut state = inj.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        if state == 0 {
            state = 0x2545_F491_4F6C_DD1D;
        }
        Dice {
            state,
            loss: threshold(inj.loss),
            reorder: threshold(inj.reorder),
        }
    }
    #[inline]
    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    #[inline]
    pub(crate) fn lose(&mut self) -> bool {
        self.loss != 0 && self.next() < self.loss
    }
    #[inline]
    pub(crate) fn reorder(&mut self) -> bool {
        self.reorder != 0 && self.next() < self.reorder
    }
}
