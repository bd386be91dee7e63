//! The storage nemeses, each aimed at one RM:
//!
//! - **crash-at**: restart the RM armed to crash at one of the store's
//!   failpoints (`RAFT_RM_CRASH_AT=NAME@N`, drawn from the schedule), as a
//!   power cut there would stop it; the heal restarts it unarmed, and it
//!   must start cleanly and rejoin.
//! - **snapshot**: make the RM lag (SIGKILL), force snapshots on the others
//!   so the leader must send it one, restart it, and force snapshot builds
//!   on it every 100 ms while it installs, until the heal; it must end
//!   healthy (the build/install race of openraft 0.9).
//! - **wipe**: SIGKILL the RM, delete its data dir, and start it as it is:
//!   it must be refused (it stays uninitialized; the others keep a quorum).
//!   The heal replaces it the documented way (`raft-rm admin replace`),
//!   after which it must rejoin as a voter and catch up.
//!
//! Each records its evidence as a `<fault>-evidence` op with `ok`, which
//! the `storage_faults` checker reads. They need raft-rm built with the
//! feature `failpoints` (crash-at only) and nothing else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::cluster::LocalCluster;

/// How long a healed RM has to answer as a member with a leader.
const REJOIN_WITHIN: Duration = Duration::from_secs(20);

/// The failpoint (of `failpoints`, not empty) and hit a draw names.
pub fn crash_point(pick: usize, failpoints: &[String]) -> (&str, u64) {
    let n = failpoints.len().max(1);
    (
        failpoints.get(pick % n).map_or("", String::as_str),
        1 + (pick / n) as u64 % 10,
    )
}

/// The failpoints of the raft-rm in `bin_dir` (`raft-rm failpoints`), or
/// why there are none.
pub fn failpoints_of(bin_dir: &std::path::Path) -> Result<Vec<String>, String> {
    let out = std::process::Command::new(bin_dir.join("raft-rm"))
        .arg("failpoints")
        .output()
        .map_err(|e| format!("cannot run raft-rm failpoints: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    } else {
        Err(format!(
            "raft-rm has no failpoints (build it with --features raft-rm/failpoints): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// crash-at: restart RM `id` armed.
pub fn arm_crash(
    c: &mut LocalCluster,
    id: u64,
    pick: usize,
    failpoints: &[String],
) -> Result<Value> {
    let (failpoint, hit) = crash_point(pick, failpoints);
    c.kill(id);
    let at = format!("{failpoint}@{hit}");
    c.launch_env(id, &[("RAFT_RM_CRASH_AT", &at)])?;
    Ok(json!({"target": format!("n{id}"), "failpoint": failpoint, "hit": hit}))
}

/// crash-at's heal: whether it crashed, then a clean restart.
pub async fn heal_crash(c: &mut LocalCluster, id: u64) -> Result<Value> {
    let crashed = c.rm_exit(id);
    c.kill(id);
    c.launch(id)?;
    let rejoined = rejoined(c, id).await;
    Ok(
        json!({"target": format!("n{id}"), "crashed": crashed, "rejoined": rejoined, "ok": rejoined}),
    )
}

/// The task forcing snapshot builds on one RM, and how many it got.
pub struct ForcedBuilds {
    task: JoinHandle<()>,
    done: Arc<AtomicU64>,
}

/// snapshot: make `id` lag, snapshot the others, bring it back under
/// forced builds. Answers the fault's value and the builds (the heal stops
/// them).
pub async fn lag_and_snapshot(c: &mut LocalCluster, id: u64) -> Result<(Value, ForcedBuilds)> {
    c.kill(id);
    // Entries keep coming from the clients; let some pile up, then
    // snapshot everywhere else so the leader's log is purged past `id`.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let admin = c.client.with_timeout(Duration::from_secs(10));
    let mut snapshotted = Vec::new();
    for (other, addr) in c.addrs.clone() {
        if other != id
            && c.is_running(other)
            && admin
                .snapshot_now(&addr, Duration::from_secs(10))
                .await
                .is_ok()
        {
            snapshotted.push(format!("n{other}"));
        }
    }
    c.launch(id)?;
    let addr = c.addrs[&id].clone();
    let done = Arc::new(AtomicU64::new(0));
    let counted = done.clone();
    let task = tokio::spawn(async move {
        loop {
            if admin
                .snapshot_now(&addr, Duration::from_secs(5))
                .await
                .is_ok()
            {
                counted.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let builds = ForcedBuilds { task, done };
    Ok((
        json!({"target": format!("n{id}"), "snapshotted": snapshotted}),
        builds,
    ))
}

/// snapshot's heal: stop forcing builds; the RM must be a healthy member.
pub async fn heal_snapshot(c: &mut LocalCluster, id: u64, builds: ForcedBuilds) -> Result<Value> {
    builds.task.abort();
    let forced = builds.done.load(Ordering::Relaxed);
    c.restart(&crate::cluster::Target::Rm(id))?;
    let rejoined = rejoined(c, id).await;
    Ok(json!({"target": format!("n{id}"), "forced_builds": forced,
              "rejoined": rejoined, "ok": rejoined}))
}

/// wipe: lose RM `id`'s disk and start it as it is.
pub fn wipe(c: &mut LocalCluster, id: u64) -> Result<Value> {
    c.kill(id);
    c.wipe_data(id)?;
    c.launch(id)?;
    Ok(json!({"target": format!("n{id}")}))
}

/// wipe's heal: it must have been refused as it was; then the documented
/// replacement, after which it must be a voter again.
pub async fn heal_wipe(c: &mut LocalCluster, id: u64) -> Result<Value> {
    let addr = c.addrs[&id].clone();
    // A node just started may not answer yet: ask for a few seconds.
    let mut health = c.client.health(&addr).await;
    for _ in 0..20 {
        if health.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        health = c.client.health(&addr).await;
    }
    // Refused: it never joined (no cluster, nothing applied).
    let refused = health.as_ref().is_ok_and(|h| !h.initialized);
    let seen = match &health {
        Ok(h) => json!(h),
        Err(e) => json!({"error": e.to_string()}),
    };
    let via = c
        .addrs
        .iter()
        .find(|(other, _)| **other != id && c.is_running(**other))
        .map(|(_, a)| a.clone());
    let replaced = match via {
        Some(via) => c
            .admin_command(
                &via,
                &["replace", "--node-id", &id.to_string(), "--addr", &addr],
            )
            .map(|_| ())
            .map_err(|e| format!("{e:#}")),
        None => Err("no other RM running".to_string()),
    };
    let rejoined = rejoined(c, id).await;
    let ok = refused && replaced.is_ok() && rejoined;
    Ok(
        json!({"target": format!("n{id}"), "refused_as_is": refused, "health_as_is": seen,
              "replaced": replaced.as_ref().err(), "rejoined": rejoined, "ok": ok}),
    )
}

/// Whether RM `id` answers as an initialized member that knows a leader,
/// within [`REJOIN_WITHIN`].
async fn rejoined(c: &LocalCluster, id: u64) -> bool {
    let addr = &c.addrs[&id];
    let deadline = Instant::now() + REJOIN_WITHIN;
    while Instant::now() < deadline {
        if let Ok(h) = c.client.health(addr).await {
            if h.initialized && h.leader_id.is_some() && h.last_applied.is_some() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failpoint_is_drawn_and_hits_stay_small() {
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let drawn: std::collections::BTreeSet<_> =
            (0..60).map(|p| crash_point(p, &names).0).collect();
        assert_eq!(drawn.len(), names.len());
        assert!((0..1000).all(|p| (1..=10).contains(&crash_point(p, &names).1)));
    }
}
