//! Queries: one driver task each, from admission to release.
//!
//! ```text
//! QUEUED -> (admitted) -> RUNNING -> FINISHED | FAILED
//!    \-> FAILED (rejected, cancelled, abandoned, queue timeout)
//! ```
//!
//! Eventual-mode groups are admitted here, on the aggregated view
//! ([`crate::eventual`]). Linearizable admission goes through the RMs: acquire, and if queued, wait
//! for the promotion event on the watch. If this coordinator's session is
//! lost while a query waits, the query is adopted into the new session. If
//! it is lost while a query runs, the query fails: its admission is being
//! revoked, and the workers stop its task (fencing). Whatever happens after
//! admission, the admission is released.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::api::{
    Acquire, AcquireAnswer, Adopt, Decision, LedgerStatus, QueryEntry, RejectReason, SqlWork,
    TaskSpec, TaskWork, TrinoType,
};
use common::http::HttpClient;
use common::resource_groups::{
    succinct_duration, Consistency, GroupSpec, QueryContext, ResourceEstimates,
};
use common::rm::RmClient;
use common::wire::WatchEventKind;
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use crate::dispatch::{self, TaskEnd};
use crate::events::Events;
use crate::protocol::{ClientInfo, Column, ErrorKind, QueryError, QueryState};
use crate::session::SessionId;
use crate::statement::{self, Statement};

/// What every driver needs.
pub struct Coordinator {
    pub id: String,
    /// The configuration in force (the RMs' log's, once read).
    pub groups: Arc<crate::groups::GroupsInForce>,
    pub rms: Arc<RmClient>,
    /// For workers.
    pub http: HttpClient,
    pub session: watch::Receiver<SessionId>,
    /// Until when the session certainly holds, by this process's clock.
    pub lease: Arc<crate::session::Lease>,
    /// Asks the session keeper to renew now (a refusal said it expired).
    pub session_recheck: Arc<Notify>,
    pub events: Arc<Events>,
    /// Admission for eventual-mode groups.
    pub eventual: Arc<crate::eventual::Eventual>,
    pub queries: Mutex<BTreeMap<String, Arc<Query>>>,
    /// Admission decisions per group over the last minute (the web UI's rates).
    pub decisions: crate::decisions::Decisions,
    /// A query whose client stops polling for this long is cancelled.
    pub client_timeout: Duration,
    /// `queries` holds at most this many (see [`Coordinator::start`]).
    max_queries: usize,
    /// Users' groups, for `userGroup` selectors.
    user_groups: crate::user_groups::UserGroups,
    next_seq: AtomicU64,
}

/// This coordinator holds as many queries as it may, none of them ended.
#[derive(Debug, thiserror::Error)]
#[error("this coordinator holds {held} unfinished queries, its most (--max-queries); retry later")]
pub struct Overloaded {
    pub held: usize,
}

impl From<Overloaded> for QueryError {
    fn from(e: Overloaded) -> QueryError {
        QueryError::new(ErrorKind::GenericInternalError, e.to_string())
    }
}

pub struct Query {
    pub id: String,
    /// Part of every `nextUri`, so ids alone cannot be used to poll or cancel.
    pub slug: String,
    pub created: Instant,
    /// The same moment by the wall clock, in ms since the epoch.
    pub created_ms: u64,
    /// The statement and who sent it, as `system.runtime.queries` shows.
    pub sql: String,
    pub user: String,
    pub source: Option<String>,
    inner: Mutex<Inner>,
    pub changed: Notify,
    cancel: watch::Sender<Option<QueryError>>,
    /// The driver; aborted when the coordinator stops (as a process exit would).
    driver: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug, Clone)]
pub struct Inner {
    pub state: QueryState,
    pub group: Option<String>,
    pub error: Option<QueryError>,
    pub started: Option<Instant>,
    pub ended: Option<Instant>,
    pub columns: Option<Vec<Column>>,
    /// Result pages not yet sent, in order.
    pub pages: VecDeque<Vec<Vec<Value>>>,
    /// The last page sent, with the poll token it answered: a client that
    /// asks again with that token (its answer was lost) gets it again.
    pub sent: Option<(u64, Vec<Vec<Value>>)>,
    /// `USE`: the client's new catalog and schema.
    pub set_path: Option<(String, String)>,
    pub peak_memory_bytes: u64,
    pub cpu_ms: u64,
    pub worker: Option<String>,
    pub last_poll: Instant,
    /// The state the client was last told: a poll answers at once when
    /// the state has moved on since.
    pub reported: Option<QueryState>,
    /// Runs on a linearizable admission, fenced by this coordinator's
    /// session: it must not look running once the session may be gone.
    pub fenced: bool,
    /// The admission has decided where the query stands: the RMs answered
    /// its acquire (it is in their durable ledger, queued or admitted, or
    /// was refused), or its group is eventual (decided here, nothing to
    /// record). Until then a crash of this coordinator loses the query.
    pub recorded: bool,
    /// How its group admits (known once selected).
    pub mode: Option<common::api::Mode>,
    /// A linearizable admission's fencing token.
    pub fencing_token: Option<u64>,
}

impl Query {
    fn new(
        id: String,
        slug: String,
        sql: &str,
        client: &ClientInfo,
    ) -> (Query, watch::Receiver<Option<QueryError>>) {
        let (cancel, cancelled) = watch::channel(None);
        let now = Instant::now();
        let query = Query {
            id,
            slug,
            created: now,
            created_ms: common::clock::Clock::now_ms(&common::clock::SystemClock::default()),
            sql: sql.to_string(),
            user: client.user.clone(),
            source: client.source.clone(),
            inner: Mutex::new(Inner {
                state: QueryState::Queued,
                group: None,
                error: None,
                started: None,
                ended: None,
                columns: None,
                pages: VecDeque::new(),
                sent: None,
                set_path: None,
                peak_memory_bytes: 0,
                cpu_ms: 0,
                worker: None,
                last_poll: now,
                reported: None,
                fenced: false,
                recorded: false,
                mode: None,
                fencing_token: None,
            }),
            changed: Notify::new(),
            cancel,
            driver: Mutex::new(None),
        };
        (query, cancelled)
    }

    /// A query that has already failed with `error`, with no driver.
    fn ended(id: String, slug: String, error: QueryError) -> Query {
        let (query, _) = Query::new(id, slug, "", &ClientInfo::default());
        query.update(|i| {
            i.state = QueryState::Failed;
            i.error = Some(error);
            i.ended = Some(Instant::now());
            i.recorded = true;
        });
        query
    }

    /// The moment `at` by the wall clock (ms since the epoch), counted
    /// from this query's creation.
    pub fn wall_ms(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.created).as_millis();
        self.created_ms
            .saturating_add(since.min(u128::from(u64::MAX)) as u64)
    }

    pub fn snapshot(&self) -> Inner {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()));
        self.changed.notify_waiters();
    }

    /// The page that answers poll `token`: the next one, or again the one
    /// that answered `token` before.
    pub fn take_page(&self, token: u64) -> Option<Vec<Vec<Value>>> {
        let page = {
            let mut i = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((t, page)) = &i.sent {
                if *t == token {
                    return Some(page.clone());
                }
            }
            let page = i.pages.pop_front()?;
            i.sent = Some((token, page.clone()));
            page
        };
        // The driver may be waiting for room.
        self.changed.notify_waiters();
        Some(page)
    }

    pub fn mark_reported(&self, state: QueryState) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reported = Some(state);
    }

    pub fn touch(&self) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_poll = Instant::now();
    }

    /// Waits (at most `limit`) until the driver has recorded the end, so the
    /// answer that follows shows it.
    pub async fn wait_ended(&self, limit: Duration) {
        self.wait_until(limit, |i| i.ended.is_some()).await;
    }

    /// Waits (at most `limit`) until the query is in the RMs' ledger, has
    /// been decided otherwise, or has ended: a client told QUEUED can then
    /// rely on the query outliving this coordinator.
    pub async fn wait_recorded(&self, limit: Duration) {
        self.wait_until(limit, |i| i.recorded || i.ended.is_some())
            .await;
    }

    async fn wait_until(&self, limit: Duration, done: impl Fn(&Inner) -> bool) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if done(&self.snapshot()) {
                    return;
                }
                changed.await;
            }
        })
        .await;
    }

    /// Asks the driver to stop with `why` (cancel, abandonment).
    pub fn cancel(&self, why: QueryError) {
        self.cancel.send_if_modified(|c| {
            if c.is_none() {
                *c = Some(why);
                true
            } else {
                false
            }
        });
    }
}

impl Coordinator {
    /// Fails a running query whose admission may have been revoked: its
    /// session's lease has run out by this process's clock (a pause, a
    /// partition), even if the keeper has not noticed yet.
    pub async fn fence(&self, q: &Query) {
        let now = q.snapshot();
        if now.fenced && now.state == QueryState::Running && !self.lease.holds() {
            q.cancel(QueryError::new(
                ErrorKind::GenericInternalError,
                "the coordinator lost its session with the RMs; admission revoked",
            ));
            q.wait_ended(Duration::from_secs(1)).await;
        }
    }

    pub fn new(
        config: &crate::config::CoordinatorConfig,
        rms: Arc<RmClient>,
        http: HttpClient,
        session: crate::session::SessionLink,
        events: Arc<Events>,
        eventual: Arc<crate::eventual::Eventual>,
        groups: Arc<crate::groups::GroupsInForce>,
    ) -> Coordinator {
        Coordinator {
            id: config.id.clone(),
            groups,
            rms,
            http,
            session: session.current,
            lease: session.lease,
            session_recheck: session.recheck,
            events,
            eventual,
            queries: Mutex::default(),
            client_timeout: config.client_timeout,
            max_queries: config.max_queries,
            user_groups: config.user_groups.clone(),
            next_seq: AtomicU64::new(1),
            decisions: Default::default(),
        }
    }

    /// Every query held now.
    pub fn held(&self) -> Vec<Arc<Query>> {
        self.queries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Query>> {
        self.queries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Registers a query and starts its driver. `Err`: this coordinator
    /// holds `max_queries` queries, none of them ended.
    pub fn submit(
        self: &Arc<Self>,
        sql: String,
        client: ClientInfo,
    ) -> Result<Arc<Query>, Overloaded> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        // Unique across coordinators: the RMs' ledger is keyed by it.
        let id = format!("{ms}_{seq:05}_{}", self.id);
        let slug = format!("{:016x}", rand::random::<u64>());
        self.start(id, slug, sql, client, false)
    }

    fn start(
        self: &Arc<Self>,
        id: String,
        slug: String,
        sql: String,
        client: ClientInfo,
        adopted: bool,
    ) -> Result<Arc<Query>, Overloaded> {
        let (query, cancelled) = Query::new(id.clone(), slug, &sql, &client);
        let q = Arc::new(query);
        {
            let mut queries = self.queries.lock().unwrap_or_else(|p| p.into_inner());
            if queries.len() >= self.max_queries {
                // Make room by forgetting the query that ended first; the
                // reaper would forget it within minutes anyway.
                let oldest = queries
                    .iter()
                    .filter_map(|(id, q)| q.snapshot().ended.map(|e| (e, id.clone())))
                    .min();
                match oldest {
                    Some((_, id)) => {
                        queries.remove(&id);
                    }
                    None => {
                        return Err(Overloaded {
                            held: queries.len(),
                        })
                    }
                }
            }
            queries.insert(id, q.clone());
        }
        let handle = tokio::spawn(drive(
            self.clone(),
            q.clone(),
            sql,
            client,
            cancelled,
            adopted,
        ));
        *q.driver.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(q)
    }

    /// Takes over a query this coordinator did not issue, when a client's
    /// `nextUri` reaches it (through a load balancer) after the coordinator
    /// that queued it died: the RMs keep the queued query and its payload.
    /// `Err` carries the answer for queries that cannot be taken over.
    pub async fn adopt(
        self: &Arc<Self>,
        id: &str,
        slug: &str,
    ) -> Result<Option<Arc<Query>>, QueryError> {
        if self.get(id).is_some() {
            // Ours, and the caller's slug is not its slug: not the
            // caller's query. (Adopting it would replace it.)
            return Ok(None);
        }
        let entry: QueryEntry = match self.rms.query(id).await {
            Ok(Some(e)) => e,
            Ok(None) => return Ok(None),
            Err(e) => return Err(rm_error(e)),
        };
        if entry.status == LedgerStatus::Finished {
            // It ended while its coordinator could not tell the client (the
            // coordinator died, and the RMs revoked its admission or timed
            // it out). Say so, rather than "not found". The ledger keeps no
            // slug for an ended query, so the answer is not kept here: a
            // guess at the slug must not become what the real client sees.
            return Ok(Some(Arc::new(Query::ended(
                id.to_string(),
                slug.to_string(),
                QueryError::new(
                    ErrorKind::GenericInternalError,
                    "the coordinator running this query failed before it reported the end; the query did not complete",
                ),
            ))));
        }
        let Ok(payload) = serde_json::from_str::<Payload>(&entry.payload) else {
            return Ok(None);
        };
        if payload.slug != slug {
            return Ok(None); // not the caller's query
        }
        if entry.session_alive {
            // Its coordinator lives: the client should reach it (sticky
            // routing); 503 tells Trino clients to retry.
            return Err(QueryError::new(
                ErrorKind::GenericInternalError,
                "query owned by another live coordinator",
            ));
        }
        let client = ClientInfo {
            user: payload.user,
            original_user: payload.original_user,
            authenticated_user: payload.authenticated_user,
            source: payload.source,
            client_tags: payload.client_tags,
            resource_estimates: payload.resource_estimates,
            session: payload.session,
            catalog: payload.catalog,
            schema: payload.schema,
        };
        if entry.status == LedgerStatus::Running {
            let q = self
                .start(
                    id.to_string(),
                    slug.to_string(),
                    String::new(),
                    client,
                    true,
                )
                .map_err(QueryError::from)?;
            q.cancel(QueryError::new(
                ErrorKind::GenericInternalError,
                "the coordinator running this query failed; running queries do not survive it",
            ));
            q.wait_ended(Duration::from_secs(1)).await;
            return Ok(Some(q));
        }
        tracing::info!(
            query = id,
            "adopting a queued query of a failed coordinator"
        );
        self.start(id.to_string(), slug.to_string(), payload.sql, client, true)
            .map(Some)
            .map_err(QueryError::from)
    }

    /// Fails the queries the RMs kill for memory, as the kills arrive.
    pub async fn apply_kills(
        self: Arc<Self>,
        mut kills: tokio::sync::broadcast::Receiver<common::wire::WatchEvent>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let kill = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                k = kills.recv() => k,
            };
            match kill {
                Ok(e) => {
                    let Some(q) = self.get(&e.query_id) else {
                        continue; // another coordinator's query
                    };
                    let kind = ErrorKind::of_kill(e.error_name.as_deref().unwrap_or(""));
                    let message = e.reason.unwrap_or_else(|| "killed for memory".into());
                    tracing::warn!(query = %e.query_id, error = kind.trino().0, "query killed for memory by the RMs");
                    q.cancel(QueryError::new(kind, message));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    // The workers stop the tasks anyway; their queries fail
                    // when the task reports it was killed.
                    tracing::warn!(missed = n, "missed memory kills");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Stops every driver (coordinator shutdown).
    pub fn abort_all(&self) {
        for q in self
            .queries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            if let Some(h) = q.driver.lock().unwrap_or_else(|p| p.into_inner()).take() {
                h.abort();
            }
        }
    }

    /// Cancels queries whose client stopped polling, and forgets finished
    /// queries after a while.
    pub async fn reap(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let stopped = tokio::select! {
                _ = stop.wait_for(|s| *s) => true,
                _ = tokio::time::sleep(Duration::from_secs(1)) => false,
            };
            if stopped {
                return;
            }
            let mut queries = self.queries.lock().unwrap_or_else(|p| p.into_inner());
            queries.retain(|_, q| {
                let s = q.snapshot();
                if s.ended.is_none() && s.last_poll.elapsed() > self.client_timeout {
                    q.cancel(QueryError::new(
                        ErrorKind::AbandonedQuery,
                        format!(
                            "the client stopped polling for {} s",
                            self.client_timeout.as_secs()
                        ),
                    ));
                }
                s.ended
                    .is_none_or(|e| e.elapsed() < Duration::from_secs(300))
            });
        }
    }
}

/// What the RMs keep with a queued query, for whoever adopts it.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Payload {
    pub(crate) sql: String,
    pub(crate) user: String,
    #[serde(default)]
    original_user: Option<String>,
    /// Kept so that an adopting coordinator selects the same group.
    #[serde(default)]
    authenticated_user: Option<String>,
    pub(crate) source: Option<String>,
    client_tags: Vec<String>,
    /// Kept so that an adopting coordinator selects the same group.
    #[serde(default)]
    resource_estimates: ResourceEstimates,
    session: BTreeMap<String, String>,
    slug: String,
    #[serde(default)]
    catalog: Option<String>,
    #[serde(default)]
    schema: Option<String>,
}

async fn drive(
    c: Arc<Coordinator>,
    q: Arc<Query>,
    sql: String,
    client: ClientInfo,
    mut cancelled: watch::Receiver<Option<QueryError>>,
    adopted: bool,
) {
    let mut admitted = adopted;
    let outcome = run(
        &c,
        &q,
        &sql,
        &client,
        &mut cancelled,
        &mut admitted,
        adopted,
    )
    .await;
    if admitted {
        // Released before the client learns the end, so a finished query's
        // slot is free. Meanwhile the query is FINISHING, not RUNNING: the
        // RMs may hand the slot on before the release's answer comes back
        // (a client saw three queries RUNNING under a limit of two while a
        // release waited out a leader change). And a query must not look
        // running once its session is gone: the RMs revoke the slot and may
        // give it to another.
        q.update(|i| {
            if i.state == QueryState::Running {
                i.state = QueryState::Finishing;
            }
        });
        let mut session = c.session.clone();
        let held = *session.borrow();
        tokio::select! {
            _ = release(&c, &q.id) => {}
            _ = session.wait_for(|s| *s != held) => {}
        }
    }
    c.events.forget(&q.id);
    q.update(|i| {
        i.ended = Some(Instant::now());
        match outcome {
            Ok(()) => i.state = QueryState::Finished,
            Err(e) => {
                tracing::info!(query = %q.id, error = %e.message, "query failed");
                i.state = QueryState::Failed;
                i.error = Some(e);
            }
        }
    });
}

async fn run(
    c: &Coordinator,
    q: &Query,
    sql: &str,
    client: &ClientInfo,
    cancelled: &mut watch::Receiver<Option<QueryError>>,
    admitted: &mut bool,
    adopted: bool,
) -> Result<(), QueryError> {
    if adopted {
        // Cancelled at once for a query that cannot be taken over.
        if let Some(why) = cancelled.borrow().clone() {
            return Err(why);
        }
    }
    let path = trino_sql::SessionPath {
        catalog: client.catalog.clone(),
        schema: client.schema.clone(),
    };
    let stmt = statement::classify(sql, &client.session, &path)?;
    let priority = statement::priority(&client.session)?;
    let limits = statement::time_limits(&client.session)?;
    let ctx = QueryContext {
        user: client.user.clone(),
        original_user: client.original_user.clone(),
        authenticated_user: client.authenticated_user.clone(),
        user_groups: c.user_groups.of(&client.user),
        source: client.source.clone(),
        query_type: statement::query_type(sql).map(str::to_string),
        client_tags: client.client_tags.clone(),
        resource_estimates: client.resource_estimates,
    };
    let Some(in_force) = c.groups.get() else {
        return Err(QueryError::new(
            ErrorKind::GenericInternalError,
            "no resource-group configuration yet: the RMs have none, or none was read from them",
        ));
    };
    let selected = in_force.groups.select(&ctx).ok_or_else(|| {
        QueryError::new(
            ErrorKind::QueryRejected,
            "Query did not match any selection rule",
        )
    })?;
    let group = selected.id.clone();
    q.update(|i| i.group = Some(group.clone()));
    // The specs of the template the selector expanded, as Trino configures
    // the group (the RMs resolve the id alone: see resource_groups::resolve).
    let specs = in_force.groups.resolve_selected(&selected).ok_or_else(|| {
        QueryError::new(
            ErrorKind::QueryRejected,
            format!("no group '{group}' in the configuration"),
        )
    })?;
    if specs.last().is_some_and(|s| !s.is_leaf()) {
        // Trino loads a selector naming a group with subgroups, and fails
        // the queries it selects.
        return Err(QueryError::new(
            ErrorKind::QueryRejected,
            format!("Cannot add queries to {group}. It is not a leaf group."),
        ));
    }
    if specs.last().map(|s| &s.consistency) != Some(&Consistency::Linearizable) {
        // Eventual: decided here, on the aggregated view; no fencing token,
        // and no durable queue to wait for.
        q.update(|i| {
            i.recorded = true;
            i.mode = Some(common::api::Mode::Eventual);
        });
        // As the RMs do for linearizable groups: the tightest of the
        // session's, the groups' and the cluster's limits.
        let max_queued = specs
            .iter()
            .filter_map(|s| s.queued_time_limit_ms.map(Duration::from_millis))
            .chain(limits.queued)
            .chain(in_force.queue_timeout)
            .min();
        let _permit = tokio::select! {
            p = c.eventual.admit(&group, &specs, priority, max_queued) => note_decision(c, &group, p)?,
            why = wait_cancel(cancelled) => return Err(why),
        };
        q.update(|i| {
            i.state = QueryState::Running;
            i.started = Some(Instant::now());
        });
        let over = over_time(q, &specs, &limits);
        return tokio::select! {
            r = execute(c, q, stmt, 0, sql, client) => r,
            why = wait_cancel(cancelled) => { stop_task(c, q).await; Err(why) }
            why = over => { stop_task(c, q).await; Err(why) }
        };
    }
    q.update(|i| i.mode = Some(common::api::Mode::Linearizable));
    let payload = payload_of(q, sql, client);
    let max_queued_ms = limits
        .queued
        .map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64);
    let request = Acquire {
        query_id: q.id.clone(),
        group: group.clone(),
        coordinator: c.id.clone(),
        session: 0,
        priority,
        payload,
        max_queued_ms,
        template: specs.iter().map(|s| s.name.clone()).collect(),
    };
    let (token, session) = tokio::select! {
        a = admit(c, q, request, adopted, admitted) => note_decision(c, &group, a)?,
        why = wait_cancel(cancelled) => {
            // The acquire may have gone through: release whatever exists.
            *admitted = true;
            return Err(why);
        }
    };
    q.update(|i| {
        i.state = QueryState::Running;
        i.started = Some(Instant::now());
        i.fenced = true;
        i.fencing_token = Some(token);
    });
    let mut session_rx = c.session.clone();
    let lost = async move {
        let _ = session_rx.wait_for(|s| *s != Some(session)).await;
        QueryError::new(
            ErrorKind::GenericInternalError,
            "the coordinator lost its session with the RMs; admission revoked",
        )
    };
    let over = over_time(q, &specs, &limits);
    tokio::select! {
        r = execute(c, q, stmt, token, sql, client) => r,
        why = wait_cancel(cancelled) => { stop_task(c, q).await; Err(why) }
        why = lost => { stop_task(c, q).await; Err(why) }
        why = over => { stop_task(c, q).await; Err(why) }
    }
}

/// Counts an admission's outcome in [`Coordinator::decisions`]: admitted,
/// or refused by the group (other failures, a cancel or an unreachable
/// RM, are no decision of the group's).
fn note_decision<T>(
    c: &Coordinator,
    group: &str,
    r: Result<T, QueryError>,
) -> Result<T, QueryError> {
    use crate::decisions::Outcome;
    match &r {
        Ok(_) => c.decisions.record(group, Outcome::Admitted),
        Err(e)
            if [ErrorKind::QueryQueueFull, ErrorKind::QueryRejected]
                .iter()
                .any(|k| k.trino().0 == e.error_name) =>
        {
            c.decisions.record(group, Outcome::Rejected)
        }
        Err(_) => {}
    }
    r
}

/// Resolves when the admitted query `q` passes its execution time limit
/// (the tightest of its session's `query_max_execution_time` and its
/// groups' `perQueryLimits.executionTimeLimit` / `runningTimeLimit`) or
/// its run time limit (`query_max_run_time`, counted from submission),
/// with Trino's error; never without a limit.
async fn over_time(q: &Query, specs: &[&GroupSpec], limits: &statement::TimeLimits) -> QueryError {
    let group_limit = specs
        .iter()
        .filter_map(|s| s.per_query_limits.execution_time_ms)
        .min()
        .map(Duration::from_millis);
    let execution = [limits.execution, group_limit].into_iter().flatten().min();
    let run_left = limits
        .run
        .map(|run| (run, run.saturating_sub(q.created.elapsed())));
    let (wait, error) = match (execution, run_left) {
        (Some(e), Some((run, left))) if left < e => (left, run_message(run)),
        (Some(e), _) => (e, execution_message(e)),
        (None, Some((run, left))) => (left, run_message(run)),
        (None, None) => return std::future::pending().await,
    };
    tokio::time::sleep(wait).await;
    QueryError::new(ErrorKind::ExceededTimeLimit, error)
}

fn execution_message(limit: Duration) -> String {
    format!(
        "Query exceeded the maximum execution time limit of {}",
        succinct_duration(limit)
    )
}

fn run_message(limit: Duration) -> String {
    format!(
        "Query exceeded maximum time limit of {}",
        succinct_duration(limit)
    )
}

async fn wait_cancel(cancelled: &mut watch::Receiver<Option<QueryError>>) -> QueryError {
    match cancelled.wait_for(|c| c.is_some()).await {
        Ok(c) => c.clone().expect("checked"),
        Err(_) => QueryError::new(ErrorKind::GenericInternalError, "coordinator shutting down"),
    }
}

async fn current_session(c: &Coordinator) -> Result<u64, QueryError> {
    let mut rx = c.session.clone();
    let waited = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| s.is_some())).await;
    match waited {
        Ok(Ok(s)) => Ok(s.expect("checked")),
        _ => Err(QueryError::new(
            ErrorKind::GenericInternalError,
            "no session with the resource managers",
        )),
    }
}

fn rm_error(e: common::http::HttpError) -> QueryError {
    QueryError::new(
        ErrorKind::GenericInternalError,
        format!("resource managers unavailable: {e}"),
    )
}

fn payload_of(q: &Query, sql: &str, client: &ClientInfo) -> String {
    serde_json::to_string(&Payload {
        sql: sql.to_string(),
        user: client.user.clone(),
        original_user: client.original_user.clone(),
        authenticated_user: client.authenticated_user.clone(),
        source: client.source.clone(),
        client_tags: client.client_tags.clone(),
        resource_estimates: client.resource_estimates,
        session: client.session.clone(),
        slug: q.slug.clone(),
        catalog: client.catalog.clone(),
        schema: client.schema.clone(),
    })
    .unwrap_or_default()
}

/// Acquires `request` (its session filled in here; or, for an adopted
/// query, adopts); while queued, waits for the promotion (adopting the
/// query into a new session if ours is replaced). Returns the fencing
/// token and the session it was admitted under.
async fn admit(
    c: &Coordinator,
    q: &Query,
    request: Acquire,
    adopted: bool,
    admitted: &mut bool,
) -> Result<(u64, u64), QueryError> {
    let group = request.group.clone();
    let mut session = current_session(c).await?;
    *admitted = true; // from here on, release on every path
                      // A cluster that is starting has no configuration yet: wait for it. A
                      // session that expired under us (a pause, a partition) is replaced
                      // first: the refusal changed nothing, so the acquire is simply retried.
    let retry_until = Instant::now() + Duration::from_secs(10);
    let answer: AcquireAnswer = loop {
        let answer = if adopted {
            let request = Adopt {
                query_id: q.id.clone(),
                coordinator: c.id.clone(),
                session,
            };
            c.rms.adopt(&request).await
        } else {
            let request = Acquire {
                session,
                ..request.clone()
            };
            c.rms.acquire(&request).await
        };
        let answer = match answer {
            Ok(a) => a,
            // The RMs are starting (no configuration yet) or electing: the
            // request changed nothing, so it is simply asked again.
            Err(e) if e.status() == Some(503) && Instant::now() < retry_until => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => return Err(rm_error(e)),
        };
        if Instant::now() >= retry_until {
            break answer;
        }
        if answer.reason == Some(RejectReason::NoConfiguration) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        if answer.reason == Some(RejectReason::SessionExpired) {
            c.session_recheck.notify_one();
            let mut rx = c.session.clone();
            let replaced = tokio::time::timeout_at(
                retry_until.into(),
                rx.wait_for(|s| s.is_some() && *s != Some(session)),
            )
            .await;
            if let Ok(Ok(s)) = replaced {
                session = s.expect("checked");
                continue;
            }
        }
        break answer;
    };
    q.update(|i| i.recorded = true);
    let mut answer = answer;
    loop {
        let decision = answer
            .decision()
            .map_err(|e| QueryError::new(ErrorKind::GenericInternalError, e.to_string()))?;
        match decision {
            Decision::Admitted { fencing_token } => return Ok((fencing_token, session)),
            Decision::Queued { .. } => {}
            Decision::Rejected { reason } => {
                return Err(match reason {
                    RejectReason::QueueFull => QueryError::new(
                        ErrorKind::QueryQueueFull,
                        format!("Too many queued queries for \"{group}\""),
                    ),
                    other => QueryError::new(
                        ErrorKind::GenericInternalError,
                        format!("admission refused: {}", other.name()),
                    ),
                });
            }
        }
        let event = c.events.wait_for(&q.id);
        let mut session_rx = c.session.clone();
        // Decide first, act after: the select's output borrows the session.
        let next = tokio::select! {
            e = event => Some(e),
            _ = session_rx.wait_for(|s| *s != Some(session)) => None,
        };
        match next {
            Some(Ok(e)) => {
                return match e.kind {
                    WatchEventKind::Promoted => match e.fencing_token {
                        Some(token) => Ok((token, session)),
                        None => Err(QueryError::new(
                            ErrorKind::GenericInternalError,
                            "the RMs promoted the query without a fencing token",
                        )),
                    },
                    // The RMs fail a queued query only at its queue timeout.
                    WatchEventKind::Failed => Err(QueryError::new(
                        ErrorKind::ExceededTimeLimit,
                        e.reason.unwrap_or_else(|| "failed while queued".into()),
                    )),
                    _ => Err(QueryError::new(
                        ErrorKind::GenericInternalError,
                        "admission revoked while queued",
                    )),
                };
            }
            Some(Err(_)) => {
                return Err(QueryError::new(
                    ErrorKind::GenericInternalError,
                    "coordinator shutting down",
                ))
            }
            None => {
                // Our session was replaced: take the queued query along.
                session = current_session(c).await?;
                let request = Adopt {
                    query_id: q.id.clone(),
                    coordinator: c.id.clone(),
                    session,
                };
                answer = c
                    .rms
                    .post("/v1/admission/adopt", &request)
                    .await
                    .map_err(rm_error)?;
            }
        }
    }
}

/// Result pages a query holds for its client at most: the driver reads
/// the next from the worker only once the client has taken one.
const PAGES_BUFFERED: usize = 2;

async fn execute(
    c: &Coordinator,
    q: &Query,
    stmt: Statement,
    token: u64,
    sql: &str,
    client: &ClientInfo,
) -> Result<(), QueryError> {
    let group = q.snapshot().group.unwrap_or_default();
    let task = |work| TaskSpec {
        task_id: q.id.clone(),
        query_id: q.id.clone(),
        fencing_token: token,
        resource_group: group.clone(),
        work,
    };
    match stmt {
        Statement::SelectOne => {
            q.update(|i| {
                i.columns = Some(vec![Column::new("_col0", &TrinoType::Integer)]);
                i.pages.push_back(vec![vec![json!(1)]]);
            });
            Ok(())
        }
        Statement::Use { catalog, schema } => {
            q.update(|i| {
                i.columns = Some(Vec::new());
                i.set_path = Some((catalog, schema));
            });
            Ok(())
        }
        Statement::Simulated {
            duration_ms,
            memory_bytes,
            cpu_ms,
        } => {
            let spec = task(TaskWork::Simulated {
                duration_ms,
                memory_bytes,
                cpu_ms,
            });
            run_task(c, q, &spec, memory_bytes).await?;
            q.update(|i| i.columns = Some(Vec::new()));
            Ok(())
        }
        Statement::Query { reads_runtime } => {
            let system_tables = if reads_runtime {
                crate::system::runtime_tables(c).await?
            } else {
                Vec::new()
            };
            let spec = task(TaskWork::Sql(SqlWork {
                sql: sql.to_string(),
                catalog: client.catalog.clone(),
                schema: client.schema.clone(),
                system_tables,
            }));
            let addr = run_task(c, q, &spec, 0).await?;
            let streamed = stream_result(c, q, &addr).await;
            // Its pages are of no further use on the worker.
            stop_task(c, q).await;
            streamed
        }
    }
}

/// Places the task on a worker and follows it to its end; answers the
/// worker's address.
async fn run_task(
    c: &Coordinator,
    q: &Query,
    spec: &TaskSpec,
    memory_bytes: u64,
) -> Result<String, QueryError> {
    let place = dispatch::choose_worker(&c.rms, memory_bytes).await?;
    q.update(|i| i.worker = Some(place.addr.clone()));
    dispatch::create_task(&c.http, &place.addr, spec).await?;
    match dispatch::follow_task(&c.http, &place.addr, &q.id).await {
        TaskEnd::Finished {
            peak_memory_bytes,
            cpu_ms,
        } => {
            q.update(|i| {
                i.peak_memory_bytes = peak_memory_bytes;
                i.cpu_ms = cpu_ms;
            });
            Ok(place.addr)
        }
        TaskEnd::Failed(e) => Err(e),
    }
}

/// Reads the result from the worker page by page, each once the client
/// has room for it.
async fn stream_result(c: &Coordinator, q: &Query, addr: &str) -> Result<(), QueryError> {
    let mut page = 0;
    loop {
        let p = dispatch::result_page(&c.http, addr, &q.id, page).await?;
        q.wait_until(Duration::MAX, |i| i.pages.len() < PAGES_BUFFERED)
            .await;
        q.update(|i| {
            if i.columns.is_none() {
                i.columns = Some(p.columns);
            }
            if !p.rows.is_empty() {
                i.pages.push_back(p.rows);
            }
        });
        match p.next_page {
            Some(next) => page = next,
            None => return Ok(()),
        }
    }
}

/// Cancels the query's task, in the background: the query ends now, even
/// if the worker is slow to answer (a revoked task is fenced anyway).
async fn stop_task(c: &Coordinator, q: &Query) {
    if let Some(addr) = q.snapshot().worker {
        let (http, id) = (c.http.clone(), q.id.clone());
        tokio::spawn(async move { dispatch::cancel_task(&http, &addr, &id).await });
    }
}

async fn release(c: &Coordinator, query_id: &str) {
    let Err(e) = release_once(&c.rms, query_id).await else {
        return;
    };
    // The admission holds its slot until it is released or this
    // coordinator's session ends; while the coordinator lives, giving up
    // would leak the slot. Keep trying in the background (release is
    // idempotent), until the session that holds it is gone.
    tracing::warn!(query = query_id, error = %e, "cannot release the admission yet; retrying");
    let (rms, session, query) = (c.rms.clone(), c.session.clone(), query_id.to_string());
    let held_by = *session.borrow();
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(100);
        let deadline = Instant::now() + RELEASE_RETRY_FOR;
        loop {
            tokio::time::sleep(delay).await;
            if *session.borrow() != held_by {
                tracing::info!(query = %query, "session ended; the RMs revoke its admissions");
                return;
            }
            match release_once(&rms, &query).await {
                Ok(()) => {
                    tracing::info!(query = %query, "admission released after retries");
                    return;
                }
                Err(e)
                    if e.status().is_some_and(|s| (400..500).contains(&s))
                        || Instant::now() > deadline =>
                {
                    tracing::error!(query = %query, error = %e, "giving up releasing the admission; it ends with the session");
                    return;
                }
                Err(_) => delay = (delay * 2).min(Duration::from_secs(2)),
            }
        }
    });
}

/// How long a coordinator keeps retrying a release the RMs did not take.
const RELEASE_RETRY_FOR: Duration = Duration::from_secs(600);

async fn release_once(rms: &RmClient, query_id: &str) -> Result<(), common::http::HttpError> {
    rms.release(query_id).await.map(|_| ())
}
