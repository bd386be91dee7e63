//! Failpoints: the places in the store where a fault or a crash can be
//! injected (the `fail` crate, as TiKV uses it). They compile to nothing
//! unless raft-rm is built with the feature `failpoints`; the tests and
//! the harness turn it on, a default build never does.
//!
//! | failpoint | where |
//! |---|---|
//! | `log::after-append-before-fsync` | entries written to sled, their sync not yet asked for |
//! | `log::after-purge` | a purge done (or clamped to the synced snapshot) |
//! | `log::after-vote-save-before-reply` | a vote synced, the reply not yet sent |
//! | `snapshot::mid-save` | a snapshot's chunks written, not yet synced |
//! | `state-machine::mid-install` | a received snapshot checked, not yet saved |
//! | `durable::before-fdatasync` | sled flushed, the data file not yet synced |
//!
//! A process is told to crash at one with `RAFT_RM_CRASH_AT=NAME` (at its
//! first hit) or `NAME@N` (at its N-th): it aborts there, as a power cut
//! or `SIGKILL` would stop it, with nothing flushed on the way out.

/// Every failpoint, for the tests and the harness.
pub const ALL: &[&str] = &[
    "log::after-append-before-fsync",
    "log::after-purge",
    "log::after-vote-save-before-reply",
    "snapshot::mid-save",
    "state-machine::mid-install",
    "durable::before-fdatasync",
];

/// Whether this build has them.
pub const COMPILED_IN: bool = cfg!(feature = "failpoints");

/// The variable that names the failpoint to crash at.
pub const CRASH_AT: &str = "RAFT_RM_CRASH_AT";

/// A `RAFT_RM_CRASH_AT` value: which failpoint, at which hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashAt {
    pub failpoint: String,
    /// 1-based.
    pub hit: u64,
}

impl CrashAt {
    pub fn parse(text: &str) -> Result<CrashAt, String> {
        let (name, hit) = match text.split_once('@') {
            Some((name, n)) => {
                let hit = n
                    .parse::<u64>()
                    .ok()
                    .filter(|h| *h > 0)
                    .ok_or_else(|| format!("{CRASH_AT}: '{n}' is not a positive hit count"))?;
                (name, hit)
            }
            None => (text, 1),
        };
        if !ALL.contains(&name) {
            return Err(format!(
                "{CRASH_AT}: no failpoint '{name}' (known: {})",
                ALL.join(", ")
            ));
        }
        Ok(CrashAt {
            failpoint: name.to_string(),
            hit,
        })
    }
}

/// Arms the crash `RAFT_RM_CRASH_AT` asks for, if any. Without the
/// feature, a request to crash is refused rather than silently ignored.
pub fn arm_from_env() -> Result<(), String> {
    let Ok(text) = std::env::var(CRASH_AT) else {
        return Ok(());
    };
    let crash = CrashAt::parse(&text)?;
    arm(crash)
}

#[cfg(feature = "failpoints")]
fn arm(crash: CrashAt) -> Result<(), String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let hits = AtomicU64::new(0);
    let name = crash.failpoint.clone();
    fail::cfg_callback(&crash.failpoint, move || {
        if hits.fetch_add(1, Ordering::SeqCst) + 1 == crash.hit {
            eprintln!("raft-rm: crashing at failpoint {name} ({CRASH_AT})");
            std::process::abort();
        }
    })?;
    tracing::warn!(failpoint = %crash.failpoint, hit = crash.hit, "armed to crash");
    Ok(())
}

#[cfg(not(feature = "failpoints"))]
fn arm(_: CrashAt) -> Result<(), String> {
    Err(format!(
        "{CRASH_AT} is set, but this raft-rm was built without the feature 'failpoints'"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_requests_parse_or_say_what_is_wrong() {
        assert_eq!(
            CrashAt::parse("log::after-purge@3"),
            Ok(CrashAt {
                failpoint: "log::after-purge".into(),
                hit: 3
            })
        );
        assert_eq!(CrashAt::parse("snapshot::mid-save").unwrap().hit, 1);
        assert!(CrashAt::parse("nowhere")
            .unwrap_err()
            .contains("no failpoint"));
        assert!(CrashAt::parse("log::after-purge@0")
            .unwrap_err()
            .contains("positive"));
    }
}
