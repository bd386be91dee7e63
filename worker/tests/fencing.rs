//! Fencing against stand-in RMs whose freshness, ledger and watch the test
//! sets: a worker runs a task under a fencing token only while it hears
//! from a fresh RM, switches away from a stale one, resynchronises from the
//! ledger after a gap in the watch, and checks a task's token before it
//! starts it. (The real RMs' side: `jepsen/tests/system/workers.rs`.)

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::api::{
    AdmissionSettings, ConfigInForce, Health, LedgerStatus, QueryEntry, Role, TaskInfo, TaskSpec,
    TaskState, TaskWork,
};
use common::http::HttpClient;
use common::wire::{WatchEvent, WatchEventKind};
use serde::Deserialize;
use serde_json::json;
use worker::config::WorkerArgs;

/// The session lease the stand-ins report: the worker's default fencing
/// bound is half of it, but at least 1 s.
const LEASE_MS: u64 = 1000;

#[derive(Default)]
struct Rm {
    /// Staleness the RM reports; `None`: fresh (20 ms).
    staleness_ms: Option<u64>,
    /// Answers nothing at all (a paused process).
    paused: bool,
    /// The next watch answers `truncated`.
    truncate_next: bool,
    events: Vec<WatchEvent>,
    ledger: BTreeMap<String, QueryEntry>,
    watches: u64,
}

type Shared = Arc<Mutex<Rm>>;

async fn hold_if_paused(rm: &Shared) {
    if rm.lock().unwrap().paused {
        std::future::pending::<()>().await;
    }
}

fn staleness(rm: &Rm) -> u64 {
    rm.staleness_ms.unwrap_or(20)
}

#[derive(Deserialize)]
struct WatchParams {
    after: u64,
    timeout_ms: Option<u64>,
}

async fn watch(State(rm): State<Shared>, Query(p): Query<WatchParams>) -> Response {
    hold_if_paused(&rm).await;
    let answer = |rm: &mut Rm| {
        rm.watches += 1;
        let events: Vec<&WatchEvent> = rm.events.iter().filter(|e| e.index > p.after).collect();
        let last = rm.events.last().map_or(0, |e| e.index);
        json!({
            "events": events,
            "next_after": last.max(p.after),
            "truncated": std::mem::take(&mut rm.truncate_next),
            "staleness_ms": staleness(rm),
            "leader_id": 1,
        })
    };
    {
        let mut r = rm.lock().unwrap();
        if r.truncate_next || r.events.iter().any(|e| e.index > p.after) {
            return Json(answer(&mut r)).into_response();
        }
    }
    // A short long poll: enough to show the worker does not spin.
    let wait = p.timeout_ms.unwrap_or(10_000).min(100);
    tokio::time::sleep(Duration::from_millis(wait)).await;
    hold_if_paused(&rm).await;
    let mut r = rm.lock().unwrap();
    Json(answer(&mut r)).into_response()
}

async fn health(State(rm): State<Shared>) -> Response {
    hold_if_paused(&rm).await;
    let r = rm.lock().unwrap();
    // A restarted worker's watch starts here, past the events it saw.
    let applied = r.events.last().map_or(10, |e| e.index.max(10));
    Json(Health {
        node_id: 1,
        role: Role::Leader,
        leader_id: Some(1),
        leader_addr: None,
        term: 1,
        last_log_index: Some(applied),
        last_applied: Some(applied),
        staleness_ms: Some(staleness(&r)),
        initialized: true,
        incarnation: 1,
        leader_changes: 1,
    })
    .into_response()
}

async fn config(State(rm): State<Shared>) -> Response {
    hold_if_paused(&rm).await;
    Json(ConfigInForce {
        version: 1,
        roots: Vec::new(),
        source: String::new(),
        settings: AdmissionSettings {
            session_lease_ms: LEASE_MS,
            queue_timeout_ms: 300_000,
            orphan_timeout_ms: 300_000,
        },
    })
    .into_response()
}

async fn query(State(rm): State<Shared>, Path(id): Path<String>) -> Response {
    hold_if_paused(&rm).await;
    match rm.lock().unwrap().ledger.get(&id) {
        Some(e) => Json(e.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such query"})),
        )
            .into_response(),
    }
}

async fn stand_in() -> (String, Shared) {
    let rm: Shared = Arc::default();
    let app = Router::new()
        .route("/v1/watch", get(watch))
        .route("/v1/health", get(health))
        .route("/v1/admin/config", get(config))
        .route("/v1/admission/queries/{id}", get(query))
        .route("/v1/announce", post(|| async { Json(json!({})) }))
        .route(
            "/v1/heartbeat/worker",
            post(|| async { Json(json!({"kills": []})) }),
        )
        .with_state(rm.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rm)
}

fn running(query_id: &str, token: u64) -> QueryEntry {
    QueryEntry {
        query_id: query_id.into(),
        group: "g".into(),
        coordinator: "c".into(),
        session: 1,
        session_alive: true,
        status: LedgerStatus::Running,
        fencing_token: Some(token),
        payload: String::new(),
    }
}

fn revoked_event(index: u64, query_id: &str, token: u64) -> WatchEvent {
    WatchEvent {
        index,
        query_id: query_id.into(),
        group: "g".into(),
        coordinator: "c".into(),
        session: 1,
        kind: WatchEventKind::Revoked,
        fencing_token: Some(token),
        reason: None,
        error_name: None,
    }
}

struct Worker {
    w: worker::node::RunningWorker,
    http: HttpClient,
}

impl Worker {
    async fn start(rms: Vec<String>, data_dir: Option<std::path::PathBuf>) -> Worker {
        Worker::start_bounded(rms, data_dir, None).await
    }

    async fn start_bounded(
        rms: Vec<String>,
        data_dir: Option<std::path::PathBuf>,
        fencing_bound_ms: Option<u64>,
    ) -> Worker {
        let args = WorkerArgs {
            id: "w".into(),
            listen: "127.0.0.1:0".into(),
            advertise: None,
            rm: rms,
            memory_bytes: 1000,
            shared_secret_file: None,
            heartbeat_ms: 1000,
            data_dir,
            fencing_bound_ms,
            catalog_dir: None,
            tpch_cache_dir: None,
            tls: Default::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let w = worker::node::start(
            args.validate().unwrap(),
            listener,
            common::clock::SystemClock::shared(),
        )
        .await
        .unwrap();
        Worker {
            w,
            http: HttpClient::new(None, Duration::from_secs(10)),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.w.addr)
    }

    async fn create(&self, task_id: &str, query_id: &str, token: u64) -> Result<TaskInfo, u16> {
        let spec = TaskSpec {
            task_id: task_id.into(),
            query_id: query_id.into(),
            fencing_token: token,
            resource_group: "g".into(),
            work: TaskWork::Simulated {
                duration_ms: 60_000,
                memory_bytes: 1,
                cpu_ms: 0,
            },
        };
        self.http
            .post_json(&self.url("/v1/tasks"), &spec)
            .await
            .map_err(|e| e.status().unwrap_or(0))
    }

    /// Creates a task, retrying while the worker has not heard from a
    /// fresh RM yet (it refuses token-carrying tasks with 503 until then).
    async fn create_when_ready(&self, task_id: &str, query_id: &str, token: u64) -> TaskInfo {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.create(task_id, query_id, token).await {
                Ok(t) => return t,
                Err(503) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(s) => panic!("creating {task_id}: {s}"),
            }
        }
    }

    async fn task(&self, task_id: &str) -> TaskInfo {
        self.http
            .get_json(&self.url(&format!("/v1/tasks/{task_id}")), 1)
            .await
            .unwrap()
    }

    /// Waits up to `within` for the task to end; answers it and how long.
    async fn wait_end(&self, task_id: &str, within: Duration) -> (TaskInfo, Duration) {
        let t0 = Instant::now();
        loop {
            let t = self.task(task_id).await;
            if t.state.is_done() {
                return (t, t0.elapsed());
            }
            assert!(t0.elapsed() < within, "{task_id} still {:?}", t.state);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn metrics(&self) -> String {
        let bytes = self
            .http
            .get_bytes(&self.url("/metrics"), &[])
            .await
            .unwrap();
        String::from_utf8(bytes).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_stops_when_its_only_rm_goes_stale() {
    let (addr, rm) = stand_in().await;
    rm.lock()
        .unwrap()
        .ledger
        .insert("q".into(), running("q", 5));
    let w = Worker::start(vec![addr], None).await;
    w.create_when_ready("t", "q", 5).await;
    w.create_when_ready("ev", "e", 0).await;
    // Healthy: the task keeps running past the bound (1 s).
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(w.task("t").await.state, TaskState::Running);

    // Cut off from its leader, the RM keeps answering, ever staler.
    rm.lock().unwrap().staleness_ms = Some(60_000);
    let (t, took) = w.wait_end("t", Duration::from_secs(5)).await;
    eprintln!("measured: task stopped {took:?} after its only RM went stale (bound 1000 ms)");
    assert_eq!(t.state, TaskState::Revoked);
    assert_eq!(t.error_name.as_deref(), Some("FENCING_UNVERIFIED"));
    assert_eq!(
        w.task("ev").await.state,
        TaskState::Running,
        "an eventual-mode task has no token to vouch for"
    );
    // Nor does it take new ones while it cannot vouch for them.
    assert_eq!(w.create("t2", "q", 5).await.err(), Some(503));
    let m = w.metrics().await;
    assert!(
        m.contains(r#"worker_fenced_tasks_total{reason="FENCING_UNVERIFIED"} 1"#),
        "{m}"
    );
    w.w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_stops_when_every_rm_is_unreachable() {
    let (a, rm_a) = stand_in().await;
    let (b, rm_b) = stand_in().await;
    for rm in [&rm_a, &rm_b] {
        rm.lock()
            .unwrap()
            .ledger
            .insert("q".into(), running("q", 5));
    }
    // The bound as set by the flag.
    let w = Worker::start_bounded(vec![a, b], None, Some(500)).await;
    w.create_when_ready("t", "q", 5).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(w.task("t").await.state, TaskState::Running);
    rm_a.lock().unwrap().paused = true;
    rm_b.lock().unwrap().paused = true;
    let (t, took) = w.wait_end("t", Duration::from_secs(5)).await;
    eprintln!("measured: task stopped {took:?} after every RM stopped answering (bound 500 ms)");
    assert_eq!(t.error_name.as_deref(), Some("FENCING_UNVERIFIED"));
    w.w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_leaves_a_stale_rm_for_a_fresh_one_and_sees_its_revocations() {
    let (stale, rm_stale) = stand_in().await;
    let (fresh, rm_fresh) = stand_in().await;
    rm_stale.lock().unwrap().staleness_ms = Some(60_000);
    for rm in [&rm_stale, &rm_fresh] {
        rm.lock()
            .unwrap()
            .ledger
            .insert("q".into(), running("q", 5));
    }
    // The stale RM is first: where the watch starts.
    let w = Worker::start(vec![stale, fresh], None).await;
    w.create_when_ready("t", "q", 5).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        w.task("t").await.state,
        TaskState::Running,
        "a fresh RM vouches for the task"
    );
    // Only the fresh RM has applied the revocation.
    rm_fresh
        .lock()
        .unwrap()
        .events
        .push(revoked_event(11, "q", 5));
    let (t, _) = w.wait_end("t", Duration::from_secs(5)).await;
    assert_eq!(t.error_name.as_deref(), Some("ADMISSION_REVOKED"));
    let m = w.metrics().await;
    assert!(
        m.contains(r#"worker_fenced_tasks_total{reason="ADMISSION_REVOKED"} 1"#),
        "{m}"
    );
    w.w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_gap_in_the_watch_the_worker_checks_its_tasks_against_the_ledger() {
    let (addr, rm) = stand_in().await;
    {
        let mut r = rm.lock().unwrap();
        r.ledger.insert("gone".into(), running("gone", 5));
        r.ledger.insert("kept".into(), running("kept", 6));
        r.ledger.insert("moved".into(), running("moved", 7));
    }
    let w = Worker::start(vec![addr], None).await;
    for (t, q, token) in [("t1", "gone", 5), ("t2", "kept", 6), ("t3", "moved", 7)] {
        w.create_when_ready(t, q, token).await;
    }
    {
        // While the worker was not looking: `gone` was revoked and forgotten,
        // `moved` revoked and admitted again under a newer token; the
        // events are dropped.
        let mut r = rm.lock().unwrap();
        r.ledger.remove("gone");
        r.ledger.insert("moved".into(), running("moved", 9));
        r.truncate_next = true;
    }
    let (t1, _) = w.wait_end("t1", Duration::from_secs(5)).await;
    let (t3, _) = w.wait_end("t3", Duration::from_secs(5)).await;
    for t in [&t1, &t3] {
        assert_eq!(t.state, TaskState::Revoked);
        assert_eq!(t.error_name.as_deref(), Some("ADMISSION_NOT_IN_LEDGER"));
    }
    assert_eq!(w.task("t2").await.state, TaskState::Running);
    // And a zombie's retry under the old token is refused from now on.
    assert_eq!(w.create("t3b", "moved", 7).await.err(), Some(409));
    w.w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_starts_only_under_the_token_the_ledger_holds() {
    let (addr, rm) = stand_in().await;
    {
        let mut r = rm.lock().unwrap();
        r.ledger.insert("q".into(), running("q", 7));
        let mut queued = running("queued", 8);
        queued.status = LedgerStatus::Queued;
        queued.fencing_token = None;
        r.ledger.insert("queued".into(), queued);
    }
    let w = Worker::start(vec![addr], None).await;
    w.create_when_ready("ok", "q", 7).await;
    assert_eq!(
        w.create("old", "q", 6).await.err(),
        Some(409),
        "another token"
    );
    assert_eq!(
        w.create("none", "nowhere", 3).await.err(),
        Some(409),
        "not admitted"
    );
    assert_eq!(w.create("q2", "queued", 8).await.err(), Some(409), "queued");
    // The same create again is answered from the task, not the ledger.
    rm.lock().unwrap().ledger.clear();
    assert!(w.create("ok", "q", 7).await.is_ok());
    // No RM to ask: the coordinator should retry (503), not give up.
    rm.lock().unwrap().paused = true;
    let t0 = Instant::now();
    assert_eq!(w.create("later", "q", 7).await.err(), Some(503));
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    // Eventual-mode tasks carry no token and need no RM.
    assert!(w.create("ev", "e", 0).await.is_ok());
    w.w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_refuses_a_token_revoked_before_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, rm) = stand_in().await;
    rm.lock()
        .unwrap()
        .ledger
        .insert("q".into(), running("q", 5));
    let w = Worker::start(vec![addr.clone()], Some(dir.path().to_path_buf())).await;
    w.create_when_ready("t", "q", 5).await;
    rm.lock().unwrap().events.push(revoked_event(11, "q", 5));
    w.wait_end("t", Duration::from_secs(5)).await;
    w.w.shutdown().await;
    // The ledger still (wrongly, or from a stale replica) shows the old
    // admission: only the worker's own memory of the revocation refuses it.
    let w = Worker::start(vec![addr], Some(dir.path().to_path_buf())).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match w.create("t2", "q", 5).await {
            Err(503) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => {
                assert_eq!(other.err(), Some(409));
                break;
            }
        }
    }
    w.w.shutdown().await;
}
