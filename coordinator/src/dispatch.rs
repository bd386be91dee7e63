//! Running a simulated task: pick the live worker with the least memory
//! reserved (from an RM's memory view), create the task there, follow it
//! to its end, cancel it on request.

use std::time::Duration;

use common::api::{TaskInfo, TaskSpec, TaskState};
use common::http::HttpClient;
use common::rm::RmClient;

use crate::protocol::{ErrorKind, QueryError};

/// How a task ended, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEnd {
    Finished { peak_memory_bytes: u64 },
    Failed(QueryError),
}

pub struct Placement {
    pub worker: String,
    pub addr: String,
}

/// The live worker with the least memory reserved that can hold `bytes`.
pub async fn choose_worker(rms: &RmClient, bytes: u64) -> Result<Placement, QueryError> {
    let internal = |e| {
        QueryError::new(
            ErrorKind::GenericInternalError,
            format!("cannot read the cluster state: {e}"),
        )
    };
    let memory = rms.memory().await.map_err(internal)?.pool;
    let nodes = rms.nodes(Some("worker")).await.map_err(internal)?;
    let best = memory
        .nodes
        .iter()
        .map(|n| &n.heartbeat)
        .filter(|h| h.memory.total_bytes >= bytes)
        .filter_map(|h| {
            nodes
                .iter()
                .find(|n| n.announcement.node_id == h.node_id)
                .map(|n| (h, n))
        })
        .min_by_key(|(h, n)| (h.memory.reserved_bytes, n.announcement.node_id.clone()));
    match best {
        Some((_, n)) => Ok(Placement {
            worker: n.announcement.node_id.clone(),
            addr: n.announcement.addr.clone(),
        }),
        None if memory.nodes.is_empty() => Err(QueryError::new(
            ErrorKind::NoNodesAvailable,
            "no worker is alive",
        )),
        None => Err(QueryError::new(
            ErrorKind::ClusterOutOfMemory,
            format!("no worker has a memory pool of {bytes} bytes"),
        )),
    }
}

pub async fn create_task(
    http: &HttpClient,
    addr: &str,
    query_id: &str,
    fencing_token: u64,
    duration_ms: u64,
    memory_bytes: u64,
) -> Result<(), QueryError> {
    let spec = TaskSpec {
        task_id: query_id.to_string(),
        query_id: query_id.to_string(),
        fencing_token,
        duration_ms,
        memory_bytes,
    };
    http.post_json::<_, TaskInfo>(&format!("http://{addr}/v1/tasks"), &spec)
        .await
        .map(|_| ())
        .map_err(|e| {
            QueryError::new(
                ErrorKind::GenericInternalError,
                format!("cannot start the task: {e}"),
            )
        })
}

/// Polls the task until it ends.
pub async fn follow_task(
    http: &HttpClient,
    addr: &str,
    task_id: &str,
    memory_bytes: u64,
) -> TaskEnd {
    let url = format!("http://{addr}/v1/tasks/{task_id}");
    let mut failures = 0;
    loop {
        match http.get_json::<TaskInfo>(&url, 1).await {
            Ok(t) => {
                failures = 0;
                let reason = t.reason.unwrap_or_default();
                match t.state {
                    TaskState::Finished => {
                        return TaskEnd::Finished {
                            peak_memory_bytes: memory_bytes,
                        }
                    }
                    TaskState::Killed => {
                        let kind = ErrorKind::of_memory_kill(t.error_name.as_deref().unwrap_or(""));
                        return TaskEnd::Failed(QueryError::new(kind, reason));
                    }
                    TaskState::Revoked => {
                        return TaskEnd::Failed(QueryError::new(
                            ErrorKind::GenericInternalError,
                            format!("admission lost: {reason}"),
                        ))
                    }
                    TaskState::Cancelled => {
                        return TaskEnd::Failed(QueryError::new(
                            ErrorKind::UserCanceled,
                            "query cancelled",
                        ))
                    }
                    TaskState::Blocked | TaskState::Running => {}
                }
            }
            Err(e) => {
                failures += 1;
                if failures >= 20 {
                    return TaskEnd::Failed(QueryError::new(
                        ErrorKind::GenericInternalError,
                        format!("lost contact with the worker: {e}"),
                    ));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn cancel_task(http: &HttpClient, addr: &str, task_id: &str) {
    if let Err(e) = http
        .delete(&format!("http://{addr}/v1/tasks/{task_id}"))
        .await
    {
        tracing::warn!(task = task_id, error = %e, "cannot cancel the task");
    }
}
