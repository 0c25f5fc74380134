//! Packet capture files: a classic pcap writer for the IPoIB frames the
//! dataplane sends and receives (LINKTYPE_IPOIB, which tshark decodes), and
//! a reader for the link types the decode tool accepts.

pub mod ipoib_link;
pub mod pcap;

pub use ipoib_link::{LinkHeader, PSEUDO_HEADER_LEN};
pub use pcap::{
    PcapError, PcapReader, PcapWriter, Record, Timestamp, LINKTYPE_ETHERNET, LINKTYPE_IPOIB,
    LINKTYPE_RAW,
};
