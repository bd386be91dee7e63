//! The one client of the RM group, used by coordinators, workers, the
//! harness and the tests, with the one retry policy:
//!
//! - any RM accepts any call (writes are relayed to the leader), so a call
//!   that finds an RM unreachable, leaderless or timing out (HTTP 502-504)
//!   moves on to the next one, after a short growing pause;
//! - a refusal that names the leader (a 503 with `leader_addr`) sends the
//!   next attempt straight to it, and the RM that answered last is where
//!   the next call starts;
//! - any other answer, success or error, is final.
//!
//! Retrying after an unknown outcome is safe because every write here is
//! idempotent (acquire and release by query id, renew by session, a usage
//! report by its sequence number). [`RmClient::at`] pins a client to one RM
//! with a single attempt: the harness asks particular nodes on purpose.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{
    AcquireAnswer, ClusterView, ConfigInForce, Health, LeaderHint, MemoryView, NodeView,
    QueryEntry, RegisterSession, Release, ReleaseAnswer, RenewSession, SessionAnswer, UsageAnswer,
    UsageReport, View,
};
use crate::http::{HttpClient, HttpError};
use crate::wire::{Announcement, HeartbeatAnswer, WatchAnswer, WorkerHeartbeat};

pub mod batch;

/// Longest one call to one RM may take by default. The RMs answer a write
/// within their commit timeout or say 504; past this the next RM is tried.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// How many attempts a call makes, across the RMs, and the pause after
/// the n-th failed one (`backoff * n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: usize,
    pub backoff: Duration,
}

impl RetryPolicy {
    /// Every RM about twice in a three-node group.
    pub const FAILOVER: RetryPolicy = RetryPolicy {
        attempts: 6,
        backoff: Duration::from_millis(50),
    };
    /// One attempt: the caller wants this RM's answer or its failure.
    pub const ONCE: RetryPolicy = RetryPolicy {
        attempts: 1,
        backoff: Duration::ZERO,
    };
}

/// Whether another RM may answer where this one could not.
pub fn retryable(e: &HttpError) -> bool {
    matches!(e, HttpError::Unreachable { .. }) || matches!(e.status(), Some(502..=504))
}

/// How a renewal ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    Renewed(SessionAnswer),
    /// The RMs say the session expired (410): its admissions are revoked.
    Expired,
}

#[derive(Clone)]
pub struct RmClient {
    addrs: Arc<[String]>,
    /// For calls.
    http: HttpClient,
    /// For long polls (the watch), with the HTTP client's own timeout.
    long: HttpClient,
    /// Where the next call starts: the last RM that answered, or the
    /// leader an RM named.
    preferred: Arc<AtomicUsize>,
    policy: RetryPolicy,
    /// Where acquires and releases go when batching ([`RmClient::batching`]).
    batcher: Option<Arc<batch::Batcher>>,
}

impl RmClient {
    /// A client of the RMs at `addrs` (HOST:PORT each, at least one).
    /// `http`'s own timeout bounds long polls; calls get [`CALL_TIMEOUT`].
    pub fn new(addrs: Vec<String>, http: HttpClient) -> RmClient {
        RmClient {
            addrs: addrs.into(),
            long: http.clone(),
            http: http.with_timeout(CALL_TIMEOUT),
            preferred: Arc::new(AtomicUsize::new(0)),
            policy: RetryPolicy::FAILOVER,
            batcher: None,
        }
    }

    /// The same client, asking only the RM at `addr`, once per call.
    pub fn at(&self, addr: &str) -> RmClient {
        RmClient {
            addrs: vec![addr.to_string()].into(),
            http: self.http.clone(),
            long: self.long.clone(),
            preferred: Arc::new(AtomicUsize::new(0)),
            policy: RetryPolicy::ONCE,
            batcher: None,
        }
    }

    /// The same client with another timeout for each call (a snapshot or a
    /// learner's catch-up takes as long as the state is large).
    pub fn with_timeout(&self, timeout: Duration) -> RmClient {
        RmClient {
            http: self.http.with_timeout(timeout),
            ..self.clone()
        }
    }

    /// The same client with another timeout for long polls (a watcher
    /// that must notice a silent RM sooner than the default allows).
    pub fn with_long_timeout(&self, timeout: Duration) -> RmClient {
        RmClient {
            long: self.long.with_timeout(timeout),
            ..self.clone()
        }
    }

    /// The next call starts at the RM after the one that answered last:
    /// for a caller that found that answer unfit although it came (a
    /// follower too stale to vouch for anything). Clones share this.
    pub fn prefer_next(&self) {
        let n = self.addrs.len().max(1);
        let i = self.preferred.load(Ordering::Relaxed);
        self.preferred.store((i + 1) % n, Ordering::Relaxed);
    }

    pub fn with_policy(&self, policy: RetryPolicy) -> RmClient {
        RmClient {
            policy,
            ..self.clone()
        }
    }

    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// The HTTP client calls go through (for routes this client lacks).
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// POSTs JSON under the retry policy.
    pub async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
    ) -> Result<Resp, HttpError> {
        self.call(|addr| {
            let url = self.http.url(addr, path);
            async move { self.http.post_json(&url, body).await }
        })
        .await
    }

    /// GETs JSON under the retry policy.
    pub async fn get<Resp: DeserializeOwned>(&self, path: &str) -> Result<Resp, HttpError> {
        self.get_with(&self.http, path).await
    }

    /// A long poll (the watch), with the long timeout.
    pub async fn get_long<Resp: DeserializeOwned>(&self, path: &str) -> Result<Resp, HttpError> {
        self.get_with(&self.long, path).await
    }

    async fn get_with<Resp: DeserializeOwned>(
        &self,
        http: &HttpClient,
        path: &str,
    ) -> Result<Resp, HttpError> {
        self.call(|addr| {
            let url = self.http.url(addr, path);
            async move { http.get_json(&url, 1).await }
        })
        .await
    }

    async fn call<'a, T, F, Fut>(&'a self, send: F) -> Result<T, HttpError>
    where
        F: Fn(&'a str) -> Fut,
        Fut: std::future::Future<Output = Result<T, HttpError>>,
    {
        let n = self.addrs.len().max(1);
        let mut i = self.preferred.load(Ordering::Relaxed) % n;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(addr) = self.addrs.get(i) else {
                return Err(HttpError::Decode {
                    url: String::new(),
                    message: "no RM address given".into(),
                });
            };
            match send(addr).await {
                Ok(v) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) if retryable(&e) && attempt < self.policy.attempts => {
                    i = self.leader_named_by(&e).unwrap_or((i + 1) % n);
                    tokio::time::sleep(self.policy.backoff * attempt as u32).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The index of the leader a refusal names, if it is one of ours.
    fn leader_named_by(&self, e: &HttpError) -> Option<usize> {
        let HttpError::Status {
            status: 503, body, ..
        } = e
        else {
            return None;
        };
        let hint: LeaderHint = serde_json::from_str(body).ok()?;
        let leader = hint.leader_addr?;
        self.addrs.iter().position(|a| *a == leader)
    }

    /// `POST /v1/sessions`.
    pub async fn register_session(&self, coordinator: &str) -> Result<SessionAnswer, HttpError> {
        let body = RegisterSession {
            coordinator: coordinator.to_string(),
        };
        self.post("/v1/sessions", &body).await
    }

    /// `POST /v1/sessions/renew`.
    pub async fn renew_session(&self, session: u64) -> Result<Renewal, HttpError> {
        match self
            .post("/v1/sessions/renew", &RenewSession { session })
            .await
        {
            Ok(a) => Ok(Renewal::Renewed(a)),
            Err(e) if e.status() == Some(410) => Ok(Renewal::Expired),
            Err(e) => Err(e),
        }
    }

    /// The same client, sending its acquires and releases in batches: the
    /// calls made while a batch is on its way gather, and go out together
    /// as the next `POST /v1/admission/batch` (see [`batch`]). Each call
    /// still gets its own answer, under the same retry policy. Batches
    /// that carry other callers' calls are sent from spawned tasks: use it
    /// inside the runtime.
    pub fn batching(&self) -> RmClient {
        let unbatched = RmClient {
            batcher: None,
            ..self.clone()
        };
        RmClient {
            batcher: Some(Arc::new(batch::Batcher::start(unbatched))),
            ..self.clone()
        }
    }

    /// `POST /v1/admission/acquire` (or a batch's share of one).
    pub async fn acquire(&self, request: &crate::api::Acquire) -> Result<AcquireAnswer, HttpError> {
        if let Some(b) = &self.batcher {
            return b.acquire(request.clone()).await;
        }
        self.post("/v1/admission/acquire", request).await
    }

    /// `POST /v1/admission/adopt`.
    pub async fn adopt(&self, request: &crate::api::Adopt) -> Result<AcquireAnswer, HttpError> {
        self.post("/v1/admission/adopt", request).await
    }

    /// `POST /v1/admission/release` (or a batch's share of one).
    pub async fn release(&self, query_id: &str) -> Result<ReleaseAnswer, HttpError> {
        let body = Release {
            query_id: query_id.to_string(),
        };
        if let Some(b) = &self.batcher {
            return b.release(body).await;
        }
        self.post("/v1/admission/release", &body).await
    }

    /// `POST /v1/usage`.
    pub async fn report_usage(&self, report: &UsageReport) -> Result<UsageAnswer, HttpError> {
        self.post("/v1/usage", report).await
    }

    /// `GET /v1/admission/queries/{id}` (linearizable): `None` if the
    /// ledger never had the query or has forgotten it.
    pub async fn query(&self, query_id: &str) -> Result<Option<QueryEntry>, HttpError> {
        let path = format!(
            "/v1/admission/queries/{}",
            crate::http::path_segment(query_id)
        );
        match self.get(&path).await {
            Ok(entry) => Ok(Some(entry)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/resource-groups?max_staleness_ms=BOUND` (0: linearizable).
    /// Every queued and running query in the ledger.
    pub async fn ledger(&self) -> Result<Vec<QueryEntry>, HttpError> {
        self.get("/v1/admission/queries").await
    }

    pub async fn view(&self, max_staleness_ms: u64) -> Result<View, HttpError> {
        self.get(&format!(
            "/v1/resource-groups?max_staleness_ms={max_staleness_ms}"
        ))
        .await
    }

    /// `GET /v1/watch`: admission events after log index `after`, waiting
    /// up to `timeout_ms` for one (a long poll).
    pub async fn watch(
        &self,
        after: u64,
        coordinator: Option<&str>,
        timeout_ms: u64,
    ) -> Result<WatchAnswer, HttpError> {
        let only = coordinator.map_or(String::new(), |c| format!("&coordinator={c}"));
        self.get_long(&format!(
            "/v1/watch?after={after}&timeout_ms={timeout_ms}{only}"
        ))
        .await
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<Health, HttpError> {
        self.get("/v1/health").await
    }

    /// `GET /v1/cluster`.
    pub async fn cluster(&self) -> Result<ClusterView, HttpError> {
        self.get("/v1/cluster").await
    }

    /// `GET /v1/memory`.
    pub async fn memory(&self) -> Result<MemoryView, HttpError> {
        self.get("/v1/memory").await
    }

    /// `GET /v1/discovery/nodes[?role=ROLE]`.
    pub async fn nodes(&self, role: Option<&str>) -> Result<Vec<NodeView>, HttpError> {
        let filter = role.map_or(String::new(), |r| format!("?role={r}"));
        self.get(&format!("/v1/discovery/nodes{filter}")).await
    }

    /// `GET /v1/admin/config`: `None` before a configuration is applied.
    pub async fn config(&self) -> Result<Option<ConfigInForce>, HttpError> {
        match self.get("/v1/admin/config").await {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /v1/admin/config`: replaces the resource-group file with
    /// `groups` (its JSON), through the leader. Safe to retry: the same
    /// file applied twice is the same configuration under a newer version.
    pub async fn replace_config(
        &self,
        groups: &serde_json::Value,
    ) -> Result<crate::api::ConfigApplied, HttpError> {
        self.post("/v1/admin/config", groups).await
    }

    /// `GET /v1/coordinators`.
    pub async fn coordinators(&self) -> Result<crate::api::CoordinatorsView, HttpError> {
        self.get("/v1/coordinators").await
    }

    /// `GET /v1/coordinators/{name}/queries`: coordinator `name`'s own
    /// list, relayed by the RM.
    pub async fn coordinator_queries(
        &self,
        name: &str,
    ) -> Result<crate::api::CoordinatorQueries, HttpError> {
        self.get(&format!("/v1/coordinators/{name}/queries")).await
    }

    /// `GET /v1/coordinators/{name}/queries/{id}`: coordinator `name`'s
    /// account of query `id`, relayed by the RM (404: it holds none).
    pub async fn coordinator_query(
        &self,
        name: &str,
        id: &str,
    ) -> Result<crate::api::QueryDetail, HttpError> {
        self.get(&format!("/v1/coordinators/{name}/queries/{id}"))
            .await
    }

    /// `POST /v1/announce`.
    pub async fn announce(&self, announcement: &Announcement) -> Result<(), HttpError> {
        self.post::<_, serde::de::IgnoredAny>("/v1/announce", announcement)
            .await
            .map(|_| ())
    }

    /// `POST /v1/heartbeat/worker`: answers the kills to carry out.
    pub async fn heartbeat(
        &self,
        heartbeat: &WorkerHeartbeat,
    ) -> Result<HeartbeatAnswer, HttpError> {
        self.post("/v1/heartbeat/worker", heartbeat).await
    }
}

/// Sends a report to every RM every `interval`, until `stop`: an
/// announcement (a coordinator's), or an announcement and a heartbeat (a
/// worker's). Each RM builds its own soft view from these, with no Raft
/// traffic, so each RM gets its own loop: a paused or cut-off RM delays
/// only its own reports, never the others' (which would let the node's
/// entry expire on healthy RMs). `report` sends one round to the RM it is
/// given; a round slower than `3 * interval` (the TTL a report states) is
/// abandoned. An RM that does not answer is logged once per outage.
pub async fn report_to_every_rm<F, Fut>(
    rms: &RmClient,
    interval: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
    report: F,
) where
    F: Fn(RmClient) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), HttpError>> + Send + 'static,
{
    let report = Arc::new(report);
    let mut loops = tokio::task::JoinSet::new();
    for rm in rms.addrs().to_vec() {
        let (to, report, mut stop) = (rms.at(&rm), report.clone(), stop.clone());
        loops.spawn(async move {
            let ttl = report_ttl(interval);
            let mut down = false;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tick.tick() => {}
                }
                let answer = match tokio::time::timeout(ttl, report(to.clone())).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {} ms", ttl.as_millis())),
                };
                match answer {
                    Ok(()) if std::mem::take(&mut down) => {
                        tracing::info!(rm = %rm, "reporting to RM again");
                    }
                    Ok(()) => {}
                    Err(e) if !down => {
                        down = true;
                        tracing::warn!(rm = %rm, error = %e, "cannot report to RM");
                    }
                    Err(_) => {}
                }
            }
        });
    }
    let mut stop = stop;
    let _ = stop.wait_for(|s| *s).await;
    loops.shutdown().await;
}

/// How long a report sent every `interval` stays valid: three missed
/// intervals and an RM forgets the node.
pub fn report_ttl(interval: Duration) -> Duration {
    interval * 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// An RM stand-in: answers `status` with `body` to every request and
    /// counts them.
    async fn stub(status: u16, body: String) -> (String, Arc<AtomicU32>) {
        let hits = Arc::new(AtomicU32::new(0));
        let counted = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let (hits, body) = (counted.clone(), body.clone());
            async move {
                hits.fetch_add(1, Ordering::Relaxed);
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

    fn closed_port() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }

    fn client(addrs: Vec<String>) -> RmClient {
        RmClient::new(addrs, HttpClient::new(None, Duration::from_secs(2))).with_policy(
            RetryPolicy {
                attempts: 6,
                backoff: Duration::from_millis(1),
            },
        )
    }

    #[tokio::test]
    async fn a_call_moves_past_a_dead_rm_and_then_starts_where_it_was_answered() {
        let (live, hits) = stub(200, r#"{"applied":true}"#.into()).await;
        let rms = client(vec![closed_port(), live]);
        let report = UsageReport {
            coordinator: "c".into(),
            seq: 1,
            groups: Default::default(),
        };
        assert!(rms.report_usage(&report).await.unwrap().applied);
        assert_eq!(rms.preferred.load(Ordering::Relaxed), 1);
        rms.report_usage(&report).await.unwrap();
        assert_eq!(hits.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_refusal_naming_the_leader_sends_the_next_attempt_to_it() {
        let (leader, leader_hits) = stub(200, r#"{"outcome":"released"}"#.into()).await;
        let refusal =
            format!(r#"{{"error":"not the leader","leader_id":3,"leader_addr":"{leader}"}}"#);
        let (follower, follower_hits) = stub(503, refusal).await;
        let (other, other_hits) = stub(503, "{}".into()).await;
        // The leader is last in the list: without the hint the call would
        // try `other` first.
        let rms = client(vec![follower, other, leader]);
        let a = rms.release("q").await.unwrap();
        assert_eq!(a.outcome, crate::api::ReleaseOutcome::Released);
        assert_eq!(follower_hits.load(Ordering::Relaxed), 1);
        assert_eq!(other_hits.load(Ordering::Relaxed), 0);
        assert_eq!(leader_hits.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn prefer_next_moves_the_next_call_to_the_following_rm() {
        let (a, a_hits) = stub(200, "{}".into()).await;
        let (b, b_hits) = stub(200, "{}".into()).await;
        let rms = client(vec![a, b]);
        let shared = rms.clone();
        rms.health().await.ok();
        shared.prefer_next();
        rms.health().await.ok();
        rms.prefer_next();
        rms.health().await.ok();
        assert_eq!(a_hits.load(Ordering::Relaxed), 2);
        assert_eq!(b_hits.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_definite_answer_is_final_and_a_pinned_client_tries_once() {
        let (gone, hits) = stub(410, r#"{"error":"session expired"}"#.into()).await;
        let (live, live_hits) = stub(200, "{}".into()).await;
        let rms = client(vec![gone.clone(), live]);
        assert_eq!(rms.renew_session(7).await.unwrap(), Renewal::Expired);
        assert_eq!(live_hits.load(Ordering::Relaxed), 0, "410 is an answer");
        let (busy, busy_hits) = stub(503, "{}".into()).await;
        let e = rms.at(&busy).health().await.unwrap_err();
        assert_eq!(e.status(), Some(503));
        assert_eq!(busy_hits.load(Ordering::Relaxed), 1);
        assert_eq!(hits.load(Ordering::Relaxed), 1);
    }
}
