//! Configuration schema for ipoib-dataplane: TOML + serde, defaults, and
//! validation whose errors name the file, line:column, key path, what was
//! expected and what was found, on one line:
//!
//! ```text
//! config.toml:12:7: interface[1].mtu: expected an integer in 68..=4092, got 9000
//! ```
//!
//! `from_str` is the single entry point for parsing (and for fuzzing); it never
//! panics. The schema is documented key by key in `src/default.toml` (also the
//! built-in configuration) and in `REFERENCE.md`.

mod emit;
mod error;
mod locate;
mod model;
mod raw;
mod schema;
mod translate;
mod validate;

use std::path::Path;

pub use error::{ConfigError, ErrorKind, Location};
pub use model::{
    Config, Control, Dataplane, Fabric, Hugepages, Interface, Ipv4Cidr, Ipv6Cidr, Log, LogLevel,
    Metrics, Neighbour, Provider, ProviderKind, Rocev2, Run, Traffic, Tun, Verbs,
};

/// The built-in configuration (and commented reference of every key).
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

/// File name used in errors about `EMBEDDED_DEFAULT`.
pub const EMBEDDED_DEFAULT_NAME: &str = "<embedded default>";

/// Parses and validates `source`; `file_name` is only used in error messages.
pub fn from_str(source: &str, file_name: &str) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig =
        toml::from_str(source).map_err(|e| translate::toml_error(&e, source, file_name))?;
    let ctx = validate::Ctx {
        source,
        file: file_name,
    };
    validate::validate(&raw, &ctx)
}

/// Reads and validates the file at `path`; errors name it as given.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let file_name = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            ErrorKind::Io,
            &file_name,
            format!("cannot read the file: {e}"),
        )
    })?;
    from_str(&source, &file_name)
}

/// The built-in configuration, parsed. Tests prove `EMBEDDED_DEFAULT` is valid.
pub fn embedded_default() -> Config {
    match from_str(EMBEDDED_DEFAULT, EMBEDDED_DEFAULT_NAME) {
        Ok(config) => config,
        // Unreachable by test; a panic here would be a build defect, not bad input.
        Err(e) => panic!("the embedded default configuration is invalid: {e}"),
    }
}
