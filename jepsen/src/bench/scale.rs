//! `jepsen bench scale`: how the size of the replicated state costs.
//!
//! 1,000 linearizable leaf groups under one root, each with room for one
//! running query: the first acquire of a group is admitted, every later one
//! queues. Filling 100,000 queued queries concurrently, the bench measures
//! acquire latency as the state grows (per tenth of the fill); then, on
//! the full state, a snapshot built on the leader on demand
//! (`POST /v1/admin/snapshot`), its size, and its install on a new node
//! that joins as a learner after the leader has purged its log, so only
//! the snapshot can catch it up; and the RMs' resident memory.
//!
//! Targets: snapshot build plus install under 2 s, and the
//! leader's resident memory under 300 MB.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::bench::{bench_session, counted_loop, Outcome};
use crate::cluster::{ClusterSpec, LocalCluster, Target};
use crate::prometheus::value;
use crate::rm_client::{RmClient, SnapshotReport};
use crate::stats::{summarize, Summary};

/// The root group; leaves are `scale.u0` .. `scale.u{groups-1}`.
const ROOT: &str = "scale";

/// How long one snapshot build, or one learner's catch-up, may take
/// before the bench gives up on it.
const SLOW_STATE_TIMEOUT: Duration = Duration::from_secs(300);

/// An acquire that fails (a leader change, a timeout) is retried with the
/// same query id, which is idempotent, this many times.
const ATTEMPTS: usize = 20;

/// The targets.
pub const SNAPSHOT_TARGET_MS: f64 = 2000.0;
pub const RSS_TARGET_MB: f64 = 300.0;

/// The bench's shape: `queued` queries left queued across `groups` leaves
/// by `clients` concurrent clients.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spec {
    pub queued: u64,
    pub groups: u64,
    pub clients: usize,
}

impl Spec {
    /// Acquires to send: one per group is admitted (limit 1), so `queued`
    /// stay queued.
    pub fn acquires(&self) -> u64 {
        self.queued + self.groups
    }

    /// Acquires per leaf group (query `n` goes to leaf `n % groups`).
    fn per_group(&self) -> u64 {
        self.acquires().div_ceil(self.groups)
    }

    /// The resource-groups file: a root over `groups` leaves, each running
    /// one query and queueing the rest of its share.
    pub fn resource_groups(&self) -> String {
        let leaves: Vec<_> = (0..self.groups)
            .map(|i| {
                serde_json::json!({"name": format!("u{i}"), "hardConcurrencyLimit": 1,
                    "maxQueued": self.per_group()})
            })
            .collect();
        serde_json::json!({"rootGroups": [{"name": ROOT, "hardConcurrencyLimit": self.groups,
            "maxQueued": self.acquires(), "subGroups": leaves}]})
        .to_string()
    }

    /// Flags for every RM. A fill of this size can take minutes, longer
    /// than the default queue timeout (5 min), after which the first
    /// queued queries would fail and leave the state. And the leader keeps
    /// only a few entries behind a snapshot (1000 by default), so that the
    /// learner that joins after it must be sent the snapshot however few
    /// entries the fill took (concurrent acquires share entries).
    pub fn rm_args() -> Vec<String> {
        [
            "--queue-timeout-ms",
            "3600000",
            "--keep-logs-after-snapshot",
            "10",
        ]
        .map(String::from)
        .to_vec()
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Fill {
    pub seconds: f64,
    pub acquires_per_sec: f64,
    pub admitted: u64,
    pub queued: u64,
    pub rejected: u64,
    /// Acquires that failed every attempt.
    pub failed: u64,
    /// Failed attempts (each retried).
    pub errors: usize,
    /// The root group's queued count afterwards (a linearizable read).
    pub root_queued: u64,
    pub root_running: u64,
}

/// Acquire latency over one tenth of the fill (by query number, so by how
/// large the state was when the acquire was sent).
#[derive(Debug, Serialize)]
pub struct Tenth {
    pub from_pct: u64,
    pub to_pct: u64,
    pub latency: Option<Summary>,
}

#[derive(Debug, Serialize)]
pub struct Install {
    pub node: u64,
    /// From add-learner to the learner having applied the snapshot's
    /// index: transfer, install and the log after it.
    pub join_ms: f64,
    /// The learner's `raft_rm_snapshot_install_seconds`: decode, checks,
    /// durable write, adoption, once transferred.
    pub install_ms: f64,
    pub bytes: u64,
}

/// Resident memory of one RM, from `/proc/<pid>/status`.
#[derive(Debug, Serialize)]
pub struct Memory {
    pub node: u64,
    pub leader: bool,
    pub rss_mb: f64,
    /// Peak resident memory (`VmHWM`).
    pub peak_mb: f64,
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let role = if self.leader { " (leader)" } else { "" };
        write!(
            f,
            "n{}{role}: resident {:.0} MB, peak {:.0} MB",
            self.node, self.rss_mb, self.peak_mb
        )
    }
}

#[derive(Debug, Serialize)]
pub struct Targets {
    pub build_plus_install_ms: f64,
    pub snapshot_under_2s: bool,
    pub leader_rss_mb: f64,
    pub rss_under_300mb: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub spec: Spec,
    pub fill: Fill,
    pub latency_by_fill: Vec<Tenth>,
    pub snapshot: SnapshotReport,
    pub install: Install,
    /// Right after the fill, before the snapshot.
    pub memory_after_fill: Vec<Memory>,
    /// At the end, the learner included.
    pub memory_at_end: Vec<Memory>,
    pub targets: Targets,
}

/// What an acquire answered, counted across clients.
#[derive(Default)]
struct Statuses {
    admitted: AtomicU64,
    queued: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
}

/// Runs the bench on `c`, started with [`Spec::resource_groups`] and
/// [`Spec::rm_args`]; prints as it goes.
pub async fn run(c: &mut LocalCluster, spec: Spec) -> Result<Report> {
    println!(
        "scale: {} queued across {} groups ({} acquires, {} clients)",
        spec.queued,
        spec.groups,
        spec.acquires(),
        spec.clients
    );
    let (fill, latency_by_fill, leader) = fill(c, spec).await?;
    let leader_id = node_id(c, &leader)?;
    let memory_after_fill = memory(c, leader_id);
    let admin = c.client.with_timeout(SLOW_STATE_TIMEOUT);
    let snapshot = admin
        .snapshot_now(&leader, SLOW_STATE_TIMEOUT - Duration::from_secs(5))
        .await
        .context("snapshot on the leader")?;
    println!(
        "snapshot on the leader n{}: index {:?}, {:.1} MB, build {:.0} ms ({} ms with the wait)",
        snapshot.node_id,
        snapshot.snapshot_index,
        snapshot.bytes as f64 / 1e6,
        snapshot.build_ms,
        snapshot.elapsed_ms
    );
    let install = join_learner(c, &admin, &leader, &snapshot).await?;
    println!(
        "install on the new learner n{}: {:.0} ms ({:.1} MB); join (transfer, install, log after) {:.0} ms",
        install.node,
        install.install_ms,
        install.bytes as f64 / 1e6,
        install.join_ms
    );
    let memory_at_end = memory(c, leader_id);
    for m in &memory_at_end {
        println!("{m}");
    }
    let leader_rss_mb = memory_at_end
        .iter()
        .find(|m| m.leader)
        .map_or(f64::NAN, |m| m.rss_mb);
    let build_plus_install_ms = snapshot.build_ms + install.install_ms;
    let targets = Targets {
        build_plus_install_ms,
        snapshot_under_2s: build_plus_install_ms < SNAPSHOT_TARGET_MS,
        leader_rss_mb,
        rss_under_300mb: leader_rss_mb < RSS_TARGET_MB,
    };
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "targets: build + install {:.0} ms < {SNAPSHOT_TARGET_MS:.0} ms: {}; leader resident {:.0} MB < {RSS_TARGET_MB:.0} MB: {}",
        build_plus_install_ms,
        verdict(targets.snapshot_under_2s),
        leader_rss_mb,
        verdict(targets.rss_under_300mb)
    );
    Ok(Report {
        spec,
        fill,
        latency_by_fill,
        snapshot,
        install,
        memory_after_fill,
        memory_at_end,
        targets,
    })
}

impl Report {
    /// Whether the run did what it set out to (not whether it met the
    /// targets): every acquire answered, the state as large as planned.
    pub fn check(&self) -> Result<()> {
        let f = &self.fill;
        if f.failed > 0 || f.rejected > 0 {
            bail!(
                "{} acquires failed and {} were rejected",
                f.failed,
                f.rejected
            );
        }
        if f.root_queued != self.spec.queued {
            bail!(
                "the root group holds {} queued queries, expected {}",
                f.root_queued,
                self.spec.queued
            );
        }
        Ok(())
    }
}

/// Sends every acquire; answers the fill's figures, latency per tenth and
/// the leader's address.
async fn fill(c: &LocalCluster, spec: Spec) -> Result<(Fill, Vec<Tenth>, String)> {
    let (addr, session, renewal) = bench_session(c, "bench-scale").await?;
    let statuses = Arc::new(Statuses::default());
    let total = spec.acquires();
    let done = Arc::new(AtomicU64::new(0));
    let progress = tokio::spawn(report_progress(done.clone(), total));
    let op = {
        let (client, addr, statuses) = (c.client.clone(), addr.clone(), statuses.clone());
        move |_, n| {
            let (client, addr, statuses) = (client.clone(), addr.clone(), statuses.clone());
            async move {
                let group = format!("{ROOT}.u{}", n % spec.groups);
                acquire(&client, &addr, &format!("s{n}"), &group, session, &statuses).await
            }
        }
    };
    let run = counted_loop(spec.clients, total, done, op).await;
    progress.abort();
    drop(renewal);
    let run = run?;
    let latencies: Vec<Option<Duration>> = run.outcomes.iter().map(|o| o.first).collect();
    let tenths = (0..10)
        .map(|i| {
            let range = (total * i / 10) as usize..(total * (i + 1) / 10) as usize;
            let samples: Vec<Duration> = latencies[range].iter().flatten().copied().collect();
            Tenth {
                from_pct: i * 10,
                to_pct: (i + 1) * 10,
                latency: summarize(&samples),
            }
        })
        .collect::<Vec<_>>();
    let (root_queued, root_running) = root_counts(&c.client, &addr).await?;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let fill = Fill {
        seconds: run.seconds,
        acquires_per_sec: total as f64 / run.seconds,
        admitted: get(&statuses.admitted),
        queued: get(&statuses.queued),
        rejected: get(&statuses.rejected),
        failed: get(&statuses.failed),
        errors: run.outcomes.iter().map(|o| o.errors).sum(),
        root_queued,
        root_running,
    };
    println!(
        "fill: {} acquires in {:.1} s ({:.0}/s): {} admitted, {} queued, {} rejected, {} failed ({} retried errors); root group: {} running, {} queued",
        total, fill.seconds, fill.acquires_per_sec, fill.admitted, fill.queued, fill.rejected,
        fill.failed, fill.errors, fill.root_running, fill.root_queued
    );
    println!("acquire latency as the state grows:");
    for t in &tenths {
        let ms = |f: fn(&Summary) -> f64| t.latency.as_ref().map_or(0.0, f);
        println!(
            "  {:>3}-{:>3}%: p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms",
            t.from_pct,
            t.to_pct,
            ms(|s| s.p50_ms),
            ms(|s| s.p99_ms),
            ms(|s| s.max_ms)
        );
    }
    Ok((fill, tenths, addr))
}

/// One acquire of `q`, retried with the same id on errors; its latency
/// (retries included) is `first`.
async fn acquire(
    client: &RmClient,
    addr: &str,
    q: &str,
    group: &str,
    session: u64,
    statuses: &Statuses,
) -> Outcome {
    let start = Instant::now();
    let mut errors = 0;
    for _ in 0..ATTEMPTS {
        match client.acquire(addr, q, group, session).await {
            Ok(a) => {
                let counter = match a.status {
                    crate::rm_client::AcquireStatus::Admitted => &statuses.admitted,
                    crate::rm_client::AcquireStatus::Queued => &statuses.queued,
                    crate::rm_client::AcquireStatus::Rejected => &statuses.rejected,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                return Outcome {
                    first: Some(start.elapsed()),
                    second: None,
                    errors,
                };
            }
            Err(e) => {
                errors += 1;
                tracing::debug!(query = q, error = %e, "acquire failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    statuses.failed.fetch_add(1, Ordering::Relaxed);
    Outcome {
        errors,
        ..Default::default()
    }
}

/// Prints the fill's progress every 10 s until aborted.
async fn report_progress(done: Arc<AtomicU64>, total: u64) {
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let d = done.load(Ordering::Relaxed);
        println!(
            "  ... {d}/{total} acquires after {:.0} s",
            start.elapsed().as_secs_f64()
        );
    }
}

/// The root group's queued and running counts, read linearizably.
async fn root_counts(client: &RmClient, addr: &str) -> Result<(u64, u64)> {
    let view = client.resource_groups(addr).await?;
    let root = view
        .group(ROOT)
        .with_context(|| format!("no group {ROOT} in the view"))?;
    Ok((u64::from(root.queued), u64::from(root.running)))
}

/// Starts a new RM as a learner and waits until it has installed the
/// leader's snapshot and applied past it.
async fn join_learner(
    c: &mut LocalCluster,
    admin: &RmClient,
    leader: &str,
    snapshot: &SnapshotReport,
) -> Result<Install> {
    let id = c.addrs.keys().max().copied().unwrap_or(0) + 1;
    let addr = c.new_rm_addr(id)?;
    c.launch_joining(id, &addr)?;
    let start = Instant::now();
    admin
        .add_learner(leader, id, &addr)
        .await
        .with_context(|| format!("adding n{id} as a learner"))?;
    let target = snapshot.snapshot_index.unwrap_or(0);
    let deadline = start + SLOW_STATE_TIMEOUT;
    loop {
        let applied = c
            .client
            .health(&addr)
            .await
            .ok()
            .and_then(|h| h.last_applied);
        if applied >= Some(target) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "learner n{id} applied {applied:?} after {SLOW_STATE_TIMEOUT:?}, wanted {target}"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let join_ms = start.elapsed().as_secs_f64() * 1000.0;
    let text = c.client.metrics(&addr).await?;
    let gauge = |name: &str| value(&text, name, &[]).unwrap_or(0.0);
    if gauge("raft_rm_snapshots_installed_total") < 1.0 {
        bail!("learner n{id} caught up from the log, not from a snapshot: nothing to measure (was the log purged?)");
    }
    Ok(Install {
        node: id,
        join_ms,
        install_ms: gauge("raft_rm_snapshot_install_seconds") * 1000.0,
        bytes: gauge("raft_rm_snapshot_bytes") as u64,
    })
}

fn node_id(c: &LocalCluster, addr: &str) -> Result<u64> {
    c.addrs
        .iter()
        .find(|(_, a)| a.as_str() == addr)
        .map(|(id, _)| *id)
        .with_context(|| format!("no RM at {addr}"))
}

/// Resident memory of every running RM.
pub fn memory(c: &LocalCluster, leader: u64) -> Vec<Memory> {
    c.addrs
        .keys()
        .filter_map(|id| {
            let pid = c.pid(&Target::Rm(*id))?;
            let (rss, peak) = common::cpu::resident_kb(u32::try_from(pid).ok()?)?;
            Some(Memory {
                node: *id,
                leader: *id == leader,
                rss_mb: rss as f64 / 1024.0,
                peak_mb: peak as f64 / 1024.0,
            })
        })
        .collect()
}

/// `jepsen bench scale`: the run on RMs with the spec's groups, saved, then
/// checked against its targets.
pub async fn command(template: &ClusterSpec, spec: Spec) -> Result<()> {
    let mut b = super::start_cluster(
        template,
        "bench-scale",
        Some(&spec.resource_groups()),
        &Spec::rm_args(),
    )?;
    let report = run(&mut b.cluster, spec).await?;
    crate::store::save_results(&b.dir, &report)?;
    report.check()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_hold_the_planned_queue_and_no_more() {
        let spec = Spec {
            queued: 95,
            groups: 10,
            clients: 4,
        };
        let v: serde_json::Value = serde_json::from_str(&spec.resource_groups()).unwrap();
        let root = &v["rootGroups"][0];
        assert_eq!(root["name"], ROOT);
        assert_eq!(root["subGroups"].as_array().unwrap().len(), 10);
        // 105 acquires over 10 leaves: at most 11 each, 1 running.
        assert_eq!(root["subGroups"][3]["maxQueued"], 11);
        assert_eq!(root["maxQueued"], 105);
    }
}
