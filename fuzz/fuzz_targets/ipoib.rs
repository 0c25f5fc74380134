//! IPoIB header: parse arbitrary bytes; whatever parses re-emits identically.
#![no_main]

use ipoib_dataplane::wire::{ipoib, IpoibRepr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = ipoib::Packet::new_checked(data) else {
        return;
    };
    let Ok(repr) = IpoibRepr::parse(&packet) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ipoib::Packet::new_unchecked(&mut out))
        .unwrap();
    assert_eq!(
        IpoibRepr::parse(&ipoib::Packet::new_checked(&out).unwrap()),
        Ok(repr)
    );
    assert_eq!(out[..2], data[..2]);
});
