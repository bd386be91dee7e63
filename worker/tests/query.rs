//! Queries on a real worker process's API: each runs in its own process,
//! its result is read page by page, its errors carry Trino's names, and a
//! cancel kills its process and frees its memory.

use std::time::{Duration, Instant};

use common::api::{ResultPage, SqlWork, TaskInfo, TaskSpec, TaskState, TaskWork};
use common::http::HttpClient;
use worker::config::WorkerArgs;

struct Worker {
    w: worker::node::RunningWorker,
    http: HttpClient,
    _dir: tempfile::TempDir,
}

impl Worker {
    async fn start(memory_bytes: u64) -> Worker {
        let dir = tempfile::tempdir().unwrap();
        let args = WorkerArgs {
            id: "w".into(),
            listen: "127.0.0.1:0".into(),
            advertise: None,
            // No RM answers: eventual-mode tasks (token 0) need none.
            rm: vec!["127.0.0.1:1".into()],
            memory_bytes,
            shared_secret_file: None,
            heartbeat_ms: 1000,
            data_dir: Some(dir.path().join("data")),
            fencing_bound_ms: None,
            catalog_dir: None,
            tpch_cache_dir: None,
            tls: Default::default(),
        };
        let mut config = args.validate().unwrap();
        config.queries.runner = env!("CARGO_BIN_EXE_worker").into();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let w = worker::node::start(config, listener, common::clock::SystemClock::shared())
            .await
            .unwrap();
        Worker {
            w,
            http: HttpClient::new(None, Duration::from_secs(30)),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.w.addr)
    }

    fn spec(id: &str, token: u64, sql: &str) -> TaskSpec {
        TaskSpec {
            task_id: id.into(),
            query_id: id.into(),
            fencing_token: token,
            resource_group: "g".into(),
            work: TaskWork::Sql(SqlWork {
                sql: sql.into(),
                catalog: Some("tpch".into()),
                schema: Some("tiny".into()),
                system_tables: Vec::new(),
            }),
        }
    }

    async fn submit(&self, id: &str, sql: &str) {
        let spec = Worker::spec(id, 0, sql);
        let _: TaskInfo = self
            .http
            .post_json(&self.url("/v1/tasks"), &spec)
            .await
            .unwrap();
    }

    async fn reserved(&self) -> u64 {
        let info: serde_json::Value = self.http.get_json(&self.url("/v1/info"), 1).await.unwrap();
        info["memory"]["reserved_bytes"].as_u64().unwrap()
    }

    /// Waits until the pool holds more than `bytes` (the query grew).
    async fn wait_reserved_over(&self, id: &str, bytes: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.reserved().await <= bytes {
            let t = self.task(id).await;
            assert!(!t.state.is_done(), "ended before it was measured: {t:?}");
            assert!(Instant::now() < deadline, "never measured above {bytes}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn task(&self, id: &str) -> TaskInfo {
        self.http
            .get_json(&self.url(&format!("/v1/tasks/{id}")), 1)
            .await
            .unwrap()
    }

    async fn wait_done(&self, id: &str) -> TaskInfo {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let t = self.task(id).await;
            if t.state.is_done() {
                return t;
            }
            assert!(Instant::now() < deadline, "{t:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_runs_in_its_own_process_and_its_result_is_read_in_pages() {
    let w = Worker::start(4 << 30).await;
    w.submit(
        "q1",
        "SELECT name, regionkey FROM nation ORDER BY nationkey",
    )
    .await;
    let t = w.wait_done("q1").await;
    assert_eq!(t.state, TaskState::Finished, "{t:?}");
    assert!(
        t.peak_memory_bytes > 1 << 20,
        "measured, not declared: {t:?}"
    );
    let page: ResultPage = w
        .http
        .get_json(&w.url("/v1/tasks/q1/results/0"), 1)
        .await
        .unwrap();
    assert_eq!(page.rows.len(), 25);
    assert_eq!(
        page.rows[0],
        vec![serde_json::json!("ALGERIA"), serde_json::json!(0)]
    );
    assert_eq!(page.columns[0].type_name, "varchar");
    assert_eq!(page.next_page, None);
    // Released on the coordinator's word: its pages are gone.
    w.http.delete(&w.url("/v1/tasks/q1")).await.unwrap();
    let gone = w
        .http
        .get_bytes(&w.url("/v1/tasks/q1/results/0"), &[])
        .await;
    assert_eq!(gone.unwrap_err().status(), Some(409));

    w.submit("q2", "SELECT nope FROM nation").await;
    let t = w.wait_done("q2").await;
    assert_eq!(
        (t.state, t.error_name.as_deref()),
        (TaskState::Failed, Some("COLUMN_NOT_FOUND")),
        "{t:?}"
    );
    w.submit("q3", "SELECT *\nFROM nation WHERE").await;
    let t = w.wait_done("q3").await;
    assert_eq!(t.error_name.as_deref(), Some("SYNTAX_ERROR"), "{t:?}");
    assert_eq!(t.error_location.map(|l| l.line_number), Some(2), "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_query_is_killed_and_its_memory_is_free_at_once() {
    let w = Worker::start(8 << 30).await;
    w.submit("big", BIG).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let reserved = loop {
        let info: serde_json::Value = w.http.get_json(&w.url("/v1/info"), 1).await.unwrap();
        let reserved = info["memory"]["reserved_bytes"].as_u64().unwrap();
        if reserved > 64 << 20 {
            break reserved;
        }
        let t = w.task("big").await;
        assert!(!t.state.is_done(), "ended before it was measured: {t:?}");
        assert!(Instant::now() < deadline, "never measured above 64 MiB");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let killed = Instant::now();
    w.http.delete(&w.url("/v1/tasks/big")).await.unwrap();
    loop {
        let info: serde_json::Value = w.http.get_json(&w.url("/v1/info"), 1).await.unwrap();
        if info["memory"]["reserved_bytes"].as_u64() == Some(0) {
            break;
        }
        assert!(killed.elapsed() < Duration::from_secs(1), "{info}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let freed_in = killed.elapsed();
    let t = w.wait_done("big").await;
    assert_eq!(t.state, TaskState::Cancelled, "{t:?}");
    println!(
        "{reserved} bytes measured; free {} ms after the cancel",
        freed_in.as_millis()
    );
}

/// Every line item against 20,000 others: runs for many seconds, growing.
const BIG: &str = "SELECT count(*) FROM lineitem a CROSS JOIN (SELECT orderkey FROM lineitem LIMIT 20000) b WHERE a.orderkey + b.orderkey > 0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_admission_kills_its_query_and_a_crashed_query_fails_alone() {
    let w = Worker::start(8 << 30).await;
    // A linearizable admission's task (token 7), created past the ledger
    // check (no RM here), then revoked as the fencing watch would.
    w.w.tasks.create(Worker::spec("lin", 7, BIG)).unwrap();
    w.wait_reserved_over("lin", 32 << 20).await;
    assert_eq!(w.w.tasks.revoke("lin", 7), 1);
    let t = w.wait_done("lin").await;
    assert_eq!(t.state, TaskState::Revoked, "{t:?}");
    assert!(t.exit_after_stop_ms.is_some_and(|ms| ms < 1000), "{t:?}");
    assert_eq!(w.reserved().await, 0);

    // A query process that dies under the query (the kernel's OOM killer,
    // a crash): that query fails, the worker and the next query do not.
    w.submit("crash", BIG).await;
    w.wait_reserved_over("crash", 32 << 20).await;
    let pid = query_processes()
        .into_iter()
        .next()
        .expect("a query process");
    // SAFETY: kill(2) of our own child; no memory is touched.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let t = w.wait_done("crash").await;
    assert_eq!(
        (t.state, t.error_name.as_deref()),
        (TaskState::Failed, Some("GENERIC_INTERNAL_ERROR")),
        "{t:?}"
    );
    assert!(
        t.reason
            .as_deref()
            .unwrap_or("")
            .contains("without a result"),
        "{t:?}"
    );
    assert_eq!(w.reserved().await, 0);
    w.submit("after", "SELECT count(*) FROM region").await;
    assert_eq!(w.wait_done("after").await.state, TaskState::Finished);
}

/// This test process's children that are query processes.
fn query_processes() -> Vec<i32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let parent = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1));
            parent == Some(me.as_str()) && String::from_utf8_lossy(&cmdline).contains("run-query")
        })
        .collect()
}
