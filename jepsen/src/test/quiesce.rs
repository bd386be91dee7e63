//! The quiesce phase: once the faults are healed and the clients stopped,
//! wait for every admission to be released (or revoked with its session)
//! and every orphaned queued query to time out, then gather what the
//! checkers need from the cluster: the workers' tasks, the RMs' memory
//! view, the voters.

use std::time::{Duration, Instant};

use common::api::{GroupView, MemoryView, TaskInfo};
use serde::{Deserialize, Serialize};

use super::run::Ran;
use super::start::Started;
use super::{TestSpec, QUEUE_TIMEOUT_MS};
use crate::checker;
use crate::nemesis::{self, Schedule};

/// What the run gathered from the cluster at its end (kept as
/// `end-state.json`, so `jepsen check` can re-run the checkers).
#[derive(Debug, Serialize, Deserialize)]
pub struct EndState {
    pub start_wall_ms: u64,
    pub end_ns: u64,
    pub worker_tasks: Vec<TaskInfo>,
    /// Groups still holding queries after quiescence.
    pub still_held: Vec<GroupView>,
    /// Nemesis fault windows (ns).
    pub windows: Vec<(u64, u64)>,
    /// The RMs' `GET /v1/memory` (kill decisions) at the end.
    #[serde(default)]
    pub memory: Option<MemoryView>,
    /// With the membership nemesis: the voters at the start and the end.
    #[serde(default)]
    pub voters: Option<checker::membership::VotersAtEnd>,
}

/// Waits for the ledger to drain and gathers the end state.
pub(super) async fn quiesce(
    spec: &TestSpec,
    started: &Started,
    schedule: &Schedule,
    ran: &Ran,
) -> EndState {
    let Started {
        cluster,
        rm,
        rms,
        workers,
        internal,
        ..
    } = started;
    let leaked = wait_ledger_empty(
        rm,
        rms,
        Duration::from_millis(spec.session_lease_ms * 2 + QUEUE_TIMEOUT_MS + 5_000),
    )
    .await;
    let tasks = worker_tasks(internal, workers).await;
    let voters = if schedule.faults.contains(&nemesis::Fault::Membership) {
        let c = cluster.lock().await;
        let view = nemesis::membership::view(&c, internal).await;
        Some(checker::membership::VotersAtEnd {
            original: c.original_rms(),
            voters: view.map(|v| v.voters),
        })
    } else {
        None
    };
    EndState {
        start_wall_ms: ran.start_wall_ms,
        end_ns: ran.end_ns,
        worker_tasks: tasks,
        still_held: leaked,
        windows: ran.windows.iter().map(|w| (w.start_ns, w.end_ns)).collect(),
        memory: memory_view(rm, rms).await,
        voters,
    }
}

/// Groups that still hold running or queued queries, after waiting up to
/// `timeout` for them to drain (linearizable reads).
async fn wait_ledger_empty(
    rm: &crate::rm_client::RmClient,
    rms: &[String],
    timeout: Duration,
) -> Vec<GroupView> {
    let deadline = Instant::now() + timeout;
    let mut held = Vec::new();
    while Instant::now() < deadline {
        for addr in rms {
            if let Ok(v) = rm.resource_groups(addr).await {
                held = v
                    .groups
                    .into_iter()
                    .filter(|g| g.running + g.queued > 0)
                    .collect();
                if held.is_empty() {
                    return held;
                }
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    held
}

/// The RMs' memory view and kill decisions (from the first RM that answers).
async fn memory_view(rm: &crate::rm_client::RmClient, rms: &[String]) -> Option<MemoryView> {
    for addr in rms {
        if let Ok(v) = rm.memory(addr).await {
            return Some(v);
        }
    }
    None
}

/// Every worker's tasks (those still remembered), as `GET /v1/tasks`.
async fn worker_tasks(http: &common::http::HttpClient, workers: &[String]) -> Vec<TaskInfo> {
    let mut out = Vec::new();
    for w in workers {
        if let Ok(tasks) = http
            .get_json::<Vec<TaskInfo>>(&http.url(w, "/v1/tasks"), 3)
            .await
        {
            out.extend(tasks);
        }
    }
    out
}
