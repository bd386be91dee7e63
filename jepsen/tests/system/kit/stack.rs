//! RMs, workers and coordinators in one process, started the way the
//! binaries start them, on 127.0.0.1 port 0.

use std::path::Path;
use std::time::{Duration, Instant};

use coordinator::config::CoordinatorArgs;
use coordinator::node::RunningCoordinator;
use serde_json::Value;
use worker::config::WorkerArgs;
use worker::node::RunningWorker;

use super::{groups, secret_file, Settings, TestCluster};

/// How long the stack may take to be ready.
const READY_WITHIN: Duration = Duration::from_secs(15);

/// A worker `id` with `memory_bytes`, reporting to `rms` every
/// `heartbeat_ms`, with the secret in `dir` and its data in `dir/ID-data`.
pub async fn start_worker(
    id: &str,
    rms: Vec<String>,
    memory_bytes: u64,
    heartbeat_ms: u64,
    dir: &Path,
) -> RunningWorker {
    let args = WorkerArgs {
        id: id.into(),
        listen: "127.0.0.1:0".into(),
        advertise: None,
        rm: rms,
        memory_bytes,
        shared_secret_file: Some(secret_file(dir)),
        heartbeat_ms,
        data_dir: Some(dir.join(format!("{id}-data"))),
        fencing_bound_ms: None,
        catalog_dir: None,
        tpch_cache_dir: None,
        tls: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = args.validate().unwrap();
    // Query processes are the worker binary's, not this test's.
    config.queries.runner = worker_binary();
    worker::node::start(config, listener, common::clock::SystemClock::shared())
        .await
        .unwrap()
}

/// The worker binary cargo built beside this test (`target/<profile>/`).
pub fn worker_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/worker
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("worker"))
        .unwrap()
}

/// 3 RMs over [`groups::STACK`], workers `w1..` and coordinators `c1`, `c2`.
pub struct Stack {
    pub rms: TestCluster,
    pub workers: Vec<RunningWorker>,
    pub coordinators: Vec<RunningCoordinator>,
    /// What each coordinator was started with, for a restart.
    coordinator_args: Vec<CoordinatorArgs>,
    _dir: tempfile::TempDir,
}

async fn start_coordinator(args: &CoordinatorArgs) -> RunningCoordinator {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    coordinator::node::start(args.clone().validate().unwrap(), l)
        .await
        .unwrap()
}

pub struct StackOptions {
    /// How often coordinators refresh their eventual-mode view.
    pub refresh_ms: u64,
    pub workers: usize,
    pub worker_memory_bytes: u64,
    pub worker_heartbeat_ms: u64,
    /// The RMs' further settings (the memory killer's).
    pub rm_extra: raft_rm::config::RawConfig,
    /// Queries each coordinator holds at most.
    pub max_queries: usize,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            refresh_ms: 100,
            workers: 2,
            worker_memory_bytes: 1000,
            worker_heartbeat_ms: 200,
            rm_extra: Default::default(),
            max_queries: 10_000,
        }
    }
}

impl Stack {
    /// Starts everything and waits until it is ready to take queries.
    pub async fn start(o: StackOptions) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let groups = groups::write(dir.path(), groups::STACK);
        let rms = TestCluster::start(
            3,
            Settings {
                resource_groups: Some(groups.clone()),
                session_lease_ms: Some(3000),
                extra: o.rm_extra,
                ..Default::default()
            },
        )
        .await;
        rms.wait_leader(&[1, 2, 3], READY_WITHIN).await;
        let rm_list: Vec<String> = rms.addrs.values().cloned().collect();
        let mut workers = Vec::new();
        for i in 1..=o.workers {
            workers.push(
                start_worker(
                    &format!("w{i}"),
                    rm_list.clone(),
                    o.worker_memory_bytes,
                    o.worker_heartbeat_ms,
                    dir.path(),
                )
                .await,
            );
        }
        let mut coordinators = Vec::new();
        let mut coordinator_args = Vec::new();
        for i in 1..=2 {
            let args = CoordinatorArgs {
                id: format!("c{i}"),
                listen: "127.0.0.1:0".into(),
                advertise: None,
                web_ui: coordinator::config::WebUi::Loopback,
                external_url: None,
                rm: rm_list.clone(),
                resource_groups: Some(groups.clone()),
                shared_secret_file: Some(secret_file(dir.path())),
                client_timeout_secs: 60,
                refresh_ms: o.refresh_ms,
                freshness_gate: 0.8,
                max_queries: o.max_queries,
                group_provider_file: None,
                tls: Default::default(),
                password_file: None,
                impersonation_rules: None,
                jwt_key_file: None,
            };
            coordinators.push(start_coordinator(&args).await);
            coordinator_args.push(args);
        }
        let s = Stack {
            rms,
            workers,
            coordinators,
            coordinator_args,
            _dir: dir,
        };
        s.wait_ready(o.workers).await;
        s
    }

    /// Ready when both coordinators hold a session and the workers are known.
    async fn wait_ready(&self, workers: usize) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let sessions = self
                .coordinators
                .iter()
                .all(|c| c.coordinator.session.borrow().is_some());
            let memory: Value = self
                .rms
                .http
                .get_json(&self.rms.url(1, "/v1/memory"), 1)
                .await
                .unwrap_or_default();
            let config = self
                .rms
                .http
                .get_json::<Value>(&self.rms.url(1, "/v1/admin/config"), 1)
                .await
                .is_ok();
            // Each coordinator holds an eventual-mode view taken after the
            // leader's clock was in the log (else it is stale by definition).
            let mut views = true;
            for c in &self.coordinators {
                let status: Value = self
                    .rms
                    .http
                    .get_json(&format!("http://{}/v1/status", c.addr), 1)
                    .await
                    .unwrap_or_default();
                views &= status["eventual_view"]["staleness_ms"]
                    .as_u64()
                    .is_some_and(|ms| ms < 1000);
            }
            if sessions && config && views && memory["workers"] == workers {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "stack not ready: sessions {sessions}, config {config}, views {views}, memory {memory}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops coordinator `i` and starts it again with the same id (a new
    /// process: new session, fresh in-memory state), on a new port.
    pub async fn restart_coordinator(&mut self, i: usize) {
        let fresh = start_coordinator(&self.coordinator_args[i]).await;
        let old = std::mem::replace(&mut self.coordinators[i], fresh);
        old.shutdown().await;
        let deadline = Instant::now() + READY_WITHIN;
        while self.coordinators[i].coordinator.session.borrow().is_none() {
            assert!(
                Instant::now() < deadline,
                "the restarted coordinator has no session"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn shutdown(self) {
        for c in self.coordinators {
            c.shutdown().await;
        }
        for w in self.workers {
            w.shutdown().await;
        }
        self.rms.shutdown().await;
    }
}

/// Group `id` as the RMs' linearizable view shows it.
pub async fn group_view(s: &Stack, id: &str) -> Value {
    let view: Value = s
        .rms
        .http
        .get_json(&s.rms.url(1, "/v1/resource-groups"), 3)
        .await
        .unwrap();
    let groups = view["groups"].as_array().cloned().unwrap_or_default();
    groups
        .into_iter()
        .find(|g| g["id"] == id)
        .unwrap_or_else(|| panic!("no group {id} in {view}"))
}
