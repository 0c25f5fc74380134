//! A provider's own counters, published for readers on other threads.
//!
//! A provider's counters are plain integers its lcore keeps; after each
//! burst the lcore copies them here (relaxed stores: one writer, readers
//! want a recent value, not a consistent cut), and `ipoibctl stats` and the
//! metrics endpoint read them from any thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Named counters with one writer.
#[derive(Debug)]
pub struct ProviderXstats {
    /// Put in front of every name (`rocev2_`), so they do not clash with the
    /// interface's own.
    prefix: &'static str,
    names: Vec<&'static str>,
    values: Box<[AtomicU64]>,
}

impl ProviderXstats {
    pub fn new(prefix: &'static str, names: &[&'static str]) -> Arc<Self> {
        Arc::new(ProviderXstats {
            prefix,
            names: names.to_vec(),
            values: names.iter().map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// Stores the current values, in the order of the names (extra values
    /// are ignored, missing ones left as they were).
    #[inline]
    pub fn publish(&self, values: impl IntoIterator<Item = u64>) {
        for (cell, v) in self.values.iter().zip(values) {
            cell.store(v, Ordering::Relaxed);
        }
    }

    /// The prefixed names and their last published values.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        self.names
            .iter()
            .zip(self.values.iter())
            .map(|(n, v)| (format!("{}{n}", self.prefix), v.load(Ordering::Relaxed)))
            .collect()
    }

    /// The last published value of `name` (unprefixed).
    pub fn get(&self, name: &str) -> Option<u64> {
        let i = self.names.iter().position(|n| *n == name)?;
        Some(self.values[i].load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_values_are_read_back_under_prefixed_names() {
        let x = ProviderXstats::new("p_", &["a", "b"]);
        assert_eq!(x.snapshot(), vec![("p_a".into(), 0), ("p_b".into(), 0)]);
        x.publish([3, 4, 5]);
        assert_eq!(x.snapshot(), vec![("p_a".into(), 3), ("p_b".into(), 4)]);
        x.publish([7]);
        assert_eq!(
            (x.get("a"), x.get("b"), x.get("c")),
            (Some(7), Some(4), None)
        );
    }
}
