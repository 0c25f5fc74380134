//! Path records: what the SA says about the route to one GID.

use ipoib_dataplane::provider::AhAttr;
use ipoib_dataplane::wire::Gid;
use std::fmt;

/// The essentials of a PathRecord (IBA 15.2.5.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PathRecord {
    pub dgid: Gid,
    pub dlid: u16,
    pub sl: u8,
    /// IB MTU of the path in bytes.
    pub mtu: u16,
    /// IBA rate code.
    pub rate: u8,
}

impl PathRecord {
    /// The address handle attributes of the path. Destinations are on our
    /// subnet, so no GRH is needed.
    pub fn ah_attr(&self) -> AhAttr {
        AhAttr {
            dlid: self.dlid,
            dgid: None,
            sl: self.sl,
        }
    }
}

/// Identifies one query between the path cache and the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

impl fmt::Display for QueryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "q{}", self.0)
    }
}

/// Why no path (or no address handle) is available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PathError {
    /// The SA knows no route to the GID.
    #[error("no path to the destination GID")]
    NoPath,
    /// The SA failed the query.
    #[error("path query failed")]
    Failed,
    /// No answer within the query timeout (raised by the cache).
    #[error("path query timed out")]
    TimedOut,
    /// The provider refused to create the address handle.
    #[error("address handle creation failed")]
    AhCreate,
}

pub type PathResult = Result<PathRecord, PathError>;
