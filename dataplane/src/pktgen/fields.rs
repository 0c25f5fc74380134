//! Per-packet field values for each mode: no allocation, a few integer ops.

use super::spec::{FieldRange, Mode, Template};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const SRC: usize = 0;
const DST: usize = 1;
const SPORT: usize = 2;
const DPORT: usize = 3;
const SIZE: usize = 4;

/// xorshift64*: small, fast, and the same sequence for the same seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 step so that nearby seeds give unrelated sequences.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 1 } else { z })
    }
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    #[inline]
    fn next_u128(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }
}

enum Kind {
    Single,
    Range,
    Random(Rng),
    Sequence(Vec<Template>, usize),
}

/// Produces the template of each successive packet of a stream.
pub struct FieldGen {
    kind: Kind,
    base: Template,
    ranges: [Option<FieldRange>; 5],
    cur: [u128; 5],
}

fn addr_to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn addr_from_u128(v4: bool, v: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

impl FieldGen {
    pub fn new(base: Template, mode: &Mode) -> FieldGen {
        let (kind, ranges) = match mode {
            Mode::Single => (Kind::Single, Default::default()),
            Mode::Range(r) => (Kind::Range, r.clone()),
            Mode::Random { seed, ranges } => (Kind::Random(Rng::new(*seed)), ranges.clone()),
            Mode::Sequence(ts) => (Kind::Sequence(ts.clone(), 0), Default::default()),
        };
        let ranges = [
            ranges.src,
            ranges.dst,
            ranges.src_port,
            ranges.dst_port,
            ranges.size,
        ];
        let base_vals = [
            addr_to_u128(base.src),
            addr_to_u128(base.dst),
            u128::from(base.src_port),
            u128::from(base.dst_port),
            base.size as u128,
        ];
        let mut cur = base_vals;
        for (c, r) in cur.iter_mut().zip(&ranges) {
            if let Some(r) = r {
                *c = r.min;
            }
        }
        FieldGen {
            kind,
            base,
            ranges,
            cur,
        }
    }

    fn template_of(&self, v: &[u128; 5]) -> Template {
        let v4 = self.base.src.is_ipv4();
        Template {
            src: addr_from_u128(v4, v[SRC]),
            dst: addr_from_u128(v4, v[DST]),
            src_port: v[SPORT] as u16,
            dst_port: v[DPORT] as u16,
            size: v[SIZE] as usize,
        }
    }

    /// The next packet's fields.
    #[inline]
    pub fn next_template(&mut self) -> Template {
        match &mut self.kind {
            Kind::Single => self.base,
            Kind::Range => {
                let t = self.template_of(&self.cur);
                for (c, r) in self.cur.iter_mut().zip(&self.ranges) {
                    if let Some(r) = r {
                        *c = r.next(*c);
                    }
                }
                t
            }
            Kind::Random(rng) => {
                for (c, r) in self.cur.iter_mut().zip(&self.ranges) {
                    if let Some(r) = r {
                        *c = r.nth(rng.next_u128());
                    }
                }
                self.template_of(&self.cur)
            }
            Kind::Sequence(ts, i) => {
                let t = ts[*i];
                *i = if *i + 1 == ts.len() { 0 } else { *i + 1 };
                t
            }
        }
    }
}
