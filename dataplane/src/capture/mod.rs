//! Packet capture files: a classic pcap writer for the IPoIB frames the
//! dataplane sends and receives (LINKTYPE_IPOIB, which tshark decodes), and
//! a reader for the link types the decode tool accepts, and the decoder
//! behind `ipoibctl decode`.

pub mod decode;
pub mod ipoib_link;
mod json;
pub mod pcap;

pub use decode::{decode_frame, decode_input, DecodeError, Link};
pub use ipoib_link::{LinkHeader, PSEUDO_HEADER_LEN};
pub use pcap::{
    PcapError, PcapReader, PcapWriter, Record, Timestamp, LINKTYPE_ETHERNET, LINKTYPE_IPOIB,
    LINKTYPE_RAW,
};
