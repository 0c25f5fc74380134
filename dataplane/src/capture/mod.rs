//! Packet capture: a classic pcap writer for the IPoIB frames the dataplane
//! sends and receives (LINKTYPE_IPOIB, which tshark decodes), the lcores'
//! taps and the writer thread behind `ipoibd --pcap` and `ipoibctl pcap`, a
//! reader for the link types the decode tool accepts, and the decoder
//! behind `ipoibctl decode`.

pub mod decode;
pub mod ipoib_link;
mod json;
pub mod pcap;
pub mod tap;
pub mod writer;

pub use decode::{decode_frame, decode_input, DecodeError, Link};
pub use ipoib_link::{LinkHeader, PSEUDO_HEADER_LEN};
pub use pcap::{
    PcapError, PcapReader, PcapWriter, Record, Timestamp, LINKTYPE_ETHERNET, LINKTYPE_IPOIB,
    LINKTYPE_RAW,
};
pub use tap::{tap, Tap, TapReader, TapStats, DEFAULT_SLOTS, MAX_SNAPLEN, MIN_SNAPLEN};
pub use writer::{Capture, CaptureError, CaptureStatus, TapCounters};
