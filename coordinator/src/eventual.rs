//! Eventual-mode admission, as upstream Presto's disaggregated coordinator
//! does it: decide locally on an aggregated view that may be stale.
//!
//! - Every `refresh` the coordinator reads the view from any RM and reports
//!   its own usage (per leaf group) through the log.
//! - A query runs if, for every group on its chain, the others' running
//!   queries (the view, minus this coordinator's last report) plus this
//!   coordinator's own are below the limit (and Trino's memory and CPU
//!   rules allow one more), and it is the query of ours that the groups'
//!   scheduling rules start next (see "Order" below).
//! - The view must be no staler than the group's `maxStalenessMs`
//!   (its age here plus the staleness the RM stated). Otherwise the query
//!   waits: it never admits on a view older than the bound.
//! - Others must see us as fresh as we see them: the view must include a
//!   usage report of ours made within the bound plus two refreshes (the
//!   reporting cadence). A coordinator whose reports do not land (no
//!   leader, cut off from it while followers still serve views) stops
//!   starting queries rather than admit behind a frozen report that the
//!   others decide on.
//! - Freshness gate: when some group on the chain is at or above
//!   `gate_fraction` of its limit, at most one query starts per fresh view.
//!
//! Order, among this coordinator's own waiting queries only: of those that
//! could start now, the one that starts is found by the state machine's
//! rules ([`resource_groups::scheduling`]): from the root down, each parent
//! chooses a subgroup by its `schedulingPolicy` (its turns kept here, per
//! parent, and advanced only by a start), and a leaf takes its highest
//! `query_priority` first under `query_priority`, else first come first
//! served. Deterministic: `weighted` is smooth weighted round-robin, ties go
//! to the lower group id. Other coordinators' queries are not in this
//! order: there is no global queue.
//!
//! A query still waiting after its `max_queued` time fails with
//! `EXCEEDED_TIME_LIMIT` and leaves the queue (and our next report).
//!
//! Two coordinators reading the same view can both start the last slot's
//! query: over-admission is this mode's documented cost.
//!
//! Every decision is timed, from entering [`Eventual::admit`] to its
//! outcome, in [`Eventual::decisions`] (`coordinator_eventual_decision_seconds`),
//! labelled with the path it took: only a `fresh` decision has no RM
//! request and no wait on its path.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::api::{GroupUsage, UsageReport};
use common::resource_groups::limits::{can_run_more, running_limit};
use common::resource_groups::scheduling::{choose, rank, Candidate, Turns};
use common::resource_groups::{
    chain_ids, Consistency, GroupSpec, ResourceUsage, RunLimits, SchedulingPolicy,
};
use common::rm::{RmClient, CALL_TIMEOUT};
use common::units::succinct_duration;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{watch, Notify};

use crate::groups::GroupsInForce;
use crate::protocol::{ErrorKind, QueryError};

struct Snapshot {
    /// group id -> (running, queued), everyone's, as the view stated.
    groups: BTreeMap<String, (u32, u32)>,
    /// group id -> memory and CPU, as the leader last stamped them.
    usage: BTreeMap<String, ResourceUsage>,
    cluster_memory_bytes: u64,
    /// Which of our reports the counts include (`None`: none of ours).
    our_report: Option<u64>,
    fetched: Instant,
    staleness_ms: u64,
    generation: u64,
}

/// group id -> (running, queued).
pub type GroupCounts = BTreeMap<String, (u32, u32)>;

/// A usage report's sequence number: the session in the high 32 bits, a
/// count in the low 32. The RMs keep a coordinator's report only if its
/// number is above the stored one, and a coordinator restarted under the
/// same id counts from 1 again: its reports must still win over those of
/// the process before it. Session ids are log indices, so a new process's
/// session (and a replacement after an expiry) is always larger. (Past
/// 2^32 log entries the session saturates: reports then order by count.)
fn report_seq(session: u64, count: u64) -> u64 {
    (session.min(u64::from(u32::MAX)) << 32) | (count & u64::from(u32::MAX))
}

/// How many of our latest reports are kept, to subtract the one a view
/// includes (a lagging replica may not have applied the newest).
const REPORTS_KEPT: usize = 16;

/// One of our usage reports, as made.
struct Report {
    made: Instant,
    usage: BTreeMap<String, (u32, u32)>,
}

/// What the scheduling walk reads of one group on a waiting query's chain.
struct Level {
    id: String,
    limits: RunLimits,
    policy: SchedulingPolicy,
    weight: u32,
    /// `softConcurrencyLimit`, else the hard limit.
    soft_limit: u32,
}

/// One of our waiting queries.
struct Waiting {
    /// Its ticket, which is also its arrival order.
    ticket: u64,
    priority: i32,
    /// Its groups, root first, as its admission resolved them.
    chain: Arc<[Level]>,
    /// Its leaf's `maxStalenessMs`.
    bound: Duration,
}

/// The query of ours that starts next under a root, and what starting it
/// changes: whether it uses the freshness gate, and the parents' turns.
struct Pick {
    ticket: u64,
    gate: bool,
    turns: Vec<(String, Turns)>,
}

#[derive(Default)]
struct State {
    /// This coordinator's own running and queued, per leaf.
    running: BTreeMap<String, u32>,
    /// Our waiting queries per leaf, in the order the leaf starts them
    /// (see [`rank`]): only the first of each leaf can be the next to start.
    queues: BTreeMap<String, Vec<Waiting>>,
    /// Each parent's scheduling turns (see [`Turns`]), by group id.
    turns: BTreeMap<String, Turns>,
    /// Our recent reports by sequence number: a view includes one of them
    /// (see [`Snapshot::our_report`]), which is subtracted from it.
    reported: BTreeMap<u64, Report>,
    view: Option<Snapshot>,
    /// View generation in which the freshness gate last let a query start.
    gate_used: Option<u64>,
    next_ticket: u64,
    seq: u64,
}

pub struct Eventual {
    state: Mutex<State>,
    changed: Notify,
    pub gate_fraction: f64,
    /// How often views are read and usage reported.
    refresh: Duration,
    /// How long each decision took, by `path` and `outcome`.
    pub decisions: Decisions,
}

/// Decision time histograms, labelled `path` and `outcome`:
///
/// - `path`: `fresh` (decided at once on the fresh view in hand: no RM
///   request, no wait), `no_view` (refused at once on our own queue, with
///   no fresh view), `fetch` (no view fresh enough at some point: waited
///   for the refresh task to read one from an RM), `queued` (a fresh view
///   but no room: waited for a slot, the freshness gate, or a query of
///   ours that the scheduling rules start first);
/// - `outcome`: `admitted`, `queue_full`, or `timed_out` (still queued
///   when its queue time limit passed: `EXCEEDED_TIME_LIMIT`).
///
/// A wait the client cancels is no decision and is not counted.
pub type Decisions = Family<[(&'static str, &'static str); 2], Histogram, fn() -> Histogram>;

/// Bucket bounds of [`Decisions`], in seconds: fine from 2 µs to 1 ms (a
/// decision on a fresh view is a lock and a few map lookups), then
/// coarse up to 10 s (the waits of the other paths).
pub const DECISION_BUCKETS: [f64; 22] = [
    2e-6, 5e-6, 1e-5, 2e-5, 3e-5, 5e-5, 7.5e-5, 1e-4, 1.5e-4, 2e-4, 3e-4, 5e-4, 7.5e-4, 1e-3, 2e-3,
    5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0, 10.0,
];

fn decision_histogram() -> Histogram {
    Histogram::new(DECISION_BUCKETS)
}

/// Why [`Eventual::try_start`] did not start a query.
enum Start {
    Started,
    /// No view fresh enough: the refresh task must read one from an RM.
    NoFreshView,
    /// A fresh view, but no room yet (limit, gate, or one of ours first).
    NoRoom,
}

/// A running slot; freed when dropped.
pub struct Permit {
    owner: Arc<Eventual>,
    leaf: String,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut s = self.owner.lock();
        if let Some(n) = s.running.get_mut(&self.leaf) {
            *n = n.saturating_sub(1);
        }
        drop(s);
        self.owner.changed.notify_waiters();
    }
}

/// Leaves a local queue when dropped (started, cancelled or failed).
struct Ticket<'a> {
    owner: &'a Eventual,
    leaf: String,
    id: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut s = self.owner.lock();
        if let Some(q) = s.queues.get_mut(&self.leaf) {
            q.retain(|w| w.ticket != self.id);
            if q.is_empty() {
                s.queues.remove(&self.leaf);
            }
        }
        drop(s);
        self.owner.changed.notify_waiters();
    }
}

impl Eventual {
    pub fn new(gate_fraction: f64, refresh: Duration) -> Arc<Eventual> {
        Arc::new(Eventual {
            state: Mutex::default(),
            changed: Notify::new(),
            gate_fraction,
            refresh,
            decisions: Decisions::new_with_constructor(decision_histogram),
        })
    }

    fn decided(&self, began: Instant, path: &'static str, outcome: &'static str) {
        self.decisions
            .get_or_create(&[("path", path), ("outcome", outcome)])
            .observe(began.elapsed().as_secs_f64());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This coordinator's own (running, queued) under `id`, a leaf or not.
    fn own(s: &State, id: &str) -> (u32, u32) {
        let prefix = format!("{id}.");
        let mine = |k: &str| k == id || k.starts_with(&prefix);
        let running = s
            .running
            .iter()
            .filter(|(k, _)| mine(k))
            .map(|(_, v)| *v)
            .sum();
        let queued = s
            .queues
            .iter()
            .filter(|(k, _)| mine(k))
            .map(|(_, q)| q.len() as u32)
            .sum();
        (running, queued)
    }

    /// Under `id`, what our report `seq` said. A report no longer kept
    /// counts as nothing: our queries are then counted twice, which errs
    /// towards queueing, never towards over-admission.
    fn reported_under(s: &State, seq: Option<u64>, id: &str) -> (u32, u32) {
        let Some(report) = seq.and_then(|q| s.reported.get(&q)) else {
            return (0, 0);
        };
        let prefix = format!("{id}.");
        report
            .usage
            .iter()
            .filter(|(k, _)| *k == id || k.starts_with(&prefix))
            .fold((0, 0), |acc, (_, v)| (acc.0 + v.0, acc.1 + v.1))
    }

    /// Everyone's (running, queued) under `id`: the view without the
    /// report of ours it includes, plus what we have now.
    fn total(s: &State, view: &Snapshot, id: &str) -> (u32, u32) {
        let (vr, vq) = view.groups.get(id).copied().unwrap_or_default();
        let (rr, rq) = Self::reported_under(s, view.our_report, id);
        let (or, oq) = Self::own(s, id);
        (vr.saturating_sub(rr) + or, vq.saturating_sub(rq) + oq)
    }

    /// Waits for a slot in `leaf` (chain `specs`, root first), for a query
    /// of `priority` (`query_priority`) that may wait `max_queued` at most.
    /// Errors: `QUERY_QUEUE_FULL` when the queue is full on a fresh view;
    /// `EXCEEDED_TIME_LIMIT` when `max_queued` passes before it starts.
    pub async fn admit(
        self: &Arc<Self>,
        leaf: &str,
        specs: &[&GroupSpec],
        priority: i32,
        max_queued: Option<Duration>,
    ) -> Result<Permit, QueryError> {
        let began = Instant::now();
        let bound = match specs.last().map(|s| &s.consistency) {
            Some(Consistency::Eventual { max_staleness_ms }) => {
                Duration::from_millis(*max_staleness_ms)
            }
            _ => {
                return Err(QueryError::new(
                    ErrorKind::GenericInternalError,
                    format!("'{leaf}' is not an eventual group"),
                ))
            }
        };
        // A limit too far off to be an instant never expires.
        let expiry = max_queued.and_then(|limit| Some((limit, began.checked_add(limit)?)));
        let ids = chain_ids(leaf);
        let chain: Arc<[Level]> = ids
            .iter()
            .zip(specs)
            .map(|(id, spec)| Level {
                id: id.clone(),
                limits: spec.run_limits(),
                policy: spec.scheduling_policy,
                weight: spec.scheduling_weight,
                soft_limit: spec
                    .soft_concurrency_limit
                    .unwrap_or(spec.hard_concurrency_limit),
            })
            .collect();
        let ticket = {
            let mut s = self.lock();
            // Refuse at once when a fresh view shows the queue full, or,
            // without one, when our own queue alone fills it.
            let fresh_view = s.view.as_ref().filter(|v| fresh(v, bound));
            let full = ids.iter().zip(specs).any(|(id, spec)| {
                let queued = match fresh_view {
                    Some(view) => Self::total(&s, view, id).1,
                    None => Self::own(&s, id).1,
                };
                queued >= spec.max_queued
            });
            if full {
                let path = if fresh_view.is_some() {
                    "fresh"
                } else {
                    "no_view"
                };
                drop(s);
                self.decided(began, path, "queue_full");
                return Err(QueryError::new(
                    ErrorKind::QueryQueueFull,
                    format!("Too many queued queries for \"{leaf}\""),
                ));
            }
            let id = s.next_ticket;
            s.next_ticket += 1;
            let policy = chain.last().map_or(SchedulingPolicy::Fair, |l| l.policy);
            let key = rank(policy, priority, id);
            let queue = s.queues.entry(leaf.to_string()).or_default();
            let at = queue.partition_point(|w| rank(policy, w.priority, w.ticket) > key);
            queue.insert(
                at,
                Waiting {
                    ticket: id,
                    priority,
                    chain,
                    bound,
                },
            );
            Ticket {
                owner: self,
                leaf: leaf.to_string(),
                id,
            }
        };
        // Whether this decision waited, and whether for a fresh view.
        let (mut waited, mut fetched) = (false, false);
        let path = |waited: bool, fetched: bool| match (fetched, waited) {
            (true, _) => "fetch",
            (false, true) => "queued",
            (false, false) => "fresh",
        };
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_start(&ticket) {
                Start::Started => {
                    drop(ticket);
                    self.decided(began, path(waited, fetched), "admitted");
                    return Ok(Permit {
                        owner: self.clone(),
                        leaf: leaf.to_string(),
                    });
                }
                Start::NoFreshView => fetched = true,
                Start::NoRoom => {}
            }
            if let Some((limit, deadline)) = expiry {
                if Instant::now() >= deadline {
                    drop(ticket); // leaves the queue: others may start
                    self.decided(began, path(waited, fetched), "timed_out");
                    return Err(QueryError::new(
                        ErrorKind::ExceededTimeLimit,
                        format!(
                            "Query exceeded maximum queued time limit of {}",
                            succinct_duration(limit)
                        ),
                    ));
                }
            }
            waited = true;
            match expiry {
                Some((_, deadline)) => {
                    // Woken at the deadline at the latest (an hour at a
                    // time: tokio's timer takes no sleep of years).
                    let left = deadline.saturating_duration_since(Instant::now());
                    let expired = tokio::time::sleep(left.min(MAX_SLEEP));
                    tokio::select! {
                        _ = notified => {}
                        _ = expired => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Starts `ticket`'s query if a fresh view has room for it on its whole
    /// chain and it is the query of ours the scheduling rules start next.
    fn try_start(&self, ticket: &Ticket<'_>) -> Start {
        let mut s = self.lock();
        let Some(first) = s.queues.get(&ticket.leaf).and_then(|q| q.first()) else {
            return Start::NoRoom; // not waiting (cannot happen while held)
        };
        if first.ticket != ticket.id {
            return Start::NoRoom; // one of ours goes first in this leaf
        }
        let Some((bound, root)) = first.chain.first().map(|l| (first.bound, l.id.clone())) else {
            return Start::NoRoom; // no chain (cannot happen: admit resolved one)
        };
        let Some(view) = s.view.as_ref().filter(|v| fresh(v, bound)) else {
            return Start::NoFreshView; // wait for one, never admit on this
        };
        if !self.seen_fresh(&s, view, bound) {
            return Start::NoFreshView; // the others decide on old news of us
        }
        let generation = view.generation;
        let Some(pick) = self.next_to_start(&s, view, &root) else {
            return Start::NoRoom; // no room on the chain (limit, gate)
        };
        if pick.ticket != ticket.id {
            return Start::NoRoom; // another of ours goes first
        }
        if pick.gate {
            s.gate_used = Some(generation); // one start per fresh view near the limit
        }
        s.turns.extend(pick.turns);
        *s.running.entry(ticket.leaf.clone()).or_default() += 1;
        if let Some(q) = s.queues.get_mut(&ticket.leaf) {
            q.retain(|w| w.ticket != ticket.id);
        }
        Start::Started
    }

    /// Whether `level`'s group may start one more query on `view`: `None`
    /// if not; else whether it is near its limit (the freshness gate).
    fn room(&self, s: &State, view: &Snapshot, level: &Level) -> Option<bool> {
        // Running totals once this query leaves the queue and starts.
        let (running, _) = Self::total(s, view, &level.id);
        let usage = view.usage.get(&level.id).copied().unwrap_or_default();
        // Trino's rules, as the RMs apply them to linearizable groups:
        // memory over softMemoryLimit, CPU over its limits.
        if !can_run_more(&level.limits, running, &usage, view.cluster_memory_bytes) {
            return None;
        }
        let limit = running_limit(&level.limits, usage.cpu_ms);
        let near = f64::from(running) >= self.gate_fraction * f64::from(limit);
        if near && s.gate_used == Some(view.generation) {
            return None; // the gate let one start on this view already
        }
        Some(near)
    }

    /// The query of ours under `root` that starts next on `view`, if any
    /// can: among the first of each leaf whose view is fresh for its bound
    /// and whose whole chain has room, each parent from the root down
    /// chooses a subgroup by its policy. Reads only: the turns it took are
    /// returned, kept only if the query starts. Its cost grows with the
    /// leaves that have waiting queries, not with the queries: only the
    /// first of a leaf walks.
    fn next_to_start(&self, s: &State, view: &Snapshot, root: &str) -> Option<Pick> {
        let mut rooms: BTreeMap<&str, Option<bool>> = BTreeMap::new();
        let mut pool: Vec<(&Waiting, bool)> = Vec::new();
        // Each leaf's first: the one its order starts next.
        for w in s.queues.values().filter_map(|q| q.first()) {
            if w.chain.first().is_none_or(|l| l.id != root)
                || !fresh(view, w.bound)
                || !self.seen_fresh(s, view, w.bound)
            {
                continue;
            }
            let mut gate = Some(false);
            for level in w.chain.iter() {
                let room = *rooms
                    .entry(&level.id)
                    .or_insert_with(|| self.room(s, view, level));
                gate = gate.zip(room).map(|(a, b)| a || b);
            }
            if let Some(gate) = gate {
                pool.push((w, gate));
            }
        }
        let mut turns = Vec::new();
        let mut depth = 0;
        loop {
            // Queries waiting in this group itself (a leaf; or a group that
            // gained subgroups since they came: they go first).
            let (here, deeper): (Vec<_>, Vec<_>) = pool
                .into_iter()
                .partition(|(w, _)| w.chain.len() <= depth + 1);
            if !here.is_empty() || deeper.is_empty() {
                let level = here.first()?.0.chain.get(depth);
                let policy = level.map_or(SchedulingPolicy::Fair, |l| l.policy);
                let (w, gate) = here
                    .iter()
                    .max_by_key(|(w, _)| rank(policy, w.priority, w.ticket))?;
                return Some(Pick {
                    ticket: w.ticket,
                    gate: *gate,
                    turns,
                });
            }
            let parent = deeper.first()?.0.chain.get(depth)?;
            let mut children: BTreeMap<&str, Vec<(&Waiting, bool)>> = BTreeMap::new();
            for (w, gate) in deeper {
                if let Some(child) = w.chain.get(depth + 1) {
                    children.entry(&child.id).or_default().push((w, gate));
                }
            }
            let candidates: Vec<Candidate<'_>> = children
                .iter()
                .filter_map(|(id, members)| {
                    let level = members.first()?.0.chain.get(depth + 1)?;
                    let best = members
                        .iter()
                        .map(|(w, _)| (w.priority, w.ticket))
                        .max_by_key(|&(p, t)| (p, Reverse(t)))?;
                    Some(Candidate {
                        id,
                        running: Self::total(s, view, id).0,
                        weight: level.weight,
                        soft_limit: level.soft_limit,
                        best,
                    })
                })
                .collect();
            let mut parent_turns = s.turns.get(&parent.id).cloned().unwrap_or_default();
            let chosen = choose(parent.policy, &candidates, &mut parent_turns)?;
            let chosen_id = candidates.get(chosen)?.id;
            turns.push((parent.id.clone(), parent_turns));
            pool = children.remove(chosen_id)?;
            depth += 1;
        }
    }

    /// Whether `view` includes a report of ours made within `bound` plus
    /// two refreshes: the others, reading views like it, know what we run
    /// about as freshly as we know what they run.
    fn seen_fresh(&self, s: &State, view: &Snapshot, bound: Duration) -> bool {
        Self::our_report_age(s, view).is_some_and(|age| age <= bound + 2 * self.refresh)
    }

    /// How long ago we made the report of ours that `view` includes
    /// (`None`: it includes none we still know).
    fn our_report_age(s: &State, view: &Snapshot) -> Option<Duration> {
        let seq = view.our_report?;
        s.reported.get(&seq).map(|r| r.made.elapsed())
    }

    /// The view decisions are made on: each group's everyone's running
    /// and queued, and how stale it is now (its RM's stated staleness plus
    /// its age here, ms). For the web UI.
    pub fn decision_view(&self) -> Option<(GroupCounts, u64)> {
        let s = self.lock();
        s.view.as_ref().map(|v| {
            (
                v.groups.clone(),
                v.staleness_ms + v.fetched.elapsed().as_millis() as u64,
            )
        })
    }

    /// The current view: its age here, the staleness its RM stated, and
    /// the age of our report in it (ms).
    pub fn view_status(&self) -> Option<(u64, u64, Option<u64>)> {
        let s = self.lock();
        s.view.as_ref().map(|v| {
            (
                v.fetched.elapsed().as_millis() as u64,
                v.staleness_ms,
                Self::our_report_age(&s, v).map(|a| a.as_millis() as u64),
            )
        })
    }

    /// Reads the view and reports our usage, every `refresh`, until `stop`.
    ///
    /// The two run side by side: a report needs the leader, and waits out
    /// an election or a paused leader (seconds), while any replica within
    /// the bound serves a view. Run one after the other, a report stuck on
    /// a fault left every waiter without a fresh view: admission stalled
    /// in eventual mode, the mode meant to stay available.
    pub async fn refresh(
        self: Arc<Self>,
        rms: Arc<RmClient>,
        coordinator: String,
        groups: Arc<GroupsInForce>,
        refresh: Duration,
        session: watch::Receiver<Option<u64>>,
        stop: watch::Receiver<bool>,
    ) {
        tokio::join!(
            self.clone().read_views(
                rms.clone(),
                coordinator.clone(),
                groups.clone(),
                refresh,
                stop.clone()
            ),
            self.report_usage(rms, coordinator, groups, refresh, session, stop),
        );
    }

    /// Every `refresh`, reads the aggregated view from any RM within the
    /// tightest staleness bound in force.
    async fn read_views(
        self: Arc<Self>,
        rms: Arc<RmClient>,
        coordinator: String,
        groups: Arc<GroupsInForce>,
        refresh: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut generation = 0;
        loop {
            let bound = tightest_bound(&groups);
            // A view that takes longer than the bound to come is stale on
            // arrival: an RM that slow (paused, cut off) is passed over.
            let per_attempt = Duration::from_millis(bound).clamp(VIEW_ATTEMPT_MIN, CALL_TIMEOUT);
            let asked = Instant::now();
            if let Ok(v) = rms.with_timeout(per_attempt).view(bound).await {
                generation += 1;
                let snapshot = Snapshot {
                    usage: v.groups.iter().map(|g| (g.id.clone(), g.usage())).collect(),
                    cluster_memory_bytes: v.cluster_memory_bytes,
                    groups: v
                        .groups
                        .into_iter()
                        .map(|g| (g.id, (g.running, g.queued)))
                        .collect(),
                    our_report: v.reports.get(&coordinator).copied(),
                    fetched: asked,
                    staleness_ms: v.staleness_ms,
                    generation,
                };
                self.lock().view = Some(snapshot);
                self.changed.notify_waiters();
            }
            let stopped = tokio::select! {
                _ = stop.wait_for(|s| *s) => true,
                _ = tokio::time::sleep(refresh.saturating_sub(asked.elapsed())) => false,
            };
            if stopped {
                return;
            }
            // Waiters re-check freshness even when no new view came.
            self.changed.notify_waiters();
        }
    }

    /// Every `refresh`, reports our running and queued per leaf through
    /// the log, under the current session.
    async fn report_usage(
        self: Arc<Self>,
        rms: Arc<RmClient>,
        coordinator: String,
        groups: Arc<GroupsInForce>,
        refresh: Duration,
        session: watch::Receiver<Option<u64>>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let began = Instant::now();
            let bound = tightest_bound(&groups);
            // A report that has not landed within about the bound is stuck
            // on an RM that cannot commit (a paused leader): try the next.
            let per_attempt = Duration::from_millis(bound).clamp(REPORT_ATTEMPT_MIN, CALL_TIMEOUT);
            // Reports go under the current session: see `report_seq`.
            let current = *session.borrow();
            let usage = current.map(|session| {
                let mut s = self.lock();
                s.seq += 1;
                let mut usage: BTreeMap<String, (u32, u32)> = BTreeMap::new();
                for (leaf, n) in &s.running {
                    usage.entry(leaf.clone()).or_default().0 += n;
                }
                for (leaf, q) in &s.queues {
                    usage.entry(leaf.clone()).or_default().1 += q.len() as u32;
                }
                usage.retain(|_, (r, q)| *r + *q > 0);
                forget_idle_turns(&mut s.turns, &usage);
                let seq = report_seq(session, s.seq);
                // Kept before it is sent: a report whose answer is lost may
                // still be applied, and a view that includes it must find
                // it here to subtract it.
                s.reported.insert(
                    seq,
                    Report {
                        made: Instant::now(),
                        usage: usage.clone(),
                    },
                );
                while s.reported.len() > REPORTS_KEPT {
                    s.reported.pop_first();
                }
                (seq, usage)
            });
            if let Some((seq, usage)) = usage {
                let report = UsageReport {
                    coordinator: coordinator.clone(),
                    seq,
                    groups: usage
                        .iter()
                        .map(|(k, &(running, queued))| (k.clone(), GroupUsage { running, queued }))
                        .collect(),
                };
                if let Err(e) = rms.with_timeout(per_attempt).report_usage(&report).await {
                    tracing::debug!(error = %e, seq, "usage report not applied");
                }
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(refresh.saturating_sub(began.elapsed())) => {}
            }
        }
    }
}

/// The longest a waiting admission sleeps before it looks at its deadline.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Drops the scheduling turns of parents, and the credits of subgroups,
/// under which we have nothing running or queued (`usage`, per leaf), as
/// the RMs drop an empty group with its turns: templated groups come and
/// go, and their turns must not pile up here.
fn forget_idle_turns(turns: &mut BTreeMap<String, Turns>, usage: &BTreeMap<String, (u32, u32)>) {
    let busy = |id: &str| {
        usage.keys().any(|leaf| {
            leaf.strip_prefix(id)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
    };
    turns.retain(|parent, t| {
        t.credits.retain(|child, _| busy(child));
        busy(parent)
    });
}

/// The shortest wait for one RM's view: below it, a view across a busy
/// loopback on 2 cores would time out for nothing.
const VIEW_ATTEMPT_MIN: Duration = Duration::from_millis(100);

/// The shortest wait for one RM to apply a report (a commit: two fsyncs
/// and a round trip, slower than a read on a loaded machine).
const REPORT_ATTEMPT_MIN: Duration = Duration::from_millis(500);

/// Age here (counted from the request) plus the staleness the RM stated.
fn fresh(view: &Snapshot, bound: Duration) -> bool {
    view.fetched.elapsed() + Duration::from_millis(view.staleness_ms) <= bound
}

/// The tightest staleness bound in force (ms); 1000 with no eventual
/// group or no configuration yet.
fn tightest_bound(groups: &GroupsInForce) -> u64 {
    groups
        .get()
        .and_then(|g| min_bound(&g.groups.roots))
        .unwrap_or(1000)
}

/// The tightest staleness bound among eventual groups.
fn min_bound(specs: &[GroupSpec]) -> Option<u64> {
    specs
        .iter()
        .flat_map(|s| {
            let own = match s.consistency {
                Consistency::Eventual { max_staleness_ms } => Some(max_staleness_ms),
                Consistency::Linearizable => None,
            };
            own.into_iter().chain(min_bound(&s.sub_groups))
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_sessions_reports_order_after_every_report_of_an_older_one() {
        // A process that reported a million times under session 40...
        let old = report_seq(40, 1_000_000);
        // ...is replaced by one whose first report is under session 90.
        assert!(report_seq(90, 1) > old);
        assert!(report_seq(90, 2) > report_seq(90, 1));
    }
    use common::resource_groups::{parse, ResourceGroups};

    /// One eventual group: 2 running at most, 1 queued, 500 ms bound.
    fn groups() -> ResourceGroups {
        groups_limited(2)
    }

    fn groups_limited(limit: u32) -> ResourceGroups {
        let json = format!(
            r#"{{"rootGroups":[{{"name":"g","hardConcurrencyLimit":{limit},"maxQueued":1,
                "consistency":{{"mode":"eventual","maxStalenessMs":500}}}}]}}"#
        );
        parse(&json, &Consistency::Linearizable).unwrap()
    }

    /// A view `age` old with `running` in `g` that includes our report
    /// `our_report` (made now, empty, unless the test made it; `None`: our
    /// report 0).
    fn set_view(e: &Eventual, running: u32, our_report: Option<u64>, age: Duration) {
        set_view_of(e, &[("g", running)], our_report, age);
    }

    /// As [`set_view`], with others running `running` in each group named.
    fn set_view_of(e: &Eventual, running: &[(&str, u32)], our_report: Option<u64>, age: Duration) {
        let mut s = e.lock();
        let seq = our_report.unwrap_or(0);
        s.reported.entry(seq).or_insert_with(|| report(&[]));
        let generation = s.view.as_ref().map_or(1, |v| v.generation + 1);
        s.view = Some(Snapshot {
            groups: running
                .iter()
                .map(|(id, n)| (id.to_string(), (*n, 0)))
                .collect(),
            usage: BTreeMap::new(),
            cluster_memory_bytes: 0,
            our_report: Some(seq),
            fetched: Instant::now() - age,
            staleness_ms: 0,
            generation,
        });
    }

    /// A report of ours made now.
    fn report(usage: &[(&str, (u32, u32))]) -> Report {
        Report {
            made: Instant::now(),
            usage: usage.iter().map(|(g, u)| (g.to_string(), *u)).collect(),
        }
    }

    #[tokio::test]
    async fn it_admits_only_while_the_others_see_a_fresh_report_of_ours() {
        let (e, g) = (Eventual::new(1.0, Duration::from_millis(100)), groups());
        // A fresh view, but it includes no report of ours (ours do not land).
        set_view(&e, 0, Some(7), Duration::ZERO);
        e.lock().reported.clear();
        assert!(admits(&e, &g).await.is_none(), "admitted unseen");
        // Our report in it was made 800 ms ago: past 500 ms + 2 x 100 ms.
        e.lock().reported.insert(
            7,
            Report {
                made: Instant::now() - Duration::from_millis(800),
                usage: BTreeMap::new(),
            },
        );
        assert!(
            admits(&e, &g).await.is_none(),
            "admitted behind a frozen report"
        );
        // A view that includes a report made just now.
        e.lock().reported.insert(8, report(&[]));
        set_view(&e, 0, Some(8), Duration::ZERO);
        assert!(matches!(admits(&e, &g).await, Some(Ok(_))));
    }

    /// An RM stand-in that takes usage reports and serves views of `g`
    /// (limit 2, 500 ms bound) that include the last report it took.
    async fn stub_rm() -> String {
        use axum::routing::{get, post};
        use std::sync::atomic::{AtomicU64, Ordering};
        let last = Arc::new(AtomicU64::new(0));
        let took = last.clone();
        let app = axum::Router::new()
            .route(
                "/v1/resource-groups",
                get(move || {
                    let seq = last.load(Ordering::SeqCst);
                    let reports = if seq == 0 {
                        serde_json::json!({})
                    } else {
                        serde_json::json!({"c1": seq})
                    };
                    async move {
                        axum::Json(serde_json::json!({
                            "served_by": 2, "as_of_ms": 0, "staleness_ms": 0,
                            "last_applied": 10, "config_version": 1,
                            "groups": [{"id": "g", "mode": "eventual", "max_staleness_ms": 500,
                                "running": 0, "queued": 0, "hard_concurrency_limit": 2,
                                "max_queued": 1, "draining": false}],
                            "reports": reports,
                        }))
                    }
                }),
            )
            .route(
                "/v1/usage",
                post(move |axum::Json(r): axum::Json<UsageReport>| {
                    took.store(r.seq, Ordering::SeqCst);
                    async { axum::Json(serde_json::json!({"applied": true})) }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// A paused RM (the last leader, say): it takes connections and never
    /// answers. A report sent to it must not hold back the views, nor stay
    /// stuck there for a whole call timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_paused_rm_does_not_hold_admission_up() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap().to_string();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let rms = Arc::new(RmClient::new(
            vec![silent_addr, stub_rm().await],
            common::http::HttpClient::new(None, Duration::from_secs(15)),
        ));
        let g = groups();
        let e = Eventual::new(1.0, Duration::from_millis(100));
        let (_session_tx, session) = watch::channel(Some(5));
        let (stop_tx, stop) = watch::channel(false);
        let refresh = tokio::spawn(e.clone().refresh(
            rms,
            "c1".into(),
            GroupsInForce::new(Some(g.clone())),
            Duration::from_millis(100),
            session,
            stop,
        ));
        let began = Instant::now();
        let specs = g.resolve("g").unwrap();
        let permit = tokio::time::timeout(Duration::from_secs(10), e.admit("g", &specs, 0, None))
            .await
            .expect("never admitted")
            .unwrap();
        // Before, the first report waited out the silent RM for the whole
        // call timeout (3 s) and no view was read meanwhile.
        assert!(
            began.elapsed() < Duration::from_millis(2500),
            "admitted only after {:?}",
            began.elapsed()
        );
        drop(permit);
        stop_tx.send(true).unwrap();
        refresh.await.unwrap();
        hold.abort();
    }

    async fn admits(e: &Arc<Eventual>, g: &ResourceGroups) -> Option<Result<Permit, QueryError>> {
        let specs = g.resolve("g").unwrap();
        tokio::time::timeout(Duration::from_millis(50), e.admit("g", &specs, 0, None))
            .await
            .ok()
    }

    #[tokio::test]
    async fn without_a_fresh_view_it_queues_and_never_admits() {
        let (e, g) = (Eventual::new(1.0, Duration::from_millis(100)), groups());
        assert!(admits(&e, &g).await.is_none(), "admitted with no view");
        set_view(&e, 0, None, Duration::from_millis(600));
        assert!(
            admits(&e, &g).await.is_none(),
            "admitted on a view past the bound"
        );
        set_view(&e, 0, None, Duration::ZERO);
        assert!(matches!(admits(&e, &g).await, Some(Ok(_))));
    }

    #[tokio::test]
    async fn a_full_group_on_a_fresh_view_waits() {
        let (e, g) = (Eventual::new(1.0, Duration::from_millis(100)), groups());
        set_view(&e, 2, None, Duration::ZERO);
        assert!(admits(&e, &g).await.is_none());
    }

    #[tokio::test]
    async fn the_view_loses_only_the_report_of_ours_it_includes() {
        let (e, g) = (Eventual::new(1.0, Duration::from_millis(100)), groups());
        set_view(&e, 0, None, Duration::ZERO);
        let first = admits(&e, &g).await.unwrap().unwrap();
        // We reported 0 running (seq 1), then 1 running (seq 2); a lagging
        // replica's view still includes seq 1 and someone else's query.
        {
            let mut s = e.lock();
            s.reported.insert(1, report(&[]));
            s.reported.insert(2, report(&[("g", (1, 0))]));
        }
        set_view(&e, 1, Some(1), Duration::ZERO);
        // Everyone's running: 1 (other) + 1 (ours) = 2 = the limit. The old
        // code subtracted our newest report and saw room for one more.
        assert!(admits(&e, &g).await.is_none(), "over-admitted");
        // A view that includes seq 2: 1 other + our 1 counted once.
        set_view(&e, 2, Some(2), Duration::ZERO);
        assert!(admits(&e, &g).await.is_none());
        drop(first);
        set_view(&e, 1, Some(2), Duration::ZERO);
        assert!(matches!(admits(&e, &g).await, Some(Ok(_))));
    }

    /// An admission to `g` waiting in a task of its own (its permit is
    /// dropped as soon as it is granted).
    fn spawn_admit(
        e: &Arc<Eventual>,
        g: &ResourceGroups,
    ) -> tokio::task::JoinHandle<Result<(), QueryError>> {
        let (e, g) = (e.clone(), g.clone());
        tokio::spawn(async move {
            let specs = g.resolve("g").unwrap();
            e.admit("g", &specs, 0, None).await.map(|_| ())
        })
    }

    #[tokio::test]
    async fn without_a_fresh_view_our_own_queue_still_has_its_limit() {
        let (e, g) = (Eventual::new(1.0, Duration::from_millis(100)), groups());
        let waiter = spawn_admit(&e, &g);
        tokio::time::sleep(Duration::from_millis(20)).await;
        match admits(&e, &g).await {
            Some(Err(err)) => assert_eq!(err.error_name, "QUERY_QUEUE_FULL"),
            other => panic!(
                "expected QUERY_QUEUE_FULL, got {:?}",
                other.map(|r| r.is_ok())
            ),
        }
        waiter.abort();
    }

    /// `coordinator_eventual_decision_seconds_count` by `path`, `outcome`.
    fn decision_counts(e: &Eventual) -> BTreeMap<(String, String), u64> {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("decision_seconds", "", e.decisions.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("decision_seconds_count{path=\""))
            .map(|l| {
                let (path, rest) = l.split_once('"').unwrap();
                let rest = rest.strip_prefix(",outcome=\"").unwrap();
                let (outcome, count) = rest.split_once("\"} ").unwrap();
                ((path.into(), outcome.into()), count.parse().unwrap())
            })
            .collect()
    }

    #[tokio::test]
    async fn each_decision_is_timed_under_the_path_it_took() {
        let (e, g) = (
            Eventual::new(1.0, Duration::from_millis(100)),
            groups_limited(1),
        );
        let key = |p: &str, o: &str| (p.to_string(), o.to_string());
        // No view: the admission waits for one (the refresh's fetch).
        let waiter = spawn_admit(&e, &g);
        tokio::time::sleep(Duration::from_millis(20)).await;
        set_view(&e, 0, None, Duration::ZERO);
        e.changed.notify_waiters();
        waiter.await.unwrap().unwrap();
        // The permit is dropped: room again, decided on the view in hand.
        let permit = admits(&e, &g).await.unwrap().unwrap();
        // Full: this one waits on a fresh view for the slot (queued), then
        // the next is refused at once (the queue of 1 is full).
        let queued = spawn_admit(&e, &g);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(matches!(admits(&e, &g).await, Some(Err(_))));
        drop(permit);
        queued.await.unwrap().unwrap();
        assert_eq!(
            decision_counts(&e),
            BTreeMap::from([
                (key("fetch", "admitted"), 1),
                (key("fresh", "admitted"), 1),
                (key("fresh", "queue_full"), 1),
                (key("queued", "admitted"), 1),
            ])
        );
    }

    #[tokio::test]
    async fn near_the_limit_the_gate_lets_one_start_per_view() {
        let (e, g) = (
            Eventual::new(0.5, Duration::from_millis(100)),
            groups_limited(4),
        );
        set_view(&e, 2, None, Duration::ZERO); // 2 of 4: at the gate
        let _a = admits(&e, &g).await.unwrap().unwrap();
        // 3 of 4 on the same view: room, but the gate is used up.
        assert!(admits(&e, &g).await.is_none(), "a second start on one view");
        set_view(&e, 2, None, Duration::ZERO); // a new view
        assert!(matches!(admits(&e, &g).await, Some(Ok(_))));
    }

    /// Groups `g` (limit 1 running, 16 queued) of `policy`, eventual, with
    /// leaves `g.a` and `g.b` when `subgroups` (weights 1 and 3 under a
    /// weighted policy: Trino refuses weights under any other).
    fn groups_of(policy: &str, subgroups: bool) -> ResourceGroups {
        let weighted = policy.starts_with("weighted");
        let subs = match (subgroups, weighted) {
            (false, _) => "",
            (true, true) => {
                r#","subGroups":[
                {"name":"a","hardConcurrencyLimit":10,"maxQueued":16,"schedulingWeight":1},
                {"name":"b","hardConcurrencyLimit":10,"maxQueued":16,"schedulingWeight":3}]"#
            }
            (true, false) => {
                r#","subGroups":[
                {"name":"a","hardConcurrencyLimit":10,"maxQueued":16},
                {"name":"b","hardConcurrencyLimit":10,"maxQueued":16}]"#
            }
        };
        let json = format!(
            r#"{{"rootGroups":[{{"name":"g","hardConcurrencyLimit":1,"maxQueued":16,
                "schedulingPolicy":"{policy}",
                "consistency":{{"mode":"eventual","maxStalenessMs":500}}{subs}}}]}}"#
        );
        parse(&json, &Consistency::Linearizable).unwrap()
    }

    /// Queues admissions to `leaf` (one per priority, in that order) on a
    /// view where someone else fills `g`, then frees it: the labels of the
    /// queries in the order they started (each frees its slot at once).
    async fn start_order(
        e: &Arc<Eventual>,
        g: &ResourceGroups,
        queued: &[(&str, i32)],
    ) -> Vec<String> {
        set_view(e, 1, None, Duration::ZERO);
        let started = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for (i, &(leaf, priority)) in queued.iter().enumerate() {
            let (e, g, started) = (e.clone(), g.clone(), started.clone());
            let (leaf, label) = (leaf.to_string(), format!("{leaf}#{i}@{priority}"));
            waiters.push(tokio::spawn(async move {
                let specs = g.resolve(&leaf).unwrap();
                let permit = e.admit(&leaf, &specs, priority, None).await;
                started.lock().unwrap().push(label);
                permit.map(|_| ())
            }));
            // Each joins the queue before the next comes.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            started.lock().unwrap().is_empty(),
            "started on a full group"
        );
        set_view(e, 0, None, Duration::ZERO);
        e.changed.notify_waiters();
        for w in waiters {
            tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .expect("never started")
                .unwrap()
                .unwrap();
        }
        let order = started.lock().unwrap().clone();
        order
    }

    /// The start order of `queued` under a `g` of `policy`, as labelled
    /// by [`start_order`].
    async fn order_under(policy: &str, subgroups: bool, queued: &[(&str, i32)]) -> Vec<String> {
        let e = Eventual::new(1.0, Duration::from_millis(100));
        start_order(&e, &groups_of(policy, subgroups), queued).await
    }

    #[tokio::test]
    async fn a_query_priority_leaf_starts_its_highest_priority_first() {
        let queued = [("g", 1), ("g", 5), ("g", 3), ("g", 5)];
        let order = order_under("query_priority", false, &queued).await;
        assert_eq!(order, ["g#1@5", "g#3@5", "g#2@3", "g#0@1"]);
    }

    #[tokio::test]
    async fn a_fair_leaf_starts_in_arrival_order_whatever_the_priority() {
        let queued = [("g", 1), ("g", 5), ("g", 3)];
        let order = order_under("fair", false, &queued).await;
        assert_eq!(order, ["g#0@1", "g#1@5", "g#2@3"]);
    }

    /// How many of the first `n` starts went to each leaf.
    fn leaves_of(order: &[String], n: usize) -> (usize, usize) {
        let first = &order[..n];
        let count = |leaf: &str| first.iter().filter(|l| l.starts_with(leaf)).count();
        (count("g.a#"), count("g.b#"))
    }

    #[tokio::test]
    async fn a_weighted_parent_starts_its_leaves_in_proportion_to_their_weights() {
        // All of g.a's queries came first: arrival order alone would start
        // eight of g.a before any of g.b.
        let queued: Vec<(&str, i32)> = [("g.a", 0); 8].into_iter().chain([("g.b", 0); 8]).collect();
        let order = order_under("weighted", true, &queued).await;
        assert_eq!(leaves_of(&order, 8), (2, 6), "{order:?}");
    }

    #[tokio::test]
    async fn a_fair_parent_alternates_between_its_leaves() {
        let queued: Vec<(&str, i32)> = [("g.a", 0); 3].into_iter().chain([("g.b", 0); 3]).collect();
        let order = order_under("fair", true, &queued).await;
        let leaves: Vec<&str> = order.iter().map(|l| &l[..3]).collect();
        assert_eq!(leaves, ["g.a", "g.b", "g.a", "g.b", "g.a", "g.b"]);
    }

    #[tokio::test]
    async fn a_query_priority_parent_starts_the_best_query_of_any_leaf() {
        let queued = [("g.a", 1), ("g.b", 2), ("g.a", 9), ("g.b", 2)];
        let order = order_under("query_priority", true, &queued).await;
        assert_eq!(order, ["g.a#2@9", "g.b#1@2", "g.b#3@2", "g.a#0@1"]);
    }

    #[tokio::test]
    async fn a_query_queued_past_its_limit_fails_and_frees_its_place() {
        let e = Eventual::new(1.0, Duration::from_millis(100));
        let g = groups_of("fair", false);
        set_view(&e, 1, None, Duration::ZERO); // full: both wait
        let specs = g.resolve("g").unwrap();
        let limited = {
            let (e, g) = (e.clone(), g.clone());
            tokio::spawn(async move {
                let specs = g.resolve("g").unwrap();
                let limit = Some(Duration::from_millis(150));
                e.admit("g", &specs, 0, limit).await.map(|_| ())
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let behind = spawn_admit(&e, &g);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(Eventual::own(&e.lock(), "g"), (0, 2));
        let err = tokio::time::timeout(Duration::from_secs(5), limited)
            .await
            .expect("never timed out")
            .unwrap()
            .unwrap_err();
        assert_eq!(err.error_name, "EXCEEDED_TIME_LIMIT");
        assert_eq!(
            err.message,
            "Query exceeded maximum queued time limit of 150.00ms"
        );
        // It left the queue (and so our next report), and the one behind
        // it is now first in the leaf.
        assert_eq!(Eventual::own(&e.lock(), "g"), (0, 1));
        set_view(&e, 0, None, Duration::ZERO);
        e.changed.notify_waiters();
        tokio::time::timeout(Duration::from_secs(5), behind)
            .await
            .expect("the query behind never started")
            .unwrap()
            .unwrap();
        // A query that starts within its limit is not failed by it.
        let quick = e.admit("g", &specs, 0, Some(Duration::from_millis(150)));
        assert!(quick.await.is_ok());
        let key = ("queued".to_string(), "timed_out".to_string());
        assert_eq!(decision_counts(&e).get(&key), Some(&1));
    }

    #[test]
    fn the_turns_of_groups_with_nothing_of_ours_are_forgotten() {
        let credits = |ids: &[&str]| Turns {
            last: None,
            credits: ids.iter().map(|id| (id.to_string(), 1)).collect(),
        };
        let mut turns = BTreeMap::from([
            ("g".to_string(), credits(&["g.a", "g.b"])),
            ("g.b".to_string(), credits(&["g.b.x"])),
            ("h".to_string(), credits(&["h.a"])),
        ]);
        let usage = BTreeMap::from([("g.a".to_string(), (1, 0))]);
        forget_idle_turns(&mut turns, &usage);
        assert_eq!(
            turns,
            BTreeMap::from([("g".to_string(), credits(&["g.a"]))])
        );
    }
}
