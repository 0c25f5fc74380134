//! The configuration parser must return an error, never panic, on any text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ipoib_config::from_str(text, "fuzz.toml");
    }
});
