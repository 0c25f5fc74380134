//! The 8-byte Datagram Extended Transport Header (IBA 9.3.3) of UD packets:
//! the Q_Key and the sender's QP.

use super::super::bytes::{put_u24, put_u32, u24_at, u32_at};
use super::super::{Error, Result};

pub const HEADER_LEN: usize = 8;
pub const QPN_MASK: u32 = 0x00FF_FFFF;
/// Q_Keys with the high bit set are controlled; only privileged QPs may send them.
pub const CONTROLLED_QKEY_BIT: u32 = 0x8000_0000;

mod field {
    pub const QKEY: usize = 0;
    pub const RESERVED: usize = 4;
    pub const SRC_QPN: usize = 5;
}

/// A view of a DETH at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn qkey(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::QKEY)
    }

    #[inline]
    pub fn src_qpn(&self) -> u32 {
        u24_at(self.buffer.as_ref(), field::SRC_QPN)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// Everything after the DETH.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_qkey(&mut self, value: u32) {
        put_u32(self.buffer.as_mut(), field::QKEY, value);
    }

    /// Writes the source QP; the reserved byte before it becomes zero.
    pub fn set_src_qpn(&mut self, value: u32) {
        self.buffer.as_mut()[field::RESERVED] = 0;
        put_u24(self.buffer.as_mut(), field::SRC_QPN, value);
    }
}

/// A parsed DETH. `src_qpn` is 24 bits; higher bits are dropped on emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Repr {
    pub qkey: u32,
    pub src_qpn: u32,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            qkey: packet.qkey(),
            src_qpn: packet.src_qpn(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        packet.check_len()?;
        packet.set_qkey(self.qkey);
        packet.set_src_qpn(self.src_qpn & QPN_MASK);
        Ok(())
    }
}
