//! ND: option lists of any message, the link-layer address option and the
//! NS/NA view; whatever parses re-emits to an equal `Repr`.
#![no_main]

use std::net::Ipv6Addr;

use ipoib_dataplane::wire::{nd, LinkLayerAddrKind, LinkLayerAddrRepr, NdRepr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(options) = nd::message_options(data) {
        for option in options {
            let Ok(option) = option else { break };
            assert!(option.bytes.len() >= 8 && option.bytes.len() % 8 == 0);
            let _ = option.body();
        }
    }
    let _ = nd::find_link_layer_addr(data, LinkLayerAddrKind::Source);
    if let Ok(option) = nd::LinkLayerAddrOption::new_checked(data) {
        if let Ok(repr) = LinkLayerAddrRepr::parse(&option) {
            let mut out = vec![0u8; repr.buffer_len()];
            repr.emit(&mut nd::LinkLayerAddrOption::new_unchecked(&mut out))
                .unwrap();
            let reparsed = nd::LinkLayerAddrOption::new_checked(&out).unwrap();
            assert_eq!(LinkLayerAddrRepr::parse(&reparsed), Ok(repr));
        }
    }
    let Ok(packet) = nd::Packet::new_checked(data) else {
        return;
    };
    let _ = packet.verify_checksum(Ipv6Addr::UNSPECIFIED, Ipv6Addr::LOCALHOST);
    let Ok(repr) = NdRepr::parse(&packet) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    let mut emitted = nd::Packet::new_unchecked(&mut out);
    repr.emit(&mut emitted).unwrap();
    emitted.fill_checksum(Ipv6Addr::UNSPECIFIED, Ipv6Addr::LOCALHOST);
    let reparsed = nd::Packet::new_checked(&out).unwrap();
    assert!(reparsed.verify_checksum(Ipv6Addr::UNSPECIFIED, Ipv6Addr::LOCALHOST));
    assert_eq!(NdRepr::parse(&reparsed), Ok(repr));
});
