//! Reads of the admission state.
//!
//! - `GET /v1/resource-groups?max_staleness_ms=N`: the aggregated view.
//!   `0` (the default) is a linearizable read. With `N > 0` this replica
//!   answers from its own state if its staleness (its clock minus the leader
//!   time of its last applied entry) is at most `N`. Otherwise it relays to
//!   the leader, and if that fails it answers 503 naming both numbers. Every
//!   answer states its staleness.
//! - `GET /v1/admission/queries`: every queued and running query's ledger
//!   entry (what `system.runtime.queries` shows of other coordinators).
//! - `GET /v1/admission/queries/{id}`: one queued, running (or, with
//!   `status: "finished"` and nothing else, recently ended) query's ledger
//!   entry, including the payload its coordinator stored (for adoption).
//! - `GET /v1/watch?after=INDEX[&coordinator=NAME][&timeout_ms=N]`: long
//!   poll for admission events (promotions, revocations, failures) after a
//!   log index, from this replica. `truncated: true` means events after
//!   `INDEX` were already dropped: resynchronise from the view (a worker
//!   does from the ledger). Every answer carries this replica's
//!   `staleness_ms` and the leader it knows, so a watcher can tell a quiet
//!   cluster from a replica cut off from it; a replica whose Raft stopped
//!   answers 503.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use common::api::Mode;
pub use common::api::{GroupView, View};
use common::resource_groups::{Consistency, GroupSpec};
use common::wire::WatchEventKind;
use serde::Deserialize;

use super::forward::{relay, was_forwarded};
use super::{ApiError, AppState};
use crate::machine::admission::{Admission, Event, EventKind};
use crate::store::state_machine::AppliedState;
use crate::NodeId;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/resource-groups", get(view))
        .route("/v1/watch", get(watch))
        .route("/v1/admission/queries", get(queries))
        .route("/v1/admission/queries/{id}", get(query))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewParams {
    max_staleness_ms: Option<u64>,
}

async fn view(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<ViewParams>,
) -> Response {
    let bound = p.max_staleness_ms.unwrap_or(0);
    let path = format!("/v1/resource-groups?max_staleness_ms={bound}");
    if bound == 0 {
        let result = match state.core.linearizable_barrier().await {
            Ok(()) => Ok(Json(build_view(&state))),
            Err(e) => Err(ApiError::from(e)),
        };
        return super::forward::or_forward(
            &state,
            &headers,
            Method::GET,
            &path,
            Vec::new(),
            result,
        )
        .await;
    }
    let staleness = staleness_ms(&state);
    let never_stamped = state.core.applied().read().state.log_time_ms == 0;
    if staleness <= bound {
        return Json(build_view(&state)).into_response();
    }
    let detail = match state.core.leader() {
        Some((leader, addr)) if leader != state.core.id() && !was_forwarded(&headers) => {
            match relay(&state, Method::GET, &addr, &path, Vec::new()).await {
                Ok(answer) => return answer,
                Err(e) => format!("and the leader (node {leader}) did not answer: {e}"),
            }
        }
        Some((leader, _)) if leader == state.core.id() => {
            "even on the leader (is it cut off from the others?)".to_string()
        }
        _ => "and no leader is known".to_string(),
    };
    let detail = if never_stamped {
        format!("this replica has applied no leader time yet, {detail}")
    } else {
        detail
    };
    ApiError::TooStale {
        bound_ms: bound,
        staleness_ms: staleness,
        detail,
    }
    .into_response()
}

fn staleness_ms(state: &AppState) -> u64 {
    let log_time = state.core.applied().read().state.log_time_ms;
    state.core.clock().now_ms().saturating_sub(log_time)
}

/// Configured literal groups (templates have no fixed id) plus every live
/// group, with ledger counts and, for eventual groups, what coordinators
/// with live sessions report.
pub fn build_view(state: &AppState) -> View {
    let applied = state.core.applied().read();
    view_of(&applied, state.core.id(), state.core.clock().now_ms())
}

/// [`build_view`] from an applied state, served by `served_by` whose clock
/// reads `now_ms`.
pub fn view_of(applied: &AppliedState, served_by: NodeId, now_ms: u64) -> View {
    let adm = &applied.state.admission;
    let mut groups: BTreeMap<String, GroupView> = BTreeMap::new();
    if let Some(config) = &adm.config {
        let mut stack: Vec<(String, &GroupSpec)> =
            config.roots.iter().map(|s| (s.name.clone(), s)).collect();
        while let Some((id, spec)) = stack.pop() {
            if spec.is_template() {
                continue;
            }
            groups.insert(id.clone(), group_view(&id, spec));
            stack.extend(
                spec.sub_groups
                    .iter()
                    .map(|c| (format!("{id}.{}", c.name), c)),
            );
        }
    }
    for (id, g) in &adm.groups {
        let entry = groups.entry(id.clone()).or_insert_with(|| {
            let spec = adm
                .config
                .as_ref()
                .and_then(|c| common::resource_groups::resolve(&c.roots, id))
                .and_then(|chain| chain.last().copied());
            match spec {
                Some(spec) => group_view(id, spec),
                None => GroupView {
                    id: id.clone(),
                    mode: if g.limits.linearizable {
                        Mode::Linearizable
                    } else {
                        Mode::Eventual
                    },
                    max_staleness_ms: None,
                    running: 0,
                    queued: 0,
                    hard_concurrency_limit: g.limits.hard_concurrency_limit,
                    max_queued: g.limits.max_queued,
                    draining: true,
                    memory_bytes: 0,
                    cpu_ms: 0,
                },
            }
        });
        entry.running += g.running;
        entry.queued += g.queued;
        entry.draining = g.draining;
    }
    let reports = add_reports(adm, &mut groups);
    for (id, g) in groups.iter_mut() {
        let usage = adm.usage.of(id);
        g.memory_bytes = usage.memory_bytes;
        g.cpu_ms = usage.cpu_ms;
    }
    View {
        served_by,
        as_of_ms: applied.state.log_time_ms,
        staleness_ms: now_ms.saturating_sub(applied.state.log_time_ms),
        report_ages_ms: report_ages(adm, &reports, now_ms),
        last_applied: applied.last_applied.map(|l| l.index),
        config_version: adm.config.as_ref().map(|c| c.version),
        groups: groups.into_values().collect(),
        reports,
        cluster_memory_bytes: adm.usage.cluster_memory_bytes,
    }
}

fn group_view(id: &str, spec: &GroupSpec) -> GroupView {
    let (mode, bound) = match spec.consistency {
        Consistency::Linearizable => (Mode::Linearizable, None),
        Consistency::Eventual { max_staleness_ms } => (Mode::Eventual, Some(max_staleness_ms)),
    };
    GroupView {
        id: id.to_string(),
        mode,
        max_staleness_ms: bound,
        running: 0,
        queued: 0,
        hard_concurrency_limit: spec.hard_concurrency_limit,
        max_queued: spec.max_queued,
        draining: false,
        memory_bytes: 0,
        cpu_ms: 0,
    }
}

/// Adds eventual-mode usage reported by coordinators that hold a live
/// session to the reported group and each of its ancestors; answers which
/// report (its `seq`) of each it added.
fn add_reports(adm: &Admission, groups: &mut BTreeMap<String, GroupView>) -> BTreeMap<String, u64> {
    let live: BTreeSet<&str> = adm
        .sessions
        .values()
        .map(|s| s.coordinator.as_str())
        .collect();
    let mut included = BTreeMap::new();
    for (coordinator, report) in &adm.reports {
        if !live.contains(coordinator.as_str()) {
            continue;
        }
        included.insert(coordinator.clone(), report.seq);
        for (group, (running, queued)) in &report.groups {
            for id in common::resource_groups::chain_ids(group) {
                if let Some(g) = groups.get_mut(&id) {
                    // Saturating: the API bounds each count, but a sum
                    // over coordinators must not overflow.
                    g.running = g.running.saturating_add(*running);
                    g.queued = g.queued.saturating_add(*queued);
                }
            }
        }
    }
    included
}

/// How old each included report is: this replica's clock minus the log
/// time at which the report was applied. So it includes the replica's own
/// staleness, and a coordinator that stopped reporting ages on every
/// replica alike.
fn report_ages(
    adm: &Admission,
    included: &BTreeMap<String, u64>,
    now_ms: u64,
) -> BTreeMap<String, u64> {
    included
        .keys()
        .filter_map(|c| {
            let at_ms = adm.reports.get(c)?.at_ms;
            Some((c.clone(), now_ms.saturating_sub(at_ms)))
        })
        .collect()
}

/// One query's ledger entry (linearizable read; any node relays).
pub use common::api::{LedgerStatus, QueryEntry};

async fn query(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let result = async {
        state.core.linearizable_barrier().await?;
        let applied = state.core.applied().read();
        let adm = &applied.state.admission;
        let Some(q) = adm.queries.get(&id) else {
            // Ended (released, revoked with its session, timed out): a
            // coordinator that is asked about it can say it ended, when
            // the one that ran it cannot any more.
            if adm.finished.contains(&id) {
                return Ok(Json(QueryEntry {
                    query_id: id.clone(),
                    group: String::new(),
                    coordinator: String::new(),
                    session: 0,
                    session_alive: false,
                    status: LedgerStatus::Finished,
                    fencing_token: None,
                    payload: String::new(),
                }));
            }
            return Err(ApiError::NotFound(format!(
                "no queued or running query {id}"
            )));
        };
        Ok::<_, ApiError>(Json(ledger_entry(adm, &id, q)))
    }
    .await;
    let path = format!("/v1/admission/queries/{id}");
    super::forward::or_forward(&state, &headers, Method::GET, &path, Vec::new(), result).await
}

fn ledger_entry(
    adm: &crate::machine::admission::Admission,
    id: &str,
    q: &crate::machine::admission::QueryRecord,
) -> QueryEntry {
    let (status, fencing_token) = match q.status {
        crate::machine::admission::QueryStatus::Running { fencing_token } => {
            (LedgerStatus::Running, Some(fencing_token))
        }
        crate::machine::admission::QueryStatus::Queued { .. } => (LedgerStatus::Queued, None),
    };
    QueryEntry {
        query_id: id.to_string(),
        group: q.group.clone(),
        coordinator: q.coordinator.clone(),
        session: q.session,
        session_alive: adm.sessions.contains_key(&q.session),
        status,
        fencing_token,
        payload: q.payload.clone(),
    }
}

async fn queries(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let result = async {
        state.core.linearizable_barrier().await?;
        let applied = state.core.applied().read();
        let adm = &applied.state.admission;
        Ok::<_, ApiError>(Json(
            adm.queries
                .iter()
                .map(|(id, q)| ledger_entry(adm, id, q))
                .collect::<Vec<_>>(),
        ))
    }
    .await;
    super::forward::or_forward(
        &state,
        &headers,
        Method::GET,
        "/v1/admission/queries",
        Vec::new(),
        result,
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchParams {
    after: u64,
    coordinator: Option<String>,
    timeout_ms: Option<u64>,
}

pub use common::wire::{WatchAnswer, WatchEvent};

/// Longest a watch may wait.
const MAX_WATCH: Duration = Duration::from_secs(30);

async fn watch(State(state): State<AppState>, Query(p): Query<WatchParams>) -> Response {
    let wait = Duration::from_millis(p.timeout_ms.unwrap_or(10_000)).min(MAX_WATCH);
    let deadline = tokio::time::Instant::now() + wait;
    let mut metrics = state.core.raft().metrics();
    loop {
        let answer = collect(&state, p.after, p.coordinator.as_deref());
        if !answer.events.is_empty() || answer.truncated {
            return Json(answer).into_response();
        }
        // Wake when something new is applied, or at the deadline.
        match tokio::time::timeout_at(deadline, metrics.changed()).await {
            Ok(Ok(())) => continue,
            Err(_) => {
                return Json(collect(&state, p.after, p.coordinator.as_deref())).into_response()
            }
            // Raft stopped: nothing will be applied here again. Answering
            // "no events" at once would make watchers spin on this replica;
            // a 503 sends them to another.
            Ok(Err(_)) => {
                return ApiError::Unavailable("raft has stopped on this replica".into())
                    .into_response()
            }
        }
    }
}

fn collect(state: &AppState, after: u64, coordinator: Option<&str>) -> WatchAnswer {
    let applied = state.core.applied().read();
    let applied_index = applied.last_applied.map(|l| l.index).unwrap_or(0);
    let log_time = applied.state.log_time_ms;
    WatchAnswer {
        // How stale this replica is and which leader it knows: a watcher
        // (a worker fencing its tasks) leaves a stale one for another.
        staleness_ms: (log_time > 0).then(|| state.core.clock().now_ms().saturating_sub(log_time)),
        leader_id: state.core.raft().metrics().borrow().current_leader,
        ..collect_from(&applied.state.admission, applied_index, after, coordinator)
    }
}

/// The watch's answer from `adm` as applied through `applied_index`.
///
/// Kept events are in log-index order (the machine appends them as it
/// applies), so the first one after the cursor is found by binary search:
/// a watcher that is woken by every metrics change (heartbeat acks too)
/// and finds nothing new costs a search, not a scan of 10,000 events.
fn collect_from(
    adm: &Admission,
    applied_index: u64,
    after: u64,
    coordinator: Option<&str>,
) -> WatchAnswer {
    let first = adm.events.partition_point(|e| e.index <= after);
    let events: Vec<WatchEvent> = adm
        .events
        .range(first..)
        .filter(|e| for_watcher(e, coordinator))
        .map(wire_event)
        .collect();
    WatchAnswer {
        // The replica's freshness is filled in by `collect`.
        staleness_ms: None,
        leader_id: None,
        next_after: events
            .last()
            .map(|e| e.index)
            .unwrap_or(applied_index.max(after)),
        truncated: after < adm.events_dropped_through,
        events,
    }
}

/// Whether `e` goes to a watch of `coordinator` (`None`: all). Kills go
/// to every coordinator: an eventual-mode query's owner is not in the
/// ledger, so each checks whether it runs it.
fn for_watcher(e: &Event, coordinator: Option<&str>) -> bool {
    coordinator.is_none_or(|c| e.coordinator == c) || matches!(e.kind, EventKind::Killed { .. })
}

fn wire_event(e: &Event) -> WatchEvent {
    let (kind, fencing_token, reason, error_name) = match &e.kind {
        EventKind::Promoted { fencing_token } => {
            (WatchEventKind::Promoted, Some(*fencing_token), None, None)
        }
        EventKind::Revoked { fencing_token } => {
            (WatchEventKind::Revoked, Some(*fencing_token), None, None)
        }
        EventKind::Failed { reason } => (WatchEventKind::Failed, None, Some(reason.clone()), None),
        EventKind::Killed {
            error_name,
            message,
        } => (
            WatchEventKind::Killed,
            None,
            Some(message.clone()),
            Some(error_name.clone()),
        ),
    };
    WatchEvent {
        index: e.index,
        query_id: e.query_id.clone(),
        group: e.group.clone(),
        coordinator: e.coordinator.clone(),
        session: e.session,
        kind,
        fencing_token,
        reason,
        error_name,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What the watch answered when it scanned every kept event.
    fn scan_all(
        adm: &Admission,
        applied_index: u64,
        after: u64,
        coordinator: Option<&str>,
    ) -> WatchAnswer {
        let events: Vec<WatchEvent> = adm
            .events
            .iter()
            .filter(|e| e.index > after && for_watcher(e, coordinator))
            .map(wire_event)
            .collect();
        WatchAnswer {
            staleness_ms: None,
            leader_id: None,
            next_after: events
                .last()
                .map(|e| e.index)
                .unwrap_or(applied_index.max(after)),
            truncated: after < adm.events_dropped_through,
            events,
        }
    }

    /// Kept events as the machine keeps them: indexes never decrease,
    /// several events may share an entry, older ones may be dropped.
    fn admission() -> impl Strategy<Value = (Admission, u64)> {
        (
            1..50u64,
            prop::collection::vec((0..3u64, 0..3usize, 0..4u8), 0..60),
            0..4u64,
        )
            .prop_map(|(first, steps, past_last)| {
                let mut adm = Admission::default();
                let mut index = first;
                for (step, who, kind) in steps {
                    index += step;
                    let kind = match kind {
                        0 => EventKind::Promoted {
                            fencing_token: index << 20,
                        },
                        1 => EventKind::Revoked {
                            fencing_token: index << 20,
                        },
                        2 => EventKind::Failed {
                            reason: "queued too long".into(),
                        },
                        _ => EventKind::Killed {
                            error_name: "CLUSTER_OUT_OF_MEMORY".into(),
                            message: "killed".into(),
                        },
                    };
                    adm.events.push_back(Event {
                        index,
                        query_id: format!("q{index}"),
                        group: "g".into(),
                        coordinator: ["c1", "c2", ""][who].into(),
                        session: 1,
                        kind,
                    });
                }
                adm.events_dropped_through = first - 1;
                (adm, index + past_last)
            })
    }

    /// Reports with counts no coordinator can have (the API refuses
    /// them) saturate the view instead of overflowing it.
    #[test]
    fn reported_counts_saturate() {
        use crate::machine::admission::{Session, UsageReport};
        let mut adm = Admission::default();
        let mut groups = BTreeMap::new();
        for id in ["cool", "cool.a"] {
            groups.insert(
                id.to_string(),
                GroupView {
                    id: id.to_string(),
                    mode: Mode::Eventual,
                    max_staleness_ms: Some(500),
                    running: 0,
                    queued: 0,
                    hard_concurrency_limit: 10,
                    max_queued: 10,
                    draining: false,
                    memory_bytes: 0,
                    cpu_ms: 0,
                },
            );
        }
        for (i, c) in ["c1", "c2"].into_iter().enumerate() {
            adm.sessions.insert(
                i as u64 + 1,
                Session {
                    coordinator: c.into(),
                    expires_at_ms: u64::MAX,
                },
            );
            adm.reports.insert(
                c.into(),
                UsageReport {
                    seq: 1,
                    at_ms: 0,
                    groups: BTreeMap::from([("cool.a".to_string(), (u32::MAX, u32::MAX))]),
                },
            );
        }
        add_reports(&adm, &mut groups);
        for g in groups.values() {
            assert_eq!((g.running, g.queued), (u32::MAX, u32::MAX), "{g:?}");
        }
    }

    /// A report applied long ago (by log time) is that old in the view,
    /// whatever happened since; only reports the counts include have an
    /// age.
    #[test]
    fn a_report_applied_long_ago_shows_its_age() {
        use crate::machine::admission::UsageReport;
        let mut adm = Admission::default();
        for (c, at_ms) in [("old", 1_000), ("new", 3_600_500), ("gone", 5)] {
            adm.reports.insert(
                c.into(),
                UsageReport {
                    seq: 1,
                    at_ms,
                    groups: BTreeMap::new(),
                },
            );
        }
        let included = BTreeMap::from([("old".to_string(), 1), ("new".to_string(), 1)]);
        let ages = report_ages(&adm, &included, 3_601_000);
        assert_eq!(
            ages,
            BTreeMap::from([("new".to_string(), 500), ("old".to_string(), 3_600_000)])
        );
        // A replica whose clock is behind the log time says 0, not an underflow.
        assert_eq!(report_ages(&adm, &included, 0)["new"], 0);
    }

    proptest! {
        /// Seeking the first event after the cursor answers exactly what
        /// scanning every kept event did: the events, `next_after` and
        /// `truncated`, for every cursor and coordinator filter.
        #[test]
        fn the_watch_answers_as_a_full_scan_did(
            (adm, applied) in admission(),
            after in 0..70u64,
            who in 0..4usize,
        ) {
            let coordinator = [Some("c1"), Some("c2"), Some("nobody"), None][who];
            prop_assert_eq!(
                collect_from(&adm, applied, after, coordinator),
                scan_all(&adm, applied, after, coordinator)
            );
        }
    }
}
