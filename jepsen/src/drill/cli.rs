//! `jepsen drill ...`: flags, the cluster (local or existing), the
//! confirmation, Ctrl-C, and the report.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use common::auth::SharedSecret;

use super::load::LoadSpec;
use super::ops::{Commands, Fault, Operator};
use super::{report, Drill, FailoverSpec};
use crate::cluster::{default_bin_dir, ClusterSpec, LocalCluster};
use crate::history::Recorder;
use crate::report::Shade;
use crate::rm_client::RmClient;

#[derive(Subcommand, Debug)]
pub enum DrillCmd {
    /// Rounds of one fault against the RM leader under a steady load of
    /// linearizable admissions and view reads; measures detection,
    /// election, first admission and view freshness per round, and checks
    /// that no acknowledged admission was lost or doubled.
    Failover {
        #[command(flatten)]
        args: DrillArgs,
        #[arg(long, value_enum, default_value = "kill")]
        fault: Fault,
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// How long a paused leader stays frozen, in ms.
        #[arg(long, default_value_t = 2000)]
        pause_ms: u64,
        /// How long an isolated leader stays cut off, in ms.
        #[arg(long, default_value_t = 2000)]
        partition_ms: u64,
        /// Each round's first admission after the fault must be
        /// acknowledged within this, in ms.
        #[arg(long, default_value_t = 1000)]
        target_ms: u64,
    },
    /// Restarts every RM in turn (followers first, then the leader after
    /// a step-down) under the same load; checks that no admission failed
    /// beyond client retries and none was lost.
    RollingRestart {
        #[command(flatten)]
        args: DrillArgs,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct DrillArgs {
    /// RMs of the local cluster the drill starts.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    nodes: u64,
    /// Directory holding raft-rm (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The local cluster runs on mutual TLS (see `jepsen cluster --tls`).
    #[arg(long, conflicts_with = "rms")]
    tls: bool,
    /// Drill an existing cluster instead: its RMs as `ID=HOST:PORT,...`.
    /// Destructive steps then run the operator's commands below.
    #[arg(long, value_parser = common::cli::peer_map)]
    rms: Option<BTreeMap<u64, String>>,
    /// The existing cluster's shared secret.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    #[command(flatten)]
    commands: Commands,
    /// Print every step and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask before faulting an existing cluster.
    #[arg(long)]
    yes: bool,
    /// The linearizable group the load acquires in (the local cluster is
    /// configured with it; an existing cluster must have it).
    #[arg(long, default_value = "drill")]
    group: String,
    /// Admission clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// How long each admission is held before its release, in ms.
    #[arg(long, default_value_t = 50)]
    hold_ms: u64,
    /// The eventual-mode staleness bound the view reads ask for, in ms.
    #[arg(long, default_value_t = 1000)]
    view_bound_ms: u64,
    /// One try of an admission call times out after this, in ms.
    #[arg(long, default_value_t = 1000)]
    try_timeout_ms: u64,
    /// An acquire retried on every RM for this long counts as failed, in ms.
    #[arg(long, default_value_t = 3000)]
    give_up_ms: u64,
    /// Quiet time between rounds (or restarts), in ms.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
}

/// The resource groups of the drill's local cluster: one linearizable
/// group wide enough that nothing queues.
const DRILL_GROUPS: &str =
    r#"{"rootGroups":[{"name":"drill","hardConcurrencyLimit":100000,"maxQueued":100000}]}"#;

pub async fn run(cmd: DrillCmd, dir: &Path) -> Result<()> {
    let (args, fault) = match &cmd {
        DrillCmd::Failover { args, fault, .. } => (args.clone(), Some(*fault)),
        DrillCmd::RollingRestart { args } => (args.clone(), None),
    };
    let (op, secret) = operator(&args, fault, dir)?;
    match fault {
        Some(f) => op.check(f)?,
        None if !op.is_local() => {
            let missing = args.commands.missing_for_restart();
            if !missing.is_empty() {
                bail!("the rolling restart needs {}", missing.join(" and "));
            }
        }
        None => {}
    }
    // Over TLS when the local cluster runs it.
    let http = crate::tls::http(secret, Duration::from_millis(args.try_timeout_ms));
    let probe = RmClient::new(http.with_timeout(Duration::from_millis(500)));
    let admin = RmClient::new(http.with_timeout(Duration::from_secs(10)));
    let load_rm = RmClient::new(http);
    let history = Arc::new(Recorder::new(Some(&dir.join("history.jsonl")))?);
    let mut drill = Drill::new(op, probe, admin, history.clone());
    if drill.op.dry_run() {
        return dry_run(&mut drill, &cmd, &args.group).await;
    }
    if !drill.op.is_local() && !args.yes {
        confirm(&drill, &cmd)?;
    }
    let load_spec = LoadSpec {
        clients: args.clients,
        group: args.group.clone(),
        hold: Duration::from_millis(args.hold_ms),
        view_bound_ms: args.view_bound_ms,
        give_up: Duration::from_millis(args.give_up_ms),
        tag: format!("drill{}", std::process::id()),
    };
    let load = drill.start_load(load_rm, load_spec.clone()).await?;
    // Let the load settle before the first fault.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let interval = Duration::from_millis(args.interval_ms);
    match cmd {
        DrillCmd::Failover {
            fault,
            rounds,
            pause_ms,
            partition_ms,
            target_ms,
            ..
        } => {
            let spec = FailoverSpec {
                fault,
                rounds,
                pause: Duration::from_millis(pause_ms),
                partition: Duration::from_millis(partition_ms),
                interval,
                target: Duration::from_millis(target_ms),
                load: load_spec,
            };
            let mut done = Vec::new();
            let stopped_early = interruptible(async {
                for round in 1..=spec.rounds {
                    let r = drill.failover_round(&spec, &load, round).await?;
                    println!(
                        "round {:>2}: {} node {} -> leader {}  detect {} elect {} admit {} fresh {} ms",
                        r.round,
                        fault.name(),
                        r.victim,
                        r.new_leader.map_or("-".into(), |l| l.to_string()),
                        fmt_ms(r.detect_ms),
                        fmt_ms(r.elect_ms),
                        fmt_ms(r.admit_ms),
                        fmt_ms(r.fresh_ms)
                    );
                    done.push(r);
                    tokio::time::sleep(spec.interval).await;
                }
                Ok(())
            })
            .await;
            let healed = drill.op.heal_all().await;
            let ledger = load.stop().await;
            let shades = done
                .iter()
                .map(|r| {
                    shade(
                        r.start_ns,
                        r.end_ns,
                        format!("{} node {}", fault.name(), r.victim),
                    )
                })
                .collect::<Vec<_>>();
            let rep = report::failover(&spec, done, &ledger, stopped_early, healed);
            let md = report::failover_markdown(&rep);
            finish(dir, &md, &rep, &rep.verdict, &history, &shades)?;
        }
        DrillCmd::RollingRestart { .. } => {
            let mut restarts = Vec::new();
            let stopped_early = interruptible(async {
                restarts = drill.rolling_restart(interval).await?;
                Ok(())
            })
            .await;
            let healed = drill.op.heal_all().await;
            let ledger = load.stop().await;
            let shades = restarts
                .iter()
                .map(|r| shade(r.start_ns, r.end_ns, format!("restart node {}", r.node)))
                .collect::<Vec<_>>();
            let rep = report::rolling(restarts, &ledger, stopped_early, healed);
            let md = report::rolling_markdown(&rep);
            finish(dir, &md, &rep, &rep.verdict, &history, &shades)?;
        }
    }
    Ok(())
}

fn shade(start_ns: u64, end_ns: u64, label: String) -> Shade {
    Shade {
        start_ns,
        end_ns,
        label,
    }
}

/// Writes the report and fails the command when the drill failed.
fn finish(
    dir: &Path,
    markdown: &str,
    results: &impl serde::Serialize,
    verdict: &report::Verdict,
    history: &Recorder,
    shades: &[Shade],
) -> Result<()> {
    report::write(dir, markdown, results, &history.ops(), shades)?;
    if !verdict.pass {
        bail!("the drill failed: {}", verdict.reasons.join("; "));
    }
    Ok(())
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

/// Runs `work` until it ends or Ctrl-C; answers why it stopped early.
async fn interruptible(work: impl std::future::Future<Output = Result<()>>) -> Option<String> {
    tokio::select! {
        r = work => r.err().map(|e| format!("{e:#}")),
        _ = tokio::signal::ctrl_c() => Some("interrupted (Ctrl-C)".into()),
    }
}

/// The operator: a new local cluster in `dir`, or the given existing one.
fn operator(
    args: &DrillArgs,
    fault: Option<Fault>,
    dir: &Path,
) -> Result<(Operator, Option<SharedSecret>)> {
    if let Some(rms) = &args.rms {
        let secret = match &args.secret_file {
            Some(f) => Some(SharedSecret::from_file(f)?),
            None => None,
        };
        return Ok((
            Operator::existing(rms.clone(), args.commands.clone(), args.dry_run),
            secret,
        ));
    }
    if args.dry_run {
        bail!("--dry-run is for existing clusters (--rms); a local drill changes nothing outside its own processes");
    }
    let net = if fault == Some(Fault::Partition) {
        match crate::netns::Network::probe() {
            Ok(()) => Some(Arc::new(crate::netns::Network::create()?)),
            Err(why) => bail!(
                "the partition drill needs per-node network namespaces, which this machine does not allow ({why})"
            ),
        }
    } else {
        None
    };
    let cluster_dir = dir.join("cluster");
    std::fs::create_dir_all(&cluster_dir)?;
    // Absolute, because each node runs from its own directory.
    let groups = std::fs::canonicalize(dir)?.join("resource-groups.json");
    std::fs::write(&groups, DRILL_GROUPS)?;
    let cluster = LocalCluster::start(ClusterSpec {
        nodes: args.nodes,
        base_port: 0,
        dir: cluster_dir,
        bin_dir: args.bin_dir.clone().unwrap_or_else(default_bin_dir),
        node_args: vec!["--resource-groups".into(), groups.display().to_string()],
        net,
        faketime: None,
        env: Vec::new(),
        tls: args.tls,
    })?;
    let secret = SharedSecret::from_file(&cluster.dir().join("secret"))?;
    Ok((Operator::local(cluster), Some(secret)))
}

/// Asks the operator to type `yes` before faulting their cluster.
fn confirm(drill: &Drill, cmd: &DrillCmd) -> Result<()> {
    println!(
        "This drill will {} RMs of the cluster at {}.",
        match cmd {
            DrillCmd::Failover { fault, rounds, .. } => format!(
                "put {} on the leader in {rounds} rounds among the",
                fault.name()
            ),
            DrillCmd::RollingRestart { .. } => "restart each of the".to_string(),
        },
        drill.op.addr_list().join(", ")
    );
    println!("Type yes to go on (or pass --yes; --dry-run shows every step):");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the confirmation")?;
    if line.trim() != "yes" {
        bail!("not confirmed; nothing was done");
    }
    Ok(())
}

/// Prints what the drill would do, reading the cluster but changing nothing.
async fn dry_run(drill: &mut Drill, cmd: &DrillCmd, group: &str) -> Result<()> {
    let leader = drill.leader().await?;
    drill.check_group(leader, group).await?;
    println!(
        "dry run against {} (leader now: node {leader}); nothing will be changed",
        drill.op.addr_list().join(", ")
    );
    println!("  start the load: admissions and view reads against every RM");
    match cmd {
        DrillCmd::Failover { fault, rounds, .. } => {
            for round in 1..=*rounds {
                println!("round {round}: the current leader (node {leader} now):");
                if *fault == Fault::StepDown {
                    println!("  would POST /v1/admin/step-down to the leader");
                } else {
                    drill.op.inject(*fault, leader).await?;
                    drill.op.heal(leader).await?;
                }
                println!("  wait until it has caught up with the new leader");
            }
        }
        DrillCmd::RollingRestart { .. } => {
            let ids: Vec<u64> = drill.op.addrs().keys().copied().collect();
            for id in ids.iter().filter(|i| **i != leader).chain([&leader]) {
                if *id == leader {
                    println!(
                        "  would POST /v1/admin/step-down to node {id} and wait for a new leader"
                    );
                }
                drill.op.stop(*id).await?;
                drill.op.heal(*id).await?;
                println!("  wait until node {id} has caught up");
            }
        }
    }
    println!("dry run done: nothing was changed");
    Ok(())
}
