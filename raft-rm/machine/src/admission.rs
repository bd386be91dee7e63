//! Admission: resource-group counters, the admission ledger, the durable
//! queue and coordinator sessions. Pure: every input comes from the log
//! (including time, the leader's stamp), so replicas and replays agree.
//!
//! Semantics follow Trino's resource groups over the whole ancestor chain:
//! - only leaf groups take queries;
//! - a query runs if every group on its chain can run more and its leaf's
//!   queue is empty; it queues if every group can queue more; otherwise it is
//!   rejected (`QUERY_QUEUE_FULL`);
//! - a parent counts its descendants' running and queued queries;
//! - when a slot frees, queued queries are promoted top-down, each group
//!   choosing among its subgroups by its scheduling policy.
//!
//! Admissions carry a fencing token: `log_index << 20 | rank`, where rank
//! orders admissions made by the same entry. Tokens only grow.

use std::collections::{BTreeMap, VecDeque};

use resource_groups::{self, CpuLimits, GroupSpec, MemoryLimit, RunLimits, SchedulingPolicy};
use serde::{Deserialize, Serialize};

use super::scheduling;

/// Events kept for the watch (older ones are dropped, oldest first).
pub const EVENTS_KEPT: usize = 10_000;
/// Finished query ids remembered so a late retry of their acquire is not
/// admitted again.
pub const FINISHED_KEPT: usize = 100_000;

/// Longest session lease, queue timeout or orphan timeout a node's
/// configuration may set (100 days, upstream's default run time). The
/// machine saturates whatever it is given all the same.
pub const MAX_SETTING_MS: u64 = 100 * 24 * 3_600_000;

/// Upstream has no queue timeout of its own: `query.max-run-time`, which
/// includes queueing, defaults to 100 days.
pub const DEFAULT_QUEUE_TIMEOUT_MS: u64 = 100 * 24 * 3_600_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionSettings {
    /// A session not renewed within this much log time expires.
    pub session_lease_ms: u64,
    /// A queued query older than this (log time) fails (a query's own
    /// limit, from its session or its groups, may be shorter).
    pub queue_timeout_ms: u64,
    /// A queued query whose coordinator's session ended, and that no live
    /// coordinator adopted within this long (log time), fails: nobody can
    /// answer its client. Upstream abandons a query its client stopped
    /// polling after `query.client.timeout` (5 minutes).
    pub orphan_timeout_ms: u64,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        Self {
            session_lease_ms: 10_000,
            queue_timeout_ms: DEFAULT_QUEUE_TIMEOUT_MS,
            orphan_timeout_ms: 300_000,
        }
    }
}

/// The replicated configuration: a version, the group tree, its source text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupsConfig {
    pub version: u64,
    pub roots: Vec<GroupSpec>,
    pub source: String,
    pub settings: AdmissionSettings,
}

/// The limits a live group runs under (kept when its spec is removed, so it
/// can drain under the limits it had).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub hard_concurrency_limit: u32,
    pub max_queued: u32,
    /// Under `weighted`, subgroups below it are chosen first.
    pub soft_concurrency_limit: Option<u32>,
    pub soft_memory_limit: Option<MemoryLimit>,
    pub cpu_limits: Option<CpuLimits>,
    pub policy: SchedulingPolicy,
    pub weight: u32,
    /// Linearizable (true) or eventual; eventual groups are admitted by
    /// coordinators, not here.
    pub linearizable: bool,
}

impl Limits {
    fn of(spec: &GroupSpec) -> Limits {
        Limits {
            hard_concurrency_limit: spec.hard_concurrency_limit,
            max_queued: spec.max_queued,
            soft_concurrency_limit: spec.soft_concurrency_limit,
            soft_memory_limit: spec.soft_memory_limit,
            cpu_limits: spec.cpu_limits,
            policy: spec.scheduling_policy,
            weight: spec.scheduling_weight.max(1),
            linearizable: spec.consistency == resource_groups::Consistency::Linearizable,
        }
    }

    pub fn run(&self) -> RunLimits {
        RunLimits {
            hard_concurrency_limit: self.hard_concurrency_limit,
            soft_memory_limit: self.soft_memory_limit,
            cpu_limits: self.cpu_limits,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    pub limits: Limits,
    /// Running and queued here and in every descendant.
    pub running: u32,
    pub queued: u32,
    /// Leaf only: queued query ids in arrival order.
    pub queue: VecDeque<String>,
    /// Its spec is gone from the configuration: no new queries.
    pub draining: bool,
    /// Smooth weighted round-robin credit, used by a `weighted` parent.
    pub wrr_credit: i64,
    /// Name of the child a `fair` parent started from last.
    pub fair_cursor: Option<String>,
    /// The names (or templates) of the specs it was created from, root
    /// first: as in Trino, a live group keeps the configuration of the
    /// template that made it (empty: resolved by its id).
    pub template: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryStatus {
    Running {
        fencing_token: u64,
    },
    Queued {
        enqueued_ms: u64,
        enqueued_index: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryRecord {
    pub group: String,
    pub coordinator: String,
    pub session: u64,
    pub priority: i32,
    pub status: QueryStatus,
    /// Opaque to the RMs: what a coordinator needs to take the query over
    /// if the one that queued it dies (statement, client, `nextUri` slug).
    pub payload: String,
    /// Its own longest queueing time: the tightest of its session's
    /// `query_max_queued_time` and its groups' `queuedTimeLimit`.
    pub max_queued_ms: Option<u64>,
    /// Queued, with its session ended since this log time (cleared when a
    /// coordinator adopts it).
    pub orphaned_ms: Option<u64>,
}

/// An acquire, as the coordinator sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcquireRequest {
    pub query_id: String,
    pub group: String,
    pub coordinator: String,
    pub session: u64,
    pub priority: i32,
    pub payload: String,
    /// The session's `query_max_queued_time`, if set.
    pub max_queued_ms: Option<u64>,
    /// The names (or templates) of the specs the coordinator's selector
    /// expanded, root first (empty: resolve by the id alone).
    pub template: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub coordinator: String,
    pub expires_at_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A queued query was admitted.
    Promoted { fencing_token: u64 },
    /// A running query's admission was revoked (its session expired).
    Revoked { fencing_token: u64 },
    /// A queued query failed (queue timeout).
    Failed { reason: String },
    /// A query was killed for memory; `error_name` is Trino's.
    Killed { error_name: String, message: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Log index of the entry that caused it (the watch's cursor).
    pub index: u64,
    pub query_id: String,
    pub group: String,
    pub coordinator: String,
    pub session: u64,
    pub kind: EventKind,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    pub seq: u64,
    /// Log time at which this report was applied (the entry's, so every
    /// replica records the same): the view's `report_ages_ms` count from it.
    pub at_ms: u64,
    /// group id -> (running, queued), as the coordinator counts them.
    pub groups: BTreeMap<String, (u32, u32)>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Admission {
    pub config: Option<GroupsConfig>,
    pub settings: AdmissionSettings,
    pub groups: BTreeMap<String, GroupState>,
    pub queries: BTreeMap<String, QueryRecord>,
    pub sessions: BTreeMap<u64, Session>,
    pub finished: super::finished::FinishedIds,
    /// Newest last, so in log-index order: the watch binary-searches it.
    pub events: VecDeque<Event>,
    /// Log index of the newest event dropped from `events` (0: none): a
    /// watcher behind it has missed events and must resynchronise.
    pub events_dropped_through: u64,
    pub reports: BTreeMap<String, UsageReport>,
    /// Memory and CPU per group, as the leader stamps them.
    pub usage: super::usage::UsageState,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    Admitted {
        fencing_token: u64,
    },
    /// 1-based place in the leaf's queue.
    Queued {
        position: u32,
    },
    Rejected {
        reason: RejectReason,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    /// Trino's QUERY_QUEUE_FULL.
    QueueFull,
    NoSuchGroup,
    NotALeaf,
    /// The group is admitted by coordinators (eventual mode), not here.
    EventualGroup,
    SessionExpired,
    NoConfiguration,
    /// The query id finished earlier; ids are not reused.
    AlreadyFinished,
    /// The query id is queued or running under another group.
    GroupMismatch,
    /// Adopt of a query that is running, or whose coordinator's session
    /// is still alive: only orphaned queued queries change hands.
    NotAdoptable,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReleaseOutcome {
    Released,
    /// Dequeued before it ran.
    Cancelled,
    Unknown,
}

impl Admission {
    fn now_valid(&self, session: u64, now_ms: u64) -> bool {
        self.sessions
            .get(&session)
            .is_some_and(|s| s.expires_at_ms > now_ms)
    }

    pub fn register_session(&mut self, index: u64, coordinator: &str, now_ms: u64) -> (u64, u64) {
        // Saturating: a lease past the end of time never expires by time
        // (an overflow here would stop every replica at this entry).
        let expires_at_ms = now_ms.saturating_add(self.settings.session_lease_ms);
        self.sessions.insert(
            index,
            Session {
                coordinator: coordinator.to_string(),
                expires_at_ms,
            },
        );
        (index, expires_at_ms)
    }

    /// `Some(new expiry)`, or `None` if the session is unknown or expired.
    pub fn renew_session(&mut self, session: u64, now_ms: u64) -> Option<u64> {
        let lease = self.settings.session_lease_ms;
        let s = self
            .sessions
            .get_mut(&session)
            .filter(|s| s.expires_at_ms > now_ms)?;
        s.expires_at_ms = now_ms.saturating_add(lease);
        Some(s.expires_at_ms)
    }

    fn decision_of(&self, query_id: &str) -> Option<Decision> {
        let q = self.queries.get(query_id)?;
        Some(match q.status {
            QueryStatus::Running { fencing_token } => Decision::Admitted { fencing_token },
            QueryStatus::Queued { .. } => Decision::Queued {
                position: self.position(&q.group, query_id),
            },
        })
    }

    fn position(&self, group: &str, query_id: &str) -> u32 {
        self.groups
            .get(group)
            .and_then(|g| g.queue.iter().position(|q| q == query_id))
            .map(|p| p as u32 + 1)
            .unwrap_or(0)
    }

    pub fn acquire(
        &mut self,
        index: u64,
        req: &AcquireRequest,
        now_ms: u64,
        rank: &mut u64,
    ) -> Decision {
        let (query_id, group, coordinator, session, priority) = (
            req.query_id.as_str(),
            req.group.as_str(),
            req.coordinator.as_str(),
            req.session,
            req.priority,
        );
        // Idempotent: a retry answers with the query's current standing.
        if let Some(q) = self.queries.get(query_id) {
            if q.group != group {
                return Decision::Rejected {
                    reason: RejectReason::GroupMismatch,
                };
            }
            return self.decision_of(query_id).expect("query exists");
        }
        if self.finished.contains(query_id) {
            return Decision::Rejected {
                reason: RejectReason::AlreadyFinished,
            };
        }
        if !self.now_valid(session, now_ms) {
            return Decision::Rejected {
                reason: RejectReason::SessionExpired,
            };
        }
        let Some(config) = &self.config else {
            return Decision::Rejected {
                reason: RejectReason::NoConfiguration,
            };
        };
        let Some(specs) = chain_of(config, self.groups.get(group), group, &req.template) else {
            return Decision::Rejected {
                reason: RejectReason::NoSuchGroup,
            };
        };
        let leaf = specs.last().expect("resolve returns a non-empty chain");
        if !leaf.is_leaf() {
            return Decision::Rejected {
                reason: RejectReason::NotALeaf,
            };
        }
        if leaf.consistency != resource_groups::Consistency::Linearizable {
            return Decision::Rejected {
                reason: RejectReason::EventualGroup,
            };
        }
        let limits: Vec<Limits> = specs.iter().map(|s| Limits::of(s)).collect();
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let ids = resource_groups::chain_ids(group);
        for (depth, (id, l)) in ids.iter().zip(&limits).enumerate() {
            let g = self
                .groups
                .entry(id.clone())
                .or_insert_with(|| new_group(l.clone(), names[..=depth].to_vec()));
            // A group re-created under a new spec after draining takes the new limits.
            g.draining = false;
            g.limits = l.clone();
        }
        let can_run = ids.iter().all(|id| self.can_run_more(id))
            && !self.groups[group]
                .queue
                .iter()
                .any(|q| self.has_live_session(q));
        let can_queue = ids.iter().all(|id| {
            let g = &self.groups[id];
            g.queued < g.limits.max_queued
        });
        let max_queued_ms = specs
            .iter()
            .filter_map(|s| s.queued_time_limit_ms)
            .chain(req.max_queued_ms)
            .min();
        let record = |status| QueryRecord {
            group: group.to_string(),
            coordinator: coordinator.to_string(),
            session,
            priority,
            status,
            payload: req.payload.clone(),
            max_queued_ms,
            orphaned_ms: None,
        };
        if can_run {
            let fencing_token = token(index, rank);
            self.queries.insert(
                query_id.to_string(),
                record(QueryStatus::Running { fencing_token }),
            );
            for id in &ids {
                self.groups.get_mut(id).expect("created above").running += 1;
            }
            Decision::Admitted { fencing_token }
        } else if can_queue {
            self.queries.insert(
                query_id.to_string(),
                record(QueryStatus::Queued {
                    enqueued_ms: now_ms,
                    enqueued_index: index,
                }),
            );
            for id in &ids {
                self.groups.get_mut(id).expect("created above").queued += 1;
            }
            let leaf = self.groups.get_mut(group).expect("created above");
            leaf.queue.push_back(query_id.to_string());
            Decision::Queued {
                position: leaf.queue.len() as u32,
            }
        } else {
            self.remove_if_empty(&ids);
            Decision::Rejected {
                reason: RejectReason::QueueFull,
            }
        }
    }

    /// Whether live group `id` may start one more query under its own
    /// limits: concurrency, and memory and CPU as last stamped.
    pub(super) fn can_run_more(&self, id: &str) -> bool {
        self.groups.get(id).is_some_and(|g| {
            resource_groups::limits::can_run_more(
                &g.limits.run(),
                g.running,
                &self.usage.of(id),
                self.usage.cluster_memory_bytes,
            )
        })
    }

    /// A group's CPU limits: a live group's own (a draining one keeps
    /// those it had), else the configuration's (eventual groups).
    fn cpu_limits_of(&self, id: &str) -> Option<CpuLimits> {
        match self.groups.get(id) {
            Some(g) => g.limits.cpu_limits,
            None => self
                .config
                .as_ref()
                .and_then(|c| chain_of(c, None, id, &[]))
                .and_then(|chain| chain.last().and_then(|s| s.cpu_limits)),
        }
    }

    /// Folds in the leader's usage stamp; returns the running queries over
    /// a per-query limit of their group (or an ancestor), to be killed.
    pub fn stamp_usage(
        &mut self,
        index: u64,
        stamp: &super::usage::UsageStamp,
        now_ms: u64,
        rank: &mut u64,
    ) -> Vec<(String, super::memory::KillReason)> {
        self.usage.stamp(stamp, now_ms);
        let mut over = Vec::new();
        if let Some(config) = &self.config {
            for (id, q) in &stamp.queries {
                let Some(chain) = chain_of(config, self.groups.get(&q.group), &q.group, &[]) else {
                    continue;
                };
                let tightest =
                    |f: fn(&GroupSpec) -> Option<u64>| chain.iter().filter_map(|s| f(s)).min();
                if let Some(limit_ms) = tightest(|s| s.per_query_limits.cpu_time_ms) {
                    if q.cpu_ms > limit_ms {
                        over.push((
                            id.clone(),
                            super::memory::KillReason::ExceededCpuLimit { limit_ms },
                        ));
                        continue;
                    }
                }
                if let Some(limit_bytes) = tightest(|s| s.per_query_limits.total_memory_bytes) {
                    if q.memory_bytes > limit_bytes {
                        over.push((
                            id.clone(),
                            super::memory::KillReason::ExceededGlobalLimit { limit_bytes },
                        ));
                    }
                }
            }
        }
        // Less memory in use may let queued queries run.
        self.promote(index, rank);
        over
    }

    /// Releases a running query (frees its slot) or cancels a queued one.
    pub fn release(&mut self, index: u64, query_id: &str, rank: &mut u64) -> ReleaseOutcome {
        let Some(q) = self.queries.remove(query_id) else {
            // Remembered all the same: an acquire of this id still in
            // flight (one whose answer its client never got) must not
            // admit the query after its release, or the slot would leak.
            self.remember_finished(query_id);
            return ReleaseOutcome::Unknown;
        };
        let outcome = self.detach(query_id, &q);
        self.remember_finished(query_id);
        self.promote(index, rank);
        outcome
    }

    /// Takes `q` out of the counters (the record is already removed).
    fn detach(&mut self, query_id: &str, q: &QueryRecord) -> ReleaseOutcome {
        let ids = resource_groups::chain_ids(&q.group);
        let outcome = match q.status {
            QueryStatus::Running { .. } => {
                for id in &ids {
                    if let Some(g) = self.groups.get_mut(id) {
                        g.running -= 1;
                    }
                }
                ReleaseOutcome::Released
            }
            QueryStatus::Queued { .. } => {
                for id in &ids {
                    if let Some(g) = self.groups.get_mut(id) {
                        g.queued -= 1;
                    }
                }
                if let Some(leaf) = self.groups.get_mut(&q.group) {
                    leaf.queue.retain(|x| x != query_id);
                }
                ReleaseOutcome::Cancelled
            }
        };
        self.remove_if_empty(&ids);
        outcome
    }

    fn remember_finished(&mut self, query_id: &str) {
        self.finished.remember(query_id, FINISHED_KEPT);
    }

    /// Drops groups of `ids` (deepest first) that hold nothing and have no
    /// live children: template groups disappear when empty, and drained
    /// groups are gone once their last query leaves.
    fn remove_if_empty(&mut self, ids: &[String]) {
        for id in ids.iter().rev() {
            let empty = self
                .groups
                .get(id)
                .is_some_and(|g| g.running == 0 && g.queued == 0);
            let prefix = format!("{id}.");
            let has_children = self
                .groups
                .range(prefix.clone()..)
                .next()
                .is_some_and(|(k, _)| k.starts_with(&prefix));
            if empty && !has_children {
                self.groups.remove(id);
            }
        }
    }

    /// Gives a queued query of a dead session to `session`.
    pub fn adopt(
        &mut self,
        query_id: &str,
        coordinator: &str,
        session: u64,
        now_ms: u64,
    ) -> Option<Decision> {
        if !self.now_valid(session, now_ms) {
            return Some(Decision::Rejected {
                reason: RejectReason::SessionExpired,
            });
        }
        let q = self.queries.get(query_id)?;
        // Only an orphan changes hands: a queued query whose session has
        // ended. A live coordinator keeps its queries, and a running query
        // stays fenced to the session that started it (adopting it would
        // save it from revocation while its old coordinator may still run
        // it). The adopter's own retry is answered as before.
        if q.session != session {
            let queued = matches!(q.status, QueryStatus::Queued { .. });
            if !queued || self.now_valid(q.session, now_ms) {
                return Some(Decision::Rejected {
                    reason: RejectReason::NotAdoptable,
                });
            }
        }
        let q = self.queries.get_mut(query_id)?;
        q.session = session;
        q.coordinator = coordinator.to_string();
        q.orphaned_ms = None;
        self.decision_of(query_id)
    }

    /// Records a coordinator's usage report unless it is older than the last.
    pub fn report(
        &mut self,
        coordinator: &str,
        seq: u64,
        groups: BTreeMap<String, (u32, u32)>,
        now_ms: u64,
    ) -> bool {
        let entry = self.reports.entry(coordinator.to_string()).or_default();
        if seq <= entry.seq && entry.seq != 0 {
            return false;
        }
        *entry = UsageReport {
            seq,
            at_ms: now_ms,
            groups,
        };
        true
    }

    /// Expires sessions, revokes their admissions, fails queued queries past
    /// the queue timeout, and promotes what can run.
    pub fn tick(&mut self, index: u64, now_ms: u64, rank: &mut u64) {
        let expired: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.expires_at_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.sessions.remove(id);
        }
        let revoked: Vec<(String, QueryRecord)> = self
            .queries
            .iter()
            .filter(|(_, q)| {
                matches!(q.status, QueryStatus::Running { .. })
                    && !self.sessions.contains_key(&q.session)
            })
            .map(|(id, q)| (id.clone(), q.clone()))
            .collect();
        for (id, q) in revoked {
            self.queries.remove(&id);
            self.detach(&id, &q);
            self.remember_finished(&id);
            let QueryStatus::Running { fencing_token } = q.status else {
                continue;
            };
            self.push_event(index, &id, &q, EventKind::Revoked { fencing_token });
        }
        // Queued queries past their queue time, and orphans nobody adopted.
        let (cluster_limit, orphan_timeout) = (
            self.settings.queue_timeout_ms,
            self.settings.orphan_timeout_ms,
        );
        let mut failed: Vec<(String, String)> = Vec::new();
        for (id, q) in self.queries.iter_mut() {
            let QueryStatus::Queued { enqueued_ms, .. } = q.status else {
                continue;
            };
            let limit = q
                .max_queued_ms
                .map_or(cluster_limit, |m| m.min(cluster_limit));
            if enqueued_ms.saturating_add(limit) <= now_ms {
                failed.push((
                    id.clone(),
                    format!(
                        "Query exceeded maximum queued time limit of {}",
                        resource_groups::succinct_duration(std::time::Duration::from_millis(limit))
                    ),
                ));
                continue;
            }
            if self.sessions.contains_key(&q.session) {
                continue;
            }
            let since = *q.orphaned_ms.get_or_insert(now_ms);
            if since.saturating_add(orphan_timeout) <= now_ms {
                failed.push((
                    id.clone(),
                    format!(
                        "Query abandoned: its coordinator's session ended and no coordinator adopted it within {}",
                        resource_groups::succinct_duration(std::time::Duration::from_millis(
                            orphan_timeout
                        ))
                    ),
                ));
            }
        }
        for (id, reason) in failed {
            let Some(q) = self.queries.remove(&id) else {
                continue;
            };
            self.detach(&id, &q);
            self.remember_finished(&id);
            self.push_event(index, &id, &q, EventKind::Failed { reason });
        }
        let mut usage = std::mem::take(&mut self.usage);
        usage.regenerate(now_ms, |id| self.cpu_limits_of(id));
        self.usage = usage;
        self.promote(index, rank);
    }

    /// Installs a new configuration. Groups whose spec is gone drain: they
    /// keep their limits and queries but take no new ones.
    pub fn set_config(
        &mut self,
        index: u64,
        config: GroupsConfig,
        rank: &mut u64,
    ) -> Result<u64, String> {
        if let Some(current) = &self.config {
            if config.version <= current.version {
                return Err(format!(
                    "version {} is not newer than the current {}",
                    config.version, current.version
                ));
            }
        }
        for (id, g) in self.groups.iter_mut() {
            match chain_of(&config, Some(g), id, &[]) {
                Some(chain) => {
                    g.limits = Limits::of(chain.last().expect("non-empty chain"));
                    g.template = chain.iter().map(|s| s.name.clone()).collect();
                    g.draining = false;
                }
                None => g.draining = true,
            }
        }
        let version = config.version;
        self.settings = config.settings.clone();
        self.config = Some(config);
        self.promote(index, rank);
        Ok(version)
    }

    /// The kill of `query_id`, for its coordinator and its workers. An
    /// eventual-mode query is not in the ledger: the event names no
    /// coordinator, and every coordinator checks whether it runs the query.
    pub fn push_kill_event(
        &mut self,
        index: u64,
        query_id: &str,
        reason: &super::memory::KillReason,
    ) {
        let q = self.queries.get(query_id).cloned().unwrap_or(QueryRecord {
            group: String::new(),
            coordinator: String::new(),
            session: 0,
            priority: 0,
            status: QueryStatus::Queued {
                enqueued_ms: 0,
                enqueued_index: 0,
            },
            payload: String::new(),
            max_queued_ms: None,
            orphaned_ms: None,
        });
        let kind = EventKind::Killed {
            error_name: reason.error_name().to_string(),
            message: reason.message(),
        };
        self.push_event(index, query_id, &q, kind);
    }

    fn push_event(&mut self, index: u64, query_id: &str, q: &QueryRecord, kind: EventKind) {
        self.events.push_back(Event {
            index,
            query_id: query_id.to_string(),
            group: q.group.clone(),
            coordinator: q.coordinator.clone(),
            session: q.session,
            kind,
        });
        while self.events.len() > EVENTS_KEPT {
            if let Some(dropped) = self.events.pop_front() {
                self.events_dropped_through = dropped.index;
            }
        }
    }

    /// Starts queued queries while any can run.
    fn promote(&mut self, index: u64, rank: &mut u64) {
        let roots: Vec<String> = self
            .groups
            .keys()
            .filter(|k| !k.contains('.'))
            .cloned()
            .collect();
        for root in roots {
            while let Some(query_id) = scheduling::next_runnable(self, &root) {
                self.start_queued(index, &query_id, rank);
            }
        }
    }

    /// Whether a queued query's session is alive (only those are promoted:
    /// an orphan waits to be adopted).
    pub(super) fn has_live_session(&self, query_id: &str) -> bool {
        self.queries
            .get(query_id)
            .is_some_and(|q| self.sessions.contains_key(&q.session))
    }

    fn start_queued(&mut self, index: u64, query_id: &str, rank: &mut u64) {
        let Some(q) = self.queries.get(query_id).cloned() else {
            return;
        };
        let ids = resource_groups::chain_ids(&q.group);
        for id in &ids {
            let g = self
                .groups
                .get_mut(id)
                .expect("queued query's groups exist");
            g.queued -= 1;
            g.running += 1;
        }
        self.groups
            .get_mut(&q.group)
            .expect("leaf exists")
            .queue
            .retain(|x| x != query_id);
        let fencing_token = token(index, rank);
        self.queries.get_mut(query_id).expect("exists").status =
            QueryStatus::Running { fencing_token };
        self.push_event(index, query_id, &q, EventKind::Promoted { fencing_token });
    }
}

/// The specs of group `id`: along the template a live group was created
/// from, else along the one its acquire names, else by the id alone (a
/// literal name, then the most literal fitting template).
fn chain_of<'a>(
    config: &'a GroupsConfig,
    live: Option<&GroupState>,
    id: &str,
    requested: &[String],
) -> Option<Vec<&'a GroupSpec>> {
    let names = match live {
        Some(g) if !g.template.is_empty() => g.template.as_slice(),
        _ => requested,
    };
    (!names.is_empty())
        .then(|| resource_groups::resolve_named(&config.roots, id, names))
        .flatten()
        .or_else(|| resource_groups::resolve(&config.roots, id))
}

fn new_group(limits: Limits, template: Vec<String>) -> GroupState {
    GroupState {
        template,
        limits,
        running: 0,
        queued: 0,
        queue: VecDeque::new(),
        draining: false,
        wrr_credit: 0,
        fair_cursor: None,
    }
}

/// `index << 20 | rank`: unique even when one entry admits many queries.
fn token(index: u64, rank: &mut u64) -> u64 {
    let t = (index << 20) | (*rank & 0xF_FFFF);
    *rank += 1;
    t
}
