//! Checkers: each reads the history (and what the run gathered from the
//! cluster at the end) and gives a verdict with its evidence. Every checker
//! has self-tests on small hand-made histories that must fail, so one that
//! always says valid cannot pass.

pub mod availability;
pub mod completeness;
pub mod membership;
pub mod oom;
pub mod overlap;
pub mod semaphore;

use serde::{Serialize, Serializer};

/// `true`, `false`, or `"unknown"` (a search that ran out of budget, or too
/// little evidence). Never `true` without a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Valid,
    Invalid,
    Unknown,
}

impl Validity {
    /// All valid is valid; any invalid is invalid; otherwise unknown.
    pub fn all(items: impl IntoIterator<Item = Validity>) -> Validity {
        let mut out = Validity::Valid;
        for v in items {
            match v {
                Validity::Invalid => return Validity::Invalid,
                Validity::Unknown => out = Validity::Unknown,
                Validity::Valid => {}
            }
        }
        out
    }
}

impl Serialize for Validity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Validity::Valid => s.serialize_bool(true),
            Validity::Invalid => s.serialize_bool(false),
            Validity::Unknown => s.serialize_str("unknown"),
        }
    }
}

/// One checker's entry in `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub valid: Validity,
    #[serde(flatten)]
    pub details: serde_json::Value,
}

impl Verdict {
    pub fn new(valid: Validity, details: serde_json::Value) -> Verdict {
        Verdict { valid, details }
    }
}
