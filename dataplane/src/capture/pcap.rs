//! Classic pcap (the libpcap file format): a 24-byte global header, then
//! records of a 16-byte header and the captured bytes. The writer emits
//! little-endian microsecond files; the reader takes either byte order and
//! microsecond or nanosecond timestamps.

use std::io::{self, Read, Write};

use super::ipoib_link::{LinkHeader, PSEUDO_HEADER_LEN};
use crate::wire::HwAddr;

pub const LINKTYPE_ETHERNET: u32 = 1;
pub const LINKTYPE_RAW: u32 = 101;
pub const LINKTYPE_IPOIB: u32 = 242;

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
const VERSION_MAJOR: u16 = 2;
const VERSION_MINOR: u16 = 4;
const GLOBAL_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;
/// What the writer announces and the largest record it writes whole.
pub const SNAPLEN: u32 = 65_535;
/// Records larger than this are refused by the reader rather than allocated.
const MAX_RECORD_LEN: u32 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("cannot read capture: {0}")]
    Io(#[from] io::Error),
    #[error("not a pcap file (magic {0:#010x}); pcapng is not supported")]
    BadMagic(u32),
    #[error("capture ends inside a {0}")]
    Truncated(&'static str),
    #[error("record of {0} bytes is larger than the {MAX_RECORD_LEN}-byte limit")]
    RecordTooLarge(u32),
    #[error("capture has link type {found}, expected {expected}")]
    WrongLinkType { expected: u32, found: u32 },
}

/// A record's capture time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    pub secs: u32,
    pub nanos: u32,
}

impl Timestamp {
    pub const fn from_micros(secs: u32, micros: u32) -> Self {
        Timestamp {
            secs,
            nanos: micros.saturating_mul(1000),
        }
    }

    /// Now; the writer's default clock.
    pub fn now() -> Self {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            secs: since.as_secs() as u32,
            nanos: since.subsec_nanos(),
        }
    }
}

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub timestamp: Timestamp,
    /// The packet's length on the wire (may exceed `data.len()`).
    pub orig_len: u32,
    pub data: Vec<u8>,
}

/// Writes a little-endian, microsecond-resolution pcap.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    linktype: u32,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header for `linktype`.
    pub fn new(out: W, linktype: u32) -> io::Result<Self> {
        Self::with_snaplen(out, linktype, SNAPLEN)
    }

    /// As `new`, announcing and cutting records at `snaplen` (at most `SNAPLEN`).
    pub fn with_snaplen(mut out: W, linktype: u32, snaplen: u32) -> io::Result<Self> {
        let snaplen = snaplen.clamp(1, SNAPLEN);
        let mut header = [0u8; GLOBAL_HEADER_LEN];
        header[0..4].copy_from_slice(&MAGIC_MICROS.to_le_bytes());
        header[4..6].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
        header[6..8].copy_from_slice(&VERSION_MINOR.to_le_bytes());
        // thiszone and sigfigs stay zero.
        header[16..20].copy_from_slice(&snaplen.to_le_bytes());
        header[20..24].copy_from_slice(&linktype.to_le_bytes());
        out.write_all(&header)?;
        Ok(PcapWriter {
            out,
            linktype,
            snaplen,
        })
    }

    /// A LINKTYPE_IPOIB capture.
    pub fn ipoib(out: W) -> io::Result<Self> {
        Self::new(out, LINKTYPE_IPOIB)
    }

    pub const fn linktype(&self) -> u32 {
        self.linktype
    }

    /// Writes one record made of `parts` back to back, cut at the snap length.
    pub fn write_parts(&mut self, ts: Timestamp, parts: &[&[u8]]) -> io::Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let orig_len = u32::try_from(total).unwrap_or(u32::MAX);
        self.write_cut(ts, orig_len, parts)
    }

    /// As `write_parts`, for bytes already cut from a packet of `orig_len`.
    pub fn write_cut(&mut self, ts: Timestamp, orig_len: u32, parts: &[&[u8]]) -> io::Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut remaining = total.min(self.snaplen as usize);
        let orig_len = orig_len.max(remaining as u32);
        let mut header = [0u8; RECORD_HEADER_LEN];
        header[0..4].copy_from_slice(&ts.secs.to_le_bytes());
        header[4..8].copy_from_slice(&(ts.nanos / 1000).to_le_bytes());
        header[8..12].copy_from_slice(&(remaining as u32).to_le_bytes());
        header[12..16].copy_from_slice(&orig_len.to_le_bytes());
        self.out.write_all(&header)?;
        for part in parts {
            let take = part.len().min(remaining);
            self.out.write_all(&part[..take])?;
            remaining -= take;
        }
        Ok(())
    }

    pub fn write_record(&mut self, ts: Timestamp, data: &[u8]) -> io::Result<()> {
        self.write_parts(ts, &[data])
    }

    /// Writes an IPoIB frame (4-byte IPoIB header and packet) sent to or
    /// received at `dest`, behind the destination-address pseudo header.
    pub fn write_ipoib(
        &mut self,
        ts: Timestamp,
        dest: &HwAddr,
        ipoib_frame: &[u8],
    ) -> io::Result<()> {
        if self.linktype != LINKTYPE_IPOIB {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("capture has link type {}, not IPoIB (242)", self.linktype),
            ));
        }
        let pseudo: [u8; PSEUDO_HEADER_LEN] = LinkHeader::dest_hwaddr_bytes(dest);
        self.write_parts(ts, &[&pseudo, ipoib_frame])
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl PcapWriter<io::BufWriter<std::fs::File>> {
    /// Creates (or truncates) `path` as a LINKTYPE_IPOIB capture. Call
    /// `flush` before the file is read.
    pub fn create_ipoib(path: impl AsRef<std::path::Path>) -> io::Result<Self> {
        let file = std::fs::File::create(path)?;
        Self::ipoib(io::BufWriter::new(file))
    }
}

/// Reads a classic pcap record by record.
#[derive(Debug)]
pub struct PcapReader<R: Read> {
    input: R,
    big_endian: bool,
    nanos: bool,
    linktype: u32,
    snaplen: u32,
    /// Set after an error: the stream position is no longer a record start.
    failed: bool,
}

/// Fills `buf`; `Ok(false)` on a clean end of file before the first byte.
fn read_full<R: Read>(
    input: &mut R,
    buf: &mut [u8],
    what: &'static str,
) -> Result<bool, PcapError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(PcapError::Truncated(what)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

impl<R: Read> PcapReader<R> {
    /// Reads and checks the global header.
    pub fn new(mut input: R) -> Result<Self, PcapError> {
        let mut header = [0u8; GLOBAL_HEADER_LEN];
        if !read_full(&mut input, &mut header, "global header")? {
            return Err(PcapError::Truncated("global header"));
        }
        let magic_le = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let (big_endian, nanos) = match magic_le {
            MAGIC_MICROS => (false, false),
            MAGIC_NANOS => (false, true),
            m if m.swap_bytes() == MAGIC_MICROS => (true, false),
            m if m.swap_bytes() == MAGIC_NANOS => (true, true),
            other => return Err(PcapError::BadMagic(other)),
        };
        let mut reader = PcapReader {
            input,
            big_endian,
            nanos,
            linktype: 0,
            snaplen: 0,
            failed: false,
        };
        reader.snaplen = reader.u32_at(&header, 16);
        reader.linktype = reader.u32_at(&header, 20) & 0x0fff_ffff;
        Ok(reader)
    }

    fn u32_at(&self, buf: &[u8], at: usize) -> u32 {
        let bytes = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        if self.big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        }
    }

    /// The link type (the low 28 bits of the header field).
    pub const fn linktype(&self) -> u32 {
        self.linktype
    }

    pub const fn snaplen(&self) -> u32 {
        self.snaplen
    }

    /// The next record, `Ok(None)` at the end of the file and after an error.
    pub fn next_record(&mut self) -> Result<Option<Record>, PcapError> {
        if self.failed {
            return Ok(None);
        }
        let result = self.read_record();
        self.failed = result.is_err();
        result
    }

    fn read_record(&mut self) -> Result<Option<Record>, PcapError> {
        let mut header = [0u8; RECORD_HEADER_LEN];
        if !read_full(&mut self.input, &mut header, "record header")? {
            return Ok(None);
        }
        let secs = self.u32_at(&header, 0);
        let fraction = self.u32_at(&header, 4);
        let caplen = self.u32_at(&header, 8);
        let orig_len = self.u32_at(&header, 12);
        if caplen > MAX_RECORD_LEN {
            return Err(PcapError::RecordTooLarge(caplen));
        }
        let mut data = vec![0u8; caplen as usize];
        if !read_full(&mut self.input, &mut data, "record")? && caplen > 0 {
            return Err(PcapError::Truncated("record"));
        }
        let nanos = if self.nanos {
            fraction
        } else {
            fraction.saturating_mul(1000)
        };
        Ok(Some(Record {
            timestamp: Timestamp { secs, nanos },
            orig_len,
            data,
        }))
    }
}

impl<R: Read> Iterator for PcapReader<R> {
    type Item = Result<Record, PcapError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}
