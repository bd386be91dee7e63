//! A Trino-protocol client, as an outside client uses a coordinator:
//! `POST /v1/statement`, then follow `nextUri` to the end.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::http::HttpClient;
use serde_json::Value;

/// How a query ended, as its client saw it.
#[derive(Debug, Clone)]
pub struct Ended {
    /// `FINISHED` or `FAILED` (or the last state seen).
    pub state: String,
    /// The `error` object of a failed query.
    pub error: Option<Value>,
    pub id: String,
    /// From submission until the client first saw it past `QUEUED`.
    pub admitted_after: Option<Duration>,
    pub elapsed: Duration,
    /// The interval in which the query was certainly running, on the
    /// caller's clock: from the receive time of the first `RUNNING` answer
    /// to the send time of the last poll answered `RUNNING`.
    pub running_from_ns: Option<u64>,
    pub running_until_ns: Option<u64>,
    /// The client saw it `QUEUED` at least once.
    pub was_queued: bool,
    /// The rows of every answer's `data`, in order.
    pub data: Vec<Value>,
}

impl Ended {
    pub fn error_name(&self) -> Option<&str> {
        self.error.as_ref().and_then(|e| e["errorName"].as_str())
    }
}

/// Waits until the coordinator holds a session (its `/v1/info` no longer
/// says `starting`).
pub async fn wait_ready(addr: &str, timeout: Duration) -> Result<()> {
    let http = crate::tls::http(None, Duration::from_secs(5));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(v) = http.get_json::<Value>(&http.url(addr, "/v1/info"), 1).await {
            if v["starting"] == false {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("coordinator {addr} did not become ready within {timeout:?}")
}

/// The error context of a submission that got no answer: the coordinator
/// may or may not have taken the query (it died, or the connection broke,
/// after the request left), so nobody can say how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnansweredSubmission {
    pub coordinator: String,
}

impl std::fmt::Display for UnansweredSubmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "submitting to {}", self.coordinator)
    }
}

#[derive(Clone)]
pub struct TrinoClient {
    http: HttpClient,
    /// Coordinators behind a load balancer: a poll whose coordinator does
    /// not answer is sent to the next one (which adopts a queued query of
    /// a dead coordinator, or says how its running query ended).
    failover: Vec<String>,
}

/// How long a poll keeps moving between coordinators before it gives up.
const FAILOVER_FOR: Duration = Duration::from_secs(30);

/// `url` with its `host:port` replaced by `addr`.
fn with_authority(url: &str, addr: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let path = rest.find('/').map_or("", |i| &rest[i..]);
            format!("{scheme}://{addr}{path}")
        }
        None => url.to_string(),
    }
}

impl Default for TrinoClient {
    fn default() -> Self {
        // Clients of the protocol carry no internal secret.
        Self {
            http: crate::tls::http(None, Duration::from_secs(30)),
            failover: Vec::new(),
        }
    }
}

impl TrinoClient {
    /// A client that moves its polls to another of `coordinators` when
    /// one does not answer, as behind a load balancer.
    pub fn with_failover(coordinators: Vec<String>) -> TrinoClient {
        TrinoClient {
            failover: coordinators,
            ..TrinoClient::default()
        }
    }

    /// One poll; with failover, moved between coordinators until one
    /// answers or `FAILOVER_FOR` passes.
    async fn poll(&self, url: &str) -> Result<Value, common::http::HttpError> {
        let first = self.http.get_json(url, 1).await;
        if self.failover.is_empty() {
            return first;
        }
        let deadline = Instant::now() + FAILOVER_FOR;
        let mut last = first;
        let mut i = 0;
        loop {
            match &last {
                Ok(_) => return last,
                // Not found there: the query is another coordinator's, or gone.
                Err(e) if e.status().is_some_and(|s| s != 404 && s != 503 && s < 500) => {
                    return last
                }
                _ => {}
            }
            if Instant::now() > deadline {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let addr = &self.failover[i % self.failover.len()];
            i += 1;
            last = self.http.get_json(&with_authority(url, addr), 1).await;
        }
    }

    /// Runs `sql` as `user` through `coordinator` with session properties
    /// `session`, following the query to its end.
    pub async fn run(
        &self,
        coordinator: &str,
        user: &str,
        sql: &str,
        session: &[(&str, String)],
    ) -> Result<Ended> {
        let t = Instant::now();
        self.run_timed(coordinator, user, sql, session, &|| {
            t.elapsed().as_nanos() as u64
        })
        .await
    }

    /// As [`run`](Self::run), with `now` (ns) as the clock for the running
    /// interval (a test's history clock).
    pub async fn run_timed(
        &self,
        coordinator: &str,
        user: &str,
        sql: &str,
        session: &[(&str, String)],
        now: &(dyn Fn() -> u64 + Sync),
    ) -> Result<Ended> {
        self.run_in(coordinator, user, sql, session, None, now)
            .await
    }

    /// As [`run_timed`](Self::run_timed), with the client's catalog and
    /// schema (`X-Trino-Catalog`, `X-Trino-Schema`).
    pub async fn run_in(
        &self,
        coordinator: &str,
        user: &str,
        sql: &str,
        session: &[(&str, String)],
        path: Option<(&str, &str)>,
        now: &(dyn Fn() -> u64 + Sync),
    ) -> Result<Ended> {
        let t = Instant::now();
        let mut sent = now();
        let session_header = session
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut headers = vec![("x-trino-user", user)];
        if !session_header.is_empty() {
            headers.push(("x-trino-session", session_header.as_str()));
        }
        if let Some((catalog, schema)) = path {
            headers.push(("x-trino-catalog", catalog));
            headers.push(("x-trino-schema", schema));
        }
        // A submission that never reached its coordinator goes to the next
        // one, as a load balancer would send it (it cannot have started a
        // query, so this creates no duplicate).
        let mut targets = vec![coordinator.to_string()];
        targets.extend(self.failover.iter().filter(|c| *c != coordinator).cloned());
        let mut body = None;
        for (i, target) in targets.iter().enumerate() {
            match self
                .http
                .post_bytes(
                    &self.http.url(target, "/v1/statement"),
                    "text/plain",
                    sql.as_bytes().to_vec(),
                    None,
                    &headers,
                )
                .await
            {
                Ok(b) => {
                    body = Some(b);
                    break;
                }
                Err(e) if e.never_sent() && i + 1 < targets.len() => continue,
                Err(e) => {
                    return Err(e).context(UnansweredSubmission {
                        coordinator: target.clone(),
                    })
                }
            }
        }
        let body = body.context("no coordinator to submit to")?;
        let mut received = now();
        let mut r: Value = serde_json::from_slice(&body).context("decoding QueryResults")?;
        let id = r["id"].as_str().unwrap_or_default().to_string();
        let mut admitted_after = None;
        let (mut running_from_ns, mut running_until_ns, mut was_queued) = (None, None, false);
        let mut data = Vec::new();
        loop {
            if let Some(rows) = r["data"].as_array() {
                data.extend(rows.iter().cloned());
            }
            let state = &r["stats"]["state"];
            if admitted_after.is_none() && state != "QUEUED" {
                admitted_after = Some(t.elapsed());
            }
            if state == "QUEUED" {
                was_queued = true;
            }
            if state == "RUNNING" {
                running_from_ns.get_or_insert(received);
                running_until_ns = Some(sent);
            }
            let Some(next) = r["nextUri"].as_str().map(str::to_string) else {
                break;
            };
            sent = now();
            // A short maxWait while running keeps the certainly-running
            // interval close to the truth (Trino's nextUri accepts it).
            let url = if state == "RUNNING" {
                format!("{next}?maxWait=50ms")
            } else {
                next
            };
            r = self
                .poll(&url)
                .await
                .with_context(|| format!("polling query {id}"))?;
            received = now();
        }
        Ok(Ended {
            state: r["stats"]["state"].as_str().unwrap_or_default().to_string(),
            error: r.get("error").cloned(),
            id,
            admitted_after,
            elapsed: t.elapsed(),
            running_from_ns,
            running_until_ns,
            was_queued,
            data,
        })
    }

    /// A simulated query: holds `memory_bytes` on a worker for `duration`.
    pub async fn simulate(
        &self,
        coordinator: &str,
        user: &str,
        duration: Duration,
        memory_bytes: u64,
    ) -> Result<Ended> {
        let session = [
            ("simulate_duration_ms", duration.as_millis().to_string()),
            ("simulate_memory_bytes", memory_bytes.to_string()),
        ];
        self.run(coordinator, user, "SELECT simulated", &session)
            .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unanswered_submission_is_told_apart_and_still_reads_as_before() {
        use super::UnansweredSubmission;
        use anyhow::Context as _;
        let e = Err::<(), _>(std::io::Error::other("connection closed"))
            .context(UnansweredSubmission {
                coordinator: "c1:8080".into(),
            })
            .unwrap_err();
        assert!(e.downcast_ref::<UnansweredSubmission>().is_some());
        assert_eq!(format!("{e:#}"), "submitting to c1:8080: connection closed");
    }

    #[test]
    fn failover_moves_only_the_authority() {
        assert_eq!(
            super::with_authority(
                "http://10.0.0.1:8000/v1/statement/queued/q/s/1?maxWait=50ms",
                "10.0.0.2:8000"
            ),
            "http://10.0.0.2:8000/v1/statement/queued/q/s/1?maxWait=50ms"
        );
    }
}
