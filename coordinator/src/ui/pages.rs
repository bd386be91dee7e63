//! The web UI's pages, assembled per request:
//!
//! - the cluster-wide figures come from the RMs (health of every replica,
//!   the group, the memory view, discovery, the ledger, the aggregated
//!   resource-group view);
//! - this coordinator's queries and decisions from itself;
//! - the other coordinators' from themselves, relayed by an RM
//!   (`/v1/coordinators/{name}/queries[/{id}]`): coordinators do not know
//!   each other, the RMs know them all.
//!
//! Every RM call is bounded ([`RM_CALL`]), and a page lists what it could
//! not learn instead of failing: the UI matters most while something is
//! down.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use common::api::{
    ClusterPage, CoordinatorQueries, CoordinatorStatus, CoordinatorView, CoordinatorsView,
    DecisionView, GroupRow, GroupsPage, LedgerRecord, LedgerStatus, Mode, QueriesPage, QueryDetail,
    QueryEntry, QueryFailure, QueryPage, QueryRow, QueryState, QuerySummary, ReplicaStatus,
    RowOrigin, TimelineStep, WorkerStatus, MAX_LISTED_QUERIES, SQL_HEAD_CHARS,
};
use common::http::HttpError;
use common::resource_groups::limits::{running_limit, soft_memory_limit_bytes};
use common::resource_groups::{Consistency, GroupSpec, ResourceUsage};
use common::rm::{RetryPolicy, RmClient};
use futures_util::future::join_all;

use crate::group_state::{state_of, VIEW_STALENESS_MS};
use crate::query::{Coordinator, Inner, Payload, Query};

/// Longest one RM call for a page may take: a page answers within about
/// a second with an RM down.
pub const RM_CALL: Duration = Duration::from_millis(800);

/// Longest a relayed call may take: the RM's own wait for the other
/// coordinator (`raft_rm::http::coordinators::RELAY_TIMEOUT`, 2 s), and
/// a little more.
pub const RELAYED_CALL: Duration = Duration::from_millis(2500);

/// The RM client for a page's calls: short, with one retry elsewhere.
fn rms(c: &Coordinator) -> RmClient {
    c.rms.with_timeout(RM_CALL).with_policy(RetryPolicy {
        attempts: 2,
        backoff: Duration::from_millis(20),
    })
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

fn sql_head(sql: &str) -> String {
    let mut chars = sql.chars();
    let head: String = chars.by_ref().take(SQL_HEAD_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

pub fn summary(c: &Coordinator, q: &Query, s: &Inner) -> QuerySummary {
    let end = s.ended.unwrap_or_else(Instant::now);
    QuerySummary {
        query_id: q.id.clone(),
        coordinator: c.id.clone(),
        state: s.state,
        group: s.group.clone(),
        mode: s.mode,
        user: q.user.clone(),
        source: q.source.clone(),
        created_ms: q.created_ms,
        queued_ms: millis(
            s.started
                .unwrap_or(end)
                .saturating_duration_since(q.created),
        ),
        elapsed_ms: millis(end.saturating_duration_since(q.created)),
        worker: s.worker.clone(),
        peak_memory_bytes: s.peak_memory_bytes,
        cpu_ms: s.cpu_ms,
        error_name: s.error.as_ref().map(|e| e.error_name.clone()),
        sql_head: sql_head(&q.sql),
    }
}

/// This coordinator's queries (newest first, at most
/// [`MAX_LISTED_QUERIES`]) and its decisions of the last minute.
pub fn local_queries(c: &Coordinator) -> CoordinatorQueries {
    let mut queries: Vec<QuerySummary> = c
        .held()
        .iter()
        .map(|q| summary(c, q, &q.snapshot()))
        .collect();
    queries.sort_by(|a, b| {
        b.created_ms
            .cmp(&a.created_ms)
            .then_with(|| b.query_id.cmp(&a.query_id))
    });
    let omitted = queries.len().saturating_sub(MAX_LISTED_QUERIES);
    queries.truncate(MAX_LISTED_QUERIES);
    CoordinatorQueries {
        coordinator: c.id.clone(),
        queries,
        omitted,
        decisions_last_minute: c.decisions.last_minute(),
    }
}

/// This coordinator's account of query `id`, if it holds it.
pub fn local_query(c: &Coordinator, id: &str) -> Option<QueryDetail> {
    let q = c.get(id)?;
    let s = q.snapshot();
    let mut timeline = vec![TimelineStep {
        step: "queued".into(),
        at_ms: q.created_ms,
    }];
    if let Some(started) = s.started {
        timeline.push(TimelineStep {
            step: "admitted".into(),
            at_ms: q.wall_ms(started),
        });
    }
    if let Some(ended) = s.ended {
        let step = match s.state {
            QueryState::Failed => "failed",
            _ => "finished",
        };
        timeline.push(TimelineStep {
            step: step.into(),
            at_ms: q.wall_ms(ended),
        });
    }
    Some(QueryDetail {
        summary: summary(c, &q, &s),
        sql: q.sql.clone(),
        fencing_token: s.fencing_token,
        timeline,
        error: s.error.as_ref().map(|e| QueryFailure {
            error_name: e.error_name.clone(),
            error_type: e.error_type.clone(),
            message: e.message.clone(),
        }),
    })
}

/// Whether `name` can go into an RM's URL as a coordinator's name (as
/// `--id` allows them).
fn is_coordinator_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Asks the RMs one after another to relay `call` to another coordinator,
/// until one answers: the answer and the RM that relayed it. An answer of
/// the other coordinator (or the RM's verdict that it is unreachable, or
/// not announced) is final; only an RM that cannot be asked sends the
/// call to the next.
async fn through_rms<T, F, Fut>(c: &Coordinator, call: F) -> Result<(T, String), HttpError>
where
    F: Fn(RmClient) -> Fut,
    Fut: Future<Output = Result<T, HttpError>>,
{
    let mut last = None;
    for addr in c.rms.addrs() {
        match call(c.rms.at(addr).with_timeout(RELAYED_CALL)).await {
            Ok(v) => return Ok((v, addr.clone())),
            Err(e) if matches!(e.status(), Some(404 | 400 | 401 | 502)) => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| HttpError::Decode {
        url: String::new(),
        message: "no RM is configured".into(),
    }))
}

/// Every other announced coordinator's own list, relayed by the RMs:
/// name -> its list, or why it is missing.
async fn other_coordinators(
    c: &Coordinator,
    coordinators: &[CoordinatorView],
) -> BTreeMap<String, Result<CoordinatorQueries, String>> {
    let asked = coordinators
        .iter()
        .filter(|o| o.name != c.id && o.addr.is_some() && is_coordinator_name(&o.name))
        .map(|o| async move {
            let answer = through_rms(c, |rm| {
                let name = o.name.clone();
                async move { rm.coordinator_queries(&name).await }
            })
            .await
            .map(|(list, _)| list)
            .map_err(|e| e.to_string());
            (o.name.clone(), answer)
        });
    join_all(asked).await.into_iter().collect()
}

/// The tightest staleness bound of the eventual groups configured here.
fn tightest_bound(c: &Coordinator) -> Option<u64> {
    let in_force = c.groups.get()?;
    let mut stack: Vec<&GroupSpec> = in_force.groups.roots.iter().collect();
    let mut bound: Option<u64> = None;
    while let Some(spec) = stack.pop() {
        if let Consistency::Eventual { max_staleness_ms } = spec.consistency {
            bound = Some(bound.map_or(max_staleness_ms, |b| b.min(max_staleness_ms)));
        }
        stack.extend(spec.sub_groups.iter());
    }
    bound
}

fn state_counts(queries: &[QuerySummary]) -> (u32, u32, u32) {
    let count = |st: QueryState| queries.iter().filter(|q| q.state == st).count() as u32;
    (
        count(QueryState::Queued),
        count(QueryState::Running) + count(QueryState::Finishing),
        queries.len() as u32,
    )
}

pub async fn cluster_page(c: &Coordinator) -> ClusterPage {
    let rm = rms(c);
    let mut errors = Vec::new();
    let bound = tightest_bound(c);
    let healths = join_all(c.rms.addrs().iter().map(|addr| async move {
        let h = c.rms.at(addr).with_timeout(RM_CALL).health().await;
        (addr.clone(), h)
    }))
    .await;
    let replicas: Vec<ReplicaStatus> = healths
        .into_iter()
        .map(|(addr, h)| match h {
            Ok(h) => ReplicaStatus {
                past_bound: matches!((h.staleness_ms, bound), (Some(s), Some(b)) if s > b),
                addr,
                health: Some(h),
                error: None,
            },
            Err(e) => ReplicaStatus {
                addr,
                health: None,
                error: Some(e.to_string()),
                past_bound: false,
            },
        })
        .collect();
    // The leader as the replica of the highest term that knows one says.
    let newest = replicas
        .iter()
        .filter_map(|r| r.health.as_ref())
        .filter(|h| h.leader_id.is_some())
        .max_by_key(|h| h.term);
    let leader_id = newest.and_then(|h| h.leader_id);
    let term = replicas
        .iter()
        .filter_map(|r| r.health.as_ref().map(|h| h.term))
        .max();
    let leader_rm = newest
        .and_then(|h| h.leader_addr.clone())
        .map(|a| c.rms.at(&a).with_timeout(RM_CALL));
    let (cluster, memory, workers_announced, coordinators, view) = tokio::join!(
        async {
            match &leader_rm {
                Some(l) => match l.cluster().await {
                    Ok(v) => Ok(v),
                    Err(_) => rm.cluster().await,
                },
                None => rm.cluster().await,
            }
        },
        rm.memory(),
        rm.nodes(Some("worker")),
        rm.coordinators(),
        rm.view(VIEW_STALENESS_MS),
    );
    let cluster = cluster
        .map_err(|e| errors.push(format!("the RM group's membership: {e}")))
        .ok();
    let addrs: BTreeMap<String, String> = workers_announced
        .map_err(|e| errors.push(format!("the workers' addresses: {e}")))
        .unwrap_or_default()
        .into_iter()
        .map(|n| (n.announcement.node_id, n.announcement.addr))
        .collect();
    let memory = memory
        .map_err(|e| errors.push(format!("the memory view: {e}")))
        .ok();
    let rm_config_version = view
        .map_err(|e| errors.push(format!("the resource groups' view: {e}")))
        .ok()
        .and_then(|v| v.config_version);
    let workers: Vec<WorkerStatus> = memory
        .as_ref()
        .map(|m| {
            m.pool
                .nodes
                .iter()
                .map(|n| {
                    let hb = &n.heartbeat;
                    WorkerStatus {
                        node_id: hb.node_id.clone(),
                        addr: addrs.get(&hb.node_id).cloned(),
                        total_bytes: hb.memory.total_bytes,
                        reserved_bytes: hb.memory.reserved_bytes,
                        blocked: hb.memory.is_blocked(),
                        blocked_tasks: hb.memory.blocked_tasks,
                        running_tasks: hb.running_tasks,
                        cpu_cores: hb.cpu_cores,
                        heartbeat_age_ms: n.age_ms,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let mut listed = coordinators
        .map_err(|e| errors.push(format!("the coordinators: {e}")))
        .unwrap_or_else(|_| CoordinatorsView {
            served_by: 0,
            staleness_ms: 0,
            coordinators: Vec::new(),
        })
        .coordinators;
    if !listed.iter().any(|o| o.name == c.id) {
        // Not announced yet (just started), or the RMs did not answer.
        listed.push(CoordinatorView {
            name: c.id.clone(),
            addr: None,
            announced_ms_ago: None,
            sessions: c.session.borrow().iter().copied().collect(),
            ledger_queued: 0,
            ledger_running: 0,
        });
    }
    let others = other_coordinators(c, &listed).await;
    let mine = local_queries(c);
    let coordinators: Vec<CoordinatorStatus> = listed
        .into_iter()
        .map(|view| {
            let this = view.name == c.id;
            let answer = if this {
                Some(Ok(&mine))
            } else {
                others.get(&view.name).map(|r| r.as_ref())
            };
            let (counts, error) = match answer {
                Some(Ok(list)) => {
                    let (queued, running, held) = state_counts(&list.queries);
                    (Some((queued, running, held + list.omitted as u32)), None)
                }
                Some(Err(e)) => (None, Some(e.clone())),
                None => (None, Some("not announced to the RMs lately".into())),
            };
            CoordinatorStatus {
                view,
                this,
                queued: counts.map(|c| c.0),
                running: counts.map(|c| c.1),
                held: counts.map(|c| c.2),
                error,
            }
        })
        .collect();
    let config_version = c.groups.version();
    let banners = banners(&Signs {
        leader_id,
        replicas: &replicas,
        bound,
        out_of_memory: memory
            .as_ref()
            .filter(|m| m.out_of_memory)
            .map(|m| (m.pool.blocked_workers, m.pool.workers)),
        has_session: c.session.borrow().is_some(),
        config_version,
        rm_config_version,
    });
    ClusterPage {
        coordinator: c.id.clone(),
        replicas,
        cluster,
        leader_id,
        term,
        staleness_bound_ms: bound,
        config_version,
        rm_config_version,
        workers,
        memory_total_bytes: memory.as_ref().map_or(0, |m| m.pool.total_bytes),
        memory_reserved_bytes: memory.as_ref().map_or(0, |m| m.pool.reserved_bytes),
        out_of_memory: memory.as_ref().is_some_and(|m| m.out_of_memory),
        recent_kills: memory
            .map(|m| m.kills.into_iter().take(10).collect())
            .unwrap_or_default(),
        coordinators,
        banners,
        errors,
    }
}

/// What the cluster page's banners are drawn from.
struct Signs<'a> {
    leader_id: Option<common::NodeId>,
    replicas: &'a [ReplicaStatus],
    bound: Option<u64>,
    /// Blocked workers, of all, when the cluster is out of memory.
    out_of_memory: Option<(usize, usize)>,
    has_session: bool,
    config_version: Option<u64>,
    rm_config_version: Option<u64>,
}

/// What an operator must see first on the cluster page.
fn banners(s: &Signs) -> Vec<String> {
    let mut out = Vec::new();
    if s.leader_id.is_none() {
        out.push(
            "No leader: no RM replica knows one. Linearizable groups cannot admit, and nothing changes the replicated state until one is elected.".to_string(),
        );
    }
    for r in s.replicas {
        match (&r.health, &r.error) {
            (None, Some(e)) => out.push(format!("RM {} does not answer: {e}", r.addr)),
            (Some(h), _) if r.past_bound => out.push(format!(
                "RM {} (node {}) is {} ms stale, past the {} ms bound of the tightest eventual group: it cannot serve that group's view",
                r.addr,
                h.node_id,
                h.staleness_ms.unwrap_or(0),
                s.bound.unwrap_or(0)
            )),
            _ => {}
        }
    }
    if let Some((blocked, workers)) = s.out_of_memory {
        out.push(format!(
            "Out of memory: {blocked} of {workers} workers blocked"
        ));
    }
    if !s.has_session {
        out.push("This coordinator holds no session with the RMs: it admits nothing linearizable until it registers again.".into());
    }
    if let (Some(ours), Some(theirs)) = (s.config_version, s.rm_config_version) {
        if ours != theirs {
            out.push(format!(
                "This coordinator follows resource-group configuration version {ours}; the RMs have applied {theirs}"
            ));
        }
    }
    out
}

/// The configured groups that have a fixed id (not templates), as ids.
fn configured_ids(roots: &[GroupSpec]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack: Vec<(String, &GroupSpec)> = roots.iter().map(|s| (s.name.clone(), s)).collect();
    while let Some((id, spec)) = stack.pop() {
        if spec.is_template() {
            continue;
        }
        stack.extend(
            spec.sub_groups
                .iter()
                .map(|child| (format!("{id}.{}", child.name), child)),
        );
        out.push(id);
    }
    out
}

fn mode_of(consistency: &Consistency) -> (Mode, Option<u64>) {
    match consistency {
        Consistency::Linearizable => (Mode::Linearizable, None),
        Consistency::Eventual { max_staleness_ms } => (Mode::Eventual, Some(*max_staleness_ms)),
    }
}

pub async fn groups_page(c: &Coordinator) -> GroupsPage {
    let rm = rms(c);
    let mut errors = Vec::new();
    let in_force = c.groups.get();
    let (view, listed) = tokio::join!(rm.view(VIEW_STALENESS_MS), rm.coordinators());
    let view = view
        .map_err(|e| errors.push(format!("the RMs' view of the groups: {e}")))
        .ok();
    let listed = listed
        .map_err(|e| errors.push(format!("the coordinators: {e}")))
        .map(|l| l.coordinators)
        .unwrap_or_default();
    let others = other_coordinators(c, &listed).await;
    // group -> (admitted, rejected) in the last minute, every coordinator's.
    let mut decisions: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut decisions_missing = Vec::new();
    let mut add = |list: &[common::api::GroupDecisions]| {
        for d in list {
            let e = decisions.entry(d.group.clone()).or_default();
            e.0 += d.admitted;
            e.1 += d.rejected;
        }
    };
    add(&c.decisions.last_minute());
    for (name, answer) in &others {
        match answer {
            Ok(list) => add(&list.decisions_last_minute),
            Err(_) => decisions_missing.push(name.clone()),
        }
    }
    let mut ids: BTreeSet<Vec<String>> = BTreeSet::new();
    if let Some(g) = &in_force {
        ids.extend(
            configured_ids(&g.groups.roots)
                .iter()
                .map(|id| id.split('.').map(str::to_string).collect()),
        );
    }
    if let Some(v) = &view {
        ids.extend(
            v.groups
                .iter()
                .map(|g| g.id.split('.').map(str::to_string).collect()),
        );
    }
    let decision_view = c.eventual.decision_view();
    let cluster_memory = view.as_ref().map_or(0, |v| v.cluster_memory_bytes);
    let groups = ids
        .into_iter()
        .filter_map(|segments| {
            let id = segments.join(".");
            let spec = in_force
                .as_ref()
                .and_then(|g| g.groups.resolve(&id))
                .and_then(|chain| chain.last().map(|s| (*s).clone()));
            let counted = view.as_ref().and_then(|v| v.group(&id)).cloned();
            if spec.is_none() && counted.is_none() {
                return None;
            }
            let (running, queued, usage) = counted
                .as_ref()
                .map(|g| (g.running, g.queued, g.usage()))
                .unwrap_or((0, 0, ResourceUsage::default()));
            let (mode, max_staleness_ms) = match (&spec, &counted) {
                (Some(s), _) => mode_of(&s.consistency),
                (None, Some(g)) => (g.mode, g.max_staleness_ms),
                (None, None) => return None,
            };
            let prefix = format!("{id}.");
            let (admitted, rejected) = decisions
                .iter()
                .filter(|(g, _)| **g == id || g.starts_with(&prefix))
                .fold((0, 0), |(a, r), (_, (da, dr))| (a + da, r + dr));
            let mut row = GroupRow {
                id: id.clone(),
                depth: segments.len() - 1,
                leaf: true,
                mode,
                max_staleness_ms,
                state: String::new(),
                running,
                queued,
                hard_concurrency_limit: 0,
                running_limit: 0,
                max_queued: 0,
                memory_bytes: usage.memory_bytes,
                soft_memory_limit_bytes: None,
                cpu_ms: usage.cpu_ms,
                soft_cpu_limit_ms: None,
                hard_cpu_limit_ms: None,
                draining: counted.as_ref().is_some_and(|g| g.draining),
                admitted_last_minute: admitted,
                rejected_last_minute: rejected,
                decision_view: match (mode, &decision_view) {
                    (Mode::Eventual, Some((groups, staleness_ms))) => {
                        let (running, queued) = groups.get(&id).copied().unwrap_or_default();
                        Some(DecisionView {
                            running,
                            queued,
                            staleness_ms: *staleness_ms,
                        })
                    }
                    _ => None,
                },
            };
            match (&spec, &counted) {
                (Some(spec), _) => {
                    let limits = spec.run_limits();
                    row.leaf = spec.is_leaf();
                    row.state = state_of(spec, running, queued, &usage, cluster_memory)
                        .name()
                        .to_string();
                    row.hard_concurrency_limit = spec.hard_concurrency_limit;
                    row.running_limit = running_limit(&limits, usage.cpu_ms);
                    row.max_queued = spec.max_queued;
                    row.soft_memory_limit_bytes = soft_memory_limit_bytes(&limits, cluster_memory);
                    row.soft_cpu_limit_ms = spec.cpu_limits.and_then(|l| l.soft_ms);
                    row.hard_cpu_limit_ms = spec.cpu_limits.map(|l| l.hard_ms);
                }
                (None, Some(g)) => {
                    // Draining: its spec is gone; its last limits are the view's.
                    row.hard_concurrency_limit = g.hard_concurrency_limit;
                    row.running_limit = g.hard_concurrency_limit;
                    row.max_queued = g.max_queued;
                    row.state = if running < g.hard_concurrency_limit {
                        "CAN_RUN"
                    } else if queued < g.max_queued {
                        "CAN_QUEUE"
                    } else {
                        "FULL"
                    }
                    .to_string();
                }
                (None, None) => return None,
            }
            Some(row)
        })
        .collect();
    GroupsPage {
        coordinator: c.id.clone(),
        served_by: view.as_ref().map(|v| v.served_by),
        view_staleness_ms: view.as_ref().map(|v| v.staleness_ms),
        config_version: c.groups.version(),
        groups,
        decisions_missing,
        errors,
    }
}

/// The wall-clock time in a query id (`{ms}_{seq}_{coordinator}`), and
/// the coordinator that created it.
fn id_parts(id: &str) -> (Option<u64>, Option<&str>) {
    let mut parts = id.splitn(3, '_');
    let ms = parts.next().and_then(|p| p.parse().ok());
    let _seq = parts.next();
    (ms, parts.next().filter(|c| !c.is_empty()))
}

/// A ledger entry as the UI shows it (never its payload: it holds the
/// query's slug, which lets a client poll and cancel it).
fn ledger_record(e: &QueryEntry) -> LedgerRecord {
    let payload = serde_json::from_str::<Payload>(&e.payload).ok();
    LedgerRecord {
        query_id: e.query_id.clone(),
        group: e.group.clone(),
        coordinator: e.coordinator.clone(),
        session: e.session,
        session_alive: e.session_alive,
        status: e.status,
        fencing_token: e.fencing_token,
        sql: payload.as_ref().map(|p| p.sql.clone()),
        user: payload.map(|p| p.user),
    }
}

/// The summary a ledger entry gives of a query whose coordinator did not
/// answer.
fn ledger_summary(e: &QueryEntry) -> QuerySummary {
    let record = ledger_record(e);
    let created_ms = id_parts(&e.query_id).0.unwrap_or(0);
    QuerySummary {
        query_id: e.query_id.clone(),
        coordinator: e.coordinator.clone(),
        state: match e.status {
            LedgerStatus::Queued => QueryState::Queued,
            LedgerStatus::Running => QueryState::Running,
            LedgerStatus::Finished => QueryState::Finished,
        },
        group: Some(e.group.clone()),
        mode: Some(Mode::Linearizable),
        user: record.user.unwrap_or_default(),
        source: None,
        created_ms,
        queued_ms: 0,
        elapsed_ms: 0,
        worker: None,
        peak_memory_bytes: 0,
        cpu_ms: 0,
        error_name: None,
        sql_head: sql_head(record.sql.as_deref().unwrap_or("")),
    }
}

pub async fn queries_page(c: &Coordinator) -> QueriesPage {
    let rm = rms(c);
    let mut errors = Vec::new();
    let (listed, ledger, memory) = tokio::join!(rm.coordinators(), rm.ledger(), rm.memory());
    let reserved = memory.map(|m| m.pool.queries).unwrap_or_default();
    let listed = listed
        .map_err(|e| errors.push(format!("the coordinators: {e}")))
        .map(|l| l.coordinators)
        .unwrap_or_default();
    let ledger = ledger
        .map_err(|e| errors.push(format!("the RMs' ledger: {e}")))
        .unwrap_or_default();
    let others = other_coordinators(c, &listed).await;
    let mut queries: Vec<QueryRow> = Vec::new();
    let mut unreachable = Vec::new();
    let mut add = |list: CoordinatorQueries| {
        queries.extend(list.queries.into_iter().map(|summary| QueryRow {
            summary,
            origin: RowOrigin::Coordinator,
            reserved_bytes: None,
        }));
    };
    add(local_queries(c));
    for (name, answer) in others {
        match answer {
            Ok(list) => add(list),
            Err(e) => {
                errors.push(format!("coordinator {name}: {e}"));
                unreachable.push(name);
            }
        }
    }
    let known: BTreeSet<String> = queries.iter().map(|q| q.summary.query_id.clone()).collect();
    queries.extend(
        ledger
            .iter()
            .filter(|e| !known.contains(&e.query_id))
            .map(|e| QueryRow {
                summary: ledger_summary(e),
                origin: RowOrigin::Ledger,
                reserved_bytes: None,
            }),
    );
    for q in &mut queries {
        q.reserved_bytes = reserved.get(&q.summary.query_id).copied();
    }
    queries.sort_by(|a, b| {
        b.summary
            .created_ms
            .cmp(&a.summary.created_ms)
            .then_with(|| b.summary.query_id.cmp(&a.summary.query_id))
    });
    QueriesPage {
        coordinator: c.id.clone(),
        queries,
        unreachable,
        errors,
    }
}

/// Query `id`'s page: this coordinator's account if it holds the query;
/// otherwise its owner's (the ledger's coordinator, else the one named in
/// the id), relayed by an RM; and what the RMs' ledger holds. `None` when
/// nothing at all is known of it.
pub async fn query_page(c: &Coordinator, id: &str) -> Option<QueryPage> {
    let rm = rms(c);
    let local = local_query(c, id);
    let (ledger, memory) = tokio::join!(rm.query(id), rm.memory());
    let ledger = ledger.ok().flatten();
    let reserved_bytes = memory.ok().and_then(|m| m.pool.queries.get(id).copied());
    if let Some(detail) = local {
        return Some(QueryPage {
            coordinator: c.id.clone(),
            owner: Some(c.id.clone()),
            proxied_via: None,
            detail: Some(detail),
            ledger: ledger.as_ref().map(ledger_record),
            owner_error: None,
            reserved_bytes,
        });
    }
    let owner = ledger
        .as_ref()
        .filter(|e| e.status != LedgerStatus::Finished)
        .map(|e| e.coordinator.clone())
        .or_else(|| id_parts(id).1.map(str::to_string))
        .filter(|o| is_coordinator_name(o));
    let (detail, proxied_via, owner_error) = match owner.as_deref() {
        None => (None, None, Some("the query's coordinator is not known".to_string())),
        Some(o) if o == c.id => (
            None,
            None,
            Some("this coordinator no longer holds it (ended and forgotten, or it ran before a restart)".to_string()),
        ),
        Some(o) => match through_rms(c, |rm| {
            let (o, id) = (o.to_string(), id.to_string());
            async move { rm.coordinator_query(&o, &id).await }
        })
        .await
        {
            Ok((detail, via)) => (Some(detail), Some(via), None),
            Err(e) if e.status() == Some(404) => (
                None,
                None,
                Some(format!("coordinator {o} does not hold it: {e}")),
            ),
            Err(e) => (None, None, Some(format!("coordinator {o}: {e}"))),
        },
    };
    if detail.is_none() && ledger.is_none() {
        return None;
    }
    Some(QueryPage {
        coordinator: c.id.clone(),
        owner,
        proxied_via,
        detail,
        ledger: ledger.as_ref().map(ledger_record),
        owner_error,
        reserved_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(addr: &str, staleness_ms: Option<u64>, past_bound: bool) -> ReplicaStatus {
        ReplicaStatus {
            addr: addr.into(),
            health: staleness_ms.map(|s| common::api::Health {
                node_id: 2,
                role: common::api::Role::Follower,
                leader_id: Some(1),
                leader_addr: None,
                term: 3,
                last_log_index: Some(9),
                last_applied: Some(9),
                staleness_ms: Some(s),
                initialized: true,
                incarnation: 1,
                leader_changes: 1,
            }),
            error: staleness_ms
                .is_none()
                .then(|| "connection refused".to_string()),
            past_bound,
        }
    }

    #[test]
    fn banners_name_what_needs_attention() {
        let healthy = [replica("a:1", Some(20), false)];
        let calm = Signs {
            leader_id: Some(1),
            replicas: &healthy,
            bound: Some(1000),
            out_of_memory: None,
            has_session: true,
            config_version: Some(2),
            rm_config_version: Some(2),
        };
        assert!(banners(&calm).is_empty(), "{:?}", banners(&calm));
        let troubled = [
            replica("a:1", Some(5000), true),
            replica("b:2", None, false),
        ];
        let shown = banners(&Signs {
            leader_id: None,
            replicas: &troubled,
            out_of_memory: Some((1, 2)),
            has_session: false,
            rm_config_version: Some(3),
            ..calm
        });
        assert_eq!(shown.len(), 6, "{shown:#?}");
        assert!(shown[0].starts_with("No leader"));
        assert!(shown[1].contains("5000 ms stale, past the 1000 ms bound"));
        assert!(shown[2].contains("b:2 does not answer: connection refused"));
        assert!(shown[3].contains("1 of 2 workers blocked"));
        assert!(shown[4].contains("no session"));
        assert!(shown[5].contains("version 2; the RMs have applied 3"));
    }

    #[test]
    fn a_query_id_names_its_time_and_coordinator() {
        assert_eq!(
            id_parts("1700000000000_00007_c1"),
            (Some(1700000000000), Some("c1"))
        );
        assert_eq!(
            id_parts("1700000000000_00007_coord_b-2"),
            (Some(1700000000000), Some("coord_b-2")),
            "a coordinator name may hold underscores"
        );
        assert_eq!(id_parts("nonsense"), (None, None));
    }

    #[test]
    fn a_ledger_entry_never_shows_its_payload() {
        let payload = r#"{"sql":"SELECT 1","user":"alice","source":null,"client_tags":[],"session":{},"slug":"00112233445566ff"}"#;
        let e = QueryEntry {
            query_id: "1700000000000_00001_c2".into(),
            group: "global.etl".into(),
            coordinator: "c2".into(),
            session: 9,
            session_alive: false,
            status: LedgerStatus::Queued,
            fencing_token: None,
            payload: payload.into(),
        };
        let r = ledger_record(&e);
        assert_eq!(r.sql.as_deref(), Some("SELECT 1"));
        assert_eq!(r.user.as_deref(), Some("alice"));
        let shown = serde_json::to_string(&r).unwrap();
        assert!(!shown.contains("00112233445566ff"), "{shown}");
        let s = ledger_summary(&e);
        assert_eq!((s.state, s.created_ms), (QueryState::Queued, 1700000000000));
    }

    #[test]
    fn long_statements_are_cut_in_lists() {
        let long = "x".repeat(SQL_HEAD_CHARS + 5);
        assert_eq!(sql_head(&long).chars().count(), SQL_HEAD_CHARS + 1);
        assert_eq!(sql_head("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn only_coordinator_names_go_into_rm_urls() {
        assert!(is_coordinator_name("c-1_x"));
        assert!(!is_coordinator_name("../v1/admin"));
        assert!(!is_coordinator_name(""));
    }
}
