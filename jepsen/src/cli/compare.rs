//! `jepsen compare`: the same workload, seed and schedule in every mode;
//! one table and `index.html` (the runs themselves: [`crate::compare`]).

use anyhow::Result;

use super::test::{workload_name, NemesisArgs, RunArgs};
use super::ClusterArgs;
use crate::checker::Validity;
use crate::test::Mode;
use crate::workload::Workload;

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[arg(long, value_enum, default_value = "queries")]
    workload: Workload,
    /// Eventual mode's staleness bounds to compare, in ms.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    bounds: Vec<u64>,
    #[command(flatten)]
    nemesis: NemesisArgs,
    #[arg(long, default_value_t = 30)]
    time_limit: u64,
    #[arg(long, default_value_t = 6)]
    concurrency: u64,
}

pub async fn run(args: CompareArgs) -> Result<()> {
    let CompareArgs {
        cluster,
        workload,
        bounds,
        nemesis,
        time_limit,
        concurrency,
    } = args;
    let root = crate::store::run_dir("compare")?;
    let _log = crate::log::to_file(&root.join("jepsen.log"))?;
    let schedule = nemesis.schedule();
    let mut modes = vec![Mode::Linearizable];
    modes.extend(bounds.iter().map(|b| Mode::Eventual {
        max_staleness_ms: *b,
    }));
    let about = format!(
        "jepsen compare: {} workload, {time_limit} s per mode, nemesis {}",
        workload_name(workload),
        schedule.describe()
    );
    println!("{about}");
    let run = RunArgs {
        cluster: &cluster,
        nemesis: &nemesis,
        workload,
        time_limit,
        concurrency,
    };
    let specs: Vec<_> = modes
        .into_iter()
        .map(|mode| run.spec(mode, schedule.clone()))
        .collect();
    let summaries = crate::compare::run(&specs, &root).await?;
    println!();
    print!("{}", crate::compare::table_markdown(&summaries));
    let index = crate::compare::write_report(&root, &about, &summaries)?;
    crate::store::save_results(
        &root,
        &serde_json::json!({"compare": summaries, "seed": schedule.seed,
        "schedule": schedule, "time_limit_s": time_limit, "workload": workload}),
    )?;
    println!("report: {}", index.display());
    if let Some(l) = summaries
        .iter()
        .find(|s| s.mode == "linearizable" && s.valid == Validity::Invalid)
    {
        anyhow::bail!(
            "the linearizable run is not valid (see {})",
            l.dir.join("results.json").display()
        );
    }
    Ok(())
}
