//! The client protocol over HTTP, as Trino serves it:
//!
//! - `POST /v1/statement` (body: SQL; headers `X-Trino-*` or `X-Presto-*`)
//! - `GET {nextUri}` = `/v1/statement/{queued|executing}/{id}/{slug}/{token}`:
//!   waits up to a second for progress, then answers the current `QueryResults`
//! - `DELETE {nextUri}`: cancel
//! - `GET /v1/query/{id}` (the `infoUri`), `GET /v1/info`, `/v1/status`,
//!   `/metrics` (Prometheus)

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::protocol::{
    client_info, ErrorKind, QueryError, QueryResults, QueryState, StatementStats,
};
use crate::query::{Coordinator, Inner, Query};

#[derive(Clone)]
pub struct AppState {
    pub coordinator: Arc<Coordinator>,
    /// Client authentication (passwords, impersonation).
    pub auth: Arc<crate::authn::Authenticator>,
    /// Base of every `nextUri`: this coordinator's own address, or the load
    /// balancer's in front of all coordinators.
    pub external_url: String,
    pub started: Instant,
}

/// Longest statement accepted.
pub const MAX_SQL_BYTES: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router {
    // What Trino's clients call, authenticated as the coordinator says.
    let clients = Router::new()
        .route("/v1/statement", post(submit))
        .route(
            "/v1/statement/{phase}/{id}/{slug}/{token}",
            get(poll).delete(cancel),
        )
        .route("/v1/query/{id}", get(query_info))
        .route("/v1/resourceGroupState/{*id}", get(group_state))
        .layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            crate::authn::authenticate,
        ));
    Router::new()
        .merge(clients)
        .route("/v1/info", get(info))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_SQL_BYTES))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "no such route"})),
            )
        })
        .with_state(state)
}

/// The answer to poll `token` (0: the submission), with the next result
/// page if one is ready.
fn results(
    state: &AppState,
    q: &Query,
    s: &Inner,
    token: u64,
    data: Option<Vec<Vec<serde_json::Value>>>,
) -> QueryResults {
    let now = Instant::now();
    let elapsed = s.ended.unwrap_or(now).duration_since(q.created);
    let queued = s
        .started
        .unwrap_or(s.ended.unwrap_or(now))
        .duration_since(q.created);
    let base = state.external_url.trim_end_matches('/');
    let next = |phase: &str| {
        Some(format!(
            "{base}/v1/statement/{phase}/{}/{}/{}",
            q.id,
            q.slug,
            token + 1
        ))
    };
    // Clients follow `nextUri` until there is none: not while pages wait.
    let ended = matches!(s.state, QueryState::Finished | QueryState::Failed);
    let next_uri = match s.state {
        QueryState::Queued => next("queued"),
        _ if !ended || !s.pages.is_empty() => next("executing"),
        _ => None,
    };
    QueryResults {
        id: q.id.clone(),
        info_uri: format!("{base}/v1/query/{}", q.id),
        next_uri,
        // Clients append the `data` of every response: each page goes out
        // once (again only to a repeated poll token).
        columns: s.columns.clone(),
        data,
        stats: StatementStats {
            state: s.state,
            queued: s.state == QueryState::Queued,
            scheduled: s.started.is_some(),
            nodes: u32::from(s.worker.is_some()),
            total_splits: 0,
            queued_splits: 0,
            running_splits: 0,
            completed_splits: 0,
            cpu_time_millis: s.cpu_ms,
            wall_time_millis: elapsed.as_millis() as u64,
            queued_time_millis: queued.as_millis() as u64,
            elapsed_time_millis: elapsed.as_millis() as u64,
            processed_rows: 0,
            processed_bytes: 0,
            physical_input_bytes: 0,
            peak_memory_bytes: s.peak_memory_bytes,
            spilled_bytes: 0,
        },
        error: s.error.clone(),
        warnings: Vec::new(),
    }
}

fn user_error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({"error": message.to_string()}))).into_response()
}

async fn submit(
    State(state): State<AppState>,
    principal: Option<axum::Extension<crate::authn::Principal>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let principal = principal.map(|p| p.0 .0);
    let get = |name: &str| {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        // An authenticated client that names no user is its principal.
        match (name, &principal) {
            ("x-trino-user", Some(p))
                if values.is_empty() && headers.get("x-presto-user").is_none() =>
            {
                vec![p.as_str()]
            }
            _ => values,
        }
    };
    let mut client = match client_info(get) {
        Ok(c) => c,
        Err(e) => return user_error(StatusCode::BAD_REQUEST, e),
    };
    if let Some(p) = principal {
        if !state.auth.impersonation.allows(&p, &client.user) {
            return (
                StatusCode::FORBIDDEN,
                [("content-type", "text/plain; charset=utf-8")],
                crate::authn::impersonation_denied(&p, &client.user),
            )
                .into_response();
        }
        // Who they were before any impersonation, unless a proxy in front
        // already said (`X-Trino-Original-User`).
        if client.original_user.is_none() {
            client.original_user = Some(p.clone());
        }
        client.authenticated_user = Some(p);
    }
    let Ok(sql) = String::from_utf8(body.to_vec()) else {
        return user_error(StatusCode::BAD_REQUEST, "the statement is not UTF-8");
    };
    let q = match state.coordinator.submit(sql, client) {
        Ok(q) => q,
        Err(e) => {
            // Trino's clients retry a 503 after a pause.
            let mut r = user_error(StatusCode::SERVICE_UNAVAILABLE, e);
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
            return r;
        }
    };
    // Trino answers a submission at once, QUEUED. Here a queued query is
    // meant to survive its coordinator, so the first answer waits (briefly)
    // for the RMs to hold it: otherwise a crash right after the answer
    // loses a query the client was told is queued.
    q.wait_recorded(MAX_WAIT).await;
    // Still, as Trino's, the first answer is QUEUED: whatever happened
    // since (started, refused, failed) shows at the first poll.
    let first = Inner {
        state: QueryState::Queued,
        error: None,
        started: None,
        ended: None,
        columns: None,
        pages: Default::default(),
        ..q.snapshot()
    };
    let r = results(&state, &q, &first, 0, None);
    q.mark_reported(r.stats.state);
    Json(r).into_response()
}

/// The query behind a `nextUri`, if id and slug match.
fn lookup(state: &AppState, id: &str, slug: &str) -> Option<Arc<Query>> {
    state.coordinator.get(id).filter(|q| q.slug == slug)
}

/// A `nextUri` this coordinator could have issued: a query id, and a
/// phase and slug of the shape it gives them. Anything else is not found
/// without a look at the RMs (an id goes into their URLs).
fn plausible(phase: &str, id: &str, slug: &str) -> bool {
    matches!(phase, "queued" | "executing")
        && common::api::is_query_id(id)
        && slug.len() == 16
        && slug.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Longest a poll waits for news (Trino's default `maxWait`).
const MAX_WAIT: Duration = Duration::from_secs(1);

#[derive(serde::Deserialize)]
struct PollParams {
    /// Trino's `maxWait` (an airlift duration such as `100ms`), at most 1 s.
    #[serde(rename = "maxWait")]
    max_wait: Option<String>,
}

async fn poll(
    State(state): State<AppState>,
    Path((phase, id, slug, token)): Path<(String, String, String, u64)>,
    axum::extract::Query(params): axum::extract::Query<PollParams>,
) -> Response {
    if !plausible(&phase, &id, &slug) {
        return user_error(StatusCode::NOT_FOUND, "Query not found");
    }
    let wait = match params
        .max_wait
        .as_deref()
        .map(common::units::parse_duration)
    {
        None => MAX_WAIT,
        Some(Ok(d)) => d.min(MAX_WAIT),
        Some(Err(e)) => return user_error(StatusCode::BAD_REQUEST, format!("maxWait: {e}")),
    };
    let q = match lookup(&state, &id, &slug) {
        Some(q) => q,
        // Not ours: perhaps a failed coordinator's query, kept by the RMs.
        None => match state.coordinator.adopt(&id, &slug).await {
            Ok(Some(q)) => q,
            Ok(None) => return user_error(StatusCode::NOT_FOUND, format!("Query not found: {id}")),
            Err(e) => return user_error(StatusCode::SERVICE_UNAVAILABLE, e.message),
        },
    };
    q.touch();
    // Register for the next change before looking, so none is missed.
    let changed = q.changed.notified();
    tokio::pin!(changed);
    changed.as_mut().enable();
    let now = q.snapshot();
    let news = now.reported != Some(now.state)
        || !now.pages.is_empty()
        || now.sent.as_ref().is_some_and(|(t, _)| *t == token);
    if !news
        && matches!(
            now.state,
            QueryState::Queued | QueryState::Running | QueryState::Finishing
        )
    {
        // Nothing new: wait a little for progress, as Trino does.
        let _ = tokio::time::timeout(wait, changed).await;
    }
    // After a pause or a partition, this may run before the session keeper
    // has noticed the lease ran out: never answer "running" then.
    state.coordinator.fence(&q).await;
    let data = q.take_page(token);
    let s = q.snapshot();
    let r = results(&state, &q, &s, token, data);
    q.mark_reported(r.stats.state);
    let mut response = Json(r).into_response();
    if let (Some((catalog, schema)), QueryState::Finished) = (&s.set_path, s.state) {
        // Trino's way to change the client's path (`USE`).
        for (name, value) in [
            ("x-trino-set-catalog", catalog),
            ("x-trino-set-schema", schema),
        ] {
            if let Ok(v) = axum::http::HeaderValue::from_str(value) {
                response.headers_mut().insert(name, v);
            }
        }
    }
    response
}

async fn cancel(
    State(state): State<AppState>,
    Path((phase, id, slug, _token)): Path<(String, String, String, u64)>,
) -> Response {
    if !plausible(&phase, &id, &slug) {
        return user_error(StatusCode::NOT_FOUND, "Query not found");
    }
    let q = match lookup(&state, &id, &slug) {
        Some(q) => Some(q),
        // Not ours: a dead coordinator's query is taken over to be
        // cancelled (a queued one leaves the RMs' queue); a live one's
        // cannot be reached from here, so the client is told to retry
        // rather than told it worked.
        None => match state.coordinator.adopt(&id, &slug).await {
            Ok(q) => q,
            Err(e) => return user_error(StatusCode::SERVICE_UNAVAILABLE, e.message),
        },
    };
    let Some(q) = q else {
        // As Trino: nothing was cancelled, so say so.
        return user_error(StatusCode::NOT_FOUND, format!("Query not found: {id}"));
    };
    q.cancel(QueryError::new(
        ErrorKind::UserCanceled,
        "Query was canceled",
    ));
    StatusCode::NO_CONTENT.into_response()
}

/// Trino's `GET /v1/resourceGroupState/{id}`, the id's names as path
/// segments (see [`crate::group_state`]).
async fn group_state(State(state): State<AppState>, Path(path): Path<String>) -> Response {
    let id = path.trim_matches('/').replace('/', ".");
    let c = &state.coordinator;
    let spec = c.groups.get().and_then(|g| {
        g.groups
            .resolve(&id)
            .and_then(|chain| chain.last().map(|s| (*s).clone()))
    });
    let Some(spec) = spec else {
        return user_error(
            StatusCode::NOT_FOUND,
            format!("Resource group not found: {id}"),
        );
    };
    match c.rms.view(crate::group_state::VIEW_STALENESS_MS).await {
        Ok(view) => Json(crate::group_state::group_info(&id, &spec, &view)).into_response(),
        Err(e) => user_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read the resource groups' state from the RMs: {e}"),
        ),
    }
}

async fn query_info(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(q) = state.coordinator.get(&id) else {
        return user_error(StatusCode::NOT_FOUND, format!("Query not found: {id}"));
    };
    let s = q.snapshot();
    Json(json!({
        "queryId": q.id,
        "state": s.state,
        // As Trino: the group's path as an array of names.
        "resourceGroupId": s.group.as_deref().map(|g| g.split('.').collect::<Vec<_>>()),
        "worker": s.worker,
        "error": s.error,
    }))
    .into_response()
}

async fn info(State(state): State<AppState>) -> Response {
    Json(json!({
        "nodeVersion": {"version": env!("CARGO_PKG_VERSION")},
        "environment": "raft-rm",
        "coordinator": true,
        "starting": state.coordinator.session.borrow().is_none(),
        "uptime": format!("{:.2}s", state.started.elapsed().as_secs_f64()),
    }))
    .into_response()
}

/// Prometheus text: queries by state, the session as a gauge, and the
/// eventual-mode decision times.
async fn metrics(State(state): State<AppState>) -> Response {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;
    let c = &state.coordinator;
    let mut registry = Registry::with_prefix("coordinator");
    let queries = c.queries.lock().unwrap_or_else(|p| p.into_inner());
    for (name, st) in [
        ("queued_queries", QueryState::Queued),
        ("running_queries", QueryState::Running),
        ("finished_queries", QueryState::Finished),
        ("failed_queries", QueryState::Failed),
    ] {
        let g: Gauge = Gauge::default();
        g.set(
            queries
                .values()
                .filter(|q| q.snapshot().state == st)
                .count() as i64,
        );
        registry.register(
            name,
            format!("Queries {st:?} (finished ones are kept 5 minutes)"),
            g,
        );
    }
    drop(queries);
    let session: Gauge = Gauge::default();
    session.set(i64::from(c.session.borrow().is_some()));
    registry.register(
        "has_session",
        "1 while this coordinator holds a session with the RMs",
        session,
    );
    registry.register(
        "eventual_decision_seconds",
        "Eventual-mode admission decisions, from entering the decision to its outcome, by path (fresh: on the view in hand, no RM request) and outcome",
        c.eventual.decisions.clone(),
    );
    let mut out = String::new();
    let _ = encode(&mut out, &registry);
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        out,
    )
        .into_response()
}

async fn status(State(state): State<AppState>) -> Response {
    let c = &state.coordinator;
    let queries = c.queries.lock().unwrap_or_else(|p| p.into_inner());
    let count = |st: QueryState| {
        queries
            .values()
            .filter(|q| q.snapshot().state == st)
            .count()
    };
    Json(json!({
        "nodeId": c.id,
        "session": *c.session.borrow(),
        "queued": count(QueryState::Queued),
        "running": count(QueryState::Running),
        "held": queries.len(),
        "config_version": c.groups.version(),
        "eventual_view": c.eventual.view_status().map(|(age, staleness, our_report_age)| json!({"age_ms": age, "staleness_ms": staleness, "our_report_age_ms": our_report_age})),
    }))
    .into_response()
}
