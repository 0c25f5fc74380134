//! The shared RoCEv2 UD vectors through the full frame parser: every frame
//! is classified as its `expect` says, every listed field matches, and valid
//! frames re-emit byte for byte (ICRC included).

use ipoib_dataplane::wire::roce::{
    bth, frame::icrc_hex, icrc, BthRepr, FrameError, Outer, RoceFrame, ROCEV2_UDP_PORT,
};
use serde_json::{json, Map, Value};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/roce_v2_ud.json"
);

fn unhex(text: &str) -> Vec<u8> {
    let pairs = text.as_bytes().chunks_exact(2);
    assert!(pairs.remainder().is_empty(), "odd hex length");
    pairs
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).expect("hex"))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn vectors() -> Vec<Value> {
    let text = std::fs::read_to_string(VECTORS)
        .unwrap_or_else(|e| panic!("cannot read RoCEv2 vectors {VECTORS}: {e}"));
    let parsed: Value = serde_json::from_str(&text).expect("vectors are JSON");
    let entries = parsed.as_array().expect("vectors are an array").clone();
    assert_eq!(entries.len(), 20, "the README lists 20 frames");
    entries
}

fn outer_fields(outer: &Outer<'_>, out: &mut Map<String, Value>) {
    out.insert("ip_version".into(), json!(outer.ip.version()));
    out.insert("src_ip".into(), json!(outer.ip.src_addr().to_string()));
    out.insert("dst_ip".into(), json!(outer.ip.dst_addr().to_string()));
    out.insert("udp_sport".into(), json!(outer.udp_src_port));
}

fn bth_fields(bth: &BthRepr, out: &mut Map<String, Value>) {
    out.insert("opcode".into(), json!(bth.opcode));
    out.insert("solicited".into(), json!(bth.solicited));
    out.insert("migreq".into(), json!(bth.migreq));
    out.insert("pad_count".into(), json!(bth.pad_count));
    out.insert("tver".into(), json!(bth.tver));
    out.insert("pkey".into(), json!(bth.pkey));
    out.insert("dest_qpn".into(), json!(bth.dest_qpn));
    out.insert("ack_req".into(), json!(bth.ack_req));
    out.insert("psn".into(), json!(bth.psn));
}

/// Every field the vectors list, from a parsed frame.
fn frame_fields(outer: &Outer<'_>, frame: &RoceFrame<'_>) -> Map<String, Value> {
    let mut out = Map::new();
    outer_fields(outer, &mut out);
    bth_fields(&frame.bth, &mut out);
    out.insert("qkey".into(), json!(frame.deth.qkey));
    out.insert("src_qpn".into(), json!(frame.deth.src_qpn));
    out.insert("immediate".into(), json!(frame.immediate));
    out.insert("payload_hex".into(), json!(hex(frame.payload)));
    out.insert("icrc_hex".into(), json!(icrc_hex(frame.icrc)));
    out
}

/// Fields of a frame whose layout past the BTH is unknown: all beyond the
/// bytes present are null.
fn partial_fields(outer: &Outer<'_>) -> Map<String, Value> {
    let mut out = Map::new();
    outer_fields(outer, &mut out);
    let present = outer.udp_payload.len().min(bth::HEADER_LEN);
    let mut bth_bytes = [0u8; bth::HEADER_LEN];
    bth_bytes[..present].copy_from_slice(&outer.udp_payload[..present]);
    let repr = BthRepr::parse(&bth::Packet::new_checked(&bth_bytes[..]).unwrap()).unwrap();
    bth_fields(&repr, &mut out);
    if present < bth::HEADER_LEN {
        // Bytes 8..12 (AckReq, PSN) are missing.
        out.insert("ack_req".into(), Value::Null);
        out.insert("psn".into(), Value::Null);
    }
    for key in ["qkey", "src_qpn", "immediate", "payload_hex"] {
        out.insert(key.into(), Value::Null);
    }
    let icrc = (outer.udp_payload.len() >= bth::HEADER_LEN + 4)
        .then(|| hex(&outer.udp_payload[outer.udp_payload.len() - 4..]));
    out.insert("icrc_hex".into(), json!(icrc));
    out
}

fn assert_fields(name: &str, expected: &Value, actual: &Map<String, Value>) {
    let expected = expected.as_object().expect("fields object");
    assert!(expected.len() >= 18, "{name}: fields listed");
    for (key, want) in expected {
        let got = actual
            .get(key)
            .unwrap_or_else(|| panic!("{name}: field {key} not produced"));
        assert_eq!(got, want, "{name}: field {key}");
    }
}

/// The ICRC the description says the bytes should carry.
fn described_correct_icrc(description: &str) -> u32 {
    let marker = "correct ICRC for these bytes is ";
    let at = description
        .find(marker)
        .expect("description names the ICRC")
        + marker.len();
    let wire = unhex(&description[at..at + 8]);
    u32::from_le_bytes(wire.try_into().unwrap())
}

#[test]
fn every_vector_is_classified_as_expected_with_its_fields() {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for entry in vectors() {
        let name = entry["name"].as_str().unwrap();
        let expect = entry["expect"].as_str().unwrap();
        let bytes = unhex(entry["hex"].as_str().unwrap());
        let outer = Outer::parse_ethernet(&bytes, ROCEV2_UDP_PORT)
            .unwrap_or_else(|e| panic!("{name}: outer headers: {e}"));
        let result = RoceFrame::parse(&bytes);
        match expect {
            "ok" => {
                let frame = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_fields(name, &entry["fields"], &frame_fields(&outer, &frame));
                let mut out = vec![0u8; frame.buffer_len()];
                assert_eq!(frame.emit(&mut out), Ok(bytes.len()), "{name}");
                assert_eq!(hex(&out), hex(&bytes), "{name}: re-emitted");
                // Without the link header the same frame parses from IP.
                let from_ip = RoceFrame::parse_ip(&bytes[14..], ROCEV2_UDP_PORT).unwrap();
                assert_eq!(from_ip.bth, frame.bth, "{name}");
            }
            "bad_icrc" => {
                let Err(FrameError::BadIcrc { expected, found }) = result else {
                    panic!("{name}: expected bad_icrc, got {result:?}");
                };
                let description = entry["description"].as_str().unwrap();
                assert_eq!(expected, described_correct_icrc(description), "{name}");
                let (frame, computed) = RoceFrame::parse_unverified(&outer).unwrap();
                assert_eq!((computed, frame.icrc), (expected, found), "{name}");
                assert_fields(name, &entry["fields"], &frame_fields(&outer, &frame));
            }
            "truncated" => {
                assert_eq!(result, Err(FrameError::Truncated), "{name}");
                assert_fields(name, &entry["fields"], &partial_fields(&outer));
            }
            "unsupported_opcode" => {
                let opcode = entry["fields"]["opcode"].as_u64().unwrap() as u8;
                assert_eq!(result, Err(FrameError::UnsupportedOpcode(opcode)), "{name}");
                assert_fields(name, &entry["fields"], &partial_fields(&outer));
                // The ICRC covers every opcode and is valid here.
                let payload = outer.udp_payload;
                let wire = &payload[payload.len() - 4..];
                let value = icrc(
                    outer.ip_header,
                    outer.udp_header,
                    &payload[..payload.len() - 4],
                )
                .unwrap();
                assert_eq!(value.to_le_bytes(), wire, "{name}");
            }
            other => panic!("{name}: unknown expectation {other}"),
        }
        assert_eq!(result.err().map_or("ok", |e| e.kind()), expect, "{name}");
        *counts.entry(expect.to_owned()).or_default() += 1;
    }
    let summary: Vec<_> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(
        summary.join(" "),
        "bad_icrc=2 ok=16 truncated=1 unsupported_opcode=1"
    );
}

#[test]
fn the_reference_frame_carries_the_known_icrc() {
    let entry = &vectors()[0];
    assert_eq!(entry["name"], "ipv4_ud_send_only_reference");
    let bytes = unhex(entry["hex"].as_str().unwrap());
    let frame = RoceFrame::parse(&bytes).unwrap();
    assert_eq!(frame.icrc, 0x68d0_e736);
    assert_eq!(icrc_hex(frame.icrc), "36e7d068");
}

#[test]
fn rewriting_only_masked_fields_keeps_every_valid_vector_valid() {
    for entry in vectors().iter().filter(|e| e["expect"] == "ok") {
        let name = entry["name"].as_str().unwrap();
        let mut bytes = unhex(entry["hex"].as_str().unwrap());
        let ip = 14;
        let (udp, masked): (usize, &[usize]) = match bytes[ip] >> 4 {
            4 => (ip + 20, &[ip + 1, ip + 8]),
            _ => (ip + 40, &[ip + 1, ip + 2, ip + 3, ip + 7]),
        };
        for &at in masked {
            bytes[at] ^= 0x5a;
        }
        bytes[udp + 6] ^= 0x11;
        bytes[udp + 8 + 4] ^= 0xc0;
        if bytes[ip] >> 4 == 4 {
            // A router refreshes the header checksum after changing TTL/TOS.
            let mut packet = ipoib_dataplane::wire::ipv4::Packet::new_unchecked(&mut bytes[ip..]);
            packet.fill_checksum();
        }
        RoceFrame::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn flipping_any_icrc_covered_byte_is_caught() {
    let entry = &vectors()[0];
    let bytes = unhex(entry["hex"].as_str().unwrap());
    let outer = Outer::parse_ethernet(&bytes, ROCEV2_UDP_PORT).unwrap();
    let (ip, udp, transport) = (
        outer.ip_header.to_vec(),
        outer.udp_header.to_vec(),
        outer.udp_payload[..outer.udp_payload.len() - 4].to_vec(),
    );
    let good = icrc(&ip, &udp, &transport).unwrap();
    let ipv4_masked = [1, 8, 10, 11];
    for at in 0..ip.len() {
        let mut copy = ip.clone();
        copy[at] ^= 0x01;
        let changed = icrc(&copy, &udp, &transport).unwrap() != good;
        assert_eq!(changed, !ipv4_masked.contains(&at), "IP byte {at}");
    }
    for at in 0..udp.len() {
        let mut copy = udp.clone();
        copy[at] ^= 0x01;
        let changed = icrc(&ip, &copy, &transport).unwrap() != good;
        assert_eq!(changed, at < 6, "UDP byte {at}");
    }
    for at in 0..transport.len() {
        let mut copy = transport.clone();
        copy[at] ^= 0x01;
        let changed = icrc(&ip, &udp, &copy).unwrap() != good;
        assert_eq!(changed, at != bth::VARIANT_BYTE, "transport byte {at}");
    }
}

#[test]
fn every_prefix_of_every_vector_is_rejected_without_panicking() {
    for entry in vectors() {
        let bytes = unhex(entry["hex"].as_str().unwrap());
        for len in 0..bytes.len() {
            assert!(RoceFrame::parse(&bytes[..len]).is_err(), "prefix {len}");
        }
    }
}
