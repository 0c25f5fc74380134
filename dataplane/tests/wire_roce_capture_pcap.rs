//! The LINKTYPE_IPOIB pcap writer: rebuilding the shared two-record capture
//! from parsed packets reproduces it byte for byte, and tshark (when
//! installed) decodes what it writes as IPoIB.

use std::io::Cursor;
use std::process::Command;

use ipoib_dataplane::capture::{
    LinkHeader, PcapError, PcapReader, PcapWriter, Timestamp, LINKTYPE_ETHERNET, LINKTYPE_IPOIB,
};
use ipoib_dataplane::wire::{arp, ipoib, ipv4, ArpRepr, EtherType, HwAddr, IpoibRepr, Ipv4Repr};

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/ipoib_linktype242.pcap"
);

/// Re-encodes an IPoIB frame from its parsed headers (the IPv4 payload is
/// copied as it is).
fn rebuild_ipoib_frame(frame: &[u8]) -> Vec<u8> {
    let packet = ipoib::Packet::new_checked(frame).unwrap();
    let header = IpoibRepr::parse(&packet).unwrap();
    let inner = packet.payload();
    let mut body = match header.ethertype {
        EtherType::Arp => {
            let repr = ArpRepr::parse(&arp::Packet::new_checked(inner).unwrap()).unwrap();
            let mut out = vec![0u8; repr.buffer_len()];
            repr.emit(&mut arp::Packet::new_unchecked(&mut out))
                .unwrap();
            out
        }
        EtherType::Ipv4 => {
            let view = ipv4::Packet::new_checked(inner).unwrap();
            let repr = Ipv4Repr::parse(&view).unwrap();
            let mut out = vec![0u8; repr.buffer_len()];
            let mut emitted = ipv4::Packet::new_unchecked(&mut out);
            repr.emit(&mut emitted).unwrap();
            emitted.payload_mut().copy_from_slice(view.payload());
            out
        }
        other => panic!("unexpected ethertype {other:?}"),
    };
    let mut out = vec![0u8; ipoib::HEADER_LEN];
    header
        .emit(&mut ipoib::Packet::new_unchecked(&mut out))
        .unwrap();
    out.append(&mut body);
    out
}

#[test]
fn rebuilding_the_shared_capture_reproduces_it_byte_for_byte() {
    let original = std::fs::read(CAPTURE).unwrap_or_else(|e| panic!("cannot read {CAPTURE}: {e}"));
    let reader = PcapReader::new(&original[..]).unwrap();
    assert_eq!(reader.linktype(), LINKTYPE_IPOIB);
    let mut writer = PcapWriter::ipoib(Vec::new()).unwrap();
    let mut count = 0;
    for record in reader {
        let record = record.unwrap();
        let (LinkHeader::DestHwAddr(dest), frame) = LinkHeader::split(&record.data).unwrap() else {
            panic!("destination-address pseudo headers expected");
        };
        let rebuilt = rebuild_ipoib_frame(frame);
        assert_eq!(rebuilt, frame, "record {count}: IPoIB frame re-encoded");
        writer
            .write_ipoib(record.timestamp, &dest, &rebuilt)
            .unwrap();
        count += 1;
    }
    assert_eq!(count, 2);
    assert_eq!(writer.into_inner(), original);
}

#[test]
fn writer_records_read_back() {
    let dest: HwAddr = "00:ff:ff:ff:ff:12:40:1b:ff:ff:00:00:00:00:00:00:ff:ff:ff:ff"
        .parse()
        .unwrap();
    let mut writer = PcapWriter::ipoib(Vec::new()).unwrap();
    let ts = Timestamp::from_micros(1_700_000_000, 123_456);
    writer
        .write_ipoib(ts, &dest, &[0x08, 0x06, 0, 0, 1, 2, 3])
        .unwrap();
    let bytes = writer.into_inner();
    let mut reader = PcapReader::new(&bytes[..]).unwrap();
    let record = reader.next_record().unwrap().unwrap();
    assert_eq!(record.timestamp, ts);
    assert_eq!(record.orig_len, 47);
    let (link, frame) = LinkHeader::split(&record.data).unwrap();
    assert_eq!(link, LinkHeader::DestHwAddr(dest));
    assert_eq!(frame, [0x08, 0x06, 0, 0, 1, 2, 3]);
    assert!(reader.next_record().unwrap().is_none());
}

#[test]
fn a_capture_file_reads_back_after_flush() {
    let path = std::env::temp_dir().join(format!("ipoib-create-{}.pcap", std::process::id()));
    let mut writer = PcapWriter::create_ipoib(&path).unwrap();
    writer
        .write_ipoib(
            Timestamp::from_micros(5, 6),
            &HwAddr::default(),
            &[8, 0, 0, 0],
        )
        .unwrap();
    writer.flush().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let records: Vec<_> = PcapReader::new(&bytes[..]).unwrap().collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].as_ref().unwrap().data.len(), 44);
}

#[test]
fn ipoib_records_need_an_ipoib_capture() {
    let mut writer = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET).unwrap();
    let err = writer
        .write_ipoib(Timestamp::default(), &HwAddr::default(), &[8, 0, 0, 0])
        .unwrap_err();
    assert!(err.to_string().contains("242"), "{err}");
}

#[test]
fn reader_rejects_bad_and_cut_files() {
    assert!(matches!(
        PcapReader::new(&b"\x0a\x0d\x0d\x0a a pcapng section header block"[..]),
        Err(PcapError::BadMagic(_))
    ));
    assert!(matches!(
        PcapReader::new(&[0xd4, 0xc3, 0xb2][..]),
        Err(PcapError::Truncated(_))
    ));
    let original = std::fs::read(CAPTURE).unwrap();
    let cut = &original[..original.len() - 1];
    let results: Vec<_> = PcapReader::new(cut).unwrap().collect();
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(PcapError::Truncated("record"))));
}

#[test]
fn reader_takes_big_endian_nanosecond_files() {
    let mut file = Vec::new();
    file.extend_from_slice(&0xa1b2_3c4du32.to_be_bytes());
    file.extend_from_slice(&[0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
    file.extend_from_slice(&65535u32.to_be_bytes());
    file.extend_from_slice(&101u32.to_be_bytes());
    for word in [7u32, 999, 2, 2] {
        file.extend_from_slice(&word.to_be_bytes());
    }
    file.extend_from_slice(&[0x45, 0x00]);
    let mut reader = PcapReader::new(Cursor::new(file)).unwrap();
    assert_eq!(reader.linktype(), 101);
    let record = reader.next_record().unwrap().unwrap();
    assert_eq!(
        record.timestamp,
        Timestamp {
            secs: 7,
            nanos: 999
        }
    );
    assert_eq!(record.data, [0x45, 0x00]);
}

#[test]
fn tshark_decodes_written_records_as_ipoib() {
    let Ok(version) = Command::new("tshark").arg("--version").output() else {
        println!("skipped: tshark is not installed");
        return;
    };
    assert!(version.status.success());
    let original = std::fs::read(CAPTURE).unwrap();
    let mut writer = PcapWriter::ipoib(Vec::new()).unwrap();
    for record in PcapReader::new(&original[..]).unwrap() {
        let record = record.unwrap();
        let (LinkHeader::DestHwAddr(dest), frame) = LinkHeader::split(&record.data).unwrap() else {
            panic!("destination-address pseudo headers expected");
        };
        writer.write_ipoib(Timestamp::now(), &dest, frame).unwrap();
    }
    let path = std::env::temp_dir().join(format!("ipoib-writer-{}.pcap", std::process::id()));
    std::fs::write(&path, writer.into_inner()).unwrap();
    let output = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .arg("-V")
        .output()
        .expect("run tshark");
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("IP over Infiniband"), "{text}");
    assert!(text.contains("Address Resolution Protocol"), "{text}");
    assert!(text.contains("Internet Control Message Protocol"), "{text}");
    assert!(!text.contains("Malformed"), "{text}");
}
