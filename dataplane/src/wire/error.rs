use core::fmt;

/// Why a buffer could not be parsed or emitted. Parsers never panic: every
/// malformed input maps to one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the header or the length it declares.
    Truncated,
    /// A field holds a value this implementation does not accept.
    Malformed,
    /// A well-formed value that is not supported (e.g. an unknown opcode).
    Unsupported,
}

pub type Result<T> = core::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated packet",
            Error::Malformed => "malformed packet",
            Error::Unsupported => "unsupported packet",
        })
    }
}

impl std::error::Error for Error {}
