//! `ConfigError`: one-line, editor-friendly errors (`file:line:col: key.path: message`).

use std::fmt;
use std::ops::Range;

/// What went wrong, broadly. The message says the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// The text is not valid TOML.
    Syntax,
    /// Valid TOML that does not fit the schema: unknown key, wrong type, missing key.
    Schema,
    /// Fits the schema but a value is out of range, duplicated or refers to nothing.
    Invalid,
}

/// A 1-based position in the source text; `column` counts characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// Converts a byte offset into line/column. Offsets past the end or inside a
    /// multi-byte character are clamped rather than trusted.
    pub fn from_offset(source: &str, offset: usize) -> Location {
        let mut offset = offset.min(source.len());
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &source[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// A configuration error. `Display` renders it on one line:
/// `config.toml:12:8: interface[1].mtu: expected an integer in 68..=4092, got 9000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    kind: ErrorKind,
    file: String,
    location: Option<Location>,
    key_path: Option<String>,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(kind: ErrorKind, file: &str, message: impl Into<String>) -> Self {
        ConfigError {
            kind,
            file: file.to_owned(),
            location: None,
            key_path: None,
            message: one_line(&message.into()),
        }
    }

    pub(crate) fn at(mut self, source: &str, span: Option<Range<usize>>) -> Self {
        self.location = span.map(|span| Location::from_offset(source, span.start));
        self
    }

    pub(crate) fn key(mut self, key_path: impl Into<String>) -> Self {
        let key_path = key_path.into();
        self.key_path = (!key_path.is_empty()).then_some(key_path);
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The file name given to `from_str`, or the path given to `load_file`.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// 1-based line of the offending key or value, when the error has one.
    pub fn line(&self) -> Option<usize> {
        self.location.map(|l| l.line)
    }

    /// 1-based column (in characters) of the offending key or value.
    pub fn column(&self) -> Option<usize> {
        self.location.map(|l| l.column)
    }

    /// Dotted key path with array indices, e.g. `interface[1].pkey`.
    pub fn key_path(&self) -> Option<&str> {
        self.key_path.as_deref()
    }

    /// The message alone, without file, position or key path.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(loc) = self.location {
            write!(f, ":{}:{}", loc.line, loc.column)?;
        }
        if let Some(key_path) = &self.key_path {
            write!(f, ": {key_path}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Errors must fit on one line: fold line breaks and runs of blanks into single spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Quotes a piece of source text for a "got ..." clause: one line, bounded length.
pub(crate) fn snippet(source: &str, span: &Range<usize>) -> String {
    let text = source.get(span.clone()).unwrap_or("").trim();
    let text = one_line(text);
    const MAX: usize = 40;
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}...")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_lines_and_char_columns() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(
            Location::from_offset(src, 0),
            Location { line: 1, column: 1 }
        );
        assert_eq!(
            Location::from_offset(src, 6),
            Location { line: 2, column: 1 }
        );
        // 'é' is two bytes but one column.
        let eq = src.find(" = 2").unwrap();
        assert_eq!(
            Location::from_offset(src, eq),
            Location { line: 2, column: 3 }
        );
        // Past the end and mid-character offsets are clamped, never panic.
        assert_eq!(Location::from_offset(src, 999).line, 3);
        assert_eq!(Location::from_offset(src, 8).column, 2);
    }

    #[test]
    fn display_is_one_line() {
        let e = ConfigError::new(ErrorKind::Invalid, "c.toml", "bad\nthing")
            .at("x\ny = 3", Some(4..5))
            .key("y");
        assert_eq!(e.to_string(), "c.toml:2:3: y: bad thing");
        assert_eq!(e.line(), Some(2));
    }
}
