//! Hardware address from bytes and from text; both round-trip.
#![no_main]

use ipoib_dataplane::wire::HwAddr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(hw) = HwAddr::from_bytes(data) {
        assert_eq!(&hw.to_bytes()[..], data);
        assert_eq!(hw.to_string().parse::<HwAddr>(), Ok(hw));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(hw) = text.parse::<HwAddr>() {
            assert_eq!(hw.to_string().to_lowercase(), text.to_lowercase());
        }
    }
});
