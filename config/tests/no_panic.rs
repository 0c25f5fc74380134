//! `from_str` (also the fuzz entry point) never panics and always answers with a
//! one-line error naming the file: on random text, random bytes, and mutations
//! of the embedded default (which reach deep into validation).

use ipoib_config::{from_str, EMBEDDED_DEFAULT};
use proptest::prelude::*;

fn check_never_panics(source: &str) -> Result<(), TestCaseError> {
    if let Err(e) = from_str(source, "fuzz.toml") {
        let text = e.to_string();
        prop_assert!(text.starts_with("fuzz.toml"), "{}", text);
        prop_assert!(!text.contains('\n'), "{:?}", text);
        if let Some(line) = e.line() {
            prop_assert!(
                line >= 1 && line <= source.lines().count().max(1) + 1,
                "{}",
                text
            );
        }
    }
    Ok(())
}

/// Small edits to a valid file: replace, insert or delete a few bytes.
fn mutated_default() -> impl Strategy<Value = String> {
    let edits = prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..4);
    edits.prop_map(|edits| {
        let mut bytes = EMBEDDED_DEFAULT.as_bytes().to_vec();
        for (at, op, byte) in edits {
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => {
                    bytes.remove(i);
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Text built from TOML-ish tokens, more likely to parse than random characters.
fn tokens() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "[",
        "]",
        "[[",
        "]]",
        "=",
        "\n",
        " ",
        ".",
        ",",
        "\"",
        "{",
        "}",
        "interface",
        "dataplane",
        "provider",
        "fabric",
        "name",
        "port",
        "mtu",
        "lcores",
        "neighbour",
        "traffic",
        "0x",
        "1",
        "-1",
        "9999999",
        "1.5",
        "nan",
        "\"ib0\"",
        "\"10.0.0.1/24\"",
        "true",
        "#",
        "é",
    ]);
    prop::collection::vec(token, 0..60).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_strings(source in ".{0,200}") {
        check_never_panics(&source)?;
    }

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check_never_panics(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn toml_like_tokens(source in tokens()) {
        check_never_panics(&source)?;
    }

    #[test]
    fn mutations_of_the_default(source in mutated_default()) {
        check_never_panics(&source)?;
    }
}
