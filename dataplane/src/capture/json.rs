//! A minimal JSON object writer: the decode output has a fixed key order
//! and only strings, numbers, booleans, null and nested objects.

use core::fmt::{Display, Write};

pub(crate) struct Object {
    buf: String,
    empty: bool,
}

impl Object {
    pub(crate) fn new() -> Self {
        Object {
            buf: String::from("{"),
            empty: true,
        }
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.buf.push(',');
        }
        self.empty = false;
        push_string(&mut self.buf, key);
        self.buf.push(':');
    }

    /// `value` must already be JSON.
    pub(crate) fn raw(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        self.buf.push_str(value);
        self
    }

    pub(crate) fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        push_string(&mut self.buf, value);
        self
    }

    pub(crate) fn num(&mut self, key: &str, value: impl Display) -> &mut Self {
        self.key(key);
        let _ = write!(self.buf, "{value}");
        self
    }

    pub(crate) fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.raw(key, if value { "true" } else { "false" })
    }

    pub(crate) fn null(&mut self, key: &str) -> &mut Self {
        self.raw(key, "null")
    }

    pub(crate) fn object(&mut self, key: &str, value: Object) -> &mut Self {
        let text = value.finish();
        self.raw(key, &text)
    }

    pub(crate) fn finish(mut self) -> String {
        self.buf.push('}');
        self.buf
    }
}

fn push_string(buf: &mut String, text: &str) {
    buf.push('"');
    for c in text.chars() {
        match c {
            '"' => buf.push_str("\\\""),
            '\\' => buf.push_str("\\\\"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            '\t' => buf.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(buf, "\\u{:04x}", u32::from(c));
            }
            c => buf.push(c),
        }
    }
    buf.push('"');
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_quotes_and_controls() {
        let mut o = Object::new();
        o.str("a\"b", "x\\y\n\u{1}")
            .num("n", 5)
            .bool("t", true)
            .null("z");
        assert_eq!(
            o.finish(),
            r#"{"a\"b":"x\\y\n\u0001","n":5,"t":true,"z":null}"#
        );
    }
}
