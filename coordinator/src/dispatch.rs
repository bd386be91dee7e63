//! Running a task: pick the live worker with the least memory held (from
//! an RM's memory view: declared reservations and measured query
//! processes), create the task there, follow it to its end, read a
//! query's result page by page, cancel it on request.

use std::time::Duration;

use common::api::{ResultPage, TaskInfo, TaskSpec, TaskState};
use common::http::HttpClient;
use common::rm::RmClient;

use crate::protocol::{ErrorKind, QueryError};

/// How a task ended, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEnd {
    Finished { peak_memory_bytes: u64, cpu_ms: u64 },
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

pub async fn create_task(http: &HttpClient, addr: &str, spec: &TaskSpec) -> Result<(), QueryError> {
    let url = http.url(addr, "/v1/tasks");
    let mut attempt = 1;
    loop {
        match http.post_json::<_, TaskInfo>(&url, spec).await {
            Ok(_) => return Ok(()),
            // The worker cannot check the fencing token with the RMs yet
            // (none answers, or none fresh): they usually recover within
            // an election. A refusal (409: revoked, not in the ledger) is
            // final, like any other error.
            Err(e) if e.status() == Some(503) && attempt < CREATE_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(CREATE_RETRY_PAUSE).await;
            }
            Err(e) => {
                return Err(QueryError::new(
                    ErrorKind::GenericInternalError,
                    format!("cannot start the task: {e}"),
                ))
            }
        }
    }
}

/// How often a task creation the worker answered 503 is tried, and the
/// pause between tries (about 3 s in all, past a typical RM failover).
const CREATE_ATTEMPTS: u32 = 12;
const CREATE_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Polls the task until it ends.
pub async fn follow_task(http: &HttpClient, addr: &str, task_id: &str) -> TaskEnd {
    // The worker answers as soon as the task ends, or after a second.
    let url = http.url(addr, &format!("/v1/tasks/{task_id}?wait_ms=1000"));
    let mut failures = 0;
    loop {
        match http.get_json::<TaskInfo>(&url, 1).await {
            Ok(t) => {
                failures = 0;
                let reason = t.reason.unwrap_or_default();
                match t.state {
                    TaskState::Finished => {
                        return TaskEnd::Finished {
                            peak_memory_bytes: t.peak_memory_bytes,
                            cpu_ms: t.cpu_ms,
                        }
                    }
                    TaskState::Failed => {
                        let kind = ErrorKind::from_name(t.error_name.as_deref().unwrap_or(""));
                        return TaskEnd::Failed(QueryError::new(kind, reason).at(t.error_location));
                    }
                    TaskState::Killed => {
                        let kind = ErrorKind::of_kill(t.error_name.as_deref().unwrap_or(""));
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
                    // The worker waited; ask again at once.
                    TaskState::Blocked | TaskState::Running => continue,
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

/// Page `page` of a finished query task's result.
pub async fn result_page(
    http: &HttpClient,
    addr: &str,
    task_id: &str,
    page: u32,
) -> Result<ResultPage, QueryError> {
    http.get_json(
        &http.url(addr, &format!("/v1/tasks/{task_id}/results/{page}")),
        3,
    )
    .await
    .map_err(|e| {
        QueryError::new(
            ErrorKind::GenericInternalError,
            format!("cannot read the result from the worker: {e}"),
        )
    })
}

pub async fn cancel_task(http: &HttpClient, addr: &str, task_id: &str) {
    if let Err(e) = http
        .delete(&http.url(addr, &format!("/v1/tasks/{task_id}")))
        .await
    {
        tracing::warn!(task = task_id, error = %e, "cannot cancel the task");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A worker stand-in answering `statuses` in turn (then the last one
    /// forever), counting the creates.
    async fn worker(statuses: Vec<u16>) -> (String, Arc<AtomicU32>) {
        let hits = Arc::new(AtomicU32::new(0));
        let counted = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let (hits, statuses) = (counted.clone(), statuses.clone());
            async move {
                let n = hits.fetch_add(1, Ordering::Relaxed) as usize;
                let status = statuses[n.min(statuses.len() - 1)];
                let body = if status == 200 {
                    r#"{"task_id":"q","query_id":"q","fencing_token":7,
                        "work":{"kind":"simulated","duration_ms":1,"memory_bytes":1},
                        "state":"blocked","started_ms":null,
                        "finished_ms":null,"reason":null,"error_name":null}"#
                } else {
                    r#"{"error":"no"}"#
                };
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    [("content-type", "application/json")],
                    body,
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, hits)
    }

    #[tokio::test]
    async fn a_worker_that_cannot_check_the_token_yet_is_asked_again_and_a_refusal_is_final() {
        let http = HttpClient::new(None, Duration::from_secs(2));
        let (busy, hits) = worker(vec![503, 503, 200]).await;
        let spec = TaskSpec {
            task_id: "q".into(),
            query_id: "q".into(),
            fencing_token: 7,
            resource_group: "g".into(),
            work: common::api::TaskWork::Simulated {
                duration_ms: 1,
                memory_bytes: 1,
                cpu_ms: 1,
            },
        };
        create_task(&http, &busy, &spec).await.unwrap();
        assert_eq!(hits.load(Ordering::Relaxed), 3);
        let (refusing, hits) = worker(vec![409]).await;
        let e = create_task(&http, &refusing, &spec).await.unwrap_err();
        assert!(e.message.contains("409"), "{e:?}");
        assert_eq!(hits.load(Ordering::Relaxed), 1);
    }
}
