//! Checkers: each reads the history (and what the run gathered from the
//! cluster at the end) and gives a verdict with its evidence. Every checker
//! has self-tests on small hand-made histories that must fail, so one that
//! always says valid cannot pass.

pub mod answers;
pub mod availability;
pub mod completeness;
pub mod hostile;
pub mod limits;
pub mod membership;
pub mod oom;
pub mod overlap;
pub mod semaphore;
pub mod stall;
pub mod storage;

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

/// One checker's entry in `results.json`: its validity and its evidence,
/// side by side. `D` is the evidence as a type where something reads it
/// (the run's summary); JSON where only people do.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict<D = serde_json::Value> {
    pub valid: Validity,
    #[serde(flatten)]
    pub details: D,
}

impl Verdict {
    pub fn new(valid: Validity, details: serde_json::Value) -> Verdict {
        Verdict { valid, details }
    }
}

impl<D: Serialize> Verdict<D> {
    /// The same verdict with its evidence as JSON, for the table of every
    /// checker's verdict.
    pub fn to_json(&self) -> Verdict {
        let details = serde_json::to_value(&self.details)
            .unwrap_or_else(|e| serde_json::json!({"error": format!("evidence as JSON: {e}")}));
        Verdict {
            valid: self.valid,
            details,
        }
    }
}
