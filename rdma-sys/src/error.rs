//! Errors: a verb's name with its errno, or a library that cannot be loaded.

use std::fmt;

/// A verb failed: its name and the errno it reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerbsError {
    pub verb: &'static str,
    pub errno: i32,
}

impl VerbsError {
    pub fn new(verb: &'static str, errno: i32) -> Self {
        VerbsError { verb, errno }
    }

    /// The calling thread's errno after `verb` returned NULL or -1.
    pub fn last(verb: &'static str) -> Self {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        // A verb that failed without setting errno still failed.
        VerbsError::new(verb, if errno == 0 { libc::EIO } else { errno })
    }

    /// A verb that returns 0 or an errno value (or -1 with errno set).
    pub fn check(verb: &'static str, rc: libc::c_int) -> Result<(), Self> {
        match rc {
            0 => Ok(()),
            -1 => Err(Self::last(verb)),
            e => Err(Self::new(verb, e.abs())),
        }
    }
}

impl fmt::Display for VerbsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = std::io::Error::from_raw_os_error(self.errno).to_string();
        // std appends " (os error N)"; the errno is printed once, below.
        let text = text.split(" (os error").next().unwrap_or(&text);
        write!(f, "{}: {} (errno {})", self.verb, text, self.errno)
    }
}

impl std::error::Error for VerbsError {}

/// A library that could not be opened, or lacks a symbol this crate needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("{file} cannot be loaded ({detail}): install the Debian package {package}")]
    Missing {
        file: String,
        package: &'static str,
        detail: String,
    },
    #[error(
        "{file} is too old for this program ({detail}): install rdma-core 32 or newer ({package})"
    )]
    TooOld {
        file: String,
        package: &'static str,
        detail: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_errors_name_the_verb_and_errno() {
        let e = VerbsError::new("ibv_create_qp", libc::ENOMEM);
        let s = e.to_string();
        assert!(s.starts_with("ibv_create_qp: "), "{s}");
        assert!(s.ends_with("(errno 12)"), "{s}");
        assert!(!s.contains("os error"), "{s}");
        assert_eq!(
            VerbsError::check("ibv_modify_qp", libc::EINVAL),
            Err(VerbsError::new("ibv_modify_qp", libc::EINVAL))
        );
        assert_eq!(VerbsError::check("ibv_modify_qp", 0), Ok(()));
    }
}
