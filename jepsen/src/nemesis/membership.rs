//! The membership nemesis: the RM voter set shrinks or grows through the
//! admin API, and the heal puts the original voters back.
//!
//! - **shrink**: remove a voter (the leader when the schedule says so),
//!   SIGKILL it and wipe its data dir. It is gone for good: no other fault
//!   targets it and no restart brings it back.
//! - **grow**: start a new, empty RM (`--join`, so it never founds a
//!   cluster of its own), add it as a learner (which waits until it has
//!   caught up), promote it to voter.
//!
//! The heal of either, and the final heal, is [`restore`]: every original
//! voter that is missing comes back as a new empty node (grow), and every
//! member that is not original leaves (shrink). It is idempotent, so a
//! change that failed half-way is healed the same way.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::api::ClusterView;
use common::http::HttpClient;
use serde::Serialize;
use serde_json::{json, Value};

use crate::cluster::LocalCluster;

/// One membership fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum Change {
    /// Remove voter `node` (kill it, wipe its data).
    Shrink { node: u64 },
    /// Add the new node `node` as a voter.
    Grow { node: u64 },
}

impl Change {
    /// What the fault windows call it.
    pub fn label(&self) -> String {
        match self {
            Change::Shrink { node } => format!("shrink n{node}"),
            Change::Grow { node } => format!("grow n{node}"),
        }
    }
}

/// The fault for draw `pick`: shrink (`victim`: the leader, or a voter
/// chosen by the draw) or grow by one new node. Never shrinks to no voter.
pub fn plan(pick: usize, voters: &BTreeSet<u64>, victim: Option<u64>) -> Change {
    let next = voters.iter().max().map_or(1, |m| m + 1);
    if (pick / 8) % 2 == 1 || voters.len() < 2 {
        return Change::Grow { node: next };
    }
    let node = victim
        .filter(|v| voters.contains(v))
        .unwrap_or_else(|| voters.iter().copied().nth(pick % voters.len()).unwrap_or(1));
    Change::Shrink { node }
}

/// Voters and all members (voters and learners) as the leader sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct View {
    pub leader: u64,
    pub voters: BTreeSet<u64>,
    pub members: BTreeSet<u64>,
}

/// The leader's view of the membership, if a leader answers within 10 s.
pub async fn view(c: &LocalCluster, http: &HttpClient) -> Option<View> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(v) = try_view(c, http).await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// The RM that says it leads, in the highest term (a node that is joining
/// knows no leader yet, so the RMs need not agree).
async fn leader(c: &LocalCluster) -> Option<(u64, String)> {
    let mut best: Option<(u64, u64, String)> = None;
    for (id, addr) in &c.addrs {
        if let Ok(h) = c.client.health(addr).await {
            if h.role == common::api::Role::Leader
                && best.as_ref().is_none_or(|(term, _, _)| h.term > *term)
            {
                best = Some((h.term, *id, addr.clone()));
            }
        }
    }
    best.map(|(_, id, addr)| (id, addr))
}

async fn try_view(c: &LocalCluster, http: &HttpClient) -> Option<View> {
    let (leader, addr) = leader(c).await?;
    let v: ClusterView = http
        .get_json(&http.url(&addr, "/v1/cluster"), 1)
        .await
        .ok()?;
    let ids = |voters_only: bool| -> BTreeSet<u64> {
        v.members
            .iter()
            .filter(|m| m.voter || !voters_only)
            .map(|m| m.id)
            .collect()
    };
    Some(View {
        leader,
        voters: ids(true),
        members: ids(false),
    })
}

/// POSTs an admin request to the leader, retrying while none is known or
/// it moved (for up to 20 s).
async fn admin(c: &LocalCluster, http: &HttpClient, path: &str, body: Value) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let err = match leader(c).await {
            Some((_, addr)) => {
                let url = http.url(&addr, path);
                match http.post_json::<_, Value>(&url, &body).await {
                    Ok(v) => return Ok(v),
                    Err(e) if e.status() == Some(400) => {
                        return Err(e).with_context(|| format!("{path} {body}"))
                    }
                    Err(e) => e.to_string(),
                }
            }
            None => "no leader".to_string(),
        };
        if Instant::now() >= deadline {
            bail!("{path} {body}: {err}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Where retired RMs listened, so an original one comes back there.
pub type Retired = std::collections::BTreeMap<u64, String>;

/// Applies `change`; answers what happened, for the history.
pub async fn apply(
    c: &mut LocalCluster,
    http: &HttpClient,
    change: &Change,
    retired: &mut Retired,
) -> Result<Value> {
    match *change {
        Change::Shrink { node } => {
            let answer = admin(c, http, "/v1/admin/remove", json!({"node_id": node})).await?;
            if let Some(addr) = c.retire(node)? {
                retired.insert(node, addr);
            }
            Ok(answer)
        }
        Change::Grow { node } => join(c, http, node, None).await,
    }
}

/// Starts `node` empty (at `addr`, or a new address), adds it as a learner
/// and promotes it.
async fn join(
    c: &mut LocalCluster,
    http: &HttpClient,
    node: u64,
    addr: Option<String>,
) -> Result<Value> {
    let addr = match addr {
        Some(a) => a,
        None => c.new_rm_addr(node)?,
    };
    c.launch_joining(node, &addr)?;
    let added = admin(
        c,
        http,
        "/v1/admin/add-learner",
        json!({"node_id": node, "addr": addr}),
    )
    .await?;
    let promoted = admin(c, http, "/v1/admin/promote", json!({"node_id": node})).await?;
    Ok(json!({"add_learner": added, "promote": promoted}))
}

/// Brings the membership back to the original voters: missing ones join
/// again as new empty nodes, others leave. Answers the voters at the end.
pub async fn restore(
    c: &mut LocalCluster,
    http: &HttpClient,
    retired: &mut Retired,
) -> Result<BTreeSet<u64>> {
    let original = c.original_rms();
    let v = view(c, http)
        .await
        .context("no leader to restore the membership with")?;
    for extra in v.members.difference(&original) {
        admin(c, http, "/v1/admin/remove", json!({"node_id": extra})).await?;
        if let Some(addr) = c.retire(*extra)? {
            retired.insert(*extra, addr);
        }
    }
    for missing in original.difference(&v.voters) {
        if v.members.contains(missing) && c.is_running(*missing) {
            admin(c, http, "/v1/admin/promote", json!({"node_id": missing})).await?;
            continue;
        }
        let addr = match retired
            .remove(missing)
            .or_else(|| c.addrs.get(missing).cloned())
        {
            Some(a) => a,
            None => c.new_rm_addr(*missing)?,
        };
        join(c, http, *missing, Some(addr)).await?;
    }
    let end = view(c, http).await.context("no leader after restoring")?;
    Ok(end.voters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinks_the_leader_or_a_drawn_voter_and_grows_by_a_new_id() {
        let voters = BTreeSet::from([1, 2, 3]);
        assert_eq!(plan(0, &voters, Some(2)), Change::Shrink { node: 2 });
        assert_eq!(plan(1, &voters, None), Change::Shrink { node: 2 });
        // A stale leader id that is no voter any more: a drawn voter.
        assert_eq!(plan(0, &voters, Some(9)), Change::Shrink { node: 1 });
        assert_eq!(plan(8, &voters, Some(2)), Change::Grow { node: 4 });
        // Never below one voter.
        assert_eq!(
            plan(0, &BTreeSet::from([3]), None),
            Change::Grow { node: 4 }
        );
    }
}
