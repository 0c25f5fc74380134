use core::fmt;
use std::net::Ipv6Addr;

/// A 128-bit InfiniBand GID (also used for MGIDs). Network byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Gid(pub [u8; 16]);

impl Gid {
    pub const fn from_bytes(b: [u8; 16]) -> Self {
        Gid(b)
    }
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
    /// A multicast GID starts with 0xFF, as an IPv6 multicast address does.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] == 0xff
    }
    /// Subnet prefix (high 64 bits).
    pub fn subnet_prefix(&self) -> u64 {
        u64::from_be_bytes([
            self.0[0], self.0[1], self.0[2], self.0[3], self.0[4], self.0[5], self.0[6], self.0[7],
        ])
    }
    /// Interface ID / port GUID (low 64 bits).
    pub fn interface_id(&self) -> u64 {
        u64::from_be_bytes([
            self.0[8], self.0[9], self.0[10], self.0[11], self.0[12], self.0[13], self.0[14],
            self.0[15],
        ])
    }
    /// A port GID from the link-local prefix fe80::/64 and a port GUID.
    pub fn link_local(guid: u64) -> Self {
        let mut b = [0u8; 16];
        b[0] = 0xfe;
        b[1] = 0x80;
        b[8..].copy_from_slice(&guid.to_be_bytes());
        Gid(b)
    }
}

impl From<Ipv6Addr> for Gid {
    fn from(a: Ipv6Addr) -> Self {
        Gid(a.octets())
    }
}

impl From<Gid> for Ipv6Addr {
    fn from(g: Gid) -> Self {
        Ipv6Addr::from(g.0)
    }
}

impl fmt::Display for Gid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Ipv6Addr::from(self.0), f)
    }
}

impl fmt::Debug for Gid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gid({self})")
    }
}
