//! Prometheus metrics of one node. Raft gauges (term, role, leader, indices)
//! are read from openraft's metrics at scrape time; latency histograms and
//! counters are recorded where things happen. What a scrape cannot see
//! (every change of leader, when openraft last reported a quorum ack) is
//! followed by [`follow_raft`], a task on openraft's metrics channel.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::{NodeId, Raft};

pub mod groups;

pub struct Metrics {
    registry: Registry,
    fsync_seconds: Histogram,
    fsync_batch: Histogram,
    commit_seconds: Histogram,
    proposal_batch: Histogram,
    auth_failures: Counter,
    usage_groups_rejected: Counter,
    proposals_abandoned: Counter,
    proposals_refused: Counter,
    usage_stamps: Counter,
    early_appends: Counter,
    term: Gauge,
    is_leader: Gauge,
    leader_id: Gauge,
    last_log_index: Gauge,
    applied_index: Gauge,
    snapshot_index: Gauge,
    leader_changes: Counter,
    leader_contact_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    admission_errors: Family<Vec<(String, String)>, Counter>,
    /// What [`Metrics::leader_contact_age`] is computed from.
    contact: Mutex<LeaderContact>,
    pub memory: MemoryMetrics,
    pub snapshot: SnapshotMetrics,
    /// Series of groups whose spec sets `jmxExport` (see [`groups`]).
    pub groups: std::sync::Arc<groups::GroupMetrics>,
}

/// This node's evidence that a leader is alive, for
/// `raft_rm_leader_changes_total` and `raft_rm_leader_contact_age_seconds`.
struct LeaderContact {
    /// The last leader openraft reported (`None` reports are skipped, so a
    /// leader that comes back after an election gap is not a change).
    last_leader: Option<NodeId>,
    /// While this node leads: openraft's `millis_since_quorum_ack` and
    /// when that report was seen. openraft computes the figure when it
    /// reports, so the age at a later scrape adds the time since then.
    quorum_ack: Option<(u64, Instant)>,
    /// Process start: the age before any contact at all.
    started: Instant,
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

/// The latest snapshot this node built, installed or loaded (see
/// [`crate::store::state_machine`]): what an operator sizes snapshot
/// transfers and catch-up time by. Gauges of the last one, because a
/// snapshot is rare (every `snapshot-every` entries) and its cost grows
/// with the state, so the latest is the figure that matters.
pub struct SnapshotMetrics {
    build_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    install_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    bytes: Gauge,
    built: Counter,
    installed: Counter,
}

impl SnapshotMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = SnapshotMetrics {
            build_seconds: Gauge::default(),
            install_seconds: Gauge::default(),
            bytes: Gauge::default(),
            built: Counter::default(),
            installed: Counter::default(),
        };
        registry.register(
            "snapshot_build_seconds",
            "Time the last snapshot this node built took: copy of the state, encoding, durable write",
            m.build_seconds.clone(),
        );
        registry.register(
            "snapshot_install_seconds",
            "Time the last snapshot this node received took to install once transferred: decoding, checks, durable write, adoption",
            m.install_seconds.clone(),
        );
        registry.register(
            "snapshot_bytes",
            "Encoded size of the latest snapshot this node built, installed or loaded at start",
            m.bytes.clone(),
        );
        registry.register(
            "snapshots_built",
            "Snapshots this node built",
            m.built.clone(),
        );
        registry.register(
            "snapshots_installed",
            "Snapshots this node installed from a leader",
            m.installed.clone(),
        );
        m
    }

    pub fn built(&self, took: Duration, bytes: usize) {
        self.build_seconds.set(took.as_secs_f64());
        self.bytes.set(bytes as i64);
        self.built.inc();
    }

    pub fn installed(&self, took: Duration, bytes: usize) {
        self.install_seconds.set(took.as_secs_f64());
        self.bytes.set(bytes as i64);
        self.installed.inc();
    }

    /// The snapshot found in the data dir at start.
    pub fn loaded(&self, bytes: usize) {
        self.bytes.set(bytes as i64);
    }

    /// Duration of the last build and size of the latest snapshot (the
    /// one just built, right after a build); zero before any.
    pub fn last_build(&self) -> (Duration, u64) {
        (
            Duration::from_secs_f64(self.build_seconds.get()),
            self.bytes.get().max(0) as u64,
        )
    }

    /// Snapshots built since start.
    pub fn builds(&self) -> u64 {
        self.built.get()
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
            "Time of one durability point: fdatasync of the log segments written, and sled flush + fdatasync when sled was written",
            fsync_seconds.clone(),
        );
        registry.register(
            "commit_latency_seconds",
            "Time from proposing a write on the leader to it being applied",
            commit_seconds.clone(),
        );
        let proposal_batch = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 10),
        );
        registry.register(
            "proposal_batch_size",
            "Commands committed in one log entry by the leader's group commit",
            proposal_batch.clone(),
        );
        registry.register(
            "auth_failures",
            "Requests refused for a missing or wrong shared secret",
            auth_failures.clone(),
        );
        let usage_groups_rejected = Counter::default();
        registry.register(
            "usage_groups_rejected",
            "Group entries dropped from usage reports for an invalid group id (the rest of each report is applied)",
            usage_groups_rejected.clone(),
        );
        let proposals_abandoned = Counter::default();
        registry.register(
            "proposals_abandoned",
            "Batchable commands dropped before proposal because their caller had given up (timed out or hung up)",
            proposals_abandoned.clone(),
        );
        let usage_stamps = Counter::default();
        registry.register(
            "usage_stamps",
            "Usage stamps (running queries' memory and CPU) this RM committed as leader",
            usage_stamps.clone(),
        );
        let early_appends = Counter::default();
        registry.register(
            "early_appends",
            "AppendEntries this leader sent to a follower while its own fsync of the entries ran (early replication)",
            early_appends.clone(),
        );
        let proposals_refused = Counter::default();
        registry.register(
            "proposals_refused",
            "Batchable commands refused at once because the leader's proposal queue was full (answered 503)",
            proposals_refused.clone(),
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
        let leader_changes = Counter::default();
        registry.register(
            "leader_changes",
            "Times the leader this node knows changed to a different node (the first leader it learns counts)",
            leader_changes.clone(),
        );
        let leader_contact_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "leader_contact_age_seconds",
            "Leader: time since a quorum last acknowledged it; otherwise: time since it last accepted AppendEntries from a leader (since process start if never)",
            leader_contact_age.clone(),
        );
        let admission_errors = Family::default();
        registry.register(
            "admission_errors",
            "Error answers of coordinator-facing routes, by route and kind, counted on the node the client called",
            admission_errors.clone(),
        );
        let memory = MemoryMetrics::register(&mut registry);
        let snapshot = SnapshotMetrics::register(&mut registry);
        let groups = std::sync::Arc::new(groups::GroupMetrics::default());
        registry.register_collector(Box::new(groups::GroupCollector(groups.clone())));
        Self {
            registry,
            fsync_seconds,
            fsync_batch,
            commit_seconds,
            proposal_batch,
            auth_failures,
            usage_groups_rejected,
            proposals_abandoned,
            proposals_refused,
            usage_stamps,
            early_appends,
            term,
            is_leader,
            leader_id,
            last_log_index,
            applied_index,
            snapshot_index,
            leader_changes,
            leader_contact_age,
            admission_errors,
            contact: Mutex::new(LeaderContact {
                last_leader: None,
                quorum_ack: None,
                started: Instant::now(),
            }),
            memory,
            snapshot,
            groups,
        }
    }

    fn contact(&self) -> std::sync::MutexGuard<'_, LeaderContact> {
        // The data stays consistent whatever a panicking holder did.
        self.contact.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaders this node has seen take over since it started.
    pub fn leader_changes(&self) -> u64 {
        self.leader_changes.get()
    }

    /// One report from openraft, seen at `now`: counts a change of leader
    /// and keeps the leader's quorum-ack age.
    pub fn raft_reported(&self, leader: Option<NodeId>, quorum_ack_ms: Option<u64>, now: Instant) {
        let mut c = self.contact();
        if leader.is_some() && leader != c.last_leader {
            c.last_leader = leader;
            self.leader_changes.inc();
        }
        c.quorum_ack = quorum_ack_ms.map(|ms| (ms, now));
    }

    /// The leader contact age at `now`: on a leader with a quorum ack, the
    /// time since that ack; otherwise the time since `last_append` (when
    /// this node last accepted a leader's AppendEntries, kept by the
    /// election signals), or since the process started. Always a number
    /// (Prometheus has no "unknown"), and never smaller than the truth, so
    /// an alert on it cannot miss a silent leader.
    pub fn leader_contact_age(
        &self,
        is_leader: bool,
        last_append: Option<Instant>,
        now: Instant,
    ) -> Duration {
        let c = self.contact();
        if let (true, Some((ms, seen))) = (is_leader, c.quorum_ack) {
            return Duration::from_millis(ms) + now.saturating_duration_since(seen);
        }
        now.saturating_duration_since(last_append.unwrap_or(c.started))
    }

    /// An error answer of a coordinator-facing route.
    pub fn admission_error(&self, route: &str, kind: &str) {
        self.admission_errors
            .get_or_create(&vec![
                ("route".to_string(), route.to_string()),
                ("kind".to_string(), kind.to_string()),
            ])
            .inc();
    }

    /// One fsync that completed `waiters` durability requests.
    pub fn observe_fsync(&self, d: Duration, waiters: usize) {
        self.fsync_seconds.observe(d.as_secs_f64());
        self.fsync_batch.observe(waiters as f64);
    }

    pub fn observe_commit(&self, d: Duration) {
        self.commit_seconds.observe(d.as_secs_f64());
    }

    pub fn observe_proposal_batch(&self, commands: usize) {
        self.proposal_batch.observe(commands as f64);
    }

    pub fn auth_failed(&self) {
        self.auth_failures.inc();
    }

    pub fn proposals_abandoned(&self, commands: usize) {
        self.proposals_abandoned.inc_by(commands as u64);
    }

    pub fn proposal_refused(&self) {
        self.proposals_refused.inc();
    }

    pub fn usage_stamped(&self) {
        self.usage_stamps.inc();
    }

    pub fn early_append_sent(&self) {
        self.early_appends.inc();
    }

    pub fn usage_groups_rejected(&self, groups: usize) {
        self.usage_groups_rejected.inc_by(groups as u64);
    }

    /// Prometheus text exposition, with Raft gauges refreshed from `raft`
    /// and the leader contact age from `last_append` (see
    /// [`Metrics::leader_contact_age`]).
    /// `groups`: the `jmxExport` groups' figures at this scrape (see
    /// [`groups::scrape`]).
    pub fn render(
        &self,
        raft: &Raft,
        last_append: Option<Instant>,
        groups: groups::Scrape,
    ) -> String {
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
        let is_leader = rm.current_leader == Some(rm.id);
        self.leader_contact_age.set(
            self.leader_contact_age(is_leader, last_append, Instant::now())
                .as_secs_f64(),
        );
        self.groups.with_scrape(groups, || self.render_registry())
    }

    /// The registry as Prometheus text, without refreshing Raft gauges.
    pub fn render_registry(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Follows openraft's metrics channel until `stop`: every report goes to
/// [`Metrics::raft_reported`]. openraft reports once per turn of its event
/// loop (at least every 1.5 heartbeat intervals); a scrape only sees the
/// latest, so a leader change between two scrapes would be missed there.
pub async fn follow_raft(
    metrics: std::sync::Arc<Metrics>,
    raft: Raft,
    mut stop: watch::Receiver<bool>,
) {
    let mut reports = raft.metrics();
    loop {
        {
            let m = reports.borrow_and_update();
            metrics.raft_reported(m.current_leader, m.millis_since_quorum_ack, Instant::now());
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            changed = reports.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line that starts with `series ` in `text`.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    #[test]
    fn leader_changes_count_new_leaders_only() {
        let m = Metrics::new();
        let t = Instant::now();
        let changes = |m: &Metrics| sample(&m.render_registry(), "raft_rm_leader_changes_total");
        assert_eq!(changes(&m), Some(0.0));
        m.raft_reported(None, None, t);
        assert_eq!(changes(&m), Some(0.0), "no leader yet is not a change");
        m.raft_reported(Some(1), None, t);
        m.raft_reported(Some(1), None, t);
        assert_eq!(
            changes(&m),
            Some(1.0),
            "the first leader learned counts once"
        );
        m.raft_reported(None, None, t);
        m.raft_reported(Some(1), None, t);
        assert_eq!(
            changes(&m),
            Some(1.0),
            "an election that re-elects 1 is no change"
        );
        m.raft_reported(None, None, t);
        m.raft_reported(Some(2), None, t);
        m.raft_reported(Some(3), None, t);
        assert_eq!(changes(&m), Some(3.0));
    }

    #[test]
    fn leader_contact_age_follows_appends_on_a_follower_and_quorum_acks_on_a_leader() {
        let m = Metrics::new();
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        // Never contacted: counts from process start.
        assert!(m.leader_contact_age(false, None, t0 + secs(7)) >= secs(7));
        let contact = Some(t0 + secs(10));
        assert_eq!(m.leader_contact_age(false, contact, t0 + secs(12)), secs(2));
        // A leader without a quorum ack yet falls back to its last append.
        assert_eq!(m.leader_contact_age(true, contact, t0 + secs(13)), secs(3));
        // Reported as leader 250 ms after its last ack, seen at t0 + 20 s.
        m.raft_reported(Some(1), Some(250), t0 + secs(20));
        assert_eq!(
            m.leader_contact_age(true, contact, t0 + secs(21)),
            Duration::from_millis(1250)
        );
        // Demoted: the follower figure again.
        m.raft_reported(Some(2), None, t0 + secs(22));
        assert_eq!(
            m.leader_contact_age(false, contact, t0 + secs(22)),
            secs(12)
        );
        let contact = Some(t0 + secs(22));
        assert_eq!(m.leader_contact_age(false, contact, t0 + secs(22)), secs(0));
    }

    #[test]
    fn admission_errors_are_counted_by_route_and_kind() {
        let m = Metrics::new();
        m.admission_error("/v1/admission/acquire", "bad_request");
        m.admission_error("/v1/admission/acquire", "bad_request");
        m.admission_error("/v1/sessions/renew", "session_expired");
        let text = m.render_registry();
        assert_eq!(
            sample(
                &text,
                r#"raft_rm_admission_errors_total{route="/v1/admission/acquire",kind="bad_request"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"raft_rm_admission_errors_total{route="/v1/sessions/renew",kind="session_expired"}"#
            ),
            Some(1.0),
            "{text}"
        );
    }
}
