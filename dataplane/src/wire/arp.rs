//! IPoIB ARP (RFC 4391 §8): ARP with hardware type 32 and 20-byte hardware
//! addresses. Unlike Ethernet ARP, the target hardware address of a request
//! is 20 bytes too (zero when unknown).

use std::net::Ipv4Addr;

use super::bytes::{array_at, put_slice, put_u16, u16_at};
use super::hwaddr::HWADDR_LEN;
use super::{Error, HwAddr, Result};

pub const HARDWARE_TYPE_INFINIBAND: u16 = 32;
pub const PROTOCOL_IPV4: u16 = 0x0800;
pub const PROTOCOL_LEN: usize = 4;
/// 8 fixed bytes, then two (hardware address, IPv4 address) pairs.
pub const PACKET_LEN: usize = 8 + 2 * (HWADDR_LEN + PROTOCOL_LEN);

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: usize = 8;
    pub const SPA: usize = 28;
    pub const THA: usize = 32;
    pub const TPA: usize = 52;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Request,
    Reply,
    Unknown(u16),
}

impl From<u16> for Operation {
    fn from(value: u16) -> Self {
        match value {
            1 => Operation::Request,
            2 => Operation::Reply,
            other => Operation::Unknown(other),
        }
    }
}

impl From<Operation> for u16 {
    fn from(value: Operation) -> Self {
        match value {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::Unknown(other) => other,
        }
    }
}

/// A view of an IPoIB ARP packet (after the IPoIB header).
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

    /// The fixed IPoIB layout needs 56 bytes; trailing bytes are ignored.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < PACKET_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn hardware_type(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::HTYPE)
    }

    pub fn protocol_type(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::PTYPE)
    }

    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    pub fn operation(&self) -> Operation {
        Operation::from(u16_at(self.buffer.as_ref(), field::OPER))
    }

    pub fn source_hardware_addr(&self) -> HwAddr {
        HwAddr::from_array(&array_at(self.buffer.as_ref(), field::SHA))
    }

    pub fn source_protocol_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array_at::<4>(self.buffer.as_ref(), field::SPA))
    }

    pub fn target_hardware_addr(&self) -> HwAddr {
        HwAddr::from_array(&array_at(self.buffer.as_ref(), field::THA))
    }

    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array_at::<4>(self.buffer.as_ref(), field::TPA))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_hardware_type(&mut self, value: u16) {
        put_u16(self.buffer.as_mut(), field::HTYPE, value);
    }

    pub fn set_protocol_type(&mut self, value: u16) {
        put_u16(self.buffer.as_mut(), field::PTYPE, value);
    }

    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }

    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }

    pub fn set_operation(&mut self, value: Operation) {
        put_u16(self.buffer.as_mut(), field::OPER, value.into());
    }

    pub fn set_source_hardware_addr(&mut self, value: HwAddr) {
        put_slice(self.buffer.as_mut(), field::SHA, &value.to_bytes());
    }

    pub fn set_source_protocol_addr(&mut self, value: Ipv4Addr) {
        put_slice(self.buffer.as_mut(), field::SPA, &value.octets());
    }

    pub fn set_target_hardware_addr(&mut self, value: HwAddr) {
        put_slice(self.buffer.as_mut(), field::THA, &value.to_bytes());
    }

    pub fn set_target_protocol_addr(&mut self, value: Ipv4Addr) {
        put_slice(self.buffer.as_mut(), field::TPA, &value.octets());
    }
}

/// A parsed IPoIB ARP request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// `Request` or `Reply`; `parse` rejects anything else.
    pub operation: Operation,
    pub source_hardware_addr: HwAddr,
    pub source_protocol_addr: Ipv4Addr,
    pub target_hardware_addr: HwAddr,
    pub target_protocol_addr: Ipv4Addr,
}

impl Repr {
    /// A request for `target`'s hardware address (target hardware address zero).
    pub fn request(source_hw: HwAddr, source_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Repr {
        Repr {
            operation: Operation::Request,
            source_hardware_addr: source_hw,
            source_protocol_addr: source_ip,
            target_hardware_addr: HwAddr::default(),
            target_protocol_addr: target_ip,
        }
    }

    /// The reply `own_hw` sends to this request.
    pub fn reply(&self, own_hw: HwAddr) -> Repr {
        Repr {
            operation: Operation::Reply,
            source_hardware_addr: own_hw,
            source_protocol_addr: self.target_protocol_addr,
            target_hardware_addr: self.source_hardware_addr,
            target_protocol_addr: self.source_protocol_addr,
        }
    }

    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.hardware_type() != HARDWARE_TYPE_INFINIBAND
            || packet.protocol_type() != PROTOCOL_IPV4
        {
            return Err(Error::Unsupported);
        }
        if usize::from(packet.hardware_len()) != HWADDR_LEN
            || usize::from(packet.protocol_len()) != PROTOCOL_LEN
        {
            return Err(Error::Malformed);
        }
        let operation = match packet.operation() {
            op @ (Operation::Request | Operation::Reply) => op,
            Operation::Unknown(_) => return Err(Error::Unsupported),
        };
        Ok(Repr {
            operation,
            source_hardware_addr: packet.source_hardware_addr(),
            source_protocol_addr: packet.source_protocol_addr(),
            target_hardware_addr: packet.target_hardware_addr(),
            target_protocol_addr: packet.target_protocol_addr(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        packet.check_len()?;
        packet.set_hardware_type(HARDWARE_TYPE_INFINIBAND);
        packet.set_protocol_type(PROTOCOL_IPV4);
        packet.set_hardware_len(HWADDR_LEN as u8);
        packet.set_protocol_len(PROTOCOL_LEN as u8);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(self.source_hardware_addr);
        packet.set_source_protocol_addr(self.source_protocol_addr);
        packet.set_target_hardware_addr(self.target_hardware_addr);
        packet.set_target_protocol_addr(self.target_protocol_addr);
        Ok(())
    }
}
