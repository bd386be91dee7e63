//! `jepsen bench oom`: the coordinated low-memory killer, from a blocked
//! worker to the killed query's memory being free, per round (each round
//! is [`crate::oom::round`]).

use std::time::Duration;

use anyhow::{Context, Result};

use crate::cluster::{ClusterSpec, DataPlaneSpec};
use crate::stats::summarize;

/// `jepsen bench oom`: RMs with the killer's `delay`, one worker and two
/// coordinators, `rounds` rounds.
pub async fn command(
    template: &ClusterSpec,
    rounds: usize,
    delay: &str,
    worker_heartbeat_ms: u64,
) -> Result<()> {
    let mut b = super::start_cluster(
        template,
        "bench-oom",
        Some(crate::oom::OOM_GROUPS),
        &["--low-memory-killer-delay".into(), delay.to_string()],
    )?;
    b.cluster.start_data_plane(&DataPlaneSpec {
        workers: 1,
        coordinators: 2,
        worker_memory_bytes: crate::oom::WORKER_MEMORY_BYTES,
        resource_groups: b.groups_file()?,
        worker_base_port: 0,
        coordinator_base_port: 0,
        worker_args: vec!["--heartbeat-ms".into(), worker_heartbeat_ms.to_string()],
    })?;
    let c = &b.cluster;
    let coordinators: Vec<String> = c
        .members
        .iter()
        .filter(|m| m.name.starts_with('c'))
        .map(|m| m.addr.clone())
        .collect();
    let worker = c
        .members
        .iter()
        .find(|m| m.name == "w1")
        .map(|m| m.addr.clone())
        .context("no worker")?;
    for addr in &coordinators {
        crate::trino::wait_ready(addr, Duration::from_secs(30)).await?;
    }
    println!(
        "low-memory killer: delay {delay}, worker heartbeat {worker_heartbeat_ms} ms, {rounds} rounds"
    );
    let mut results = Vec::new();
    for round in 1..=rounds {
        let r = crate::oom::round(c, &worker, &coordinators, round).await?;
        println!(
            "round {:>2}: blocked -> decision {:>6} ms, -> memory free {:>6.0} ms; kills {}, victim {}, others finished {}/{}{}",
            r.round,
            r.blocked_to_decision_ms.map_or("?".into(), |m| format!("{m:.0}")),
            r.blocked_to_free_ms,
            r.kills,
            r.victim_error.as_deref().unwrap_or("not failed"),
            r.others_finished,
            r.others,
            if r.ok() { "" } else { "  <- WRONG" }
        );
        results.push(r);
    }
    let free = summarize(
        &results
            .iter()
            .map(|r| Duration::from_secs_f64(r.blocked_to_free_ms / 1000.0))
            .collect::<Vec<_>>(),
    );
    if let Some(f) = &free {
        println!(
            "blocked -> memory free: median {:.0} ms, max {:.0} ms",
            f.p50_ms, f.max_ms
        );
    }
    let ok = results.iter().all(|r| r.ok());
    crate::store::save_results(
        &b.dir,
        &serde_json::json!({"bench": "oom", "delay": delay,
            "worker_heartbeat_ms": worker_heartbeat_ms, "rounds": results,
            "blocked_to_free": free, "valid": ok}),
    )?;
    if !ok {
        anyhow::bail!("a round killed other than exactly one query, or a query failed");
    }
    Ok(())
}
