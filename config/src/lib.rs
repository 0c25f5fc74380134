//! Configuration schema: TOML + serde, defaults, validation with clear errors.
