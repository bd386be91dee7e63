//! The RMs' admin routes (`/v1/admin/*`) and the canary writes the harness
//! uses to check that nothing acknowledged is lost.

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// `POST /v1/admin/add-learner`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddLearner {
    pub node_id: NodeId,
    pub addr: String,
}

/// `POST /v1/admin/promote` and `POST /v1/admin/remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRef {
    pub node_id: NodeId,
}

/// The answer to a membership change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipChanged {
    pub node_id: NodeId,
    /// The entry that changed the membership; absent when nothing had to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
    /// A promotion of a node that already votes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub already_voter: bool,
}

/// `POST /v1/admin/step-down`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDown {
    /// The follower to hand over to; by default the most caught-up one.
    #[serde(default)]
    pub to: Option<NodeId>,
}

/// What a finished step-down reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDownReport {
    pub from: NodeId,
    pub to: NodeId,
    pub new_leader: Option<NodeId>,
    pub elapsed_ms: u64,
}

/// `POST /v1/admin/snapshot`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotNow {
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// What a requested snapshot reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotReport {
    pub node_id: NodeId,
    /// The applied index when the call arrived; the snapshot covers it.
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    /// Time of the build (copy, encode, durable write) and size of the
    /// snapshot, as in `raft_rm_snapshot_build_seconds` and
    /// `raft_rm_snapshot_bytes`.
    pub build_ms: f64,
    pub bytes: u64,
    /// From the call to the snapshot in place (a build already running
    /// when the call arrived is waited for first).
    pub elapsed_ms: u64,
}

/// The answer to `POST /v1/admin/config` (a new resource-group file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigApplied {
    pub version: u64,
    /// One line per field that is accepted but not enforced yet.
    pub warnings: Vec<String>,
}

/// `GET /v1/admin/config`: the resource-group configuration in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigInForce {
    pub version: u64,
    /// The groups as the RMs resolved them (each with its consistency,
    /// where the file left it to the RMs' default): what coordinators
    /// admit by.
    #[serde(default)]
    pub roots: Vec<crate::resource_groups::GroupSpec>,
    /// The configuration file's text, as proposed.
    pub source: String,
    pub settings: AdmissionSettings,
}

/// The admission settings the log holds (configuration: they may change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionSettings {
    pub session_lease_ms: u64,
    pub queue_timeout_ms: u64,
    #[serde(default)]
    pub orphan_timeout_ms: u64,
}

/// `POST /v1/canary`: a durable test write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryWrite {
    pub client: String,
    pub seq: u64,
}

/// The answer to a canary write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryWritten {
    pub served_by: NodeId,
    /// Log index of the entry that carried this request.
    pub index: u64,
    pub applied: bool,
    pub count: u64,
    pub last_seq: u64,
}
