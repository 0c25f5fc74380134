//! Parse arbitrary text as an IP address and map it to an MGID; every MGID
//! decodes back to a group with the same MGID.
#![no_main]

use std::net::IpAddr;

use ipoib_dataplane::wire::{decode_mgid, mgid_for_ip, Gid};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [pkey_hi, pkey_lo, scope, rest @ ..] = data else {
        return;
    };
    let pkey = u16::from_be_bytes([*pkey_hi, *pkey_lo]);
    if let Ok(text) = std::str::from_utf8(rest) {
        if let Ok(addr) = text.parse::<IpAddr>() {
            if let Ok(mgid) = mgid_for_ip(addr, pkey, *scope) {
                let decoded = decode_mgid(&mgid).expect("an MGID we made is recognised");
                assert_eq!(decoded.scope, *scope);
                assert_eq!(mgid_for_ip(decoded.group, pkey, *scope), Ok(mgid));
            }
        }
    }
    // Any 16 bytes: decoding never panics, and what decodes re-encodes.
    if let Ok(bytes) = <[u8; 16]>::try_from(rest.get(..16).unwrap_or(&[])) {
        let gid = Gid(bytes);
        if let Some(decoded) = decode_mgid(&gid) {
            assert_eq!(
                mgid_for_ip(decoded.group, decoded.pkey, decoded.scope),
                Ok(gid)
            );
        }
    }
});
