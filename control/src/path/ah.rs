//! Address handle creation as the path cache needs it; the provider side
//! implements [`AhFactory`].

use ipoib_dataplane::provider::{AhAttr, Provider};
use std::collections::BTreeMap;
use std::fmt::Debug;

/// Why an address handle could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot create address handle: {0}")]
pub struct AhError(pub String);

/// Creates and destroys address handles: once per path, not per neighbour.
pub trait AhFactory {
    type Ah: Copy + Debug + PartialEq;
    fn create_ah(&mut self, attr: &AhAttr) -> Result<Self::Ah, AhError>;
    fn destroy_ah(&mut self, ah: Self::Ah);
}

/// A recorded address handle: a serial number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordedAh(pub u32);

/// A fake factory that records every call, for tests and the soft default.
#[derive(Debug, Default)]
pub struct RecordingAhFactory {
    next: u32,
    live: BTreeMap<RecordedAh, AhAttr>,
    /// Every attribute set a handle was created from, in order.
    pub created: Vec<AhAttr>,
    /// Every handle destroyed, in order.
    pub destroyed: Vec<RecordedAh>,
    /// Destroy calls for handles that were not live (must stay empty).
    pub double_destroys: Vec<RecordedAh>,
    /// This many next `create_ah` calls fail.
    pub fail_next: u32,
}

impl RecordingAhFactory {
    pub fn new() -> Self {
        Self::default()
    }
    /// Handles created and not yet destroyed.
    pub fn live(&self) -> usize {
        self.live.len()
    }
    pub fn attr(&self, ah: RecordedAh) -> Option<&AhAttr> {
        self.live.get(&ah)
    }
}

impl AhFactory for RecordingAhFactory {
    type Ah = RecordedAh;

    fn create_ah(&mut self, attr: &AhAttr) -> Result<RecordedAh, AhError> {
        if self.fail_next > 0 {
            self.fail_next -= 1;
            return Err(AhError("injected failure".into()));
        }
        self.next = self.next.wrapping_add(1);
        let ah = RecordedAh(self.next);
        self.live.insert(ah, *attr);
        self.created.push(*attr);
        Ok(ah)
    }

    fn destroy_ah(&mut self, ah: RecordedAh) {
        if self.live.remove(&ah).is_some() {
            self.destroyed.push(ah);
        } else {
            self.double_destroys.push(ah);
        }
    }
}

/// Address handles from a provider's queue pair (e.g. a second handle on
/// the port the lcore drives). Providers keep no per-handle state to free,
/// so `destroy_ah` only counts.
pub struct ProviderAhFactory<P> {
    provider: P,
    destroyed: u64,
}

impl<P: Provider> ProviderAhFactory<P> {
    pub fn new(provider: P) -> Self {
        ProviderAhFactory {
            provider,
            destroyed: 0,
        }
    }
    pub fn provider(&self) -> &P {
        &self.provider
    }
    /// Handles given back so far.
    pub fn destroyed(&self) -> u64 {
        self.destroyed
    }
}

impl<P: Provider> AhFactory for ProviderAhFactory<P>
where
    P::Ah: PartialEq,
{
    type Ah = P::Ah;

    fn create_ah(&mut self, attr: &AhAttr) -> Result<P::Ah, AhError> {
        self.provider
            .create_ah(attr)
            .map_err(|e| AhError(e.to_string()))
    }

    fn destroy_ah(&mut self, _ah: P::Ah) {
        self.destroyed += 1;
    }
}
