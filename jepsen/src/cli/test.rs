//! `jepsen test`: one checked run of a workload under faults; and the run
//! flags (workload, nemesis) `jepsen compare` shares.

use std::time::Duration;

use anyhow::Result;

use super::ClusterArgs;
use crate::checker::Validity;
use crate::nemesis::{Fault, Role, Schedule};
use crate::test::{Mode, TestSpec};
use crate::workload::Workload;

/// The nemesis schedule's flags.
#[derive(clap::Args, Debug, Clone)]
pub struct NemesisArgs {
    /// Fault families, comma-separated: kill, pause, partition, clock,
    /// packet, membership, crash-at, snapshot, wipe, restart-coordinator,
    /// asymmetric, reconfigure, hostile; or `none`. Clock faults need
    /// libfaketime (Debian package faketime). Partitions, asymmetric and
    /// packet faults need network namespaces (root; packet loss also
    /// nftables); without them they are skipped, and the results say so.
    #[arg(long, default_value = "kill,pause,partition", value_parser = parse_faults)]
    nemesis: Faults,
    /// Which processes faults hit.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "rm,coordinator"
    )]
    nemesis_targets: Vec<Role>,
    /// Quiet time between faults, in ms.
    #[arg(long, default_value_t = 3000)]
    nemesis_interval_ms: u64,
    /// A killed process restarts after this many ms.
    #[arg(long, default_value_t = 2000)]
    kill_for_ms: u64,
    /// A paused process resumes after this many ms (by default longer than
    /// the session lease and the election timeout).
    #[arg(long, default_value_t = 4000)]
    pause_for_ms: u64,
    /// The RMs' session lease, in ms.
    #[arg(long, default_value_t = 3000)]
    session_lease_ms: u64,
    /// Seed of the schedule and the clients' choices [default: random, printed].
    #[arg(long)]
    seed: Option<u64>,
    /// Run on loopback even where per-node network namespaces are possible
    /// (no partitions then).
    #[arg(long)]
    loopback: bool,
}

#[derive(Debug, Clone)]
struct Faults(Vec<Fault>);

fn parse_faults(text: &str) -> Result<Faults, String> {
    use clap::ValueEnum;
    if text == "none" {
        return Ok(Faults(Vec::new()));
    }
    text.split(',')
        .map(|f| {
            Fault::from_str(f.trim(), true).map_err(|_| {
                format!(
                    "'{f}' is not kill, pause, partition, clock, packet, membership, crash-at, snapshot, wipe, restart-coordinator, asymmetric, reconfigure or hostile (or none)"
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Faults)
}

impl NemesisArgs {
    /// The schedule, with `--seed` or a random one.
    pub fn schedule(&self) -> Schedule {
        let seed = self.seed.unwrap_or_else(rand::random);
        Schedule {
            faults: self.nemesis.0.clone(),
            roles: self.nemesis_targets.clone(),
            interval: Duration::from_millis(self.nemesis_interval_ms),
            kill_for: Duration::from_millis(self.kill_for_ms),
            pause_for: Duration::from_millis(self.pause_for_ms),
            seed,
            failpoints: Vec::new(),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct TestArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[arg(long, value_enum, default_value = "queries")]
    workload: Workload,
    /// linearizable, or eventual:MS (the staleness bound).
    #[arg(long, default_value = "linearizable", value_parser = Mode::parse)]
    mode: Mode,
    #[command(flatten)]
    nemesis: NemesisArgs,
    /// Seconds of workload.
    #[arg(long, default_value_t = 30)]
    time_limit: u64,
    /// Client processes.
    #[arg(long, default_value_t = 6)]
    concurrency: u64,
}

pub async fn run(args: TestArgs) -> Result<()> {
    let TestArgs {
        cluster,
        workload,
        mode,
        nemesis,
        time_limit,
        concurrency,
    } = args;
    let dir = crate::store::run_dir("test")?;
    let run = RunArgs {
        cluster: &cluster,
        nemesis: &nemesis,
        workload,
        time_limit,
        concurrency,
    };
    let spec = run.spec(mode, nemesis.schedule());
    println!(
        "jepsen test: {} workload, {} mode, {time_limit} s, nemesis {}",
        workload_name(workload),
        mode.label(),
        spec.schedule.describe()
    );
    let s = crate::test::run(&spec, &dir).await?;
    println!();
    print!(
        "{}",
        crate::compare::table_markdown(std::slice::from_ref(&s))
    );
    println!("results: {}", dir.join("results.json").display());
    match s.valid {
        Validity::Invalid => anyhow::bail!("the history is not valid (see results.json)"),
        Validity::Unknown => println!("valid: unknown (a checker could not decide)"),
        Validity::Valid => println!("valid: true"),
    }
    Ok(())
}

/// What `test` and `compare` share, for one run's spec.
pub struct RunArgs<'a> {
    pub cluster: &'a ClusterArgs,
    pub nemesis: &'a NemesisArgs,
    pub workload: Workload,
    pub time_limit: u64,
    pub concurrency: u64,
}

impl RunArgs<'_> {
    pub fn spec(&self, mode: Mode, schedule: Schedule) -> TestSpec {
        TestSpec {
            workload: self.workload,
            mode,
            schedule,
            time_limit: Duration::from_secs(self.time_limit),
            concurrency: self.concurrency,
            nodes: self.cluster.nodes,
            bin_dir: self.cluster.bin_dir(),
            tls: self.cluster.tls,
            session_lease_ms: self.nemesis.session_lease_ms,
            loopback: self.nemesis.loopback,
            planted: None,
        }
    }
}

/// A workload as its flag spells it.
pub fn workload_name(w: Workload) -> String {
    use clap::ValueEnum;
    w.to_possible_value()
        .map_or_else(|| format!("{w:?}"), |v| v.get_name().to_string())
}
