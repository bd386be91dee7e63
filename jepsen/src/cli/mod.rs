//! The `jepsen` command line: one module per command, each with its flags
//! and what it runs; `main.rs` only parses and dispatches.
//!
//! # Layout
//! - this module: the commands, and the cluster flags they share.
//! - [`bench`](mod@bench): `jepsen bench ...` (the benches are in [`crate::bench`]).
//! - [`check`]: `jepsen check`: the checkers again on a saved run.
//! - [`cluster`]: `jepsen cluster`: a local cluster in the foreground.
//! - [`compare`]: `jepsen compare`: every mode, one table.
//! - [`drill`]: `jepsen drill ...` (flags in [`crate::drill::cli`]).
//! - [`selftest`]: `jepsen selftest`: runs with bugs planted on purpose,
//!   each of which must be caught.
//! - [`test`](mod@test): `jepsen test`, and the run flags `compare` shares.

pub mod bench;
pub mod check;
pub mod cluster;
pub mod compare;
pub mod drill;
pub mod selftest;
pub mod test;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::cluster::{default_bin_dir, ClusterSpec};

#[derive(Parser, Debug)]
#[command(
    name = "jepsen",
    version,
    about = "Local clusters, fault drills and benchmarks for raft-rm"
)]
pub struct Cli {
    /// Copy the harness's log lines (nemesis, cluster) to stderr; `test`
    /// and `compare` otherwise keep them in the run's jepsen.log.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Number of raft-rm nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub nodes: u64,
    /// Directory holding raft-rm (default: next to this binary).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Everything over TLS: a throw-away CA and a certificate per process
    /// (in <dir>/tls), mutual TLS between the processes, the harness's
    /// clients with an `admin` certificate.
    #[arg(long)]
    pub tls: bool,
}

impl ClusterArgs {
    /// The binaries' directory: `--bin-dir`, or next to this binary.
    pub fn bin_dir(&self) -> PathBuf {
        self.bin_dir.clone().unwrap_or_else(default_bin_dir)
    }

    /// A cluster of these RMs in `dir`, node N on `base_port + N - 1`
    /// (0: free ports), on loopback, with no extra flags.
    pub fn spec(&self, dir: PathBuf, base_port: u16) -> ClusterSpec {
        ClusterSpec {
            nodes: self.nodes,
            base_port,
            dir,
            bin_dir: self.bin_dir(),
            node_args: Vec::new(),
            net: None,
            faketime: None,
            env: Vec::new(),
            tls: self.tls,
        }
    }
}

// The variants' docs are the commands' help text, `<timestamp>` included.
#[allow(rustdoc::invalid_html_tags)]
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// One Jepsen-style test: a workload under a nemesis on real processes,
    /// checked; writes store/test/<timestamp>/ (history, results, plots).
    Test(test::TestArgs),
    /// Re-runs the checkers on a saved test run (its history.jsonl,
    /// resource-groups.json and end-state.json).
    Check(check::CheckArgs),
    /// Runs with a bug planted on purpose in every process (needs the
    /// binaries built with the feature failpoints); each must come out
    /// invalid, or the harness is no evidence.
    Selftest(selftest::SelftestArgs),
    /// The same workload, seed and nemesis schedule in linearizable mode
    /// and in eventual mode at each staleness bound; one table.
    Compare(compare::CompareArgs),
    /// Run a local cluster in the foreground and show its status (Ctrl-C stops it).
    Cluster(cluster::ClusterCmdArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: bench::Bench,
    },
    /// Failover drills for SREs: failover rounds and rolling restarts,
    /// measured, on a local cluster or an existing one.
    Drill {
        #[command(subcommand)]
        what: crate::drill::cli::DrillCmd,
    },
}

impl Cmd {
    /// Whether the command takes Ctrl-C itself (a drill heals what it
    /// faulted before it exits; a cluster stops its processes), rather than
    /// being dropped on it.
    pub fn handles_ctrl_c(&self) -> bool {
        matches!(self, Cmd::Cluster(_) | Cmd::Drill { .. })
    }
}

/// Runs one command.
pub async fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Test(args) => test::run(args).await,
        Cmd::Check(args) => check::run(args),
        Cmd::Selftest(args) => selftest::run(args).await,
        Cmd::Compare(args) => compare::run(args).await,
        Cmd::Cluster(args) => cluster::run(args).await,
        Cmd::Bench { what } => bench::run(what).await,
        Cmd::Drill { what } => drill::run(what).await,
    }
}
