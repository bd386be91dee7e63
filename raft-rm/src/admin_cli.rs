//! `raft-rm admin`: the command-line form of the admin API. Any node
//! accepts the request and relays it to the leader.
//!
//! ```text
//! raft-rm admin --rm 127.0.0.1:7001 status
//! raft-rm admin --rm 127.0.0.1:7001 add-learner 4 127.0.0.1:7004
//! raft-rm admin --rm 127.0.0.1:7001 promote 4
//! raft-rm admin --rm 127.0.0.1:7001 remove 4
//! raft-rm admin --rm 127.0.0.1:7001 step-down [--to 2]
//! raft-rm admin --rm 127.0.0.1:7002 snapshot
//! ```
//!
//! `snapshot` alone runs on the node named by `--rm`, not on the leader.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use common::api::{AddLearner, NodeRef, SnapshotNow, StepDown};
use common::auth::SharedSecret;
use common::http::HttpClient;
use serde_json::Value;

use crate::NodeId;

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// Any node of the cluster, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub rm: String,
    /// File holding the internal shared secret, if the cluster uses one.
    #[arg(long)]
    pub shared_secret_file: Option<PathBuf>,
    #[command(subcommand)]
    pub action: AdminAction,
}

#[derive(Subcommand, Debug)]
pub enum AdminAction {
    /// Membership, leader, replication progress.
    Status,
    /// Add a non-voting member and wait until it has caught up.
    AddLearner { node_id: NodeId, addr: String },
    /// Make a learner a voter.
    Promote { node_id: NodeId },
    /// Remove a voter or learner.
    Remove { node_id: NodeId },
    /// Hand leadership to an up-to-date follower.
    StepDown {
        #[arg(long)]
        to: Option<NodeId>,
    },
    /// Build a snapshot on the node named by --rm now and wait for it.
    Snapshot {
        /// How long to wait for the snapshot, in ms [default: 30000].
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
}

/// Runs one admin action; returns the process exit status.
pub async fn run(args: AdminArgs) -> i32 {
    let secret = match &args.shared_secret_file {
        Some(path) => match SharedSecret::from_file(path) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("raft-rm admin: {e}");
                return common::cli::EXIT_USAGE;
            }
        },
        None => None,
    };
    // Membership changes wait for a learner to catch up: allow time, and
    // more than a snapshot is told to wait, so the node answers first.
    let wait = match &args.action {
        AdminAction::Snapshot {
            timeout_ms: Some(ms),
        } => Duration::from_millis(*ms) + Duration::from_secs(5),
        _ => Duration::ZERO,
    };
    let http = HttpClient::new(secret, wait.max(Duration::from_secs(60)));
    let base = format!("http://{}", args.rm);
    // Answers are printed as they come: this is an operator's pass-through.
    let result: Result<Value, common::http::HttpError> = match args.action {
        AdminAction::Status => http.get_json(&format!("{base}/v1/cluster"), 3).await,
        AdminAction::AddLearner { node_id, addr } => {
            http.post_json(
                &format!("{base}/v1/admin/add-learner"),
                &AddLearner { node_id, addr },
            )
            .await
        }
        AdminAction::Promote { node_id } => {
            http.post_json(&format!("{base}/v1/admin/promote"), &NodeRef { node_id })
                .await
        }
        AdminAction::Remove { node_id } => {
            http.post_json(&format!("{base}/v1/admin/remove"), &NodeRef { node_id })
                .await
        }
        AdminAction::StepDown { to } => {
            http.post_json(&format!("{base}/v1/admin/step-down"), &StepDown { to })
                .await
        }
        AdminAction::Snapshot { timeout_ms } => {
            http.post_json(
                &format!("{base}/v1/admin/snapshot"),
                &SnapshotNow { timeout_ms },
            )
            .await
        }
    };
    match result {
        Ok(v) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
            );
            0
        }
        Err(e) => {
            eprintln!("raft-rm admin: {e}");
            1
        }
    }
}
