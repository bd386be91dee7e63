//! `jepsen selftest`: the harness must be able to fail. Each run plants one
//! bug in every process on purpose (`FAILPOINTS=bug::...=return`; needs
//! the binaries built with the feature `failpoints`) under the workload and
//! the faults that should expose it, and must come out `valid: false`. A
//! harness whose verdicts never change would be no evidence.
//!
//! | planted bug | what goes wrong | exposed by |
//! |---|---|---|
//! | `bug::limit-off-by-one` | every group admits one more than configured | semaphore, no faults: `linearizable`, `over_admission_client` |
//! | `bug::wiped-voter-votes` | a voter that lost its disk is accepted under its old identity | semaphore under `wipe`: `storage_faults_recovered` |
//! | `bug::usage-unstamped` | the leader never stamps queries' memory and CPU into the log, so group memory and CPU limits never bind | limits workload, no faults: `memory_limit_respected`, `cpu_limit_respected` |
//! | `bug::worker-ignores-fencing` | workers keep running tasks whose admission was revoked | queue workload (0.8-2 s tasks) with coordinators paused past a 0.6 s lease, at least 20 s: `over_admission_workers` |
//!
//! Not planted: acknowledging an append before its fsync. The harness's
//! crashes are process crashes, after which the page cache still holds
//! what was written; only a lost machine (or a filesystem that drops
//! unsynced writes) would expose that bug.

use std::time::Duration;

use anyhow::{bail, Result};

use super::ClusterArgs;
use crate::checker::Validity;
use crate::nemesis::{Fault, Role, Schedule};
use crate::test::{Mode, TestSpec};
use crate::workload::Workload;

#[derive(clap::Args, Debug)]
pub struct SelftestArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Seconds per run.
    #[arg(long, default_value_t = 15)]
    time_limit: u64,
    /// Seed of the schedules and the clients' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// One planted bug and the run that should expose it.
struct Plant {
    bug: &'static str,
    workload: Workload,
    faults: Vec<Fault>,
    roles: Vec<Role>,
    pause_for: Duration,
    session_lease_ms: u64,
    /// The shortest run that exposes the bug reliably (`--time-limit`
    /// may lengthen it, never shorten it).
    min_time_limit: Duration,
}

fn plants() -> Vec<Plant> {
    vec![
        Plant {
            bug: "bug::limit-off-by-one",
            workload: Workload::Semaphore,
            faults: vec![],
            roles: vec![Role::Rm],
            pause_for: Duration::from_secs(4),
            session_lease_ms: 3000,
            min_time_limit: Duration::ZERO,
        },
        Plant {
            bug: "bug::wiped-voter-votes",
            workload: Workload::Semaphore,
            faults: vec![Fault::Wipe],
            roles: vec![Role::Rm],
            pause_for: Duration::from_secs(4),
            session_lease_ms: 3000,
            min_time_limit: Duration::ZERO,
        },
        Plant {
            bug: "bug::usage-unstamped",
            // Twelve clients, more than the memory and CPU limits let run:
            // without stamps every group runs up to its concurrency limit.
            // A 15 s run showed one memory breach: 20 s holds more.
            workload: Workload::Limits,
            faults: vec![],
            roles: vec![Role::Rm],
            pause_for: Duration::from_secs(4),
            session_lease_ms: 3000,
            min_time_limit: Duration::from_secs(20),
        },
        Plant {
            bug: "bug::worker-ignores-fencing",
            // Tasks of 0.8 to 2 s under a 0.6 s lease, coordinators paused
            // for 4 s: the RMs revoke and admit others while the paused
            // coordinator's tasks run on.
            workload: Workload::Queue,
            faults: vec![Fault::Pause],
            roles: vec![Role::Coordinator],
            pause_for: Duration::from_secs(4),
            session_lease_ms: 600,
            // Each pause exposes the bug only if a revoked task is still
            // running when a successor starts: a 10 s run holds two
            // pauses, and a loaded CI machine once saw neither overlap.
            // 20 s holds four.
            min_time_limit: Duration::from_secs(20),
        },
    ]
}

pub async fn run(args: SelftestArgs) -> Result<()> {
    let mut missed = Vec::new();
    for plant in plants() {
        let dir = crate::store::run_dir("selftest")?;
        let spec = TestSpec {
            workload: plant.workload,
            mode: Mode::Linearizable,
            schedule: Schedule {
                faults: plant.faults,
                roles: plant.roles,
                interval: Duration::from_millis(1500),
                kill_for: Duration::from_secs(2),
                pause_for: plant.pause_for,
                seed: args.seed,
                failpoints: Vec::new(),
            },
            time_limit: Duration::from_secs(args.time_limit).max(plant.min_time_limit),
            concurrency: 6,
            nodes: args.cluster.nodes,
            bin_dir: args.cluster.bin_dir(),
            tls: args.cluster.tls,
            session_lease_ms: plant.session_lease_ms,
            loopback: false,
            planted: Some(plant.bug.to_string()),
        };
        println!(
            "jepsen selftest: {} planted, {} workload, nemesis {}",
            plant.bug,
            super::test::workload_name(plant.workload),
            spec.schedule.describe()
        );
        let summary = crate::test::run(&spec, &dir).await?;
        match summary.valid {
            Validity::Invalid => println!("caught: {} (valid: false)", plant.bug),
            other => {
                println!(
                    "MISSED: {} (valid: {}); see {}",
                    plant.bug,
                    serde_json::to_string(&other)?,
                    dir.join("results.json").display()
                );
                missed.push(plant.bug);
            }
        }
    }
    if !missed.is_empty() {
        bail!("the harness missed planted bugs: {}", missed.join(", "));
    }
    println!("selftest: every planted bug was caught");
    Ok(())
}
