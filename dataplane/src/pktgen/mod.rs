//! pktgen: a stamped traffic generator and a measuring sink, driven by lcores.
//!
//! A `Generator` produces one stream (single, range, random or sequence mode)
//! into an interface's TX ring, paced in bursts against the monotonic clock,
//! with a stamp (stream id, sequence number, send time) in every payload. A
//! `Sink` drains an interface's RX ring and keeps exact per-stream received,
//! lost, duplicated and reordered counts and a latency histogram. A
//! `Replay` sends the IP packets of a pcap byte for byte.
//!
//! Round-trip latency: a generator marks a few packets a second as probes; a
//! sink reflects each back to its sender (addresses swapped, send time
//! untouched), and the sink on the sender's interface records the round trip
//! on the sender's own clock, valid across hosts where one-way figures are not.

mod build;
pub mod clock;
mod fields;
mod generator;
mod reflect;
mod replay;
mod sink;
mod spec;
pub mod stamp;
mod window;

pub use build::{PacketWriter, Prepared};
pub use fields::{FieldGen, Rng};
pub use generator::{GenCounters, GenSnapshot, Generator};
pub use reflect::reflect;
pub use replay::{read_capture, Capture, Replay, ReplayPacket};
pub use sink::{
    LatencySummary, RttResult, Sink, SinkLive, StreamResult, DEFAULT_WINDOW, LATENCY_MAX_NS,
};
pub use spec::{
    end_report_fits, min_size, FieldRange, Mode, Ranges, Rate, StreamSpec, Template,
    DEFAULT_PROBE_PPS, MAX_PROBE_PPS,
};
pub use stamp::{EndReport, Stamp};
pub use window::{Arrival, SeqWindow};
