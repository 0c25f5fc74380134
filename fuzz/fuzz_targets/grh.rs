//! GRH: parse arbitrary bytes; whatever parses re-emits identically.
#![no_main]

use ipoib_dataplane::wire::{grh, GrhRepr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = grh::Packet::new_checked(data) else {
        return;
    };
    let _ = packet.payload();
    let Ok(repr) = GrhRepr::parse(&packet) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut grh::Packet::new_unchecked(&mut out))
        .unwrap();
    assert_eq!(out[..], data[..grh::HEADER_LEN]);
});
