//! The 20-byte IPoIB hardware address (RFC 4391 §9.1.1): one flags byte, a
//! 24-bit queue pair number and a 16-byte GID.

use core::fmt;
use core::str::FromStr;

use super::bytes::{array_at, put_slice, put_u24, u24_at};
use super::{Error, Gid, Result};

pub const HWADDR_LEN: usize = 20;
/// The QPN of every multicast hardware address.
pub const MULTICAST_QPN: u32 = 0x00FF_FFFF;
pub const QPN_MASK: u32 = 0x00FF_FFFF;
/// Flags bit a connected-mode peer sets (Linux `IPOIB_FLAGS_RC`).
pub const FLAG_CONNECTED_MODE: u8 = 0x80;

/// An IPoIB hardware address. `flags` is kept raw: only its top bits have a
/// meaning and they are not ours to interpret on the datagram path.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct HwAddr {
    pub flags: u8,
    /// 24 bits; higher bits are dropped when written.
    pub qpn: u32,
    pub gid: Gid,
}

impl HwAddr {
    #[inline]
    pub const fn new(flags: u8, qpn: u32, gid: Gid) -> Self {
        HwAddr {
            flags,
            qpn: qpn & QPN_MASK,
            gid,
        }
    }

    /// The multicast address of a group: flags 0, QPN 0xFFFFFF, the MGID.
    #[inline]
    pub const fn multicast(mgid: Gid) -> Self {
        HwAddr::new(0, MULTICAST_QPN, mgid)
    }

    #[inline]
    pub fn from_array(bytes: &[u8; HWADDR_LEN]) -> Self {
        HwAddr {
            flags: bytes[0],
            qpn: u24_at(bytes, 1),
            gid: Gid(array_at(bytes, 4)),
        }
    }

    /// Parses exactly 20 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        match <&[u8; HWADDR_LEN]>::try_from(bytes) {
            Ok(array) => Ok(Self::from_array(array)),
            Err(_) if bytes.len() < HWADDR_LEN => Err(Error::Truncated),
            Err(_) => Err(Error::Malformed),
        }
    }

    #[inline]
    pub fn to_bytes(&self) -> [u8; HWADDR_LEN] {
        let mut out = [0u8; HWADDR_LEN];
        out[0] = self.flags;
        put_u24(&mut out, 1, self.qpn);
        put_slice(&mut out, 4, self.gid.as_bytes());
        out
    }

    #[inline]
    pub const fn is_multicast(&self) -> bool {
        self.qpn & QPN_MASK == MULTICAST_QPN
    }
}

/// Colon-separated bytes, as Linux prints a 20-byte `dev_addr`.
impl fmt::Display for HwAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.to_bytes().iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for HwAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HwAddr({self})")
    }
}

/// Parses the `Display` form: 20 two-digit hex bytes separated by colons.
impl FromStr for HwAddr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut bytes = [0u8; HWADDR_LEN];
        let mut count = 0;
        for part in s.split(':') {
            let slot = bytes.get_mut(count).ok_or(Error::Malformed)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::Malformed);
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| Error::Malformed)?;
            count += 1;
        }
        if count != HWADDR_LEN {
            return Err(Error::Truncated);
        }
        Ok(HwAddr::from_array(&bytes))
    }
}
