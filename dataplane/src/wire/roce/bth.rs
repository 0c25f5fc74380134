//! The 12-byte InfiniBand Base Transport Header (IBA 9.2) as RoCEv2 carries
//! it right after the UDP header.

use super::super::bytes::{put_u16, put_u24, u16_at, u24_at};
use super::super::{Error, Result};

pub const HEADER_LEN: usize = 12;
/// Byte 4 holds FECN, BECN and six reserved bits; the ICRC masks all of it.
pub const VARIANT_BYTE: usize = 4;
pub const QPN_MASK: u32 = 0x00FF_FFFF;
pub const PSN_MASK: u32 = 0x00FF_FFFF;

mod field {
    pub const OPCODE: usize = 0;
    pub const FLAGS: usize = 1;
    pub const PKEY: usize = 2;
    pub const FECN_BECN: usize = 4;
    pub const DEST_QPN: usize = 5;
    pub const ACK_REQ: usize = 8;
    pub const PSN: usize = 9;
}

const SOLICITED: u8 = 0x80;
const MIGREQ: u8 = 0x40;
const PAD_SHIFT: u8 = 4;
const PAD_MASK: u8 = 0x03;
const TVER_MASK: u8 = 0x0f;
const FECN: u8 = 0x80;
const BECN: u8 = 0x40;
const ACK_REQ: u8 = 0x80;

/// A view of a BTH at the start of a buffer (the rest is left to the caller).
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
    fn byte(&self, at: usize) -> u8 {
        self.buffer.as_ref()[at]
    }

    #[inline]
    pub fn opcode(&self) -> u8 {
        self.byte(field::OPCODE)
    }

    #[inline]
    pub fn solicited(&self) -> bool {
        self.byte(field::FLAGS) & SOLICITED != 0
    }

    #[inline]
    pub fn migreq(&self) -> bool {
        self.byte(field::FLAGS) & MIGREQ != 0
    }

    /// Zero bytes appended to the payload to reach a multiple of 4.
    #[inline]
    pub fn pad_count(&self) -> u8 {
        (self.byte(field::FLAGS) >> PAD_SHIFT) & PAD_MASK
    }

    #[inline]
    pub fn tver(&self) -> u8 {
        self.byte(field::FLAGS) & TVER_MASK
    }

    #[inline]
    pub fn pkey(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::PKEY)
    }

    #[inline]
    pub fn fecn(&self) -> bool {
        self.byte(field::FECN_BECN) & FECN != 0
    }

    #[inline]
    pub fn becn(&self) -> bool {
        self.byte(field::FECN_BECN) & BECN != 0
    }

    #[inline]
    pub fn dest_qpn(&self) -> u32 {
        u24_at(self.buffer.as_ref(), field::DEST_QPN)
    }

    #[inline]
    pub fn ack_req(&self) -> bool {
        self.byte(field::ACK_REQ) & ACK_REQ != 0
    }

    #[inline]
    pub fn psn(&self) -> u32 {
        u24_at(self.buffer.as_ref(), field::PSN)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// Everything after the BTH.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_opcode(&mut self, value: u8) {
        self.buffer.as_mut()[field::OPCODE] = value;
    }

    /// SE, M, PadCnt (low 2 bits kept) and TVer (low 4 bits kept) share byte 1.
    pub fn set_flags(&mut self, solicited: bool, migreq: bool, pad_count: u8, tver: u8) {
        let mut byte = ((pad_count & PAD_MASK) << PAD_SHIFT) | (tver & TVER_MASK);
        if solicited {
            byte |= SOLICITED;
        }
        if migreq {
            byte |= MIGREQ;
        }
        self.buffer.as_mut()[field::FLAGS] = byte;
    }

    pub fn set_pkey(&mut self, value: u16) {
        put_u16(self.buffer.as_mut(), field::PKEY, value);
    }

    /// Writes FECN and BECN; the reserved bits of byte 4 become zero.
    pub fn set_congestion(&mut self, fecn: bool, becn: bool) {
        let mut byte = 0;
        if fecn {
            byte |= FECN;
        }
        if becn {
            byte |= BECN;
        }
        self.buffer.as_mut()[field::FECN_BECN] = byte;
    }

    pub fn set_dest_qpn(&mut self, value: u32) {
        put_u24(self.buffer.as_mut(), field::DEST_QPN, value);
    }

    /// Writes the AckReq bit and the PSN; the reserved bits of byte 8 become zero.
    pub fn set_ack_req_psn(&mut self, ack_req: bool, psn: u32) {
        self.buffer.as_mut()[field::ACK_REQ] = if ack_req { ACK_REQ } else { 0 };
        put_u24(self.buffer.as_mut(), field::PSN, psn);
    }
}

/// A parsed BTH. QPN and PSN are 24 bits; higher bits are dropped on emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Repr {
    pub opcode: u8,
    pub solicited: bool,
    pub migreq: bool,
    pub pad_count: u8,
    pub tver: u8,
    pub pkey: u16,
    pub fecn: bool,
    pub becn: bool,
    pub dest_qpn: u32,
    pub ack_req: bool,
    pub psn: u32,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            opcode: packet.opcode(),
            solicited: packet.solicited(),
            migreq: packet.migreq(),
            pad_count: packet.pad_count(),
            tver: packet.tver(),
            pkey: packet.pkey(),
            fecn: packet.fecn(),
            becn: packet.becn(),
            dest_qpn: packet.dest_qpn(),
            ack_req: packet.ack_req(),
            psn: packet.psn(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 12 bytes; reserved bits are zero. `Malformed` if PadCnt
    /// or TVer do not fit their fields.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        packet.check_len()?;
        if self.pad_count > PAD_MASK || self.tver > TVER_MASK {
            return Err(Error::Malformed);
        }
        packet.set_opcode(self.opcode);
        packet.set_flags(self.solicited, self.migreq, self.pad_count, self.tver);
        packet.set_pkey(self.pkey);
        packet.set_congestion(self.fecn, self.becn);
        packet.set_dest_qpn(self.dest_qpn & QPN_MASK);
        packet.set_ack_req_psn(self.ack_req, self.psn & PSN_MASK);
        Ok(())
    }
}
