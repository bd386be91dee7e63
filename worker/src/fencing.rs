//! Fencing: a task under a fencing token (a linearizable admission) runs
//! here only while this worker can vouch that the admission still holds.
//!
//! - [`Fencing::follow`] follows the RMs' watch. Revocations stop their
//!   tasks at once (a coordinator whose session lapsed may not know yet);
//!   memory kills come on the same watch (the heartbeat answers repeat
//!   them, for a watch that fell behind). Every answer says how stale the
//!   answering RM is; an answer sent at `t` by an RM `s` ms stale means
//!   this worker knows every revocation up to `t - s`, its *fresh-as-of*
//!   time. A stale RM (a follower cut off from the leader) is left for the
//!   next; an unreachable one is left by the [`RmClient`]'s failover.
//! - After a `truncated` answer (events dropped before this worker read
//!   them) it checks each running token's query in the RMs' ledger and
//!   stops the tasks whose admission is gone or under another token. Until
//!   that succeeds the watch position does not move and the worker is not
//!   fresh.
//! - [`Fencing::guard`] stops every token-carrying task once the worker's
//!   fresh-as-of time is older than the *fencing bound*
//!   (`--fencing-bound-ms`, by default half the session lease): it cannot
//!   tell whether their admissions were revoked since.
//! - [`Fencing::check`] is asked before a token-carrying task starts: the
//!   ledger must hold the query as running under that same token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::api::{LedgerStatus, TaskSpec};
use common::rm::RmClient;
use common::wire::{KillOrder, WatchEventKind};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::http::WorkerMetrics;
use crate::tasks::{fenced, Tasks};

/// The RMs' default session lease (`session-lease-ms`), for a worker that
/// cannot read the configured one at start.
pub const DEFAULT_SESSION_LEASE: Duration = Duration::from_secs(10);

/// How long the ledger check before a task may take in all: within the
/// coordinator's 5 s timeout for the create, so it hears the 503.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The least default bound: a healthy RM's staleness reaches `tick-ms`
/// (200 ms) and a leader election takes about 0.5-1 s, which a short lease
/// (tests use 0.6 s) must not turn into stopped tasks.
const MIN_DEFAULT_BOUND: Duration = Duration::from_secs(1);

/// The default fencing bound for a session lease: half of it, at least
/// [`MIN_DEFAULT_BOUND`]. A revoked task then ends within 1.5 leases of
/// its coordinator's last renewal (for leases of 2 s or more), whatever
/// becomes of the RMs.
pub fn default_bound(lease: Duration) -> Duration {
    (lease / 2).max(MIN_DEFAULT_BOUND)
}

/// How current this worker's knowledge of revocations is.
pub struct Freshness {
    bound: Mutex<Duration>,
    /// The newest fresh-as-of time (see the module doc); `None` before the
    /// first fresh answer.
    as_of: Mutex<Option<Instant>>,
}

impl Freshness {
    pub fn new(bound: Duration) -> Freshness {
        Freshness {
            bound: Mutex::new(bound),
            as_of: Mutex::new(None),
        }
    }

    pub fn bound(&self) -> Duration {
        *self.bound.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_bound(&self, bound: Duration) {
        *self.bound.lock().unwrap_or_else(|p| p.into_inner()) = bound;
    }

    /// Everything up to `as_of` is known here.
    pub fn heard(&self, as_of: Instant) {
        let mut a = self.as_of.lock().unwrap_or_else(|p| p.into_inner());
        if a.is_none_or(|old| old < as_of) {
            *a = Some(as_of);
        }
    }

    /// How old the newest knowledge is (`None`: never fresh).
    pub fn age(&self) -> Option<Duration> {
        let a = *self.as_of.lock().unwrap_or_else(|p| p.into_inner());
        a.map(|a| a.elapsed())
    }

    /// Whether this worker can vouch for its token-carrying tasks.
    pub fn vouches(&self) -> bool {
        self.age().is_some_and(|age| age <= self.bound())
    }
}

/// Why a task under a fencing token may not start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// This worker saw the token (or a newer one) revoked: final.
    #[error("the admission of query {query} (fencing token {token}) was revoked")]
    Revoked { query: String, token: u64 },
    /// The ledger does not hold the query as running under this token:
    /// final.
    #[error("{0}")]
    NotAdmitted(String),
    /// No fresh RM within the bound, or the ledger could not be read:
    /// try again.
    #[error("{0}")]
    Unavailable(String),
}

impl Refusal {
    /// The task's `error_name`-style code for the refusal.
    pub fn error_name(&self) -> &'static str {
        match self {
            Refusal::Revoked { .. } => fenced::REVOKED,
            Refusal::NotAdmitted(_) => fenced::NOT_IN_LEDGER,
            Refusal::Unavailable(_) => fenced::UNVERIFIED,
        }
    }
}

pub struct Fencing {
    pub rms: RmClient,
    pub tasks: Arc<Tasks>,
    pub freshness: Freshness,
    pub metrics: Arc<WorkerMetrics>,
    /// `--fencing-bound-ms`; `None`: half the RMs' session lease.
    pub configured_bound: Option<Duration>,
}

impl Fencing {
    pub fn new(
        rms: RmClient,
        tasks: Arc<Tasks>,
        metrics: Arc<WorkerMetrics>,
        configured_bound: Option<Duration>,
    ) -> Arc<Fencing> {
        let bound = configured_bound.unwrap_or_else(|| default_bound(DEFAULT_SESSION_LEASE));
        Arc::new(Fencing {
            rms,
            tasks,
            freshness: Freshness::new(bound),
            metrics,
            configured_bound,
        })
    }

    /// How long one watch poll waits for an event: a fifth of the bound,
    /// so an idle but healthy RM refreshes this worker several times per
    /// bound.
    fn poll(&self) -> Duration {
        (self.freshness.bound() / 5).clamp(Duration::from_millis(50), Duration::from_secs(10))
    }

    fn stopped(&self, error_name: &str, n: usize) {
        if n > 0 {
            self.metrics.count_fenced(error_name, n);
        }
    }

    /// Follows the watch until `stop`.
    pub async fn follow(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        // Start from the RMs' current position: revocations before this
        // worker started have no tasks here (and the persisted set and the
        // ledger check cover tasks offered later under older tokens).
        let mut after = loop {
            let sent = Instant::now();
            let health = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                h = self.rms.health() => h,
            };
            match health {
                Ok(h) => {
                    if let Some(s) = h.staleness_ms {
                        if let Some(as_of) = sent.checked_sub(Duration::from_millis(s)) {
                            self.freshness.heard(as_of);
                        }
                    }
                    break h.last_applied.unwrap_or(0);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let mut stale_since: Option<Instant> = None;
        let mut failing = false;
        // Until the lease is read (a cluster that has just started has no
        // configuration yet), at most once a second.
        let mut lease_known = false;
        let mut lease_tried: Option<Instant> = None;
        // The first poll answers at once: the worker takes no token-carrying
        // task before it has a fresh answer.
        let mut first = true;
        loop {
            if !lease_known && lease_tried.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                lease_tried = Some(Instant::now());
                lease_known = self.adopt_lease().await;
            }
            let poll = self.poll();
            let wait = if std::mem::take(&mut first) {
                Duration::ZERO
            } else {
                poll
            };
            // A silent RM (paused, or its answers lost) must fail the poll
            // soon enough for another RM to answer within the bound.
            let rms = self
                .rms
                .with_long_timeout(poll + poll.max(Duration::from_millis(500)));
            let sent = Instant::now();
            let answer = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                a = rms.watch(after, None, wait.as_millis() as u64) => a,
            };
            let w = match answer {
                Ok(w) => w,
                Err(e) => {
                    // The client has already tried every RM.
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %e, "no RM answers the watch; retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if std::mem::take(&mut failing) {
                tracing::info!("an RM answers the watch again");
            }
            self.apply(&w.events);
            self.save_revoked().await;
            let mut complete = true;
            if w.truncated {
                tracing::warn!(after, "missed admission events (the RM dropped them); checking running tasks against the ledger");
                let resynced = self.resync().await;
                self.save_revoked().await;
                match resynced {
                    Ok(n) => tracing::info!(stopped = n, "resynchronised with the ledger"),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot resynchronise with the ledger; retrying");
                        complete = false;
                    }
                }
            }
            if !complete {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            after = w.next_after;
            let fresh_as_of = w
                .staleness_ms
                .and_then(|s| sent.checked_sub(Duration::from_millis(s)));
            if let Some(as_of) = fresh_as_of {
                self.freshness.heard(as_of);
            }
            // Past half the bound this RM will soon vouch for nothing:
            // look for a fresher one while there is time.
            let stale = w
                .staleness_ms
                .is_none_or(|s| Duration::from_millis(s) > self.freshness.bound() / 2);
            if stale {
                if stale_since.is_none() {
                    tracing::warn!(staleness_ms = ?w.staleness_ms, leader = ?w.leader_id, "the RM answering the watch is stale; trying another");
                    stale_since = Some(Instant::now());
                }
                self.rms.prefer_next();
                // An RM whose Raft stopped answers at once: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
            } else if let Some(since) = stale_since.take() {
                tracing::info!(
                    after_ms = since.elapsed().as_millis() as u64,
                    "following a fresh RM again"
                );
            }
        }
    }

    /// Persists the revoked set if it changed, on a blocking thread.
    async fn save_revoked(&self) {
        if !self.tasks.revoked_unsaved() {
            return;
        }
        let tasks = self.tasks.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || tasks.save_revoked()).await {
            tracing::error!(error = %e, "saving the revoked tokens failed");
        }
    }

    fn apply(&self, events: &[common::wire::WatchEvent]) {
        for e in events.iter().filter(|e| e.kind == WatchEventKind::Killed) {
            crate::report::carry_out(
                &self.tasks,
                &KillOrder {
                    query_id: e.query_id.clone(),
                    error_name: e.error_name.clone().unwrap_or_default(),
                    message: e.reason.clone().unwrap_or_default(),
                    decision: e.index,
                },
            );
        }
        for e in events.iter().filter(|e| e.kind == WatchEventKind::Revoked) {
            if let Some(token) = e.fencing_token {
                let n = self.tasks.revoke(&e.query_id, token);
                self.stopped(fenced::REVOKED, n);
                if n > 0 {
                    tracing::warn!(query = %e.query_id, token, stopped = n, "admission revoked; tasks stopped");
                }
            }
        }
    }

    /// Uses half the RMs' session lease as the bound, unless the operator
    /// set one. Answers whether the bound is settled.
    async fn adopt_lease(&self) -> bool {
        if self.configured_bound.is_some() {
            return true;
        }
        match self.rms.config().await {
            Ok(Some(c)) if c.settings.session_lease_ms > 0 => {
                let bound = default_bound(Duration::from_millis(c.settings.session_lease_ms));
                tracing::info!(
                    bound_ms = bound.as_millis() as u64,
                    lease_ms = c.settings.session_lease_ms,
                    "fencing bound: half the session lease"
                );
                self.freshness.set_bound(bound);
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::debug!(error = %e, bound_ms = self.freshness.bound().as_millis() as u64, "cannot read the session lease yet; the default fencing bound holds meanwhile");
                false
            }
        }
    }

    /// Checks every running token-carrying task's query in the ledger and
    /// stops those whose admission is gone or under another token.
    /// Answers how many stopped.
    async fn resync(&self) -> Result<usize, common::http::HttpError> {
        let mut stopped = 0;
        for (query, token) in self.tasks.fenced_live() {
            let entry = self.rms.query(&query).await?;
            let holds = entry.as_ref().is_some_and(|e| {
                e.status == LedgerStatus::Running && e.fencing_token == Some(token)
            });
            if holds {
                continue;
            }
            let now = entry.map_or("not in the ledger".to_string(), |e| {
                format!(
                    "{:?} in the ledger under fencing token {:?}",
                    e.status, e.fencing_token
                )
            });
            let n = self.tasks.revoke_because(
                &query,
                token,
                fenced::NOT_IN_LEDGER,
                format!("admission lost (fencing token {token}): the query is {now}"),
            );
            self.stopped(fenced::NOT_IN_LEDGER, n);
            if n > 0 {
                tracing::warn!(query = %query, token, stopped = n, ledger = %now, "admission gone from the ledger; tasks stopped");
            }
            stopped += n;
        }
        Ok(stopped)
    }

    /// Stops token-carrying tasks whenever this worker cannot vouch for
    /// them, until `stop`.
    pub async fn guard(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut lapsed = false;
        loop {
            // A tenth of the bound (which the lease read at start may set):
            // a task outlives the bound by at most that much.
            let period = (self.freshness.bound() / 10)
                .clamp(Duration::from_millis(10), Duration::from_millis(250));
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(period) => {}
            }
            if self.freshness.vouches() {
                if std::mem::take(&mut lapsed) {
                    tracing::info!(
                        "fresh word from an RM again: tasks under fencing tokens are accepted"
                    );
                }
                continue;
            }
            let reason = self.unverified();
            let n = self.tasks.stop_fenced(fenced::UNVERIFIED, &reason);
            self.stopped(fenced::UNVERIFIED, n);
            if n == 0 && self.freshness.age().is_none() {
                // Starting up: nothing to stop, nothing lapsed yet.
                continue;
            }
            if n > 0 || !lapsed {
                tracing::warn!(
                    stopped = n,
                    "{reason}; tasks under fencing tokens are stopped and refused"
                );
            }
            lapsed = true;
        }
    }

    fn unverified(&self) -> String {
        let bound = self.freshness.bound().as_millis();
        match self.freshness.age() {
            Some(age) => format!(
                "no fresh word from any resource manager within the fencing bound of {bound} ms (newest is {} ms old)",
                age.as_millis()
            ),
            None => format!("no fresh word from any resource manager yet (fencing bound {bound} ms)"),
        }
    }

    /// Whether a task may start under its fencing token: not revoked here,
    /// this worker fresh, and the ledger holding the query as running
    /// under that token. Tasks without a token (eventual mode) may.
    pub async fn check(&self, spec: &TaskSpec) -> Result<(), Refusal> {
        if spec.fencing_token == 0 {
            return Ok(());
        }
        if let Some(token) = self.tasks.is_revoked(&spec.query_id, spec.fencing_token) {
            return Err(Refusal::Revoked {
                query: spec.query_id.clone(),
                token,
            });
        }
        // Just started, or a brief lapse: the watch's next answer is at
        // most a poll away, which beats bouncing the coordinator.
        let patience = Instant::now() + self.poll() + Duration::from_millis(500);
        while !self.freshness.vouches() {
            if Instant::now() >= patience {
                return Err(Refusal::Unavailable(self.unverified()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let entry = match tokio::time::timeout(CHECK_TIMEOUT, self.rms.query(&spec.query_id)).await
        {
            Ok(Ok(entry)) => entry,
            Ok(Err(e)) => {
                return Err(Refusal::Unavailable(format!(
                    "cannot check fencing token {} of query {} with the resource managers: {e}",
                    spec.fencing_token, spec.query_id
                )))
            }
            Err(_) => {
                return Err(Refusal::Unavailable(format!(
                    "cannot check fencing token {} of query {} with the resource managers: no answer within {} ms",
                    spec.fencing_token,
                    spec.query_id,
                    CHECK_TIMEOUT.as_millis()
                )))
            }
        };
        match entry {
            Some(e)
                if e.status == LedgerStatus::Running
                    && e.fencing_token == Some(spec.fencing_token) =>
            {
                Ok(())
            }
            Some(e) => Err(Refusal::NotAdmitted(format!(
                "query {} is {:?} in the ledger under fencing token {:?}, not running under {}",
                spec.query_id, e.status, e.fencing_token, spec.fencing_token
            ))),
            None => Err(Refusal::NotAdmitted(format!(
                "query {} is not in the ledger: no admission holds fencing token {}",
                spec.query_id, spec.fencing_token
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_lapses_a_bound_after_the_newest_knowledge() {
        let f = Freshness::new(Duration::from_millis(500));
        assert!(!f.vouches(), "never heard: nothing to vouch with");
        let now = Instant::now();
        // An answer 100 ms stale to a request sent 300 ms ago.
        f.heard(now - Duration::from_millis(400));
        assert!(f.vouches());
        // An older answer arriving late does not move it back.
        f.heard(now - Duration::from_millis(700));
        assert!(f.age().unwrap() >= Duration::from_millis(400));
        assert!(f.age().unwrap() < Duration::from_millis(500));
        f.heard(now - Duration::from_millis(501));
        assert!(f.vouches(), "still the newer knowledge");
        std::thread::sleep(Duration::from_millis(101));
        assert!(!f.vouches(), "400 ms + 101 ms is past the 500 ms bound");
    }

    #[test]
    fn the_default_bound_is_half_the_lease_and_at_least_a_second() {
        assert_eq!(default_bound(DEFAULT_SESSION_LEASE), Duration::from_secs(5));
        assert_eq!(default_bound(Duration::from_millis(600)), MIN_DEFAULT_BOUND);
    }
}
