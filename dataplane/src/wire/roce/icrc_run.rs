//! The ICRCs of a run of messages that differ only in their payload, their
//! PSN and their IPv4 identification: the segments of one UDP GSO send.
//!
//! A CRC is linear, so the register after the headers of message k is the
//! first message's register with what the changed PSN and identification
//! bytes add (tables); only the payload is folded per message. At 64 bytes
//! that is four 16-byte blocks instead of five and a tail.

use super::super::Result;
use super::icrc::{byte_effect, Crc32, IcrcHeaders, BEHIND_IPV4_ID, ONE_LANE_MAX};
use super::{bth, clmul};

/// Where a run's bytes change, for one length of transport headers (BTH,
/// DETH and maybe ImmDt): the two bytes of the IPv4 identification, high
/// first, and the three of the PSN (BTH bytes 9 to 11), high first.
struct RunTables {
    id: [[u32; 256]; 2],
    psn: [[u32; 256]; 3],
}

const fn run_tables(transport_headers: usize) -> RunTables {
    let behind_id = BEHIND_IPV4_ID + transport_headers;
    RunTables {
        id: [byte_effect(behind_id + 1), byte_effect(behind_id)],
        psn: [
            byte_effect(transport_headers - 10),
            byte_effect(transport_headers - 11),
            byte_effect(transport_headers - 12),
        ],
    }
}

/// Transport headers of UD SEND_ONLY (BTH, DETH) and of SEND_ONLY_WITH_IMMEDIATE.
const SEND_HEADERS: usize = bth::HEADER_LEN + 8;
const SEND_IMM_HEADERS: usize = SEND_HEADERS + 4;

static RUN_TABLES: [RunTables; 2] = [run_tables(SEND_HEADERS), run_tables(SEND_IMM_HEADERS)];

/// The ICRCs of the messages of one run (see the module). Built from the
/// first message's headers; each message's ICRC then costs a fold of its
/// payload and up to five table lookups. A message whose headers differ
/// from the first's elsewhere than in the PSN gets its ICRC the long way.
#[derive(Debug, Clone, Copy)]
pub struct IcrcRun {
    headers: IcrcHeaders,
    fast: Option<Fast>,
}

#[derive(Debug, Clone, Copy)]
struct Fast {
    /// The register after every header of the first message.
    register: u32,
    id: u16,
    psn: u32,
    ipv4: bool,
    /// The first message's transport headers as `Same::of` reads them.
    same: Same,
    /// Bytes of transport headers, and their tables.
    skip: usize,
    tables: &'static RunTables,
}

/// Transport headers but for the bytes the tables account for (the PSN)
/// and the one the ICRC masks: the first 16 bytes, and the 8 before the
/// payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Same(u128, u64);

impl Same {
    /// BTH byte 4 (masked by the ICRC) and bytes 9 to 11 (the PSN), as
    /// bits of the first 16 bytes read little-endian.
    const VARYING: u128 = (0xff << (8 * bth::VARIANT_BYTE)) | (0xff_ffff << (8 * 9));

    /// `None` when `transport` is shorter than `skip` (at least 16) bytes.
    #[inline]
    fn of(transport: &[u8], skip: usize) -> Option<Same> {
        let head: [u8; 16] = transport.get(..16)?.try_into().ok()?;
        let last: [u8; 8] = transport.get(skip.checked_sub(8)?..skip)?.try_into().ok()?;
        Some(Same(
            u128::from_le_bytes(head) & !Self::VARYING,
            u64::from_le_bytes(last),
        ))
    }
}

impl std::fmt::Debug for RunTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunTables")
    }
}

impl IcrcHeaders {
    /// The ICRCs of a run whose first message has these headers (with the
    /// IPv4 identification set) and `transport_headers` (the BTH up to the
    /// payload, PSN included).
    pub fn run(&self, transport_headers: &[u8]) -> IcrcRun {
        let tables = match transport_headers.len() {
            SEND_HEADERS => Some(&RUN_TABLES[0]),
            SEND_IMM_HEADERS => Some(&RUN_TABLES[1]),
            _ => None,
        };
        let skip = transport_headers.len();
        let fast = tables
            .zip(self.run_start())
            .zip(Same::of(transport_headers, skip))
            .map(|((tables, (register, id, ipv4)), same)| {
                let mut masked = [0u8; SEND_IMM_HEADERS];
                let masked = &mut masked[..skip];
                masked.copy_from_slice(transport_headers);
                masked[bth::VARIANT_BYTE] = 0xff;
                let mut crc = Crc32::resume(register);
                crc.update_tables(masked);
                Fast {
                    register: crc.register(),
                    id,
                    psn: psn_of(masked),
                    ipv4,
                    same,
                    skip,
                    tables,
                }
            });
        IcrcRun {
            headers: *self,
            fast,
        }
    }
}

/// The PSN of a transport packet at least a BTH long.
#[inline]
fn psn_of(transport: &[u8]) -> u32 {
    u32::from_be_bytes([0, transport[9], transport[10], transport[11]])
}

impl IcrcRun {
    /// The ICRC of a message of the run, `transport` its BTH up to, not
    /// including, the ICRC, sent with IPv4 identification `id` (ignored for
    /// IPv6). `Truncated` when shorter than a BTH.
    #[inline]
    pub fn icrc(&self, transport: &[u8], id: u16) -> Result<u32> {
        let same = |f: &Fast| Same::of(transport, f.skip) == Some(f.same);
        match self.fast.filter(same) {
            Some(f) => self.icrc_fast(f, transport, id, psn_of(transport)),
            None => self.headers.icrc_with_ipv4_id(transport, id),
        }
    }

    /// As `icrc` for a message its caller wrote from the run's first
    /// message's headers with PSN `psn`: the headers are not read again
    /// (reading back bytes just written stalls), only compared in debug
    /// builds.
    #[inline]
    pub fn icrc_as_written(&self, transport: &[u8], id: u16, psn: u32) -> Result<u32> {
        match self.fast {
            Some(f) => {
                debug_assert_eq!(Same::of(transport, f.skip), Some(f.same));
                debug_assert_eq!(psn_of(transport), psn & bth::PSN_MASK);
                self.icrc_fast(f, transport, id, psn)
            }
            None => self.headers.icrc_with_ipv4_id(transport, id),
        }
    }

    /// The first message's register with what the PSN and the IPv4
    /// identification change, then the payload folded; the long way where
    /// the payload is out of the one-lane fold's range.
    #[inline]
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    fn icrc_fast(&self, f: Fast, transport: &[u8], id: u16, psn: u32) -> Result<u32> {
        #[cfg(target_arch = "x86_64")]
        if let Some(payload) = transport
            .get(f.skip..)
            .filter(|p| (16..=ONE_LANE_MAX).contains(&p.len()))
        {
            let t = f.tables;
            let d = (psn ^ f.psn) as usize;
            let mut register = f.register
                ^ t.psn[0][(d >> 16) & 0xff]
                ^ t.psn[1][(d >> 8) & 0xff]
                ^ t.psn[2][d & 0xff];
            if f.ipv4 {
                let d = usize::from(id ^ f.id);
                register ^= t.id[0][d >> 8] ^ t.id[1][d & 0xff];
            }
            // SAFETY: the CPU has the instructions (checked when the
            // headers were built) and the payload has 16 bytes.
            return Ok(!unsafe { clmul::fold_short(register, payload, 0) });
        }
        self.headers.icrc_with_ipv4_id(transport, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::roce::icrc;

    fn sample(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    /// Every message of a run against an ICRC computed from scratch with
    /// its own headers: IPv4 with and without options, IPv6, with and
    /// without ImmDt, payloads on both sides of the fast path's limits, and
    /// PSNs and identifications that carry and wrap.
    #[test]
    fn each_message_matches_a_fresh_icrc() {
        let udp = sample(8, 1);
        let mut v4 = sample(20, 2);
        v4[0] = 0x45;
        let mut v4_options = sample(24, 3);
        v4_options[0] = 0x46;
        let mut v6 = sample(40, 4);
        v6[0] = 0x60;
        for ip in [v4, v4_options, v6] {
            for transport_headers in [SEND_HEADERS, SEND_IMM_HEADERS] {
                for payload_len in [0, 4, 15, 16, 17, 20, 64, 100, 236, 256, 257, 300] {
                    let mut transport = sample(transport_headers + payload_len, 5);
                    let first_psn: u32 = 0x00ff_fffe;
                    let first_id: u16 = 0x01fe;
                    transport[9..12].copy_from_slice(&first_psn.to_be_bytes()[1..]);
                    let mut first_ip = ip.clone();
                    let mut headers = IcrcHeaders::new(&ip, &udp).unwrap();
                    if ip[0] >> 4 == 4 {
                        first_ip[4..6].copy_from_slice(&u16::to_be_bytes(first_id));
                        headers.set_ipv4_id(first_id);
                    }
                    let run = headers.run(&transport[..transport_headers]);
                    for k in 0u32..300 {
                        let psn = (first_psn + k) & bth::PSN_MASK;
                        let id = first_id.wrapping_add(k as u16);
                        transport[9..12].copy_from_slice(&psn.to_be_bytes()[1..]);
                        let payload = sample(payload_len, k);
                        transport[transport_headers..].copy_from_slice(&payload);
                        let mut ip_k = ip.clone();
                        if ip[0] >> 4 == 4 {
                            ip_k[4..6].copy_from_slice(&id.to_be_bytes());
                        }
                        let want = icrc(&ip_k, &udp, &transport).unwrap();
                        let what = format!(
                            "IP header {} bytes, transport headers {transport_headers}, payload {payload_len}, message {k}",
                            ip.len()
                        );
                        assert_eq!(run.icrc(&transport, id).unwrap(), want, "{what}");
                        assert_eq!(
                            run.icrc_as_written(&transport, id, psn).unwrap(),
                            want,
                            "{what}"
                        );
                    }
                }
            }
        }
    }

    /// A message whose headers differ from the run's first elsewhere than
    /// in the PSN (any byte, the AckReq bit, the ImmDt) still gets its own
    /// ICRC.
    #[test]
    fn a_message_with_other_headers_gets_its_own_icrc() {
        let udp = sample(8, 1);
        let mut v4 = sample(20, 2);
        v4[0] = 0x45;
        for transport_headers in [SEND_HEADERS, SEND_IMM_HEADERS] {
            let first = sample(transport_headers + 64, 7);
            let run = IcrcHeaders::new(&v4, &udp)
                .unwrap()
                .run(&first[..transport_headers]);
            for at in 0..transport_headers {
                let mut other = first.clone();
                other[at] ^= 0x80;
                let mut ip = v4.clone();
                ip[4..6].copy_from_slice(&3u16.to_be_bytes());
                assert_eq!(
                    run.icrc(&other, 3).unwrap(),
                    icrc(&ip, &udp, &other).unwrap(),
                    "transport headers {transport_headers}, byte {at} changed"
                );
            }
        }
    }

    #[test]
    fn the_fast_path_is_taken_where_it_applies() {
        if !clmul::available() {
            eprintln!("skipped: no PCLMULQDQ on this CPU");
            return;
        }
        let udp = sample(8, 1);
        let mut v4 = sample(20, 2);
        v4[0] = 0x45;
        let mut v4_options = sample(24, 3);
        v4_options[0] = 0x46;
        let fast = |ip: &[u8], headers: usize| {
            IcrcHeaders::new(ip, &udp)
                .unwrap()
                .run(&sample(headers, 0))
                .fast
                .is_some()
        };
        assert!(fast(&v4, SEND_HEADERS));
        assert!(fast(&v4, SEND_IMM_HEADERS));
        assert!(!fast(&v4_options, SEND_HEADERS));
        assert!(!fast(&v4, 16));
    }

    #[test]
    fn a_short_transport_is_truncated() {
        let mut v4 = sample(20, 2);
        v4[0] = 0x45;
        let run = IcrcHeaders::new(&v4, &sample(8, 1))
            .unwrap()
            .run(&sample(20, 0));
        assert!(run.icrc(&sample(11, 0), 0).is_err());
    }
}
