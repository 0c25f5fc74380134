//! The daemon's log: tracing on stderr, one line per event, at the level
//! of `log.level` unless `RUST_LOG` says otherwise. The level can change
//! while running (configuration reload).

use ipoib_config::LogLevel;
use std::io::IsTerminal;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Changes the running log level.
pub struct LogControl {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
    /// `RUST_LOG` was set: it wins over the configuration.
    from_env: bool,
}

/// Installs the subscriber (once per process; later calls only hand back
/// a control that cannot change anything).
pub fn init(level: LogLevel) -> LogControl {
    let (filter, from_env) = match EnvFilter::try_from_default_env() {
        Ok(f) => (f, true),
        Err(_) => (EnvFilter::new(level.as_str()), false),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok();
    LogControl {
        handle: installed.then_some(handle),
        from_env,
    }
}

impl LogControl {
    /// Sets the level; an error says why it cannot (RUST_LOG set).
    pub fn set_level(&self, level: LogLevel) -> Result<(), String> {
        if self.from_env {
            return Err("RUST_LOG is set and takes precedence over log.level".into());
        }
        let handle = self
            .handle
            .as_ref()
            .ok_or("the log subscriber is not this daemon's")?;
        handle
            .reload(EnvFilter::new(level.as_str()))
            .map_err(|e| format!("cannot change the log level: {e}"))
    }
}
