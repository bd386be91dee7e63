//! The steady load a drill runs under: linearizable admissions (acquire,
//! hold, release) from a few clients, and eventual-mode view reads, as
//! coordinators would send them. Each client starts on its own RM and moves
//! to the next, round robin, on an error; the view reader goes round robin.
//!
//! Each acquire is retried on other RMs for up to [`LoadSpec::give_up`]
//! (acquire is idempotent by query id, so a retry never admits twice); only
//! then does it count as failed. Every acknowledged admission goes into the
//! [`Ledger`], and its release checks it: `released` proves it was still in
//! the replicated ledger, `unknown` (nothing held) means it was lost.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use common::api::{LedgerStatus, ReleaseOutcome};
use common::http::HttpError;
use common::session::{KeeperSpec, SessionEvent, SessionKeeper};
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::history::{OpType, Process, Recorder};
use crate::rm_client::RmClient;

#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Admission clients.
    pub clients: usize,
    /// The linearizable group they acquire in.
    pub group: String,
    /// How long an admission is held before its release.
    pub hold: Duration,
    /// The eventual-mode staleness bound the view reader asks for.
    pub view_bound_ms: u64,
    /// An acquire that failed on every RM for this long counts as failed.
    pub give_up: Duration,
    /// Prefix of the query ids, unique per drill.
    pub tag: String,
}

/// What became of one acknowledged admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fate {
    /// Acknowledged, not yet released.
    Held,
    /// Its release found it: it survived.
    Present,
    /// Its first release that reached the leader found nothing.
    Lost,
    /// Its session expired, which revokes its admissions by design.
    Revoked,
    /// No release got an answer.
    Unverified,
}

#[derive(Debug, Clone, Serialize)]
pub struct Admission {
    pub query_id: String,
    pub token: u64,
    pub session: u64,
    pub invoked_ns: u64,
    pub acked_ns: u64,
    /// When its release answered (or gave up).
    pub settled_ns: Option<u64>,
    pub fate: Fate,
}

/// Every acknowledged admission, and the doubled ones: one query id with
/// two tokens, or one token for two query ids.
#[derive(Default)]
pub struct Ledger {
    inner: Mutex<LedgerInner>,
}

#[derive(Default)]
struct LedgerInner {
    admissions: BTreeMap<String, Admission>,
    by_token: BTreeMap<u64, String>,
    doubled: Vec<String>,
    /// Acquires that failed on every RM until the client gave up.
    failed: Vec<u64>,
    expired_sessions: BTreeSet<u64>,
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, LedgerInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn acked(&self, a: Admission) {
        let mut l = self.lock();
        if let Some(other) = l.by_token.get(&a.token) {
            if *other != a.query_id {
                let d = format!("token {} for {} and {}", a.token, other, a.query_id);
                l.doubled.push(d);
            }
        }
        if let Some(prev) = l.admissions.get(&a.query_id) {
            if prev.token != a.token {
                let d = format!(
                    "{} admitted with tokens {} and {}",
                    a.query_id, prev.token, a.token
                );
                l.doubled.push(d);
            }
            return;
        }
        l.by_token.insert(a.token, a.query_id.clone());
        l.admissions.insert(a.query_id.clone(), a);
    }

    fn settle(&self, query_id: &str, fate: Fate, at_ns: u64) {
        if let Some(a) = self.lock().admissions.get_mut(query_id) {
            a.fate = fate;
            a.settled_ns = Some(at_ns);
        }
    }

    pub(super) fn failed(&self, invoked_ns: u64) {
        self.lock().failed.push(invoked_ns);
    }

    fn session_expired(&self, session: u64) {
        self.lock().expired_sessions.insert(session);
    }

    /// Every acknowledged admission. One found missing whose session
    /// expired (even if the renewer learnt it only after the release) was
    /// revoked by design, not lost.
    pub fn admissions(&self) -> Vec<Admission> {
        let l = self.lock();
        l.admissions
            .values()
            .map(|a| match a.fate {
                Fate::Lost if l.expired_sessions.contains(&a.session) => Admission {
                    fate: Fate::Revoked,
                    ..a.clone()
                },
                _ => a.clone(),
            })
            .collect()
    }

    pub fn doubled(&self) -> Vec<String> {
        self.lock().doubled.clone()
    }

    /// Invocation times of the acquires that failed beyond retries.
    pub fn failed_acquires(&self) -> Vec<u64> {
        self.lock().failed.clone()
    }
}

/// The running load; [`Load::stop`] ends it and waits for every open
/// admission to be released (and so checked).
pub struct Load {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    pub ledger: Arc<Ledger>,
    session: Arc<SessionKeeper>,
}

impl Load {
    /// Registers a session and starts the clients, the view reader and the
    /// session keeper (renewing on every RM at once: a frozen RM must not
    /// starve the others).
    pub async fn start(
        rm: RmClient,
        addrs: Vec<String>,
        spec: LoadSpec,
        history: Arc<Recorder>,
    ) -> Result<Load> {
        let ledger = Arc::new(Ledger::default());
        let session = Arc::new(keep_session(&rm, &addrs, ledger.clone()));
        session
            .registered(Duration::from_secs(15))
            .await
            .map_err(anyhow::Error::new)?;
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for k in 0..spec.clients {
            let c = AdmissionClient {
                k: k as u64,
                rm: rm.clone(),
                addrs: addrs.clone(),
                spec: spec.clone(),
                session: session.clone(),
                ledger: ledger.clone(),
                history: history.clone(),
            };
            tasks.spawn(c.run(stopped.clone()));
        }
        tasks.spawn(read_views(
            rm,
            addrs.clone(),
            spec.view_bound_ms,
            spec.clients as u64,
            history,
            stopped,
        ));
        Ok(Load {
            stop,
            tasks,
            ledger,
            session,
        })
    }

    /// The load's coordinator session (it changes if one expires).
    pub fn session(&self) -> u64 {
        self.session.latest().unwrap_or_default()
    }

    pub async fn stop(mut self) -> Arc<Ledger> {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.ledger
    }
}

/// Keeps the drill's session, renewing every 300 ms on every RM at once.
/// An RM that says it expired gets it replaced, and the ledger learns that
/// its admissions were revoked, not lost.
fn keep_session(rm: &RmClient, addrs: &[String], ledger: Arc<Ledger>) -> SessionKeeper {
    let spec = KeeperSpec {
        coordinator: "drill".into(),
        renew_every: Some(Duration::from_millis(300)),
        fan_out: true,
        // The drill records what the RMs say; it keeps using a session it
        // could not renew until they say it expired.
        give_up_after_lease: false,
    };
    SessionKeeper::start(rm.over(addrs), spec, move |e| {
        if let SessionEvent::Expired(session) = e {
            ledger.session_expired(session);
            tracing::warn!(session, "the drill's session expired");
        }
    })
}

struct AdmissionClient {
    k: u64,
    rm: RmClient,
    addrs: Vec<String>,
    spec: LoadSpec,
    session: Arc<SessionKeeper>,
    ledger: Arc<Ledger>,
    history: Arc<Recorder>,
}

/// How one acquire ended, after its retries.
enum Acquired {
    Admitted(u64),
    /// A definite answer other than admitted (queued, rejected, 4xx).
    Refused(String),
    /// No RM answered in time; it may or may not have taken effect.
    Unknown(String),
}

impl AdmissionClient {
    async fn run(self, stop: watch::Receiver<bool>) {
        let mut n = 0u64;
        let mut next = self.k as usize;
        while !*stop.borrow() {
            n += 1;
            let query_id = format!("{}-{}-{n}", self.spec.tag, self.k);
            let process = Process::Client(self.k);
            let session = self.session.latest().unwrap_or_default();
            let invoke = self.history.record(
                process,
                OpType::Invoke,
                "acquire",
                json!({"query_id": query_id, "group": self.spec.group}),
                None,
            );
            let start = Instant::now();
            let outcome = self.acquire(&query_id, session, &mut next).await;
            let value = |status: &str| json!({"query_id": query_id, "group": self.spec.group, "status": status});
            match &outcome {
                Acquired::Admitted(token) => {
                    let ok = self.history.record(
                        process,
                        OpType::Ok,
                        "acquire",
                        value("admitted"),
                        None,
                    );
                    self.ledger.acked(Admission {
                        query_id: query_id.clone(),
                        token: *token,
                        session,
                        invoked_ns: invoke.time_ns,
                        acked_ns: ok.time_ns,
                        settled_ns: None,
                        fate: Fate::Held,
                    });
                    tokio::time::sleep(self.spec.hold).await;
                }
                Acquired::Refused(why) => {
                    self.history.record(
                        process,
                        OpType::Fail,
                        "acquire",
                        value("refused"),
                        Some(why.clone()),
                    );
                }
                Acquired::Unknown(why) => {
                    self.ledger.failed(invoke.time_ns);
                    self.history.record(
                        process,
                        OpType::Info,
                        "acquire",
                        value("unknown"),
                        Some(format!(
                            "failed on every RM for {:.1} s: {why}",
                            start.elapsed().as_secs_f64()
                        )),
                    );
                }
            }
            // Always release: it checks an admission, and frees a slot an
            // unknown or queued acquire may hold.
            self.release(
                &query_id,
                matches!(outcome, Acquired::Admitted(_)),
                &mut next,
            )
            .await;
        }
    }

    async fn acquire(&self, query_id: &str, session: u64, next: &mut usize) -> Acquired {
        let deadline = Instant::now() + self.spec.give_up;
        let mut last = String::new();
        while Instant::now() < deadline {
            let addr = &self.addrs[*next % self.addrs.len()];
            match self
                .rm
                .acquire(addr, query_id, &self.spec.group, session)
                .await
            {
                Ok(a) => {
                    return match a.decision() {
                        Ok(common::api::Decision::Admitted { fencing_token }) => {
                            Acquired::Admitted(fencing_token)
                        }
                        Ok(common::api::Decision::Queued { position }) => {
                            Acquired::Refused(format!("queued: position {position}"))
                        }
                        Ok(common::api::Decision::Rejected { reason }) => {
                            Acquired::Refused(format!("rejected: {}", reason.name()))
                        }
                        Err(e) => Acquired::Refused(e.to_string()),
                    }
                }
                Err(e) if definite(&e) => return Acquired::Refused(e.to_string()),
                Err(e) => last = e.to_string(),
            }
            *next += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Acquired::Unknown(last)
    }

    /// Releases `query_id` with retries for up to 10 s; when it was an
    /// acknowledged admission, the answer settles its fate.
    async fn release(&self, query_id: &str, acked: bool, next: &mut usize) {
        let process = Process::Client(self.k);
        self.history.record(
            process,
            OpType::Invoke,
            "release",
            json!({"query_id": query_id}),
            None,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = String::new();
        // An attempt that may have reached the leader (a timeout, a relay
        // that lost its leader) may have released it already: then a later
        // "held nothing" is no proof of loss, and the ledger is asked.
        let mut ambiguous = false;
        while Instant::now() < deadline {
            let addr = &self.addrs[*next % self.addrs.len()];
            match self.rm.release(addr, query_id).await {
                Ok(outcome) => {
                    if acked {
                        let fate = match outcome {
                            ReleaseOutcome::Released => Fate::Present,
                            _ => self.check_missing(query_id, ambiguous).await,
                        };
                        self.ledger.settle(query_id, fate, self.history.now_ns());
                    }
                    self.history.record(
                        process,
                        OpType::Ok,
                        "release",
                        json!({"query_id": query_id, "outcome": outcome}),
                        None,
                    );
                    return;
                }
                Err(e) if definite(&e) => {
                    last = e.to_string();
                    break;
                }
                Err(e) => {
                    ambiguous |= !e.never_sent();
                    last = e.to_string();
                }
            }
            *next += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if acked {
            self.ledger
                .settle(query_id, Fate::Unverified, self.history.now_ns());
        }
        self.history.record(
            process,
            OpType::Info,
            "release",
            json!({"query_id": query_id}),
            Some(last),
        );
    }

    /// A release found nothing held for an acknowledged admission: asks
    /// the replicated ledger (linearizably) whether it ever ended there.
    async fn check_missing(&self, query_id: &str, ambiguous: bool) -> Fate {
        for i in 0..self.addrs.len() {
            let addr = &self.addrs[i % self.addrs.len()];
            match self.rm.query_status(addr, query_id).await {
                // Ended in the ledger after a try of ours that may have
                // reached the leader: that try released it.
                Ok(Some(LedgerStatus::Finished)) if ambiguous => return Fate::Present,
                // Ended otherwise, or still held although the release found
                // nothing, or never there: lost, unless its session expired
                // (then it was revoked by design; see `admissions`).
                Ok(_) => return Fate::Lost,
                Err(_) => continue,
            }
        }
        Fate::Unverified
    }
}

/// A 4xx answer: the RM understood and refused; retrying elsewhere would
/// get the same answer.
fn definite(e: &HttpError) -> bool {
    matches!(e.status(), Some(s) if (400..500).contains(&s) && s != 408 && s != 429)
}

/// Reads the eventual-mode view from a random RM every 50 ms, as an
/// eventual-mode coordinator does.
async fn read_views(
    rm: RmClient,
    addrs: Vec<String>,
    bound_ms: u64,
    process: u64,
    history: Arc<Recorder>,
    mut stop: watch::Receiver<bool>,
) {
    let process = Process::Client(process);
    let mut i = 0usize;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        i += 1;
        let addr = &addrs[i % addrs.len()];
        history.record(
            process,
            OpType::Invoke,
            "view",
            json!({"addr": addr, "max_staleness_ms": bound_ms}),
            None,
        );
        match rm.view_staleness(addr, bound_ms).await {
            Ok(s) => history.record(
                process,
                OpType::Ok,
                "view",
                json!({"addr": addr, "staleness_ms": s}),
                None,
            ),
            Err(e) => history.record(
                process,
                OpType::Fail,
                "view",
                json!({"addr": addr}),
                Some(e.to_string()),
            ),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adm(q: &str, token: u64, session: u64) -> Admission {
        Admission {
            query_id: q.into(),
            token,
            session,
            invoked_ns: token,
            acked_ns: token + 10,
            settled_ns: None,
            fate: Fate::Held,
        }
    }

    #[test]
    fn two_tokens_for_one_query_or_one_token_for_two_are_doubled() {
        let l = Ledger::default();
        l.acked(adm("a", 1, 1));
        l.acked(adm("a", 1, 1)); // a retry answered with the same token
        assert!(l.doubled().is_empty());
        l.acked(adm("a", 2, 1));
        l.acked(adm("b", 1, 1));
        assert_eq!(l.doubled().len(), 2, "{:?}", l.doubled());
    }

    #[test]
    fn a_missing_admission_of_an_expired_session_is_revoked_not_lost() {
        let l = Ledger::default();
        l.acked(adm("a", 1, 7));
        l.acked(adm("b", 2, 8));
        l.session_expired(7);
        l.settle("a", Fate::Lost, 100);
        l.settle("b", Fate::Lost, 100);
        let fates: Vec<Fate> = l.admissions().iter().map(|a| a.fate).collect();
        assert_eq!(fates, vec![Fate::Revoked, Fate::Lost]);
    }

    #[test]
    fn only_client_errors_are_definite() {
        let status = |s| HttpError::Status {
            url: "u".into(),
            status: s,
            body: String::new(),
        };
        assert!(definite(&status(400)));
        assert!(definite(&status(410)));
        assert!(!definite(&status(503)));
        assert!(!definite(&status(504)));
        assert!(!definite(&status(408)));
    }
}
