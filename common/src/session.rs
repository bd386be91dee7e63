//! The one keeper of a coordinator session with the RMs, used by the
//! coordinator and by every harness client that holds admissions.
//!
//! It registers, then renews (at a third of the lease the latest answer
//! states, unless told a fixed interval: the lease is configuration and may
//! change while the session lives). When the RMs say the session expired
//! (410) its admissions are being revoked: the keeper reports it and
//! registers a new one. A keeper that [`KeeperSpec::give_up_after_lease`]
//! also treats a session it could not renew within its lease (a partition,
//! a long pause) as lost: a coordinator must stop its queries before the
//! RMs hand their slots to others.
//!
//! With [`KeeperSpec::fan_out`] each renewal goes to every RM at once and
//! the first renewal wins, so a paused or cut-off RM delays none of them
//! (the harness pauses RMs on purpose); otherwise it goes through the RM
//! client's failover.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::http::HttpError;
use crate::rm::{Renewal, RmClient};

/// What the keeper is asked to keep.
#[derive(Debug, Clone)]
pub struct KeeperSpec {
    /// The coordinator name the session is registered under.
    pub coordinator: String,
    /// Renew this often; `None`: at a third of the lease in force.
    pub renew_every: Option<Duration>,
    /// Renew on every RM at once (see the module doc).
    pub fan_out: bool,
    /// Treat a session not renewed within its lease as lost.
    pub give_up_after_lease: bool,
}

impl KeeperSpec {
    /// As a coordinator keeps its session.
    pub fn coordinator(name: &str) -> KeeperSpec {
        KeeperSpec {
            coordinator: name.to_string(),
            renew_every: None,
            fan_out: false,
            give_up_after_lease: true,
        }
    }
}

/// What happened to a session, for the keeper's owner to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    Registered(u64),
    /// The RMs said it expired: its admissions are revoked.
    Expired(u64),
    /// Not renewed within its lease: treated as expired on this side.
    Lost(u64),
}

/// Until when this side may count on the session, by its own monotonic
/// clock. The keeper notices a lost session only when it runs again, and
/// after a pause another task may run first: it checks this, so it never
/// counts on an admission the RMs have revoked.
#[derive(Debug, Default)]
pub struct Lease {
    valid_until: std::sync::Mutex<Option<Instant>>,
}

impl Lease {
    /// Whether the session is certainly still alive at the RMs now.
    pub fn holds(&self) -> bool {
        self.lock().is_some_and(|t| Instant::now() < t)
    }

    fn set(&self, until: Option<Instant>) {
        *self.lock() = until;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.valid_until.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running keeper. Dropping it stops it.
pub struct SessionKeeper {
    current: watch::Receiver<Option<u64>>,
    latest: watch::Receiver<Option<u64>>,
    lease: Arc<Lease>,
    recheck: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for SessionKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// No session could be registered in time.
#[derive(Debug, thiserror::Error)]
#[error("cannot register a session with any RM within {0:?}")]
pub struct NoSession(pub Duration);

impl SessionKeeper {
    /// Starts keeping a session; `on_event` hears of every registration,
    /// expiry and loss (it runs on the keeper's task: keep it short).
    pub fn start(
        rms: RmClient,
        spec: KeeperSpec,
        on_event: impl Fn(SessionEvent) + Send + Sync + 'static,
    ) -> SessionKeeper {
        let (current_tx, current) = watch::channel(None);
        let (latest_tx, latest) = watch::channel(None);
        let lease = Arc::new(Lease::default());
        let recheck = Arc::new(Notify::new());
        let keeper = Keeper {
            rms,
            spec,
            current: current_tx,
            latest: latest_tx,
            lease: lease.clone(),
            recheck: recheck.clone(),
            on_event: Box::new(on_event),
        };
        SessionKeeper {
            current,
            latest,
            lease,
            recheck,
            task: tokio::spawn(keeper.run()),
        }
    }

    /// The session in force, `None` while there is none (not registered
    /// yet, or lost and not replaced yet).
    pub fn current(&self) -> Option<u64> {
        *self.current.borrow()
    }

    /// Follows [`SessionKeeper::current`].
    pub fn subscribe(&self) -> watch::Receiver<Option<u64>> {
        self.current.clone()
    }

    /// The newest session registered, kept while a replacement is being
    /// registered: for clients that go on using it and record what the
    /// RMs answer.
    pub fn latest(&self) -> Option<u64> {
        *self.latest.borrow()
    }

    /// Waits for the first registration.
    pub async fn registered(&self, timeout: Duration) -> Result<u64, NoSession> {
        let mut latest = self.latest.clone();
        let registered = tokio::time::timeout(timeout, async {
            latest.wait_for(Option::is_some).await.ok().and_then(|s| *s)
        })
        .await;
        registered.ok().flatten().ok_or(NoSession(timeout))
    }

    pub fn lease(&self) -> Arc<Lease> {
        self.lease.clone()
    }

    /// Asks for a renewal now (a refusal said the session expired).
    pub fn recheck(&self) -> Arc<Notify> {
        self.recheck.clone()
    }
}

struct Keeper {
    rms: RmClient,
    spec: KeeperSpec,
    current: watch::Sender<Option<u64>>,
    latest: watch::Sender<Option<u64>>,
    lease: Arc<Lease>,
    recheck: Arc<Notify>,
    on_event: Box<dyn Fn(SessionEvent) + Send + Sync>,
}

/// How one renewal round ended.
enum Round {
    Renewed { lease: Duration },
    Expired,
    Failed(String),
}

impl Keeper {
    async fn run(self) {
        loop {
            let asked = Instant::now();
            let (session, mut lease) = match self.rms.register_session(&self.spec.coordinator).await
            {
                Ok(a) if a.lease_ms > 0 => (a.session, Duration::from_millis(a.lease_ms)),
                Ok(a) => {
                    tracing::warn!(session = a.session, "the RMs answered a zero lease");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot register a session; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            tracing::info!(
                session,
                lease_ms = lease.as_millis() as u64,
                "session registered"
            );
            // The RMs expire the session a lease after they commit a
            // renewal, which is after it was sent: counting from the send,
            // with a margin for clock drift, this side gives up first.
            let mut valid_until = asked + safe(lease);
            self.lease.set(Some(valid_until));
            self.latest.send_replace(Some(session));
            self.current.send_replace(Some(session));
            (self.on_event)(SessionEvent::Registered(session));
            // Renewal failures are logged once per outage, not every round.
            let mut failing = false;
            let ended = loop {
                let every = self.spec.renew_every.unwrap_or(lease / 3);
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = self.recheck.notified() => {}
                }
                let sent = Instant::now();
                // A renewal still unanswered when the session runs out must
                // not keep it alive here.
                let round = if self.spec.give_up_after_lease {
                    tokio::time::timeout_at(valid_until.into(), self.renew(session, lease))
                        .await
                        .unwrap_or_else(|_| Round::Failed("no answer within the lease".into()))
                } else {
                    self.renew(session, lease).await
                };
                match round {
                    Round::Renewed { lease: l } => {
                        if std::mem::take(&mut failing) {
                            tracing::info!(session, "session renewed again");
                        }
                        lease = l;
                        valid_until = sent + safe(lease);
                        self.lease.set(Some(valid_until));
                    }
                    Round::Expired => {
                        tracing::warn!(session, "session expired; its admissions are revoked");
                        break SessionEvent::Expired(session);
                    }
                    Round::Failed(e) if !failing => {
                        failing = true;
                        tracing::warn!(session, error = %e, "cannot renew the session; retrying");
                    }
                    Round::Failed(e) => {
                        tracing::debug!(session, error = %e, "cannot renew the session")
                    }
                }
                if self.spec.give_up_after_lease && Instant::now() >= valid_until {
                    tracing::warn!(
                        session,
                        "no renewal within the lease; treating the session as lost"
                    );
                    break SessionEvent::Lost(session);
                }
            };
            self.lease.set(None);
            self.current.send_replace(None);
            (self.on_event)(ended);
        }
    }

    async fn renew(&self, session: u64, lease: Duration) -> Round {
        let round = |answer: Result<Renewal, HttpError>| match answer {
            Ok(Renewal::Renewed(a)) => Round::Renewed {
                lease: Duration::from_millis(a.lease_ms),
            },
            Ok(Renewal::Expired) => Round::Expired,
            Err(e) => Round::Failed(e.to_string()),
        };
        if !self.spec.fan_out {
            let rms = self.rms.with_timeout(renewal_attempt(lease));
            return round(rms.renew_session(session).await);
        }
        let mut renewals = tokio::task::JoinSet::new();
        for addr in self.rms.addrs() {
            let rm = self.rms.at(addr);
            renewals.spawn(async move { rm.renew_session(session).await });
        }
        // The first renewal wins (dropping the set stops the others); the
        // session expired only if no RM renewed it and one said so.
        let mut outcome = Round::Failed("no RM answered".into());
        while let Some(answer) = renewals.join_next().await {
            match round(answer.unwrap_or_else(|e| {
                Err(HttpError::Decode {
                    url: String::new(),
                    message: format!("renewal task failed: {e}"),
                })
            })) {
                renewed @ Round::Renewed { .. } => return renewed,
                Round::Expired => outcome = Round::Expired,
                Round::Failed(e) if !matches!(outcome, Round::Expired) => {
                    outcome = Round::Failed(e)
                }
                Round::Failed(_) => {}
            }
        }
        outcome
    }
}

/// How long a renewal waits for one RM: a sixth of the lease (0.2 s to the
/// call timeout), so an RM that cannot reach the leader (a follower cut off
/// from it) leaves time to renew through the others within the lease.
fn renewal_attempt(lease: Duration) -> Duration {
    (lease / 6).clamp(Duration::from_millis(200), crate::rm::CALL_TIMEOUT)
}

/// The part of a lease this side counts on: 90%, for clock drift between
/// this process and the RM leader that stamps log time.
fn safe(lease: Duration) -> Duration {
    lease * 9 / 10
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    use axum::routing::post;
    use axum::Json;

    use crate::api::{RenewSession, SessionAnswer};
    use crate::http::HttpClient;

    /// A stub RM: registrations get sessions 1, 2, ...; a renewal of a
    /// session listed in `expired` answers 410.
    async fn stub_rm(expired: &'static [u64]) -> String {
        let next = Arc::new(AtomicU64::new(0));
        let answer = |session| SessionAnswer {
            session,
            lease_ms: 600,
            expires_at_ms: 0,
        };
        let app = axum::Router::new()
            .route(
                "/v1/sessions",
                post(move || {
                    let s = next.fetch_add(1, Ordering::Relaxed) + 1;
                    async move { Json(answer(s)) }
                }),
            )
            .route(
                "/v1/sessions/renew",
                post(move |Json(r): Json<RenewSession>| async move {
                    if expired.contains(&r.session) {
                        Err(axum::http::StatusCode::GONE)
                    } else {
                        Ok(Json(answer(r.session)))
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn recorder() -> (
        Arc<Mutex<Vec<SessionEvent>>>,
        impl Fn(SessionEvent) + Send + Sync + 'static,
    ) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        (events, move |e| sink.lock().unwrap().push(e))
    }

    #[tokio::test]
    async fn an_expired_session_is_reported_and_replaced() {
        let rm = stub_rm(&[1]).await;
        let rms = RmClient::new(vec![rm], HttpClient::new(None, Duration::from_secs(2)));
        let (events, on_event) = recorder();
        let keeper = SessionKeeper::start(rms, KeeperSpec::coordinator("c"), on_event);
        assert_eq!(keeper.registered(Duration::from_secs(5)).await.unwrap(), 1);
        assert!(keeper.lease().holds());
        let mut current = keeper.subscribe();
        tokio::time::timeout(Duration::from_secs(5), current.wait_for(|s| *s == Some(2)))
            .await
            .expect("a new session within the lease")
            .unwrap();
        assert_eq!(
            events.lock().unwrap()[..3],
            [
                SessionEvent::Registered(1),
                SessionEvent::Expired(1),
                SessionEvent::Registered(2)
            ]
        );
    }

    #[tokio::test]
    async fn a_fanned_out_renewal_is_not_held_up_by_a_frozen_rm() {
        // Accepts connections but never answers: a paused RM.
        let frozen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let live = stub_rm(&[]).await;
        // The live RM first, so the registration goes there; every renewal
        // goes to both, and one that waited for the frozen one's timeout
        // would outlast the lease.
        let rms = RmClient::new(
            vec![live, frozen.local_addr().unwrap().to_string()],
            HttpClient::new(None, Duration::from_secs(30)),
        )
        .with_timeout(Duration::from_secs(30));
        let (events, on_event) = recorder();
        let spec = KeeperSpec {
            coordinator: "h".into(),
            renew_every: Some(Duration::from_millis(50)),
            fan_out: true,
            give_up_after_lease: true,
        };
        let keeper = SessionKeeper::start(rms, spec, on_event);
        let first = keeper.registered(Duration::from_secs(5)).await.unwrap();
        // Four leases: a renewal that waited for the frozen RM would lose it.
        tokio::time::sleep(Duration::from_millis(2400)).await;
        assert_eq!(keeper.current(), Some(first));
        assert!(keeper.lease().holds());
        assert_eq!(*events.lock().unwrap(), [SessionEvent::Registered(first)]);
    }

    /// An RM that registers sessions, then stops answering renewals (cut
    /// off from the leader, as a follower in an asymmetric partition).
    async fn registers_then_hangs() -> String {
        let app = axum::Router::new()
            .route(
                "/v1/sessions",
                post(|| async {
                    Json(SessionAnswer {
                        session: 1,
                        lease_ms: 600,
                        expires_at_ms: 0,
                    })
                }),
            )
            .route(
                "/v1/sessions/renew",
                post(std::future::pending::<Json<SessionAnswer>>),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn a_renewal_leaves_an_rm_that_cannot_renew_in_time_for_the_next() {
        // The RM that answered last (the registration) hangs on renewals;
        // the next one renews. One call timeout (3 s) on the first would
        // outlast the 600 ms lease.
        let rms = RmClient::new(
            vec![registers_then_hangs().await, stub_rm(&[]).await],
            HttpClient::new(None, Duration::from_secs(30)),
        );
        let (events, on_event) = recorder();
        let keeper = SessionKeeper::start(rms, KeeperSpec::coordinator("c"), on_event);
        let first = keeper.registered(Duration::from_secs(5)).await.unwrap();
        // Four leases.
        tokio::time::sleep(Duration::from_millis(2400)).await;
        assert_eq!(*events.lock().unwrap(), [SessionEvent::Registered(first)]);
        assert!(keeper.lease().holds());
    }

    #[test]
    fn a_lease_holds_only_until_its_time() {
        let l = Lease::default();
        assert!(!l.holds(), "no session yet");
        l.set(Some(Instant::now() + Duration::from_secs(60)));
        assert!(l.holds());
        l.set(Some(Instant::now() - Duration::from_millis(1)));
        assert!(!l.holds(), "past its time (a pause outlived it)");
        l.set(None);
        assert!(!l.holds());
    }
}
