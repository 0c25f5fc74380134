//! IPoIB ARP: parse arbitrary bytes; whatever parses re-emits identically.
#![no_main]

use ipoib_dataplane::wire::{arp, ArpRepr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = arp::Packet::new_checked(data) else {
        return;
    };
    let Ok(repr) = ArpRepr::parse(&packet) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut arp::Packet::new_unchecked(&mut out))
        .unwrap();
    assert_eq!(out[..], data[..arp::PACKET_LEN]);
});
