//! Turns toml/serde errors (syntax, unknown key, wrong type, missing key) into
//! `ConfigError`s that carry the key path and say what the key accepts.

use std::ops::Range;

use crate::error::{snippet, ConfigError, ErrorKind};
use crate::locate::key_path_at;
use crate::schema::expected_for;

pub(crate) fn toml_error(err: &toml::de::Error, source: &str, file: &str) -> ConfigError {
    let span = err.span();
    let message = err.message().trim();
    if toml_edit::ImDocument::parse(source).is_err() {
        return ConfigError::new(ErrorKind::Syntax, file, format!("invalid TOML: {message}"))
            .at(source, span);
    }
    let path = span
        .as_ref()
        .and_then(|s| key_path_at(source, s.start))
        .unwrap_or_default();
    let (path, message) = schema_message(message, path, source, span.as_ref());
    ConfigError::new(ErrorKind::Schema, file, message)
        .at(source, span)
        .key(path)
}

/// Rewords serde's messages as "expected X, got Y" using our own descriptions.
fn schema_message(
    message: &str,
    path: String,
    source: &str,
    span: Option<&Range<usize>>,
) -> (String, String) {
    let got = |fallback: &str| match span.map(|span| snippet(source, span)) {
        // A `[table]` section: its text would be the whole section.
        Some(text) if text.starts_with('[') && fallback == "map" => "a table".to_owned(),
        Some(text) if !text.is_empty() => text,
        _ => fallback.to_owned(),
    };
    let expected =
        |serde_expected: &str| expected_at(&path).unwrap_or_else(|| plain_expected(serde_expected));

    if let Some(rest) = message.strip_prefix("unknown field ") {
        // "unknown field `x`, expected one of `a`, `b`": the path already names `x`.
        let allowed = rest.split_once(", ").map_or("", |(_, allowed)| allowed);
        let allowed = allowed.replace("there are no fields", "this table takes no keys");
        return (path, format!("unknown key, {allowed}"));
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        let field = rest.trim_matches('`');
        let path = if path.is_empty() {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        };
        let message = match expected_at(&path) {
            Some(expected) => format!("missing required key, expected {expected}"),
            None => "missing required key".to_owned(),
        };
        return (path, message);
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((unexpected, serde_expected)) = rest.split_once(", expected ") {
                let message = format!(
                    "expected {}, got {}",
                    expected(serde_expected),
                    got(unexpected)
                );
                return (path, message);
            }
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        if let Some((variant, serde_expected)) = rest.split_once(", expected ") {
            let message = format!(
                "expected {}, got {}",
                expected(serde_expected),
                got(variant)
            );
            return (path, message);
        }
    }
    // toml's wording for a non-string where an enum (string) is expected.
    if message == "wanted string or table" {
        let message = format!("expected {}, got {}", expected("a string"), got("a value"));
        return (path, message);
    }
    match expected_at(&path) {
        Some(expected) => (path, format!("{message}; expected {expected}")),
        None => (path, message.to_owned()),
    }
}

/// What the key (or array element) at `path` accepts.
fn expected_at(path: &str) -> Option<String> {
    let key = pattern(path);
    let element = path
        .ends_with(']')
        .then(|| expected_for(&format!("{key}[]")))
        .flatten();
    element.or_else(|| expected_for(&key))
}

/// `interface[1].neighbour[0].qpn` → `interface.neighbour.qpn`.
fn pattern(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0u32;
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// serde's type names in words a config author uses.
fn plain_expected(serde_expected: &str) -> String {
    match serde_expected {
        "i64" | "u64" | "an integer" => "an integer".into(),
        "f64" | "a float" => "a number".into(),
        "a sequence" => "an array".into(),
        "a boolean" => "true or false".into(),
        other if other.starts_with("struct ") => "a table".into(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::pattern;

    #[test]
    fn patterns_drop_indices() {
        assert_eq!(
            pattern("interface[1].neighbour[0].qpn"),
            "interface.neighbour.qpn"
        );
        assert_eq!(pattern("dataplane.lcores[3]"), "dataplane.lcores");
    }
}
