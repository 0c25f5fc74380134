//! The neighbour table as lcores see it: IP address → (address handle, QPN).
//! Immutable once built; the control plane publishes a new one to change it.

use std::net::IpAddr;

/// Where to send unicast packets for one neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighEntry<A> {
    pub ah: A,
    pub qpn: u32,
}

/// Open addressing with linear probing; capacity is a power of two at least
/// twice the entry count, so a lookup is a multiply, a shift and a probe or two.
#[derive(Debug, Clone)]
pub struct NeighTable<A> {
    v4: Vec<Option<(u32, NeighEntry<A>)>>,
    v6: Vec<Option<(u128, NeighEntry<A>)>>,
    len: usize,
}

impl<A: Copy> Default for NeighTable<A> {
    fn default() -> Self {
        NeighTable::new(std::iter::empty())
    }
}

/// The IPv4 slots of a table with their mask: two registers in a burst loop.
pub(crate) struct V4View<'a, A> {
    slots: &'a [Option<(u32, NeighEntry<A>)>],
    mask: usize,
}

impl<'a, A> V4View<'a, A> {
    #[inline]
    pub(crate) fn lookup(&self, addr: u32) -> Option<&'a NeighEntry<A>> {
        let mask = self.mask;
        let mut i = slot32(addr, mask);
        loop {
            // SAFETY: i is masked by len - 1, len a power of two (>= 8).
            match unsafe { self.slots.get_unchecked(i) } {
                Some((k, e)) if *k == addr => return Some(e),
                Some(_) => i = (i + 1) & mask,
                None => return None,
            }
        }
    }
}

#[inline]
fn slot32(k: u32, mask: usize) -> usize {
    (k.wrapping_mul(0x9E37_79B1) >> 7) as usize & mask
}

#[inline]
fn slot128(k: u128, mask: usize) -> usize {
    let folded = (k as u64) ^ ((k >> 64) as u64);
    (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) as usize & mask
}

fn table_size(n: usize) -> usize {
    (n * 2).next_power_of_two().max(8)
}

impl<A: Copy> NeighTable<A> {
    /// Builds a table; a later entry for the same address replaces an earlier one.
    pub fn new(entries: impl IntoIterator<Item = (IpAddr, NeighEntry<A>)>) -> Self {
        let all: Vec<_> = entries.into_iter().collect();
        let n4 = all.iter().filter(|e| e.0.is_ipv4()).count();
        let mut t = NeighTable {
            v4: vec![None; table_size(n4)],
            v6: vec![None; table_size(all.len() - n4)],
            len: 0,
        };
        for (ip, e) in all {
            t.insert(ip, e);
        }
        t
    }

    fn insert(&mut self, ip: IpAddr, e: NeighEntry<A>) {
        match ip {
            IpAddr::V4(a) => {
                let k = u32::from(a);
                let mask = self.v4.len() - 1;
                let mut i = slot32(k, mask);
                loop {
                    match &mut self.v4[i] {
                        Some((key, v)) if *key == k => return *v = e,
                        None => break,
                        _ => i = (i + 1) & mask,
                    }
                }
                self.v4[i] = Some((k, e));
            }
            IpAddr::V6(a) => {
                let k = u128::from(a);
                let mask = self.v6.len() - 1;
                let mut i = slot128(k, mask);
                loop {
                    match &mut self.v6[i] {
                        Some((key, v)) if *key == k => return *v = e,
                        None => break,
                        _ => i = (i + 1) & mask,
                    }
                }
                self.v6[i] = Some((k, e));
            }
        }
        self.len += 1;
    }

    #[inline]
    pub fn lookup_v4(&self, addr: u32) -> Option<&NeighEntry<A>> {
        self.v4_view().lookup(addr)
    }

    /// The IPv4 half, to hoist out of a burst loop.
    #[inline]
    pub(crate) fn v4_view(&self) -> V4View<'_, A> {
        V4View {
            slots: &self.v4,
            mask: self.v4.len() - 1,
        }
    }

    #[inline]
    pub fn lookup_v6(&self, addr: u128) -> Option<&NeighEntry<A>> {
        let mask = self.v6.len() - 1;
        let mut i = slot128(addr, mask);
        loop {
            // SAFETY: i is masked by len - 1, len a power of two.
            match unsafe { self.v6.get_unchecked(i) } {
                Some((k, e)) if *k == addr => return Some(e),
                Some(_) => i = (i + 1) & mask,
                None => return None,
            }
        }
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<&NeighEntry<A>> {
        match ip {
            IpAddr::V4(a) => self.lookup_v4(u32::from(a)),
            IpAddr::V6(a) => self.lookup_v6(u128::from(a)),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
