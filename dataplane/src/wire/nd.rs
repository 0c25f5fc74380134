//! IPv6 Neighbour Discovery over IPoIB: the option list of RS/RA/NS/NA
//! messages, the 24-byte link-layer address option (RFC 4391 §9.1.2) and a
//! minimal Neighbour Solicitation/Advertisement view (RFC 4861 §4.3, §4.4).

use std::net::Ipv6Addr;

use super::bytes::{array_at, put_slice, put_u16, u16_at};
use super::checksum::{self, PROTOCOL_ICMPV6};
use super::hwaddr::HWADDR_LEN;
use super::{Error, HwAddr, Result};

pub const ICMPV6_ROUTER_SOLICIT: u8 = 133;
pub const ICMPV6_ROUTER_ADVERT: u8 = 134;
pub const ICMPV6_NEIGHBOR_SOLICIT: u8 = 135;
pub const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;
pub const ICMPV6_REDIRECT: u8 = 137;

pub const OPTION_SOURCE_LLADDR: u8 = 1;
pub const OPTION_TARGET_LLADDR: u8 = 2;
/// Options are sized in units of 8 bytes.
pub const OPTION_UNIT: usize = 8;
/// The IPoIB link-layer address option: type, length 3, 2 pad bytes, address.
pub const LLADDR_OPTION_LEN: usize = 24;
const LLADDR_OPTION_UNITS: u8 = (LLADDR_OPTION_LEN / OPTION_UNIT) as u8;
const LLADDR_OFFSET: usize = 4;

/// Where the options start in each ND message (ICMPv6 header included).
pub fn options_offset(icmp_type: u8) -> Option<usize> {
    match icmp_type {
        ICMPV6_ROUTER_SOLICIT => Some(8),
        ICMPV6_ROUTER_ADVERT => Some(16),
        ICMPV6_NEIGHBOR_SOLICIT | ICMPV6_NEIGHBOR_ADVERT => Some(24),
        ICMPV6_REDIRECT => Some(40),
        _ => None,
    }
}

/// The options of an RS/RA/NS/NA/Redirect message (the whole ICMPv6 message).
pub fn message_options(icmp: &[u8]) -> Result<OptionIter<'_>> {
    let icmp_type = *icmp.first().ok_or(Error::Truncated)?;
    let offset = options_offset(icmp_type).ok_or(Error::Unsupported)?;
    icmp.get(offset..).map(options).ok_or(Error::Truncated)
}

/// One option: its type and all of its bytes (type and length included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdOption<'a> {
    pub kind: u8,
    pub bytes: &'a [u8],
}

impl<'a> NdOption<'a> {
    /// The bytes after the type and length.
    pub fn body(&self) -> &'a [u8] {
        self.bytes.get(2..).unwrap_or(&[])
    }
}

/// Iterates an option list. A malformed option (length 0, or longer than the
/// rest) yields one `Err` and ends the iteration.
#[derive(Debug, Clone)]
pub struct OptionIter<'a> {
    rest: &'a [u8],
}

/// Iterates the options in `buf` (the bytes after the fixed message part).
pub fn options(buf: &[u8]) -> OptionIter<'_> {
    OptionIter { rest: buf }
}

fn split_option(buf: &[u8]) -> Result<(NdOption<'_>, &[u8])> {
    let [kind, units, ..] = *buf else {
        return Err(Error::Truncated);
    };
    if units == 0 {
        return Err(Error::Malformed);
    }
    let len = usize::from(units) * OPTION_UNIT;
    if buf.len() < len {
        return Err(Error::Truncated);
    }
    let (bytes, rest) = buf.split_at(len);
    Ok((NdOption { kind, bytes }, rest))
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = Result<NdOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match split_option(self.rest) {
            Ok((option, rest)) => {
                self.rest = rest;
                Some(Ok(option))
            }
            Err(err) => {
                self.rest = &[];
                Some(Err(err))
            }
        }
    }
}

/// Which link-layer address an option carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkLayerAddrKind {
    Source,
    Target,
}

impl LinkLayerAddrKind {
    pub const fn option_type(self) -> u8 {
        match self {
            LinkLayerAddrKind::Source => OPTION_SOURCE_LLADDR,
            LinkLayerAddrKind::Target => OPTION_TARGET_LLADDR,
        }
    }
}

/// The first option of `kind` in an option list. A malformed list is an
/// error even if the option was found before the defect.
pub fn find_link_layer_addr(options_buf: &[u8], kind: LinkLayerAddrKind) -> Result<Option<HwAddr>> {
    let mut found = None;
    for option in options(options_buf) {
        let option = option?;
        if found.is_none() && option.kind == kind.option_type() {
            let view = LinkLayerAddrOption::new_checked(option.bytes)?;
            found = Some(view.hwaddr());
        }
    }
    Ok(found)
}

/// A view of an IPoIB source/target link-layer address option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkLayerAddrOption<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> LinkLayerAddrOption<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        LinkLayerAddrOption { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let option = Self::new_unchecked(buffer);
        option.check_len()?;
        Ok(option)
    }

    /// Length 0 is malformed; so is any length other than 3 on IPoIB.
    pub fn check_len(&self) -> Result<()> {
        let buf = self.buffer.as_ref();
        let [_, units, ..] = *buf else {
            return Err(Error::Truncated);
        };
        if units == 0 {
            return Err(Error::Malformed);
        }
        if buf.len() < usize::from(units) * OPTION_UNIT {
            return Err(Error::Truncated);
        }
        if units != LLADDR_OPTION_UNITS {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn option_type(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// In units of 8 bytes.
    pub fn length_units(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    pub fn hwaddr(&self) -> HwAddr {
        HwAddr::from_array(&array_at(self.buffer.as_ref(), LLADDR_OFFSET))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> LinkLayerAddrOption<T> {
    pub fn set_option_type(&mut self, value: u8) {
        self.buffer.as_mut()[0] = value;
    }

    pub fn set_length_units(&mut self, value: u8) {
        self.buffer.as_mut()[1] = value;
    }

    pub fn set_hwaddr(&mut self, value: HwAddr) {
        let buf = self.buffer.as_mut();
        // The two pad bytes sit between the length and the address.
        buf[2..LLADDR_OFFSET].fill(0);
        put_slice(buf, LLADDR_OFFSET, &value.to_bytes());
    }
}

/// A parsed link-layer address option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkLayerAddrRepr {
    pub kind: LinkLayerAddrKind,
    pub addr: HwAddr,
}

impl LinkLayerAddrRepr {
    pub fn parse<T: AsRef<[u8]>>(option: &LinkLayerAddrOption<T>) -> Result<Self> {
        option.check_len()?;
        let kind = match option.option_type() {
            OPTION_SOURCE_LLADDR => LinkLayerAddrKind::Source,
            OPTION_TARGET_LLADDR => LinkLayerAddrKind::Target,
            _ => return Err(Error::Unsupported),
        };
        Ok(LinkLayerAddrRepr {
            kind,
            addr: option.hwaddr(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        LLADDR_OPTION_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        option: &mut LinkLayerAddrOption<T>,
    ) -> Result<()> {
        if option.buffer.as_ref().len() < LLADDR_OPTION_LEN {
            return Err(Error::Truncated);
        }
        option.set_option_type(self.kind.option_type());
        option.set_length_units(LLADDR_OPTION_UNITS);
        option.set_hwaddr(self.addr);
        Ok(())
    }
}

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const FLAGS: usize = 4;
    pub const TARGET: usize = 8;
    pub const OPTIONS: usize = 24;
}

const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;

/// A view of a Neighbour Solicitation or Advertisement: the whole ICMPv6
/// message and nothing after it (the checksum covers every byte).
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
        if self.buffer.as_ref().len() < field::OPTIONS {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The NA flags (R, S, O); reserved bits in an NS.
    pub fn flags(&self) -> NeighborFlags {
        NeighborFlags::from_byte(self.buffer.as_ref()[field::FLAGS])
    }

    pub fn target_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(array_at::<16>(self.buffer.as_ref(), field::TARGET))
    }

    fn icmp_sum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> Option<u16> {
        let buf = self.buffer.as_ref();
        let len = u32::try_from(buf.len()).ok()?;
        let pseudo = checksum::pseudo_header_v6(src, dst, PROTOCOL_ICMPV6, len);
        Some(checksum::combine(&[pseudo, checksum::data(buf)]))
    }

    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        self.icmp_sum(src, dst) == Some(0xffff)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    pub fn options(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::OPTIONS..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    pub fn set_checksum(&mut self, value: u16) {
        put_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Writes the flags byte and zeroes the three reserved bytes after it.
    pub fn set_flags(&mut self, value: NeighborFlags) {
        let buf = self.buffer.as_mut();
        buf[field::FLAGS] = value.to_byte();
        buf[field::FLAGS + 1..field::TARGET].fill(0);
    }

    pub fn set_target_addr(&mut self, value: Ipv6Addr) {
        put_slice(self.buffer.as_mut(), field::TARGET, &value.octets());
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::OPTIONS..]
    }

    /// Computes the ICMPv6 checksum over the IPv6 pseudo-header and every
    /// byte of the buffer; call it once the options are in place.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        if let Some(sum) = self.icmp_sum(src, dst) {
            self.set_checksum(!sum);
        }
    }
}

/// Neighbour Advertisement flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NeighborFlags {
    pub router: bool,
    pub solicited: bool,
    pub override_: bool,
}

impl NeighborFlags {
    fn from_byte(byte: u8) -> Self {
        NeighborFlags {
            router: byte & FLAG_ROUTER != 0,
            solicited: byte & FLAG_SOLICITED != 0,
            override_: byte & FLAG_OVERRIDE != 0,
        }
    }

    fn to_byte(self) -> u8 {
        let mut byte = 0;
        if self.router {
            byte |= FLAG_ROUTER;
        }
        if self.solicited {
            byte |= FLAG_SOLICITED;
        }
        if self.override_ {
            byte |= FLAG_OVERRIDE;
        }
        byte
    }
}

/// A parsed Neighbour Solicitation or Advertisement: what neighbour
/// resolution needs. Other options are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Repr {
    NeighborSolicit {
        target_addr: Ipv6Addr,
        source_lladdr: Option<HwAddr>,
    },
    NeighborAdvert {
        flags: NeighborFlags,
        target_addr: Ipv6Addr,
        target_lladdr: Option<HwAddr>,
    },
}

impl Repr {
    /// Checks type, code and options; the checksum needs the IPv6 addresses,
    /// so verify it with `Packet::verify_checksum`.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.code() != 0 {
            return Err(Error::Malformed);
        }
        let options = &packet.buffer.as_ref()[field::OPTIONS..];
        match packet.msg_type() {
            ICMPV6_NEIGHBOR_SOLICIT => Ok(Repr::NeighborSolicit {
                target_addr: packet.target_addr(),
                source_lladdr: find_link_layer_addr(options, LinkLayerAddrKind::Source)?,
            }),
            ICMPV6_NEIGHBOR_ADVERT => Ok(Repr::NeighborAdvert {
                flags: packet.flags(),
                target_addr: packet.target_addr(),
                target_lladdr: find_link_layer_addr(options, LinkLayerAddrKind::Target)?,
            }),
            _ => Err(Error::Unsupported),
        }
    }

    fn lladdr(&self) -> Option<LinkLayerAddrRepr> {
        match *self {
            Repr::NeighborSolicit { source_lladdr, .. } => {
                source_lladdr.map(|addr| LinkLayerAddrRepr {
                    kind: LinkLayerAddrKind::Source,
                    addr,
                })
            }
            Repr::NeighborAdvert { target_lladdr, .. } => {
                target_lladdr.map(|addr| LinkLayerAddrRepr {
                    kind: LinkLayerAddrKind::Target,
                    addr,
                })
            }
        }
    }

    pub fn buffer_len(&self) -> usize {
        field::OPTIONS + self.lladdr().map_or(0, |o| o.buffer_len())
    }

    /// Writes the message with a zero checksum; call
    /// `Packet::fill_checksum` afterwards on a buffer of exactly
    /// `buffer_len()` bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        if packet.buffer.as_ref().len() < self.buffer_len() {
            return Err(Error::Truncated);
        }
        let (msg_type, flags, target) = match *self {
            Repr::NeighborSolicit { target_addr, .. } => (
                ICMPV6_NEIGHBOR_SOLICIT,
                NeighborFlags::default(),
                target_addr,
            ),
            Repr::NeighborAdvert {
                flags, target_addr, ..
            } => (ICMPV6_NEIGHBOR_ADVERT, flags, target_addr),
        };
        packet.set_msg_type(msg_type);
        packet.set_code(0);
        packet.set_checksum(0);
        packet.set_flags(flags);
        packet.set_target_addr(target);
        if let Some(lladdr) = self.lladdr() {
            let mut option = LinkLayerAddrOption::new_unchecked(packet.options_mut());
            lladdr.emit(&mut option)?;
        }
        Ok(())
    }
}

// The option must hold the whole hardware address.
const _: () = assert!(LLADDR_OFFSET + HWADDR_LEN == LLADDR_OPTION_LEN);
