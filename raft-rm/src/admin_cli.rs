//! `raft-rm admin`: the command-line form of the admin API. Any node
//! accepts the request and relays it to the leader.
//!
//! ```text
//! raft-rm admin --rm 127.0.0.1:7001 status
//! raft-rm admin --rm 127.0.0.1:7001 add-learner 4 127.0.0.1:7004
//! raft-rm admin --rm 127.0.0.1:7001 promote 4
//! raft-rm admin --rm 127.0.0.1:7001 remove 4
//! raft-rm admin --rm 127.0.0.1:7001 replace --node-id 3 --addr 127.0.0.1:7003
//! raft-rm admin --rm 127.0.0.1:7001 step-down [--to 2]
//! raft-rm admin --rm 127.0.0.1:7002 snapshot
//! ```
//!
//! `snapshot` alone runs on the node named by `--rm`, not on the leader.
//! `replace` is composed here of remove, add-learner and promote ([`replace`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use common::api::{
    AddLearner, ClusterView, Health, MembershipChanged, NodeRef, SnapshotNow, StepDown,
};
use common::auth::SharedSecret;
use common::http::{HttpClient, HttpError};
use serde::Serialize;
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
    /// Over HTTPS: the certificate (subject OU `admin`, for nodes that
    /// require client certificates), its key and the CA of the nodes.
    #[command(flatten)]
    pub tls: common::tls::TlsArgs,
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
    /// Replace a member whose data dir was lost (or moved): remove it, add
    /// the node now running at ADDR as a learner with its new incarnation,
    /// wait for it to catch up, and promote it. Start the node first.
    Replace {
        #[arg(long)]
        node_id: NodeId,
        #[arg(long)]
        addr: String,
    },
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
    let tls = match args.tls.load() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("raft-rm admin: {e}");
            return common::cli::EXIT_USAGE;
        }
    };
    let http =
        HttpClient::new(secret, wait.max(Duration::from_secs(60))).with_tls(tls.map(|t| t.client));
    let base = http.url(&args.rm, "");
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
        AdminAction::Replace { node_id, addr } => {
            replace_through_elections(&http, &base, node_id, &addr)
                .await
                .and_then(|report| {
                    serde_json::to_value(report).map_err(|e| HttpError::Decode {
                        url: base.clone(),
                        message: e.to_string(),
                    })
                })
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

/// What `replace` did, step by step.
#[derive(Debug, Serialize)]
pub struct Replaced {
    pub node_id: NodeId,
    /// The incarnation the membership now records for the node.
    pub incarnation: u64,
    /// Absent when the node was not a member, or already the one at `addr`
    /// (an earlier `replace` stopped after adding it).
    pub removed: Option<MembershipChanged>,
    pub added: Option<MembershipChanged>,
    pub promoted: MembershipChanged,
}

/// How long `replace` keeps retrying refusals that did nothing (503: no
/// leader known during an election, the leader overloaded or handing
/// over). A lost disk is often the leader's, and the operator runs
/// `replace` while the others are still electing.
const REPLACE_RETRIES_FOR: Duration = Duration::from_secs(30);

/// [`replace`], run again after each 503 until [`REPLACE_RETRIES_FOR`]
/// has passed: it resumes where it stopped, so a retry repeats nothing.
pub async fn replace_through_elections(
    http: &HttpClient,
    base: &str,
    node_id: NodeId,
    addr: &str,
) -> Result<Replaced, HttpError> {
    let deadline = tokio::time::Instant::now() + REPLACE_RETRIES_FOR;
    loop {
        match replace(http, base, node_id, addr).await {
            Err(e) if e.status() == Some(503) && tokio::time::Instant::now() < deadline => {
                eprintln!("raft-rm admin: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => return other,
        }
    }
}

/// Replaces member `node_id` by the node now running at `addr` (its data dir
/// lost, so its incarnation new): remove, add-learner (which waits for it to
/// catch up), promote, each through the node at `base` (relayed to the
/// leader). Running it again after a failure resumes where it stopped.
pub async fn replace(
    http: &HttpClient,
    base: &str,
    node_id: NodeId,
    addr: &str,
) -> Result<Replaced, HttpError> {
    let joining: Health = http.get_json(&http.url(addr, "/v1/health"), 3).await?;
    let view: ClusterView = http.get_json(&format!("{base}/v1/cluster"), 3).await?;
    let member = view.members.iter().find(|m| m.id == node_id);
    let already_added = member.is_some_and(|m| m.incarnation == joining.incarnation);
    let removed = match member {
        Some(_) if !already_added => Some(
            http.post_json(&format!("{base}/v1/admin/remove"), &NodeRef { node_id })
                .await?,
        ),
        _ => None,
    };
    let added = if already_added {
        None
    } else {
        let learner = AddLearner {
            node_id,
            addr: addr.to_string(),
        };
        Some(
            http.post_json(&format!("{base}/v1/admin/add-learner"), &learner)
                .await?,
        )
    };
    let promoted = http
        .post_json(&format!("{base}/v1/admin/promote"), &NodeRef { node_id })
        .await?;
    Ok(Replaced {
        node_id,
        incarnation: joining.incarnation,
        removed,
        added,
        promoted,
    })
}
