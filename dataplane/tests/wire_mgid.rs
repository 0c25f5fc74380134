//! IP multicast → MGID mapping against the shared vectors, and back.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipoib_dataplane::wire::{
    broadcast_mgid, decode_mgid, mgid_for_ip, multicast_hwaddr, Gid, HwAddr, MgidError,
};
use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/ipoib_mgid.json"
);

fn vectors() -> Vec<Value> {
    let text = std::fs::read_to_string(VECTORS)
        .unwrap_or_else(|e| panic!("cannot read MGID vectors {VECTORS}: {e}"));
    let parsed: Value = serde_json::from_str(&text).expect("MGID vectors are not JSON");
    let entries = parsed
        .as_array()
        .expect("MGID vectors: top level is not an array")
        .clone();
    assert!(!entries.is_empty(), "MGID vectors file is empty");
    entries
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn field<'a>(entry: &'a Value, name: &str) -> &'a Value {
    entry
        .get(name)
        .unwrap_or_else(|| panic!("vector {entry} has no `{name}`"))
}

#[test]
fn every_vector_maps_as_expected() {
    let mut ok = 0;
    let mut rejected = 0;
    for entry in vectors() {
        let name = field(&entry, "name").as_str().expect("name");
        let address: IpAddr = field(&entry, "address").as_str().unwrap().parse().unwrap();
        let family = field(&entry, "family").as_u64().unwrap();
        assert_eq!(
            family,
            if address.is_ipv4() { 4 } else { 6 },
            "{name}: family"
        );
        let pkey = u16::try_from(field(&entry, "pkey").as_u64().unwrap()).unwrap();
        let scope = u8::try_from(field(&entry, "scope").as_u64().unwrap()).unwrap();
        let result = mgid_for_ip(address, pkey, scope);
        match field(&entry, "expect").as_str().unwrap() {
            "ok" => {
                let mgid = result.unwrap_or_else(|e| panic!("{name}: unexpected error {e}"));
                assert_eq!(
                    mgid.to_string(),
                    field(&entry, "mgid").as_str().unwrap(),
                    "{name}"
                );
                assert_eq!(
                    hex(mgid.as_bytes()),
                    field(&entry, "mgid_hex").as_str().unwrap(),
                    "{name}"
                );
                let hw = multicast_hwaddr(address, pkey, scope).unwrap();
                assert_eq!(
                    hex(&hw.to_bytes()),
                    field(&entry, "hwaddr_hex").as_str().unwrap(),
                    "{name}"
                );
                assert!(hw.is_multicast(), "{name}");
                ok += 1;
            }
            "error" => {
                assert_eq!(result, Err(MgidError::NotMulticast(address)), "{name}");
                assert!(multicast_hwaddr(address, pkey, scope).is_err(), "{name}");
                rejected += 1;
            }
            other => panic!("{name}: unknown expectation {other}"),
        }
    }
    assert!(
        ok > 0 && rejected > 0,
        "vectors cover both outcomes ({ok} ok, {rejected} errors)"
    );
}

#[test]
fn every_vector_decodes_back_to_its_group() {
    for entry in vectors() {
        if field(&entry, "expect").as_str() != Some("ok") {
            continue;
        }
        let name = field(&entry, "name").as_str().unwrap();
        let address: IpAddr = field(&entry, "address").as_str().unwrap().parse().unwrap();
        let pkey = u16::try_from(field(&entry, "pkey").as_u64().unwrap()).unwrap();
        let scope = u8::try_from(field(&entry, "scope").as_u64().unwrap()).unwrap();
        let mgid = mgid_for_ip(address, pkey, scope).unwrap();
        let decoded = decode_mgid(&mgid).unwrap_or_else(|| panic!("{name}: not recognised"));
        assert_eq!(decoded.scope, scope, "{name}");
        assert_eq!(decoded.pkey, pkey | 0x8000, "{name}");
        // The decoded group maps to the same MGID even where the mapping is lossy.
        assert_eq!(mgid_for_ip(decoded.group, pkey, scope), Ok(mgid), "{name}");
        if let IpAddr::V4(v4) = address {
            assert_eq!(
                decoded.group,
                IpAddr::V4(v4),
                "{name}: IPv4 groups decode exactly"
            );
        }
    }
}

#[test]
fn ipv6_decode_keeps_low_80_bits_under_the_link_scope() {
    let group: Ipv6Addr = "ff05::1:ff0a:1234".parse().unwrap();
    let mgid = mgid_for_ip(IpAddr::V6(group), 0xffff, 2).unwrap();
    let decoded = decode_mgid(&mgid).unwrap();
    assert_eq!(
        decoded.group,
        IpAddr::V6("ff02::1:ff0a:1234".parse().unwrap())
    );
}

#[test]
fn broadcast_mgid_matches_mapping_of_the_broadcast_address() {
    for scope in 0..=15u8 {
        for pkey in [0x0001u16, 0x7fff, 0x8001, 0xffff] {
            let mapped = mgid_for_ip(IpAddr::V4(Ipv4Addr::BROADCAST), pkey, scope).unwrap();
            assert_eq!(broadcast_mgid(pkey, scope), mapped);
            assert_eq!(mapped.as_bytes()[1], 0x10 | scope);
        }
    }
}

#[test]
fn scope_above_15_is_rejected() {
    let group = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 1));
    assert_eq!(
        mgid_for_ip(group, 0xffff, 16),
        Err(MgidError::ScopeOutOfRange(16))
    );
    assert_eq!(
        mgid_for_ip(group, 0xffff, 255),
        Err(MgidError::ScopeOutOfRange(255))
    );
    assert!(mgid_for_ip(group, 0xffff, 15).is_ok());
}

#[test]
fn foreign_gids_are_not_decoded() {
    let port_gid = Gid::link_local(0x0002_c903_00a1_b2c1);
    assert_eq!(decode_mgid(&port_gid), None);
    let mut bytes = *broadcast_mgid(0xffff, 2).as_bytes();
    bytes[2] = 0x50; // unknown signature
    assert_eq!(decode_mgid(&Gid(bytes)), None);
    let mut bytes = *mgid_for_ip("224.0.0.1".parse().unwrap(), 0xffff, 2)
        .unwrap()
        .as_bytes();
    bytes[8] = 1; // IPv4 MGIDs have 48 zero bits before the group
    assert_eq!(decode_mgid(&Gid(bytes)), None);
}

#[test]
fn hwaddr_prints_like_linux() {
    let hw = HwAddr::multicast(broadcast_mgid(0xffff, 2));
    assert_eq!(
        hw.to_string(),
        "00:ff:ff:ff:ff:12:40:1b:ff:ff:00:00:00:00:00:00:ff:ff:ff:ff"
    );
    assert_eq!(hw.to_string().parse::<HwAddr>(), Ok(hw));
}
