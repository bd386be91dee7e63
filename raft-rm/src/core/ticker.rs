//! The leader's ticker: log time stamped every tick, so replicas can tell
//! how stale their state is even when no client writes, and the initial
//! resource-group configuration proposed once.

use tokio::sync::watch;

use super::Core;
use crate::machine::Command;

/// Ticks every `timings.tick` until `stop`, on the leader only (and not
/// while it hands leadership over).
pub async fn run(core: Core, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(core.timings().tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = interval.tick() => {}
        }
        if !core.may_propose() {
            continue;
        }
        if let Err(e) = core.propose(Command::Tick).await {
            tracing::debug!(error = %e, "tick not committed");
        }
        propose_initial_config(&core).await;
    }
}

/// On a leader, when the log holds no resource-group configuration yet,
/// proposes the one from `--resource-groups` (version 1). A later file is
/// not pushed automatically: `POST /v1/admin/config` replaces it.
async fn propose_initial_config(core: &Core) {
    let admission = core.admission();
    let Some((text, rg)) = &admission.resource_groups else {
        return;
    };
    if core.applied().read().state.admission.config.is_some() {
        return;
    }
    let mut roots = rg.roots.clone();
    if common::failpoints::planted("bug::limit-off-by-one") {
        raise_limits(&mut roots);
    }
    let command = Command::SetConfig(crate::machine::GroupsConfig {
        version: 1,
        roots,
        source: text.clone(),
        settings: admission.settings.clone(),
    });
    match core.propose(command).await {
        Ok(_) => {
            for w in &rg.warnings {
                tracing::warn!("resource groups: {w}");
            }
            tracing::info!("proposed the initial resource-group configuration");
        }
        Err(e) => tracing::warn!(error = %e, "initial resource-group configuration not committed"),
    }
}

/// The planted bug `bug::limit-off-by-one`: every group admits one more
/// than configured (for `jepsen selftest`).
fn raise_limits(groups: &mut [common::resource_groups::GroupSpec]) {
    for g in groups {
        g.hard_concurrency_limit = g.hard_concurrency_limit.saturating_add(1);
        raise_limits(&mut g.sub_groups);
    }
}
