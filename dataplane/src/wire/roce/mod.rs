//! RoCEv2 (IBA Annex A17): InfiniBand transport headers over UDP port 4791,
//! as Linux rxe and RoCE NICs send them. Only the UD opcodes IPoIB uses are
//! parsed past the BTH.

pub mod bth;
mod clmul;
pub mod deth;
pub mod ethernet;
pub mod frame;
pub mod icrc;
mod icrc_run;

pub use bth::Repr as BthRepr;
pub use deth::Repr as DethRepr;
pub use ethernet::Repr as EthernetRepr;
pub use frame::{FrameError, IpRepr, Outer, RoceFrame, UdpChecksum};
pub use icrc::{crc32, icrc, Crc32, IcrcHeaders, ICRC_LEN};
pub use icrc_run::IcrcRun;

/// The IANA port for RoCEv2.
pub const ROCEV2_UDP_PORT: u16 = 4791;
/// UD SEND_ONLY: BTH, DETH, payload.
pub const OPCODE_UD_SEND_ONLY: u8 = 0x64;
/// UD SEND_ONLY_WITH_IMMEDIATE: BTH, DETH, ImmDt, payload.
pub const OPCODE_UD_SEND_ONLY_WITH_IMMEDIATE: u8 = 0x65;
/// The immediate data word (big-endian on the wire).
pub const IMMDT_LEN: usize = 4;

/// The UDP source port Linux rxe uses for a QP:
/// `0xC000 + (hash_32(qpn, 14) & 0x3FFF)`, so that ECMP spreads QPs while
/// each QP's packets stay in order.
pub const fn rxe_udp_sport(qpn: u32) -> u16 {
    const GOLDEN_RATIO_32: u32 = 0x61C8_8647;
    let hash = qpn.wrapping_mul(GOLDEN_RATIO_32) >> (32 - 14);
    0xC000 + (hash & 0x3FFF) as u16
}
