//! `jepsen bench disk`: does the data dir stay bounded?
//!
//! Acquire/release cycles (each a fresh query id in the wide `bench`
//! group, so every acquire is admitted and released) against the leader,
//! with the nodes' default snapshot policy: a snapshot every 5000 applied
//! entries, after which openraft purges the log behind it but for the last
//! 1000. Every CYCLES/SAMPLES cycles the bench measures each RM's data dir
//! (the sum of its files' sizes, and the blocks allocated to them) and the
//! live state's size, the latest snapshot's (`raft_rm_snapshot_bytes`).
//! At the end every RM builds a snapshot on demand, and the dirs are
//! measured again after a few idle seconds.
//!
//! Target: bounded, under 10x the live state after 1,000,000
//! cycles.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::bench::scale::{memory, Memory};
use crate::bench::{admission_cycle, bench_session, counted_loop};
use crate::cluster::{ClusterSpec, LocalCluster};
use crate::prometheus::value;
use crate::rm_client::RmClient;
use crate::stats::{summarize, Summary};

/// The target: the data dir under this multiple of the live
/// state.
pub const RATIO_TARGET: f64 = 10.0;

/// Idle time before the last measurement, so that what sled reclaims in
/// the background after the final snapshots shows.
const SETTLE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spec {
    pub cycles: u64,
    pub clients: usize,
    pub samples: u64,
}

/// One RM's data dir and live state at one sample.
#[derive(Debug, Clone, Serialize)]
pub struct NodeDisk {
    pub node: u64,
    /// Sum of the sizes of the files in the data dir.
    pub dir_bytes: u64,
    /// Blocks allocated to them (what `du` shows), in bytes.
    pub allocated_bytes: u64,
    pub files: u64,
    /// Encoded size of the node's latest snapshot (0 before the first).
    pub snapshot_bytes: u64,
    pub snapshot_index: Option<u64>,
    /// The larger of `dir_bytes` and `allocated_bytes` over
    /// `snapshot_bytes`, once there is a snapshot.
    pub ratio: Option<f64>,
}

impl NodeDisk {
    fn size(&self) -> u64 {
        self.dir_bytes.max(self.allocated_bytes)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub label: String,
    pub cycles: u64,
    pub seconds: f64,
    /// Cycles per second since the previous sample.
    pub cycles_per_sec: f64,
    pub nodes: Vec<NodeDisk>,
    pub max_ratio: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Target {
    /// The largest ratio at the end of the load (before the final
    /// on-demand snapshots).
    pub max_ratio: Option<f64>,
    pub under_10x: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub spec: Spec,
    pub seconds: f64,
    pub cycles_per_sec: f64,
    /// Cycles acquired and released.
    pub completed: usize,
    pub errors: usize,
    pub acquire_latency: Option<Summary>,
    pub release_latency: Option<Summary>,
    /// During the load, then `end` (the load done), then `snapshot`
    /// (every RM built one on demand, then idled).
    pub samples: Vec<Sample>,
    pub memory: Vec<Memory>,
    pub target: Target,
}

impl Report {
    /// Whether the run did what it set out to: nearly every cycle went
    /// through, and the live state was measured.
    pub fn check(&self) -> Result<()> {
        let wanted = self.spec.cycles as f64 * 0.99;
        if (self.completed as f64) < wanted {
            bail!(
                "only {} of {} cycles completed ({} errors)",
                self.completed,
                self.spec.cycles,
                self.errors
            );
        }
        if self.samples.last().and_then(|s| s.max_ratio).is_none() {
            bail!("no snapshot size to compare the data dirs with");
        }
        Ok(())
    }
}

/// Where the sampler finds the RMs: id, address, data dir.
#[derive(Clone)]
struct Nodes {
    client: RmClient,
    nodes: Vec<(u64, String, PathBuf)>,
}

impl Nodes {
    fn of(c: &LocalCluster) -> Nodes {
        Nodes {
            client: c.client.clone(),
            nodes: c
                .addrs
                .iter()
                .map(|(id, addr)| (*id, addr.clone(), c.dir().join(format!("n{id}"))))
                .collect(),
        }
    }

    async fn measure(&self) -> Vec<NodeDisk> {
        let mut out = Vec::new();
        for (id, addr, dir) in &self.nodes {
            let (dir_bytes, allocated_bytes, files) = dir_size(dir);
            let text = self.client.metrics(addr).await.unwrap_or_default();
            let snapshot_bytes = value(&text, "raft_rm_snapshot_bytes", &[]).unwrap_or(0.0) as u64;
            let snapshot_index = value(&text, "raft_rm_raft_snapshot_index", &[])
                .filter(|i| *i >= 0.0)
                .map(|i| i as u64);
            let mut d = NodeDisk {
                node: *id,
                dir_bytes,
                allocated_bytes,
                files,
                snapshot_bytes,
                snapshot_index,
                ratio: None,
            };
            d.ratio = (snapshot_bytes > 0).then(|| d.size() as f64 / snapshot_bytes as f64);
            out.push(d);
        }
        out
    }
}

/// Takes samples, prints each as a table row.
struct Sampler {
    nodes: Nodes,
    start: Instant,
    last: (u64, f64),
    samples: Vec<Sample>,
}

impl Sampler {
    async fn take(&mut self, label: &str, cycles: u64) {
        let seconds = self.start.elapsed().as_secs_f64();
        let nodes = self.nodes.measure().await;
        let max_ratio = nodes.iter().filter_map(|n| n.ratio).max_by(f64::total_cmp);
        let rate = (cycles - self.last.0) as f64 / (seconds - self.last.1).max(1e-3);
        self.last = (cycles, seconds);
        let s = Sample {
            label: label.to_string(),
            cycles,
            seconds,
            cycles_per_sec: rate,
            nodes,
            max_ratio,
        };
        println!("{}", row(&s));
        self.samples.push(s);
    }
}

fn header(nodes: &Nodes) -> String {
    let cols: Vec<String> = nodes
        .nodes
        .iter()
        .map(|(id, _, _)| format!("{:>8}", format!("n{id} MB")))
        .collect();
    format!(
        "{:<9} {:>9} {:>7} {:>8} {} {:>11} {:>9} {:>6}",
        "sample",
        "cycles",
        "secs",
        "cycles/s",
        cols.join(" "),
        "snapshot KB",
        "snap idx",
        "ratio"
    )
}

fn row(s: &Sample) -> String {
    let cols: Vec<String> = s
        .nodes
        .iter()
        .map(|n| format!("{:>8.1}", n.size() as f64 / 1e6))
        .collect();
    // The largest snapshot: nodes snapshot at slightly different indexes.
    let snap = s.nodes.iter().max_by_key(|n| n.snapshot_bytes);
    format!(
        "{:<9} {:>9} {:>7.0} {:>8.0} {} {:>11.1} {:>9} {:>6}",
        s.label,
        s.cycles,
        s.seconds,
        s.cycles_per_sec,
        cols.join(" "),
        snap.map_or(0.0, |n| n.snapshot_bytes as f64 / 1e3),
        snap.and_then(|n| n.snapshot_index)
            .map_or("-".into(), |i| i.to_string()),
        s.max_ratio.map_or("-".into(), |r| format!("{r:.1}x")),
    )
}

/// Runs the bench on `c`, started with [`crate::bench::bench_groups`].
pub async fn run(c: &LocalCluster, spec: Spec) -> Result<Report> {
    let (addr, session, renewal) = bench_session(c, "bench-disk").await?;
    let nodes = Nodes::of(c);
    println!(
        "disk: {} acquire/release cycles, {} clients, default snapshot policy",
        spec.cycles, spec.clients
    );
    println!("{}", header(&nodes));
    let mut sampler = Sampler {
        nodes: nodes.clone(),
        start: Instant::now(),
        last: (0, 0.0),
        samples: Vec::new(),
    };
    sampler.take("start", 0).await;
    let done = Arc::new(AtomicU64::new(0));
    let every = (spec.cycles / spec.samples.max(1)).max(1);
    let sampling = {
        let (done, total) = (done.clone(), spec.cycles);
        tokio::spawn(async move {
            let mut next = every;
            while done.load(Ordering::Relaxed) < total {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let d = done.load(Ordering::Relaxed);
                if d >= next && d < total {
                    sampler.take("load", d).await;
                    next = (d / every + 1) * every;
                }
            }
            sampler
        })
    };
    let op = {
        let rm = c.client.at(&addr);
        move |_, n| {
            let rm = rm.clone();
            async move { admission_cycle(&rm, &format!("d{n}"), "bench", session).await }
        }
    };
    let run = counted_loop(spec.clients, spec.cycles, done, op).await;
    drop(renewal);
    let run = run?;
    let mut sampler = sampling.await?;
    sampler.take("end", spec.cycles).await;
    let end_ratio = sampler.samples.last().and_then(|s| s.max_ratio);
    let admin = c.client.with_timeout(Duration::from_secs(120));
    for (id, addr, _) in &nodes.nodes {
        if let Err(e) = admin.snapshot_now(addr, Duration::from_secs(110)).await {
            println!("n{id}: snapshot on demand failed: {e}");
        }
    }
    tokio::time::sleep(SETTLE).await;
    sampler.take("snapshot", spec.cycles).await;
    let firsts: Vec<Duration> = run.outcomes.iter().filter_map(|o| o.first).collect();
    let seconds: Vec<Duration> = run.outcomes.iter().filter_map(|o| o.second).collect();
    let leader = c
        .addrs
        .iter()
        .find(|(_, a)| **a == addr)
        .map_or(0, |(id, _)| *id);
    let report = Report {
        spec,
        seconds: run.seconds,
        cycles_per_sec: seconds.len() as f64 / run.seconds,
        completed: seconds.len(),
        errors: run.outcomes.iter().map(|o| o.errors).sum(),
        acquire_latency: summarize(&firsts),
        release_latency: summarize(&seconds),
        samples: sampler.samples,
        memory: memory(c, leader),
        target: Target {
            max_ratio: end_ratio,
            under_10x: end_ratio.is_some_and(|r| r < RATIO_TARGET),
        },
    };
    println!(
        "{} cycles in {:.0} s ({:.0}/s), {} errors; acquire {}; release {}",
        report.completed,
        report.seconds,
        report.cycles_per_sec,
        report.errors,
        latency(&report.acquire_latency),
        latency(&report.release_latency)
    );
    for m in &report.memory {
        println!("{m}");
    }
    println!(
        "target: data dir under {RATIO_TARGET:.0}x the live state at the end of the load: {} ({})",
        end_ratio.map_or("no snapshot yet".into(), |r| format!("{r:.1}x")),
        if report.target.under_10x {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(report)
}

fn latency(s: &Option<Summary>) -> String {
    s.as_ref().map_or("-".into(), |s| {
        format!(
            "p50 {:.2} ms p99 {:.2} ms max {:.1} ms",
            s.p50_ms, s.p99_ms, s.max_ms
        )
    })
}

/// Sum of file sizes, allocated bytes and file count under `dir`; files
/// that vanish while it is read (sled removes segments and blobs) count
/// as gone.
pub fn dir_size(dir: &Path) -> (u64, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return total;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            let (a, b, c) = dir_size(&entry.path());
            total = (total.0 + a, total.1 + b, total.2 + c);
        } else {
            // st_blocks counts 512-byte units whatever the block size.
            total = (
                total.0 + meta.len(),
                total.1 + meta.blocks() * 512,
                total.2 + 1,
            );
        }
    }
    total
}

/// `jepsen bench disk`: the run on RMs with [`crate::bench::bench_groups`],
/// saved, then checked against its targets.
pub async fn command(template: &ClusterSpec, spec: Spec) -> Result<()> {
    let groups = super::bench_groups();
    let b = super::start_cluster(template, "bench-disk", Some(&groups), &[])?;
    let report = run(&b.cluster, spec).await?;
    crate::store::save_results(&b.dir, &report)?;
    report.check()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_a_tree_of_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![0u8; 1000]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), vec![1u8; 5000]).unwrap();
        let (bytes, allocated, files) = dir_size(dir.path());
        assert_eq!((bytes, files), (6000, 2));
        assert!(allocated >= 4096, "{allocated}");
        assert_eq!(dir_size(&dir.path().join("missing")), (0, 0, 0));
    }
}
