//! `ipoibctl mgid` run as a process: output, JSON and error handling.

use std::process::{Command, Output};

use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/vectors/ipoib_mgid.json"
);

fn ipoibctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipoibctl"))
        .args(args)
        .output()
        .expect("run ipoibctl")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

/// Exit status 2, nothing on stdout, one `ipoibctl: error:` line on stderr.
fn assert_user_error(args: &[&str], mentions: &str) {
    let output = ipoibctl(args);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    assert!(output.stdout.is_empty(), "{args:?}: {output:?}");
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{args:?}: one line, got {err:?}");
    assert!(err.starts_with("ipoibctl: error: "), "{args:?}: {err:?}");
    assert!(
        err.contains(mentions),
        "{args:?}: {err:?} should mention {mentions:?}"
    );
}

fn vectors() -> Vec<Value> {
    let text = std::fs::read_to_string(VECTORS)
        .unwrap_or_else(|e| panic!("cannot read MGID vectors {VECTORS}: {e}"));
    let parsed: Value = serde_json::from_str(&text).expect("vectors are JSON");
    let entries = parsed.as_array().expect("vectors are an array").clone();
    assert!(!entries.is_empty());
    entries
}

#[test]
fn defaults_print_the_link_local_mgid() {
    let output = ipoibctl(&["mgid", "224.0.0.1"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), "ff12:401b:ffff::1\n");
    assert!(output.stderr.is_empty());
}

#[test]
fn pkey_in_decimal_and_hex_agree() {
    let hex = ipoibctl(&["mgid", "ff02::2", "--pkey", "0x0002"]);
    let decimal = ipoibctl(&["mgid", "ff02::2", "--pkey", "2"]);
    assert!(hex.status.success() && decimal.status.success());
    assert_eq!(stdout(&hex), "ff12:601b:8002::2\n");
    assert_eq!(stdout(&hex), stdout(&decimal));
}

#[test]
fn every_vector_through_the_binary() {
    for entry in vectors() {
        let name = entry["name"].as_str().unwrap();
        let address = entry["address"].as_str().unwrap();
        let pkey = format!("{:#x}", entry["pkey"].as_u64().unwrap());
        let scope = entry["scope"].as_u64().unwrap().to_string();
        let args = [
            "mgid", address, "--pkey", &pkey, "--scope", &scope, "--json",
        ];
        match entry["expect"].as_str().unwrap() {
            "ok" => {
                let output = ipoibctl(&args);
                assert!(output.status.success(), "{name}: {output:?}");
                let json: Value = serde_json::from_str(&stdout(&output))
                    .unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
                assert_eq!(json["mgid"], entry["mgid"], "{name}");
                assert_eq!(json["mgid_hex"], entry["mgid_hex"], "{name}");
                assert_eq!(json["hwaddr_hex"], entry["hwaddr_hex"], "{name}");
                assert_eq!(json["scope"], entry["scope"], "{name}");
                let expected_pkey = format!("{:#06x}", entry["pkey"].as_u64().unwrap());
                assert_eq!(
                    json["pkey"].as_str(),
                    Some(expected_pkey.as_str()),
                    "{name}"
                );
                assert_eq!(json["address"].as_str(), Some(address), "{name}");

                let plain = ipoibctl(&args[..6]);
                assert_eq!(
                    stdout(&plain).trim_end(),
                    entry["mgid"].as_str().unwrap(),
                    "{name}"
                );
            }
            "error" => assert_user_error(&args, "not a multicast address"),
            other => panic!("{name}: unknown expectation {other}"),
        }
    }
}

#[test]
fn json_keys_come_in_documented_order() {
    let output = ipoibctl(&["mgid", "255.255.255.255", "--json"]);
    assert!(output.status.success());
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 1);
    let keys = ["address", "pkey", "scope", "mgid", "mgid_hex", "hwaddr_hex"];
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| {
            text.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} missing"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(text.contains("\"pkey\":\"0xffff\""), "{text}");
}

#[test]
fn bad_input_is_one_line_and_status_2() {
    assert_user_error(&["mgid", "not-an-address"], "invalid IP address");
    assert_user_error(&["mgid", "10.0.0.1"], "not a multicast address");
    assert_user_error(&["mgid", "224.0.0.1", "--pkey", "0x10000"], "invalid P_Key");
    assert_user_error(&["mgid", "224.0.0.1", "--pkey", "zz"], "invalid P_Key");
    assert_user_error(&["mgid", "224.0.0.1", "--pkey", "0x8000"], "invalid P_Key");
    assert_user_error(&["mgid", "224.0.0.1", "--scope", "16"], "out of range");
    assert_user_error(&["mgid", "224.0.0.1", "--scope", "two"], "invalid scope");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["mgid"][..],
        &["frobnicate"][..],
        &["mgid", "224.0.0.1", "--bogus"][..],
        &[][..],
    ] {
        let output = ipoibctl(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}
