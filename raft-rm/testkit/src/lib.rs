//! In-process resource-manager clusters for tests: real nodes (sled store,
//! HTTP, Raft RPC) on 127.0.0.1 port 0, with link faults to partition them.
//! Shared by `raft-rm`'s integration tests and the system tests in
//! `jepsen/tests/system` (a dev-dependency of both, so there is one copy).
//!
//! # Layout
//! One module:
//! - [`TestCluster`] with its [`Settings`]: start, stop, partition and heal
//!   nodes; wait for a leader or an applied index; canary and admin requests.
//! - [`secret_file`], [`client`]: the shared secret every test process uses,
//!   and an HTTP client carrying it.
//! - [`Writer`]: a canary writer that retries until acknowledged.
//! - [`max_overlap`]: the most intervals open at once (running queries,
//!   held admissions).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::auth::SharedSecret;
use common::http::{HttpClient, HttpError};
use raft_rm::config::{NodeConfig, RawConfig};
use raft_rm::http::canary::CanaryWritten;
use raft_rm::node::{self, NodeOptions, RunningNode};
use raft_rm::NodeId;
use serde_json::json;

pub const SECRET: &str = "test-secret-0123456789";

/// The secret file in `dir`, written once and atomically (temp + rename):
/// nodes starting concurrently must never read it half-written.
pub fn secret_file(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("secret");
    if !path.exists() {
        let tmp = dir.join(format!("secret.{}.tmp", rand_suffix()));
        std::fs::write(&tmp, SECRET).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }
    path
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::thread::current().id())
}

pub fn client() -> HttpClient {
    let dir = tempfile::tempdir().unwrap();
    let secret = SharedSecret::from_file(&secret_file(dir.path())).unwrap();
    HttpClient::new(Some(secret), Duration::from_secs(8))
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub snapshot_every: u64,
    pub keep_logs_after_snapshot: u64,
    pub resource_groups: Option<PathBuf>,
    pub session_lease_ms: Option<u64>,
    /// Further keys (the memory killer's), under the harness's own.
    pub extra: RawConfig,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            snapshot_every: 5000,
            keep_logs_after_snapshot: 1000,
            resource_groups: None,
            session_lease_ms: None,
            extra: RawConfig::default(),
        }
    }
}

pub struct TestCluster {
    pub nodes: BTreeMap<NodeId, RunningNode>,
    pub addrs: BTreeMap<NodeId, String>,
    pub http: HttpClient,
    dir: tempfile::TempDir,
    settings: Settings,
}

impl TestCluster {
    pub async fn start(size: u64, settings: Settings) -> TestCluster {
        common::telemetry::init();
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = BTreeMap::new();
        for id in 1..=size {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            listeners.insert(id, l);
        }
        let addrs: BTreeMap<NodeId, String> = listeners
            .iter()
            .map(|(id, l)| (*id, l.local_addr().unwrap().to_string()))
            .collect();
        let mut cluster = TestCluster {
            nodes: BTreeMap::new(),
            addrs,
            http: client(),
            dir,
            settings,
        };
        let peers = cluster.addrs.clone();
        for (id, listener) in listeners {
            cluster.launch(id, &peers, listener).await;
        }
        cluster
    }

    fn config(&self, id: NodeId, peers: &BTreeMap<NodeId, String>) -> NodeConfig {
        let peers_text = peers
            .iter()
            .map(|(i, a)| format!("{i}={a}"))
            .collect::<Vec<_>>()
            .join(",");
        NodeConfig::from_raw(
            RawConfig {
                id: Some(id),
                listen: Some(peers[&id].clone()),
                data_dir: Some(self.data_dir(id)),
                peers: Some(peers_text),
                shared_secret_file: Some(secret_file(self.dir.path())),
                heartbeat_ms: Some(50),
                election_timeout_min_ms: Some(250),
                election_timeout_max_ms: Some(500),
                tick_ms: Some(100),
                snapshot_every: Some(self.settings.snapshot_every),
                keep_logs_after_snapshot: Some(self.settings.keep_logs_after_snapshot),
                resource_groups: self.settings.resource_groups.clone(),
                session_lease_ms: self.settings.session_lease_ms,
                ..Default::default()
            }
            .or(self.settings.extra.clone()),
        )
        .unwrap()
    }

    async fn launch(
        &mut self,
        id: NodeId,
        peers: &BTreeMap<NodeId, String>,
        listener: tokio::net::TcpListener,
    ) {
        let config = self.config(id, peers);
        let node = node::start_with_listener(config, listener, NodeOptions::default())
            .await
            .unwrap();
        self.nodes.insert(id, node);
    }

    /// Starts a new, empty node `id` that is not yet a member.
    pub async fn spawn_empty(&mut self, id: NodeId) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        self.addrs.insert(id, addr.clone());
        // Peers list the existing members too, so the new node is not the
        // lowest id and waits to be added instead of bootstrapping.
        let peers = self.addrs.clone();
        self.launch(id, &peers, l).await;
        addr
    }

    /// Starts node `id` again on its address, with the data dir it has.
    pub async fn restart(&mut self, id: NodeId) {
        let addr = self.addrs[&id].clone();
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match tokio::net::TcpListener::bind(&addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot bind {addr} again: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let peers = self.addrs.clone();
        self.launch(id, &peers, listener).await;
    }

    /// Deletes node `id`'s data dir: a lost disk. Stop the node first.
    pub fn wipe(&self, id: NodeId) {
        assert!(
            !self.nodes.contains_key(&id),
            "stop node {id} before wiping it"
        );
        std::fs::remove_dir_all(self.data_dir(id)).unwrap();
    }

    fn data_dir(&self, id: NodeId) -> PathBuf {
        self.dir.path().join(format!("n{id}"))
    }

    /// The shared-secret file the nodes use (for `raft-rm admin`).
    pub fn secret_path(&self) -> PathBuf {
        secret_file(self.dir.path())
    }

    pub fn url(&self, id: NodeId, path: &str) -> String {
        format!("http://{}{}", self.addrs[&id], path)
    }

    /// Waits until all running, connected voters agree on one leader.
    pub async fn wait_leader(&self, among: &[NodeId], timeout: Duration) -> NodeId {
        let deadline = Instant::now() + timeout;
        loop {
            let leaders: Vec<Option<NodeId>> = among
                .iter()
                .map(|id| self.nodes[id].raft.metrics().borrow().current_leader)
                .collect();
            if let Some(Some(l)) = leaders.first() {
                if leaders.iter().all(|x| *x == Some(*l)) && among.contains(l) {
                    return *l;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader among {among:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn canary(
        &self,
        via: NodeId,
        client: &str,
        seq: u64,
    ) -> Result<CanaryWritten, HttpError> {
        self.http
            .post_json(
                &self.url(via, "/v1/canary"),
                &json!({"client": client, "seq": seq}),
            )
            .await
    }

    /// POSTs an admin request via `via`, retrying only the 503s that mean
    /// "no leader to run it on yet" (nothing was executed).
    pub async fn admin(
        &self,
        via: NodeId,
        path: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.http.post_json(&self.url(via, path), &body).await {
                Ok(v) => return v,
                Err(HttpError::Status {
                    status: 503,
                    body: b,
                    ..
                }) if (b.contains("not the leader") || b.contains("no leader known"))
                    && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("{path} {body}: {e}"),
            }
        }
    }

    /// Cuts `id` off from every other node, both ways.
    pub fn isolate(&self, id: NodeId) {
        for (other, node) in &self.nodes {
            if *other == id {
                for peer in self.addrs.keys().filter(|p| **p != id) {
                    node.faults.cut(*peer);
                }
            } else {
                node.faults.cut(id);
            }
        }
    }

    pub fn heal(&self) {
        for node in self.nodes.values() {
            node.faults.heal_all();
        }
    }

    /// Stops node `id` abruptly (its data dir stays).
    pub async fn stop(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.remove(&id) {
            node.shutdown().await;
        }
    }

    pub fn applied(&self, id: NodeId) -> Option<u64> {
        self.nodes[&id]
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index)
    }

    /// Waits until every node in `ids` has applied at least `index`.
    pub async fn wait_applied(&self, ids: &[NodeId], index: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for id in ids {
            while self.applied(*id).unwrap_or(0) < index {
                assert!(
                    Instant::now() < deadline,
                    "node {id} applied {:?}, wanted {index}",
                    self.applied(*id)
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    pub async fn shutdown(mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}

/// A client that writes canaries with increasing seq, retrying each seq
/// (against any node) until acknowledged or told to stop. Reports the last
/// acknowledged and the last attempted seq: afterwards the cluster must show
/// `acked <= count == last_seq <= attempted`.
pub struct Writer {
    pub name: String,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<(u64, u64)>,
}

impl Writer {
    pub fn start(name: &str, http: HttpClient, targets: Vec<String>) -> Writer {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let client = name.to_string();
        let task = tokio::spawn(async move {
            let (mut acked, mut attempted) = (0u64, 0u64);
            let mut i = 0usize;
            while !*stop_rx.borrow() {
                let seq = acked + 1;
                attempted = seq;
                let url = format!("http://{}/v1/canary", targets[i % targets.len()]);
                let body = json!({"client": client, "seq": seq});
                match http.post_json::<_, CanaryWritten>(&url, &body).await {
                    Ok(w) => {
                        assert_eq!(w.last_seq, seq, "ack for another seq: {w:?}");
                        acked = seq;
                    }
                    Err(_) => {
                        i += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (acked, attempted)
        });
        Writer {
            name: name.to_string(),
            stop,
            task,
        }
    }

    pub async fn finish(self) -> (u64, u64) {
        let _ = self.stop.send(true);
        self.task.await.unwrap()
    }
}

/// The most intervals that overlap at any instant (an end before a start at
/// the same instant: touching intervals do not overlap).
pub fn max_overlap(intervals: impl IntoIterator<Item = (Instant, Instant)>) -> usize {
    let mut points: Vec<(Instant, i32)> = intervals
        .into_iter()
        .flat_map(|(a, b)| [(a, 1), (b, -1)])
        .collect();
    points.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, d) in points {
        now += d;
        peak = peak.max(now);
    }
    peak as usize
}
