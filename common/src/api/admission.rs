//! The admission routes: sessions, acquire, adopt, release, usage reports
//! and the ledger.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /v1/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterSession {
    pub coordinator: String,
}

/// `POST /v1/sessions/renew`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewSession {
    pub session: u64,
}

/// The answer to a registration or renewal (410 when the session expired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionAnswer {
    pub session: u64,
    /// The RMs' session lease now in force (configuration: it may change).
    pub lease_ms: u64,
    /// Log time at which the session expires unless renewed.
    pub expires_at_ms: u64,
}

/// `POST /v1/admission/acquire`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acquire {
    pub query_id: String,
    pub group: String,
    pub coordinator: String,
    pub session: u64,
    #[serde(default)]
    pub priority: i32,
    /// Opaque; kept with the ledger entry for whoever adopts the query.
    #[serde(default)]
    pub payload: String,
    /// The session's `query_max_queued_time` (ms), if set: the query
    /// fails if queued longer.
    #[serde(default)]
    pub max_queued_ms: Option<u64>,
    /// The names (or templates) of the specs the selector expanded, root
    /// first, e.g. `["global", "bi-${toolname}"]`: a new group is
    /// configured from them, as in Trino (empty: by the id alone).
    #[serde(default)]
    pub template: Vec<String>,
}

/// `POST /v1/admission/adopt`: a live coordinator takes over a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adopt {
    pub query_id: String,
    pub coordinator: String,
    pub session: u64,
}

/// `POST /v1/admission/release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub query_id: String,
}

/// What a release did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseOutcome {
    /// It held a slot; the slot is free.
    Released,
    /// It was queued; it left the queue.
    Cancelled,
    /// It held nothing (already released, or never admitted).
    Unknown,
}

/// The answer to a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseAnswer {
    pub outcome: ReleaseOutcome,
}

/// `POST /v1/admission/batch`: a coordinator's acquires and releases in
/// one request, each decided as if sent alone (they may share log
/// entries, as concurrent single requests do). At most
/// [`MAX_BATCH_OPS`] operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionBatch {
    pub ops: Vec<AdmissionOp>,
}

/// Operations in one [`AdmissionBatch`], at most.
pub const MAX_BATCH_OPS: usize = 1024;

/// One operation of an [`AdmissionBatch`]: `{"acquire": {...}}` or
/// `{"release": {...}}`, with the single routes' bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdmissionOp {
    Acquire(Acquire),
    Release(Release),
}

/// The answers to an [`AdmissionBatch`], one per operation, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionBatchAnswer {
    pub answers: Vec<AdmissionOpAnswer>,
}

/// What one operation's single route would have answered: its body, or
/// its error status and error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdmissionOpAnswer {
    Acquire(AcquireAnswer),
    Release(ReleaseAnswer),
    Error { status: u16, body: String },
}

/// One group's count in a [`UsageReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupUsage {
    pub running: u32,
    pub queued: u32,
}

/// `POST /v1/usage`: a coordinator's eventual-mode counts, replacing its
/// previous report (the RMs keep only reports with a higher `seq`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageReport {
    pub coordinator: String,
    pub seq: u64,
    pub groups: BTreeMap<String, GroupUsage>,
}

/// The answer to a usage report: whether it replaced the stored one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageAnswer {
    pub applied: bool,
    /// Group ids dropped from the report because they are not valid names
    /// (empty, over 256 bytes, control characters); the other groups were
    /// applied. Such a group's usage is not counted by any RM.
    #[serde(default)]
    pub rejected_groups: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcquireStatus {
    Admitted,
    Queued,
    Rejected,
}

/// Why an acquire or adopt was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RejectReason {
    /// Trino's `QUERY_QUEUE_FULL`.
    #[serde(rename = "QUERY_QUEUE_FULL")]
    QueueFull,
    NoSuchGroup,
    #[serde(rename = "NOT_A_LEAF_GROUP")]
    NotALeaf,
    EventualGroup,
    SessionExpired,
    /// The cluster has not applied a resource-group configuration yet.
    NoConfiguration,
    #[serde(rename = "QUERY_ALREADY_FINISHED")]
    AlreadyFinished,
    GroupMismatch,
    NotAdoptable,
}

impl RejectReason {
    /// The wire name (`QUERY_QUEUE_FULL`, ...).
    pub fn name(self) -> &'static str {
        match self {
            RejectReason::QueueFull => "QUERY_QUEUE_FULL",
            RejectReason::NoSuchGroup => "NO_SUCH_GROUP",
            RejectReason::NotALeaf => "NOT_A_LEAF_GROUP",
            RejectReason::EventualGroup => "EVENTUAL_GROUP",
            RejectReason::SessionExpired => "SESSION_EXPIRED",
            RejectReason::NoConfiguration => "NO_CONFIGURATION",
            RejectReason::AlreadyFinished => "QUERY_ALREADY_FINISHED",
            RejectReason::GroupMismatch => "GROUP_MISMATCH",
            RejectReason::NotAdoptable => "NOT_ADOPTABLE",
        }
    }
}

/// The wire form of an admission decision (acquire and adopt). Every field
/// is always present; the ones a status does not use are `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcquireAnswer {
    pub status: AcquireStatus,
    /// For rejections.
    pub reason: Option<RejectReason>,
    /// For admissions: the fencing token (the admitting entry's log index).
    pub fencing_token: Option<u64>,
    /// For queued queries: the 1-based place in the group's queue.
    pub position: Option<u32>,
}

/// An [`AcquireAnswer`] read as the decision it states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Admitted { fencing_token: u64 },
    Queued { position: u32 },
    Rejected { reason: RejectReason },
}

/// An answer whose status lacks the field that status needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed admission answer: {0:?}")]
pub struct MalformedAnswer(pub AcquireAnswer);

impl AcquireAnswer {
    pub fn admitted(fencing_token: u64) -> AcquireAnswer {
        AcquireAnswer {
            status: AcquireStatus::Admitted,
            reason: None,
            fencing_token: Some(fencing_token),
            position: None,
        }
    }

    pub fn queued(position: u32) -> AcquireAnswer {
        AcquireAnswer {
            status: AcquireStatus::Queued,
            reason: None,
            fencing_token: None,
            position: Some(position),
        }
    }

    pub fn rejected(reason: RejectReason) -> AcquireAnswer {
        AcquireAnswer {
            status: AcquireStatus::Rejected,
            reason: Some(reason),
            fencing_token: None,
            position: None,
        }
    }

    /// The decision, or an error when the status's own field is missing
    /// (an admission without a fencing token is never read as token 0).
    pub fn decision(&self) -> Result<Decision, MalformedAnswer> {
        let malformed = || MalformedAnswer(self.clone());
        Ok(match self.status {
            AcquireStatus::Admitted => Decision::Admitted {
                fencing_token: self.fencing_token.ok_or_else(malformed)?,
            },
            AcquireStatus::Queued => Decision::Queued {
                position: self.position.ok_or_else(malformed)?,
            },
            AcquireStatus::Rejected => Decision::Rejected {
                reason: self.reason.ok_or_else(malformed)?,
            },
        })
    }
}

/// Whether `id` has the shape of a query id (`{ms}_{seq}_{coordinator}`,
/// at most 128 of `[A-Za-z0-9_-]`). Ids arrive in client URLs and go into
/// internal ones: anything else (a `/`, a `..`) is no query of ours.
pub fn is_query_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A query's place in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerStatus {
    Running,
    Queued,
    /// Ended; only its id is remembered.
    Finished,
}

/// `GET /v1/admission/queries/{id}`: one query's ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryEntry {
    pub query_id: String,
    pub group: String,
    pub coordinator: String,
    pub session: u64,
    /// False once the session expired: the query waits for adoption.
    pub session_alive: bool,
    pub status: LedgerStatus,
    pub fencing_token: Option<u64>,
    pub payload: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_keep_their_wire_form() {
        let a = serde_json::to_value(AcquireAnswer::rejected(RejectReason::QueueFull)).unwrap();
        assert_eq!(
            a,
            serde_json::json!({"status": "rejected", "reason": "QUERY_QUEUE_FULL",
                "fencing_token": null, "position": null})
        );
        for r in [
            RejectReason::QueueFull,
            RejectReason::NoSuchGroup,
            RejectReason::NotALeaf,
            RejectReason::EventualGroup,
            RejectReason::SessionExpired,
            RejectReason::NoConfiguration,
            RejectReason::AlreadyFinished,
            RejectReason::GroupMismatch,
            RejectReason::NotAdoptable,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.name(), "{r:?}");
        }
        let e: QueryEntry = serde_json::from_str(
            r#"{"query_id":"q","group":"g","coordinator":"c","session":3,
                "session_alive":false,"status":"queued","fencing_token":null,"payload":""}"#,
        )
        .unwrap();
        assert_eq!(e.status, LedgerStatus::Queued);
        assert_eq!(
            serde_json::to_value(ReleaseAnswer {
                outcome: ReleaseOutcome::Cancelled
            })
            .unwrap(),
            serde_json::json!({"outcome": "cancelled"})
        );
    }

    #[test]
    fn an_admission_without_its_token_is_an_error_not_token_zero() {
        let mut a = AcquireAnswer::admitted(7);
        assert_eq!(a.decision(), Ok(Decision::Admitted { fencing_token: 7 }));
        a.fencing_token = None;
        assert!(a.decision().is_err());
        let bad: Result<AcquireAnswer, _> = serde_json::from_str(
            r#"{"status":"maybe","reason":null,"fencing_token":null,"position":null}"#,
        );
        assert!(bad.is_err(), "an unknown status does not decode");
    }

    #[test]
    fn query_ids_are_plain_names() {
        assert!(is_query_id("1733100000000_00001_c1"));
        for bad in ["", "..", "a/b", "../admin", "a.b", "a b", &"x".repeat(129)] {
            assert!(!is_query_id(bad), "{bad:?}");
        }
    }
}
