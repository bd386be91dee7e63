//! The harness's view of a `raft-rm` node over HTTP (the same endpoints an
//! operator uses), on the project's one HTTP client.

use std::time::Duration;

use common::http::{HttpClient, HttpError};
use serde::Deserialize;
use serde_json::json;

/// The fields of `GET /v1/health` the harness reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Health {
    pub node_id: u64,
    pub role: String,
    pub leader_id: Option<u64>,
    pub term: u64,
    pub last_applied: Option<u64>,
    pub staleness_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CanaryWritten {
    pub served_by: u64,
    pub index: u64,
    pub applied: bool,
}

/// The answer to an acquire: the RMs' own type.
pub use common::api::{AcquireAnswer, AcquireStatus};

/// The answer to `POST /v1/admin/snapshot`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct SnapshotReport {
    pub node_id: u64,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub build_ms: f64,
    pub bytes: u64,
    pub elapsed_ms: u64,
}

#[derive(Clone)]
pub struct RmClient {
    http: HttpClient,
}

impl RmClient {
    pub fn new(http: HttpClient) -> Self {
        Self { http }
    }

    /// The same client with another per-request timeout, for calls that
    /// take as long as the state is large (a snapshot, a learner's catch-up).
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            http: self.http.with_timeout(timeout),
        }
    }

    /// `GET /metrics`: the node's Prometheus text.
    pub async fn metrics(&self, addr: &str) -> Result<String, HttpError> {
        let bytes = self
            .http
            .get_bytes(&format!("http://{addr}/metrics"), &[])
            .await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `POST /v1/admin/snapshot` on the node at `addr` (not relayed): it
    /// builds a snapshot covering what it has applied and answers when the
    /// snapshot is in place, or after `wait`.
    pub async fn snapshot_now(
        &self,
        addr: &str,
        wait: Duration,
    ) -> Result<SnapshotReport, HttpError> {
        self.http
            .post_json(
                &format!("http://{addr}/v1/admin/snapshot"),
                &json!({"timeout_ms": wait.as_millis() as u64}),
            )
            .await
    }

    /// `POST /v1/admin/add-learner` via `addr` (relayed to the leader):
    /// adds node `id` at `node_addr` as a learner. openraft answers once
    /// the learner is within its replication lag threshold (5000 entries),
    /// which need not mean caught up.
    pub async fn add_learner(
        &self,
        addr: &str,
        id: u64,
        node_addr: &str,
    ) -> Result<serde_json::Value, HttpError> {
        self.http
            .post_json(
                &format!("http://{addr}/v1/admin/add-learner"),
                &json!({"node_id": id, "addr": node_addr}),
            )
            .await
    }

    /// Renews `session` on `addr` every 2 s until the task is aborted, as a
    /// coordinator does (the lease is 10 s by default), so a bench's
    /// session outlives any run.
    pub fn keep_session_alive(&self, addr: &str, session: u64) -> tokio::task::JoinHandle<()> {
        let (client, addr) = (self.clone(), addr.to_string());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let _ = client.renew_session(&addr, session).await;
            }
        })
    }

    /// `GET /v1/resource-groups?max_staleness_ms=0`: the groups' counters,
    /// read linearizably.
    pub async fn resource_groups(&self, addr: &str) -> Result<serde_json::Value, HttpError> {
        self.http
            .get_json(
                &format!("http://{addr}/v1/resource-groups?max_staleness_ms=0"),
                1,
            )
            .await
    }

    /// `GET /v1/memory`: the memory view, the episode and recent kills.
    pub async fn memory(&self, addr: &str) -> Result<serde_json::Value, HttpError> {
        self.http
            .get_json(&format!("http://{addr}/v1/memory"), 3)
            .await
    }

    pub async fn health(&self, addr: &str) -> Result<Health, HttpError> {
        self.http
            .get_json(&format!("http://{addr}/v1/health"), 1)
            .await
    }

    pub async fn canary(
        &self,
        addr: &str,
        client: &str,
        seq: u64,
    ) -> Result<CanaryWritten, HttpError> {
        self.http
            .post_json(
                &format!("http://{addr}/v1/canary"),
                &json!({"client": client, "seq": seq}),
            )
            .await
    }

    /// `POST /v1/admin/step-down` on the leader at `addr`: hands leadership
    /// to the most caught-up follower. Answers the RM's report.
    pub async fn step_down(&self, addr: &str) -> Result<serde_json::Value, HttpError> {
        self.http
            .post_json(&format!("http://{addr}/v1/admin/step-down"), &json!({}))
            .await
    }

    /// `GET /v1/resource-groups?max_staleness_ms=BOUND`: the eventual-mode
    /// view, as a coordinator reads it. Answers its `staleness_ms`.
    pub async fn view_staleness(&self, addr: &str, bound_ms: u64) -> Result<u64, HttpError> {
        let url = format!("http://{addr}/v1/resource-groups?max_staleness_ms={bound_ms}");
        let v: serde_json::Value = self.http.get_json(&url, 1).await?;
        v["staleness_ms"].as_u64().ok_or_else(|| HttpError::Decode {
            url,
            message: format!("no staleness_ms in {v}"),
        })
    }

    /// `GET /v1/admission/queries/{id}` (linearizable): `running`,
    /// `queued` or `finished` (it held a slot once and ended); `None` if the
    /// replicated ledger never had it or has forgotten it.
    pub async fn query_status(
        &self,
        addr: &str,
        query_id: &str,
    ) -> Result<Option<String>, HttpError> {
        let url = format!("http://{addr}/v1/admission/queries/{query_id}");
        match self.http.get_json::<serde_json::Value>(&url, 1).await {
            Ok(v) => Ok(v["status"].as_str().map(str::to_string)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Registers a coordinator session; returns its id.
    pub async fn register_session(&self, addr: &str, coordinator: &str) -> Result<u64, HttpError> {
        let v: serde_json::Value = self
            .http
            .post_json(
                &format!("http://{addr}/v1/sessions"),
                &json!({"coordinator": coordinator}),
            )
            .await?;
        v["session"].as_u64().ok_or_else(|| HttpError::Decode {
            url: addr.to_string(),
            message: format!("no session in {v}"),
        })
    }

    /// Waits until the cluster has a resource-group configuration.
    pub async fn wait_config(&self, addr: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            let url = format!("http://{addr}/v1/admin/config");
            if self
                .http
                .get_json::<serde_json::Value>(&url, 1)
                .await
                .is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Acquires `query_id` in `group`: the RM's answer (`status`:
    /// `admitted`, `queued` or `rejected`; `reason`; `fencing_token`).
    pub async fn acquire(
        &self,
        addr: &str,
        query_id: &str,
        group: &str,
        session: u64,
    ) -> Result<AcquireAnswer, HttpError> {
        let body = common::api::Acquire {
            query_id: query_id.to_string(),
            group: group.to_string(),
            coordinator: "jepsen".into(),
            session,
            priority: 0,
            payload: String::new(),
        };
        self.http
            .post_json(&format!("http://{addr}/v1/admission/acquire"), &body)
            .await
    }

    /// Releases `query_id`: `released`, `cancelled` (it was queued) or
    /// `unknown` (it held nothing).
    pub async fn release(&self, addr: &str, query_id: &str) -> Result<String, HttpError> {
        let v: serde_json::Value = self
            .http
            .post_json(
                &format!("http://{addr}/v1/admission/release"),
                &json!({"query_id": query_id}),
            )
            .await?;
        Ok(v["outcome"].as_str().unwrap_or_default().to_string())
    }

    /// Renews a session: `false` if it expired.
    pub async fn renew_session(&self, addr: &str, session: u64) -> Result<bool, HttpError> {
        match self
            .http
            .post_json::<_, serde_json::Value>(
                &format!("http://{addr}/v1/sessions/renew"),
                &json!({"session": session}),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(410) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The leader every one of `addrs` names; `None` while there is no
    /// agreed leader (a node does not answer, names none, or disagrees).
    pub async fn agreed_leader(&self, addrs: &[String]) -> Option<u64> {
        let mut healths = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let h = self.health(addr).await.ok()?;
            healths.push(Some(h));
        }
        agreed(&healths)
    }

    /// Registers a session as `coordinator` on the first of `addrs` that
    /// accepts, round after round, for up to `timeout`.
    pub async fn register_anywhere(
        &self,
        addrs: &[String],
        coordinator: &str,
        timeout: Duration,
    ) -> Result<u64, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut last = String::from("no RM given");
            for addr in addrs {
                match self.register_session(addr, coordinator).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = e.to_string(),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("cannot register a session with any RM: {last}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls until `addrs` agree on a leader, or `timeout`.
    pub async fn wait_leader(&self, addrs: &[String], timeout: Duration) -> Option<u64> {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Some(l) = self.agreed_leader(addrs).await {
                return Some(l);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }
}

/// The leader every node names, if all answered (`Some`) and agree.
pub fn agreed(healths: &[Option<Health>]) -> Option<u64> {
    let mut seen = None;
    for h in healths {
        let l = h.as_ref()?.leader_id?;
        match seen {
            None => seen = Some(l),
            Some(s) if s != l => return None,
            _ => {}
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(leader: Option<u64>) -> Option<Health> {
        Some(Health {
            node_id: 1,
            role: "follower".into(),
            leader_id: leader,
            term: 1,
            last_applied: None,
            staleness_ms: None,
        })
    }

    #[test]
    fn a_leader_is_agreed_only_when_every_node_answers_and_names_it() {
        assert_eq!(agreed(&[h(Some(2)), h(Some(2))]), Some(2));
        assert_eq!(agreed(&[h(Some(2)), h(Some(3))]), None);
        assert_eq!(agreed(&[h(Some(2)), None]), None);
        assert_eq!(agreed(&[h(Some(2)), h(None)]), None);
        assert_eq!(agreed(&[]), None);
    }
}
