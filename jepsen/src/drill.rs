//! `jepsen drill failover --fault kill`: SIGKILL the leader, measure how long
//! until the survivors agree on a new leader and until a write commits
//! again, restart the victim, let it catch up, repeat.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::cluster::LocalCluster;

#[derive(Debug, Serialize)]
pub struct Round {
    pub round: usize,
    pub killed: u64,
    pub new_leader: u64,
    /// From SIGKILL until the survivors agree on a new leader.
    pub election_ms: f64,
    /// From SIGKILL until a write is acknowledged again.
    pub write_recovery_ms: f64,
}

pub async fn kill_leader_round(cluster: &mut LocalCluster, round: usize) -> Result<Round> {
    let all = cluster.addr_list();
    let Some(old) = cluster
        .client
        .wait_leader(&all, Duration::from_secs(15))
        .await
    else {
        bail!("round {round}: no leader before the fault");
    };
    let survivors: Vec<String> = cluster
        .addrs
        .iter()
        .filter(|(id, _)| **id != old)
        .map(|(_, a)| a.clone())
        .collect();
    let t0 = Instant::now();
    cluster.kill(old);
    tracing::debug!(round, killed = old, "SIGKILL sent");
    let (mut election, mut recovered, mut new_leader) = (None, None, 0);
    let mut seq = 0;
    while recovered.is_none() && t0.elapsed() < Duration::from_secs(30) {
        if election.is_none() {
            if let Some(l) = cluster.client.agreed_leader(&survivors).await {
                if l != old {
                    tracing::debug!(round, leader = l, "survivors agree on a new leader");
                    election = Some(t0.elapsed());
                    new_leader = l;
                }
            }
        }
        if election.is_some() {
            seq += 1;
            let addr = &cluster.addrs[&new_leader];
            if cluster
                .client
                .canary(addr, &format!("drill-{round}"), seq)
                .await
                .is_ok()
            {
                recovered = Some(t0.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (Some(election), Some(recovered)) = (election, recovered) else {
        bail!("round {round}: no recovery within 30 s after killing node {old}");
    };
    cluster.launch(old)?;
    wait_caught_up(cluster, old, new_leader).await?;
    Ok(Round {
        round,
        killed: old,
        new_leader,
        election_ms: election.as_secs_f64() * 1000.0,
        write_recovery_ms: recovered.as_secs_f64() * 1000.0,
    })
}

/// Waits until `node` has applied everything `leader` had applied when the
/// wait began, so the next round starts from a full, current cluster (a
/// stale survivor cannot win an election and would only slow the next one).
async fn wait_caught_up(cluster: &LocalCluster, node: u64, leader: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut target = None;
    while Instant::now() < deadline {
        if target.is_none() {
            target = cluster
                .client
                .health(&cluster.addrs[&leader])
                .await
                .ok()
                .and_then(|h| h.last_applied);
        }
        if let (Some(t), Ok(h)) = (target, cluster.client.health(&cluster.addrs[&node]).await) {
            if h.last_applied >= Some(t) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("node {node} did not catch up with leader {leader} within 20 s after restart")
}
