//! `jepsen drill ...`: a run directory per drill; the drill itself (flags,
//! cluster, report) is [`crate::drill::cli`].

use anyhow::Result;

use crate::drill::cli::DrillCmd;

pub async fn run(what: DrillCmd) -> Result<()> {
    let name = match what {
        DrillCmd::Failover { .. } => "drill-failover",
        DrillCmd::RollingRestart { .. } => "drill-rolling-restart",
    };
    let dir = crate::store::run_dir(name)?;
    crate::drill::cli::run(what, &dir).await
}
