//! Prometheus metrics of one node. Raft gauges (term, role, leader, indices)
//! are read from openraft's metrics at scrape time; latency histograms and
//! counters are recorded where things happen.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::Raft;

pub struct Metrics {
    registry: Registry,
    fsync_seconds: Histogram,
    fsync_batch: Histogram,
    commit_seconds: Histogram,
    auth_failures: Counter,
    term: Gauge,
    is_leader: Gauge,
    leader_id: Gauge,
    last_log_index: Gauge,
    applied_index: Gauge,
    snapshot_index: Gauge,
    pub memory: MemoryMetrics,
}

/// The memory killer's figures (see [`crate::killer`]).
pub struct MemoryMetrics {
    out_of_memory: Gauge,
    episodes: Counter,
    out_of_memory_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    kills: Family<Vec<(String, String)>, Counter>,
    freed_bytes: Histogram,
}

impl MemoryMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = MemoryMetrics {
            out_of_memory: Gauge::default(),
            episodes: Counter::default(),
            out_of_memory_seconds: Counter::default(),
            kills: Family::default(),
            // 1 MiB to 1 TiB.
            freed_bytes: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(1048576.0, 4.0, 11),
            ),
        };
        registry.register(
            "memory_out_of_memory",
            "1 while this RM sees a worker's memory pool blocked",
            m.out_of_memory.clone(),
        );
        registry.register(
            "memory_oom_episodes",
            "Out-of-memory episodes this RM has seen begin",
            m.episodes.clone(),
        );
        registry.register(
            "memory_out_of_memory_seconds",
            "Time this RM has seen the cluster out of memory",
            m.out_of_memory_seconds.clone(),
        );
        registry.register(
            "memory_kills",
            "Queries killed for memory by this RM as leader, by policy or limit",
            m.kills.clone(),
        );
        registry.register(
            "memory_freed_bytes",
            "Memory a killed query held, counted when it is seen free",
            m.freed_bytes.clone(),
        );
        m
    }

    pub fn set_out_of_memory(&self, yes: bool) {
        self.out_of_memory.set(yes as i64);
    }

    pub fn episode_started(&self) {
        self.episodes.inc();
    }

    pub fn out_of_memory_time(&self, ms: u64) {
        self.out_of_memory_seconds.inc_by(ms as f64 / 1000.0);
    }

    pub fn killed(&self, reason: &str) {
        self.kills
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }

    pub fn freed(&self, bytes: u64) {
        self.freed_bytes.observe(bytes as f64);
    }
}

/// Buckets from 50 µs to ~1.6 s: fsync on NVMe to a slow election.
fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.00005, 2.0, 16)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("raft_rm");
        let fsync_seconds = Histogram::new(latency_buckets());
        let commit_seconds = Histogram::new(latency_buckets());
        let fsync_batch = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 10),
        );
        registry.register(
            "fsync_batch_size",
            "Durability requests (appends, votes, snapshots) completed by one fsync",
            fsync_batch.clone(),
        );
        let auth_failures = Counter::default();
        registry.register(
            "fsync_latency_seconds",
            "Time of one durability point (sled flush + fdatasync)",
            fsync_seconds.clone(),
        );
        registry.register(
            "commit_latency_seconds",
            "Time from proposing a write on the leader to it being applied",
            commit_seconds.clone(),
        );
        registry.register(
            "auth_failures",
            "Requests refused for a missing or wrong shared secret",
            auth_failures.clone(),
        );
        let mut gauge = |name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let term = gauge("raft_term", "Current Raft term");
        let is_leader = gauge("raft_is_leader", "1 if this node is the leader");
        let leader_id = gauge("raft_leader_id", "Known leader id, -1 if none");
        let last_log_index = gauge("raft_last_log_index", "Index of the last log entry");
        let applied_index = gauge("raft_applied_index", "Index of the last applied entry");
        let snapshot_index = gauge(
            "raft_snapshot_index",
            "Index covered by the latest snapshot",
        );
        let memory = MemoryMetrics::register(&mut registry);
        Self {
            registry,
            fsync_seconds,
            fsync_batch,
            commit_seconds,
            auth_failures,
            term,
            is_leader,
            leader_id,
            last_log_index,
            applied_index,
            snapshot_index,
            memory,
        }
    }

    /// One fsync that completed `waiters` durability requests.
    pub fn observe_fsync(&self, d: Duration, waiters: usize) {
        self.fsync_seconds.observe(d.as_secs_f64());
        self.fsync_batch.observe(waiters as f64);
    }

    pub fn observe_commit(&self, d: Duration) {
        self.commit_seconds.observe(d.as_secs_f64());
    }

    pub fn auth_failed(&self) {
        self.auth_failures.inc();
    }

    /// Prometheus text exposition, with Raft gauges refreshed from `raft`.
    pub fn render(&self, raft: &Raft) -> String {
        let rm = raft.metrics().borrow().clone();
        let idx = |v: Option<u64>| v.map(|i| i as i64).unwrap_or(-1);
        self.term.set(rm.current_term as i64);
        self.is_leader
            .set((rm.current_leader == Some(rm.id)) as i64);
        self.leader_id
            .set(rm.current_leader.map(|l| l as i64).unwrap_or(-1));
        self.last_log_index.set(idx(rm.last_log_index));
        self.applied_index
            .set(idx(rm.last_applied.map(|l| l.index)));
        self.snapshot_index.set(idx(rm.snapshot.map(|l| l.index)));
        self.render_registry()
    }

    /// The registry as Prometheus text, without refreshing Raft gauges.
    pub fn render_registry(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
