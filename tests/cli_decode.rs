//! `ipoibctl decode` run as a process on the shared RoCEv2 vectors, the real
//! rxe captures and the LINKTYPE_IPOIB capture; malformed input gives error
//! objects (exit 0), unreadable input a one-line error (exit 2).

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/vectors/roce_v2_ud.json"
);
const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/");

fn ipoibctl(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ipoibctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ipoibctl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("ipoibctl output")
}

/// Runs successfully and returns one parsed JSON object per output line.
fn decode_ok(args: &[&str], stdin: &[u8]) -> Vec<Value> {
    let output = ipoibctl(args, stdin);
    assert_eq!(output.status.code(), Some(0), "{args:?}: {output:?}");
    assert!(output.stderr.is_empty(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

fn assert_user_error(args: &[&str], stdin: &[u8], mentions: &str) {
    let output = ipoibctl(args, stdin);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    let err = String::from_utf8(output.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.starts_with("ipoibctl: error: "), "{err:?}");
    assert!(
        err.contains(mentions),
        "{err:?} should mention {mentions:?}"
    );
}

fn vectors() -> Vec<Value> {
    let text = std::fs::read_to_string(VECTORS)
        .unwrap_or_else(|e| panic!("cannot read RoCEv2 vectors {VECTORS}: {e}"));
    serde_json::from_str::<Value>(&text)
        .expect("vectors are JSON")
        .as_array()
        .expect("an array")
        .clone()
}

#[test]
fn vector_hex_lines_decode_with_every_field() {
    let entries = vectors();
    let input: String = entries
        .iter()
        .map(|e| format!("{}\n", e["hex"].as_str().unwrap()))
        .collect();
    let objects = decode_ok(&["decode"], input.as_bytes());
    assert_eq!(objects.len(), entries.len());
    for (i, (entry, object)) in entries.iter().zip(&objects).enumerate() {
        let name = entry["name"].as_str().unwrap();
        let expect = entry["expect"].as_str().unwrap();
        let fields = &entry["fields"];
        assert_eq!(object["frame"], i + 1, "{name}");
        let error = object["error"].as_str().unwrap_or("ok");
        assert_eq!(error, expect, "{name}: {object}");
        for key in ["ip_version", "src_ip", "dst_ip", "udp_sport"] {
            assert_eq!(object[key], fields[key], "{name}: {key}");
        }
        assert_eq!(object["udp_dport"], 4791, "{name}");
        if expect == "truncated" {
            assert!(object.get("opcode").is_none(), "{name}");
            continue;
        }
        for key in [
            "opcode",
            "solicited",
            "migreq",
            "pad_count",
            "tver",
            "pkey",
            "dest_qpn",
            "ack_req",
            "psn",
        ] {
            assert_eq!(object[key], fields[key], "{name}: {key}");
        }
        if expect == "unsupported_opcode" {
            continue;
        }
        for key in ["qkey", "src_qpn", "immediate"] {
            assert_eq!(object[key], fields[key], "{name}: {key}");
        }
        assert_eq!(object["icrc"], fields["icrc_hex"], "{name}");
        assert_eq!(object["icrc_ok"], expect == "ok", "{name}");
        let payload_len = fields["payload_hex"].as_str().unwrap().len() / 2;
        assert_eq!(object["payload_len"], payload_len, "{name}");
        let ethertype = match entry["payload_kind"].as_str().unwrap() {
            "empty" => {
                assert!(object["ipoib"].is_null(), "{name}");
                continue;
            }
            "ipoib_arp" => "0x0806",
            "ipoib_ipv4" => "0x0800",
            "ipoib_ipv6" => "0x86dd",
            other => panic!("{name}: kind {other}"),
        };
        let ipoib = &object["ipoib"];
        assert_eq!(ipoib["ethertype"], ethertype, "{name}");
        if ethertype == "0x0806" {
            assert!(ipoib["op"].is_string(), "{name}");
            assert!(ipoib["sender_ip"].as_str().unwrap().starts_with("10."));
            assert_eq!(ipoib["sender_hwaddr"].as_str().unwrap().len(), 59);
        } else {
            if ethertype == "0x0800" {
                assert_eq!(ipoib["checksum_ok"], true, "{name}");
            }
            assert!(
                ipoib["src"].is_string() && ipoib["dst"].is_string(),
                "{name}"
            );
            assert!(ipoib["length"].as_u64().unwrap() + 4 <= payload_len as u64);
        }
    }
}

#[test]
fn rxe_captures_decode_with_every_icrc_valid() {
    for (file, roce, others) in [
        ("ud-send-only-ipv4-ud_pingpong.pcap", 40, 0),
        ("ud-send-only-ipv4-ib_send_lat.pcap", 200, 0),
        ("ud-mcast-mckey-rdma_cm-ipv4.pcap", 10, 8),
    ] {
        let path = format!("{SHARED}rxe/{file}");
        let objects = decode_ok(&["decode", &path], b"");
        let (good, rest): (Vec<_>, Vec<_>) = objects.iter().partition(|o| o.get("error").is_none());
        assert_eq!((good.len(), rest.len()), (roce, others), "{file}");
        for object in good {
            assert_eq!(object["icrc_ok"], true, "{file}: {object}");
            assert_eq!(object["pkey"], 0xffff, "{file}");
        }
        for object in rest {
            assert_eq!(object["error"], "not_roce", "{file}: IGMP");
        }
    }
}

#[test]
fn linktype_ipoib_capture_decodes_its_pseudo_header_and_payloads() {
    let path = format!("{SHARED}ipoib_linktype242.pcap");
    let objects = decode_ok(&["decode", &path], b"");
    assert_eq!(objects.len(), 2);
    let arp = &objects[0];
    assert_eq!(arp["link"], "ipoib");
    assert_eq!(arp["dest_qpn"], 0xff_ffff);
    assert_eq!(arp["dest_gid"], "ff12:401b:ffff::ffff:ffff");
    assert_eq!(arp["ipoib"]["op"], "request");
    assert_eq!(arp["ipoib"]["sender_ip"], "10.0.0.1");
    assert_eq!(arp["ipoib"]["target_ip"], "10.0.0.2");
    let echo = &objects[1];
    assert_eq!(echo["dest_qpn"], 0x49);
    assert_eq!(echo["ipoib"]["ethertype"], "0x0800");
    assert_eq!(echo["ipoib"]["protocol"], 1);
    assert_eq!(echo["ipoib"]["src"], "10.0.0.1");
    assert_eq!(echo["ipoib"]["dst"], "10.0.0.2");
}

#[test]
fn raw_ip_and_ipoib_hex_lines_follow_the_link_option() {
    let reference = vectors()[0]["hex"].as_str().unwrap().to_owned();
    // Whitespace inside a line is ignored.
    let spaced: String = reference.as_bytes()[28..]
        .chunks(8)
        .map(|c| format!("{} ", std::str::from_utf8(c).unwrap()))
        .collect();
    let objects = decode_ok(&["decode", "--link", "ip"], spaced.as_bytes());
    assert_eq!(objects[0]["link"], "raw_ip");
    assert_eq!(objects[0]["icrc"], "36e7d068");
    assert_eq!(objects[0]["icrc_ok"], true);

    let record = format!("{}08060000", "00".repeat(40));
    let objects = decode_ok(&["decode", "--link", "ipoib"], record.as_bytes());
    assert_eq!(objects[0]["ipoib"]["ethertype"], "0x0806");
    assert_eq!(objects[0]["ipoib"]["error"], "malformed");
}

#[test]
fn malformed_frames_become_error_objects() {
    let input = "# a comment line\n\nzz\n123\n00\n\
                 ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\n";
    let objects = decode_ok(&["decode"], input.as_bytes());
    let kinds: Vec<_> = objects.iter().map(|o| o["error"].clone()).collect();
    assert_eq!(
        kinds,
        ["bad_hex", "bad_hex", "truncated", "not_roce"].map(Value::from)
    );
    for (i, object) in objects.iter().enumerate() {
        assert_eq!(object["frame"], i + 1);
        assert!(object["detail"].is_string());
    }
}

#[test]
fn unreadable_input_is_a_one_line_error() {
    assert_user_error(&["decode", "/nonexistent/capture.pcap"], b"", "cannot read");
    let mut unknown = Vec::new();
    for word in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 147] {
        unknown.extend_from_slice(&word.to_le_bytes());
    }
    assert_user_error(&["decode"], &unknown, "link type 147");
    assert_user_error(&["decode"], b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00", "pcapng");
    assert_user_error(&["decode"], b"\xff\xfe\x00binary", "neither");
    assert_user_error(&["decode"], &unknown[..10], "global header");
}
