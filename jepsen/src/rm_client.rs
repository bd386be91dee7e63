//! The harness's view of the `raft-rm` nodes: the one RM client
//! (`common::rm::RmClient`), asked node by node, since the harness chooses
//! which node each operation goes to (a paused one, the leader, a
//! partitioned follower), plus the admin calls only the harness makes.

use std::time::Duration;

use common::api::{
    AddLearner, CanaryWrite, LedgerStatus, MembershipChanged, MemoryView, ReleaseOutcome,
    SnapshotNow, StepDown, StepDownReport, View,
};
use common::http::{HttpClient, HttpError};

pub use common::api::{AcquireAnswer, AcquireStatus, CanaryWritten, Health, SnapshotReport};

#[derive(Clone)]
pub struct RmClient {
    rm: common::rm::RmClient,
}

impl RmClient {
    /// Calls get `http`'s own timeout.
    pub fn new(http: HttpClient) -> Self {
        let timeout = http.timeout();
        // No addresses: every call names its node (`at`).
        Self {
            rm: common::rm::RmClient::new(Vec::new(), http).with_timeout(timeout),
        }
    }

    /// The same client with another per-request timeout, for calls that
    /// take as long as the state is large (a snapshot, a learner's catch-up).
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            rm: self.rm.with_timeout(timeout),
        }
    }

    /// The one RM client, asking only the node at `addr`, once per call.
    pub fn at(&self, addr: &str) -> common::rm::RmClient {
        self.rm.at(addr)
    }

    /// The one RM client over all of `addrs`, with its failover.
    pub fn over(&self, addrs: &[String]) -> common::rm::RmClient {
        let http = self.http();
        common::rm::RmClient::new(addrs.to_vec(), http.clone()).with_timeout(http.timeout())
    }

    /// The HTTP client it calls with (its secret, and TLS if any).
    pub fn http(&self) -> HttpClient {
        self.rm.http().clone()
    }

    /// `GET /metrics`: the node's Prometheus text.
    pub async fn metrics(&self, addr: &str) -> Result<String, HttpError> {
        let bytes = self
            .http()
            .get_bytes(&self.http().url(addr, "/metrics"), &[])
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
        let body = SnapshotNow {
            timeout_ms: Some(wait.as_millis() as u64),
        };
        self.at(addr).post("/v1/admin/snapshot", &body).await
    }

    /// `POST /v1/admin/add-learner` via `addr` (relayed to the leader):
    /// adds node `id` at `node_addr` as a learner. openraft answers once
    /// the learner is within its replication lag threshold (5000 entries),
    /// which need not mean caught up.
    pub async fn add_learner(&self, addr: &str, id: u64, node_addr: &str) -> Result<(), HttpError> {
        let body = AddLearner {
            node_id: id,
            addr: node_addr.to_string(),
        };
        self.at(addr)
            .post::<_, MembershipChanged>("/v1/admin/add-learner", &body)
            .await
            .map(|_| ())
    }

    /// `GET /v1/resource-groups?max_staleness_ms=0`: the groups' counters,
    /// read linearizably.
    pub async fn resource_groups(&self, addr: &str) -> Result<View, HttpError> {
        self.at(addr).view(0).await
    }

    /// `GET /v1/memory`: the memory view, the episode and recent kills.
    pub async fn memory(&self, addr: &str) -> Result<MemoryView, HttpError> {
        self.at(addr)
            .with_policy(common::rm::RetryPolicy {
                attempts: 3,
                backoff: Duration::from_millis(50),
            })
            .memory()
            .await
    }

    pub async fn health(&self, addr: &str) -> Result<Health, HttpError> {
        self.at(addr).health().await
    }

    pub async fn canary(
        &self,
        addr: &str,
        client: &str,
        seq: u64,
    ) -> Result<CanaryWritten, HttpError> {
        self.at(addr)
            .post(
                "/v1/canary",
                &CanaryWrite {
                    client: client.to_string(),
                    seq,
                },
            )
            .await
    }

    /// `POST /v1/admin/step-down` on the leader at `addr`: hands leadership
    /// to the most caught-up follower. Answers the RM's report.
    pub async fn step_down(&self, addr: &str) -> Result<StepDownReport, HttpError> {
        self.at(addr)
            .post("/v1/admin/step-down", &StepDown::default())
            .await
    }

    /// `GET /v1/resource-groups?max_staleness_ms=BOUND`: the eventual-mode
    /// view, as a coordinator reads it. Answers its `staleness_ms`.
    pub async fn view_staleness(&self, addr: &str, bound_ms: u64) -> Result<u64, HttpError> {
        Ok(self.at(addr).view(bound_ms).await?.staleness_ms)
    }

    /// `GET /v1/admission/queries/{id}` (linearizable): where the query is
    /// in the ledger; `None` if the ledger never had it or has forgotten it.
    pub async fn query_status(
        &self,
        addr: &str,
        query_id: &str,
    ) -> Result<Option<LedgerStatus>, HttpError> {
        Ok(self.at(addr).query(query_id).await?.map(|e| e.status))
    }

    /// Waits until the cluster has a resource-group configuration.
    pub async fn wait_config(&self, addr: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.at(addr).config().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Acquires `query_id` in `group`: the RM's answer.
    pub async fn acquire(
        &self,
        addr: &str,
        query_id: &str,
        group: &str,
        session: u64,
    ) -> Result<AcquireAnswer, HttpError> {
        self.at(addr)
            .acquire(&acquire_request(query_id, group, session))
            .await
    }

    /// Releases `query_id`: released, cancelled (it was queued) or
    /// unknown (it held nothing).
    pub async fn release(&self, addr: &str, query_id: &str) -> Result<ReleaseOutcome, HttpError> {
        Ok(self.at(addr).release(query_id).await?.outcome)
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

/// The harness's acquire of `query_id` in `group` (coordinator `jepsen`).
pub fn acquire_request(query_id: &str, group: &str, session: u64) -> common::api::Acquire {
    common::api::Acquire {
        query_id: query_id.to_string(),
        group: group.to_string(),
        coordinator: "jepsen".into(),
        session,
        priority: 0,
        payload: String::new(),
        max_queued_ms: None,
        template: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(leader: Option<u64>) -> Option<Health> {
        Some(Health {
            node_id: 1,
            role: common::api::Role::Follower,
            leader_id: leader,
            leader_addr: None,
            term: 1,
            last_log_index: None,
            last_applied: None,
            staleness_ms: None,
            initialized: true,
            incarnation: 1,
            leader_changes: 1,
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
