//! The 40-byte pseudo header in front of each LINKTYPE_IPOIB record, as
//! tshark reads it: when bytes 0–1 are zero, bytes 20–39 are the
//! destination hardware address (the form the writer uses); otherwise the
//! 40 bytes are a GRH-like header.

use crate::wire::{Gid, HwAddr, HWADDR_LEN};

pub const PSEUDO_HEADER_LEN: usize = 40;
const DEST_HWADDR_AT: usize = PSEUDO_HEADER_LEN - HWADDR_LEN;

/// What a record's pseudo header says about the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkHeader {
    DestHwAddr(HwAddr),
    /// The GRH-like form, kept raw.
    Grh([u8; PSEUDO_HEADER_LEN]),
}

impl LinkHeader {
    /// The destination-address form of the pseudo header.
    pub fn dest_hwaddr_bytes(dest: &HwAddr) -> [u8; PSEUDO_HEADER_LEN] {
        let mut header = [0u8; PSEUDO_HEADER_LEN];
        header[DEST_HWADDR_AT..].copy_from_slice(&dest.to_bytes());
        header
    }

    /// The GRH form of the pseudo header, as tshark reads it: version,
    /// traffic class and flow label (`vtf`, version 6 keeps bytes 0–1
    /// non-zero), the source QPN, the source and destination GIDs.
    pub fn grh_bytes(vtf: u32, src_qpn: u32, sgid: &Gid, dgid: &Gid) -> [u8; PSEUDO_HEADER_LEN] {
        let mut header = [0u8; PSEUDO_HEADER_LEN];
        header[0..4].copy_from_slice(&vtf.to_be_bytes());
        header[5..8].copy_from_slice(&src_qpn.to_be_bytes()[1..]);
        header[8..24].copy_from_slice(sgid.as_bytes());
        header[24..40].copy_from_slice(dgid.as_bytes());
        header
    }

    /// Splits a record into its pseudo header and the IPoIB frame (the
    /// 4-byte IPoIB header and the packet); `None` if it is too short.
    pub fn split(record: &[u8]) -> Option<(LinkHeader, &[u8])> {
        if record.len() < PSEUDO_HEADER_LEN {
            return None;
        }
        let (header, frame) = record.split_at(PSEUDO_HEADER_LEN);
        let mut raw = [0u8; PSEUDO_HEADER_LEN];
        raw.copy_from_slice(header);
        let link = if raw[0] == 0 && raw[1] == 0 {
            let mut hw = [0u8; HWADDR_LEN];
            hw.copy_from_slice(&raw[DEST_HWADDR_AT..]);
            LinkHeader::DestHwAddr(HwAddr::from_array(&hw))
        } else {
            LinkHeader::Grh(raw)
        };
        Some((link, frame))
    }
}
