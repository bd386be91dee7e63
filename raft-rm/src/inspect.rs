//! `raft-rm inspect --data-dir DIR`: what a (stopped) node's data dir holds:
//! identity, vote, committed and purged ids, the log range, the snapshot,
//! and with `--entries` every log entry, one JSON line each. For operators
//! and for diagnosing a node after a crash.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftStateMachine};
use serde_json::json;

use crate::metrics::Metrics;
use crate::NodeId;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The node's data dir (the node must not be running: sled locks it).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Print every log entry too.
    #[arg(long)]
    pub entries: bool,
}

pub async fn run(args: InspectArgs) -> i32 {
    match inspect(&args).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("raft-rm inspect: {e}");
            1
        }
    }
}

async fn inspect(args: &InspectArgs) -> anyhow::Result<()> {
    let node_id = read_node_id(&args.data_dir)?;
    let mut stores = crate::store::open(&args.data_dir, node_id, Arc::new(Metrics::new()))?;
    let state = stores.log.get_log_state().await?;
    let snapshot = stores.state_machine.get_current_snapshot().await?;
    let (applied, membership) = stores.state_machine.applied_state().await?;
    let summary = json!({
        "node_id": node_id,
        "cluster_id": stores.identity.cluster_id(),
        "vote": stores.log.read_vote().await?.map(|v| v.to_string()),
        "committed": stores.log.read_committed().await?.map(|l| l.to_string()),
        "last_purged": state.last_purged_log_id.map(|l| l.to_string()),
        "last_log": state.last_log_id.map(|l| l.to_string()),
        "snapshot": snapshot.as_ref().map(|s| json!({
            "id": s.meta.snapshot_id,
            "last_log": s.meta.last_log_id.map(|l| l.to_string()),
        })),
        "snapshot_state_applied": applied.map(|l| l.to_string()),
        "membership": membership.to_string(),
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if args.entries {
        let start = state.last_purged_log_id.map(|l| l.index + 1).unwrap_or(0);
        for entry in stores.log.try_get_log_entries(start..).await? {
            println!(
                "{}",
                json!({"log_id": entry.log_id.to_string(), "payload": format!("{:?}", entry.payload)})
            );
        }
    }
    Ok(())
}

fn read_node_id(dir: &std::path::Path) -> anyhow::Result<NodeId> {
    if !dir.join("sled").is_dir() {
        anyhow::bail!(
            "{} is not a raft-rm data dir (no sled/ inside)",
            dir.display()
        );
    }
    crate::store::recorded_node_id(dir)?
        .ok_or_else(|| anyhow::anyhow!("{}: no node id recorded", dir.display()))
}
