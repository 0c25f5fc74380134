//! The 40-byte InfiniBand Global Route Header (IBA 8.3): laid out like an
//! IPv6 header, with GIDs for addresses and next header 0x1B (the IBA
//! transport). A UD receive buffer starts with one.

use super::bytes::{array_at, put_slice, put_u16, put_u32, u16_at, u32_at};
use super::{Error, Gid, Result};

pub const HEADER_LEN: usize = 40;
pub const IP_VERSION: u8 = 6;
/// Next header value for the IBA transport headers.
pub const NEXT_HEADER_IBA: u8 = 0x1B;
pub const FLOW_LABEL_MASK: u32 = 0x000F_FFFF;

mod field {
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLEN: usize = 4;
    pub const NXTHDR: usize = 6;
    pub const HOPLMT: usize = 7;
    pub const SGID: usize = 8;
    pub const DGID: usize = 24;
}

/// A view of a GRH. The payload is every byte after the header: in a UD
/// receive buffer the GRH's payload length describes the IBA packet, not
/// what the buffer holds, so it is not checked against the buffer.
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

    fn first_word(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::VER_TC_FLOW)
    }

    pub fn ip_version(&self) -> u8 {
        (self.first_word() >> 28) as u8
    }

    pub fn traffic_class(&self) -> u8 {
        (self.first_word() >> 20) as u8
    }

    pub fn flow_label(&self) -> u32 {
        self.first_word() & FLOW_LABEL_MASK
    }

    pub fn payload_len(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::PAYLEN)
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXTHDR]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOPLMT]
    }

    pub fn sgid(&self) -> Gid {
        Gid(array_at(self.buffer.as_ref(), field::SGID))
    }

    pub fn dgid(&self) -> Gid {
        Gid(array_at(self.buffer.as_ref(), field::DGID))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes version, traffic class and flow label (the first 32 bits).
    pub fn set_version_class_flow(&mut self, version: u8, traffic_class: u8, flow_label: u32) {
        let word = (u32::from(version & 0x0f) << 28)
            | (u32::from(traffic_class) << 20)
            | (flow_label & FLOW_LABEL_MASK);
        put_u32(self.buffer.as_mut(), field::VER_TC_FLOW, word);
    }

    pub fn set_payload_len(&mut self, value: u16) {
        put_u16(self.buffer.as_mut(), field::PAYLEN, value);
    }

    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[field::NXTHDR] = value;
    }

    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOPLMT] = value;
    }

    pub fn set_sgid(&mut self, value: Gid) {
        put_slice(self.buffer.as_mut(), field::SGID, value.as_bytes());
    }

    pub fn set_dgid(&mut self, value: Gid) {
        put_slice(self.buffer.as_mut(), field::DGID, value.as_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// A parsed GRH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    pub traffic_class: u8,
    /// 20 bits.
    pub flow_label: u32,
    pub payload_len: u16,
    pub next_header: u8,
    pub hop_limit: u8,
    pub sgid: Gid,
    pub dgid: Gid,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.ip_version() != IP_VERSION {
            return Err(Error::Malformed);
        }
        Ok(Repr {
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
            payload_len: packet.payload_len(),
            next_header: packet.next_header(),
            hop_limit: packet.hop_limit(),
            sgid: packet.sgid(),
            dgid: packet.dgid(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        packet.check_len()?;
        packet.set_version_class_flow(IP_VERSION, self.traffic_class, self.flow_label);
        packet.set_payload_len(self.payload_len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_sgid(self.sgid);
        packet.set_dgid(self.dgid);
        Ok(())
    }
}
