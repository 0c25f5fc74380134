//! The neighbour table as lcores see it: IP address → (address handle, QPN).
//! Immutable once built; the control plane publishes a new one to change it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Where to send unicast packets for one neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighEntry<A> {
    pub ah: A,
    pub qpn: u32,
}

/// Open addressing with linear probing; capacity is a power of two at least
/// twice the entry count, so a lookup is a multiply, a shift and a probe or two.
///
/// Each slot has an "accessed" bit, like a page table's: a lookup that hits
/// sets it (a load, and a store only when it was clear), and the control
/// plane collects and clears the bits to tell used neighbours from idle ones.
#[derive(Debug)]
pub struct NeighTable<A> {
    v4: Vec<Option<(u32, NeighEntry<A>)>>,
    v6: Vec<Option<(u128, NeighEntry<A>)>>,
    used4: Vec<AtomicBool>,
    used6: Vec<AtomicBool>,
    len: usize,
    /// Unique per table built in this process: tells tables apart even when
    /// one is allocated where a freed one was.
    version: u64,
}

static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

#[inline]
fn mark(bit: &AtomicBool) {
    if !bit.load(Ordering::Relaxed) {
        bit.store(true, Ordering::Relaxed);
    }
}

impl<A: Copy> Default for NeighTable<A> {
    fn default() -> Self {
        NeighTable::new(std::iter::empty())
    }
}

/// The IPv4 slots of a table with their mask: two registers in a burst loop.
pub(crate) struct V4View<'a, A> {
    slots: &'a [Option<(u32, NeighEntry<A>)>],
    used: &'a [AtomicBool],
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
                Some((k, e)) if *k == addr => {
                    // SAFETY: used has the same length as slots.
                    mark(unsafe { self.used.get_unchecked(i) });
                    return Some(e);
                }
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
        let (s4, s6) = (table_size(n4), table_size(all.len() - n4));
        let mut t = NeighTable {
            v4: vec![None; s4],
            v6: vec![None; s6],
            used4: (0..s4).map(|_| AtomicBool::new(false)).collect(),
            used6: (0..s6).map(|_| AtomicBool::new(false)).collect(),
            len: 0,
            version: NEXT_VERSION.fetch_add(1, Ordering::Relaxed),
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
            used: &self.used4,
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
                Some((k, e)) if *k == addr => {
                    // SAFETY: used6 has the same length as v6.
                    mark(unsafe { self.used6.get_unchecked(i) });
                    return Some(e);
                }
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

    /// This table's unique version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, NeighEntry<A>)> + '_ {
        let v4 = self
            .v4
            .iter()
            .flatten()
            .map(|(k, e)| (IpAddr::V4(Ipv4Addr::from(*k)), *e));
        let v6 = self
            .v6
            .iter()
            .flatten()
            .map(|(k, e)| (IpAddr::V6(Ipv6Addr::from(*k)), *e));
        v4.chain(v6)
    }

    /// Addresses looked up since the last call, clearing their accessed bits.
    pub fn take_used(&self) -> Vec<IpAddr> {
        let v4 = self.v4.iter().zip(&self.used4).filter_map(|(s, u)| {
            let (k, _) = s.as_ref()?;
            u.swap(false, Ordering::Relaxed)
                .then(|| IpAddr::V4(Ipv4Addr::from(*k)))
        });
        let v6 = self.v6.iter().zip(&self.used6).filter_map(|(s, u)| {
            let (k, _) = s.as_ref()?;
            u.swap(false, Ordering::Relaxed)
                .then(|| IpAddr::V6(Ipv6Addr::from(*k)))
        });
        v4.chain(v6).collect()
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
