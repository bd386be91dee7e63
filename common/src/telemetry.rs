//! Logging setup shared by every binary: `tracing` to stderr, filtered by
//! `RUST_LOG` (default [`DEFAULT_FILTER`]). Colours only on a terminal: a
//! node's stderr is usually a log file, and escape codes do not belong in
//! files or pipes.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// `info`, with openraft's and sled's chatty internals at `warn`.
pub const DEFAULT_FILTER: &str = "info,openraft=warn,sled=warn";

/// `RUST_LOG` if set, else [`DEFAULT_FILTER`].
pub fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

pub fn init() {
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
