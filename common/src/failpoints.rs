//! Planted bugs and injected faults, shared by the services (the `fail`
//! crate). Everything here is inert unless `common` is built with the
//! feature `failpoints`, which the services' own `failpoints` features
//! turn on for the tests and the harness; a default build has none.
//!
//! A process configures them from `FAILPOINTS` (the `fail` crate's format:
//! `NAME=ACTION;NAME=ACTION`, e.g. `bug::limit-off-by-one=return`) with
//! [`setup_from_env`]. The planted bugs (`bug::...`) make the system wrong
//! on purpose, so that `jepsen selftest` can show the harness catches each.

/// Whether the planted bug `name` is switched on in this process.
pub fn planted(name: &str) -> bool {
    #[cfg(feature = "failpoints")]
    {
        fail::eval(name, |_| ()).is_some()
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        false
    }
}

/// Configures failpoints from `FAILPOINTS`, for the life of the process.
/// Without the feature, a set `FAILPOINTS` is an error, not ignored.
pub fn setup_from_env() -> Result<(), String> {
    let set = std::env::var_os("FAILPOINTS").is_some();
    #[cfg(feature = "failpoints")]
    {
        if set {
            // The scenario's drop would clear the configuration: keep it.
            std::mem::forget(fail::FailScenario::setup());
            tracing::warn!("failpoints configured from FAILPOINTS");
        }
        Ok(())
    }
    #[cfg(not(feature = "failpoints"))]
    {
        if set {
            Err("FAILPOINTS is set, but this build has no failpoints (feature 'failpoints')".into())
        } else {
            Ok(())
        }
    }
}
