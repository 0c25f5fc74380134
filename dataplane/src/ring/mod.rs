//! Bounded rings (placeholder until the ring modes land).
