//! Failover drills for SREs: `jepsen drill failover` and `jepsen drill
//! rolling-restart`, against the local cluster a drill starts or against an
//! existing one, under a steady load, measured per round.
//!
//! # Layout
//! - [`ops`]: the destructive steps (local, or the operator's commands),
//!   remembering what to heal on an abort.
//! - [`load`]: linearizable admissions and eventual-mode view reads during
//!   the drill, and the ledger that proves nothing acknowledged was lost.
//! - [`cli`]: the flags, the cluster (local or existing), the confirmation
//!   and Ctrl-C.
//! - [`report`]: per-round tables, p50/p99/max, the verdict; Markdown,
//!   JSON, the terminal and a latency plot.
//!
//! A failover round: wait for an agreed leader, put the fault on it, and
//! poll the survivors every 5 ms for the four times of [`Round`]; heal
//! (restart, resume, reconnect) when the fault's time is up, and wait until
//! the victim has caught up, so every round starts from a whole cluster.

pub mod cli;
pub mod load;
pub mod ops;
pub mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::api::Mode;
use serde::Serialize;
use serde_json::json;

use crate::history::{OpType, Recorder, NEMESIS};
use crate::rm_client::{agreed, Health, RmClient};
use load::{Load, LoadSpec};
use ops::{Fault, Operator};

/// A failover drill's settings.
#[derive(Debug, Clone)]
pub struct FailoverSpec {
    pub fault: Fault,
    pub rounds: usize,
    /// How long a paused leader stays frozen.
    pub pause: Duration,
    /// How long an isolated leader stays cut off.
    pub partition: Duration,
    /// Quiet time between rounds.
    pub interval: Duration,
    /// A round passes when its first admission after the fault is
    /// acknowledged within this.
    pub target: Duration,
    pub load: LoadSpec,
}

/// One failover round, times in ms from the fault.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub round: usize,
    pub fault: Fault,
    /// The leader the fault hit.
    pub victim: u64,
    pub new_leader: Option<u64>,
    /// Until a survivor shows a newer term.
    pub detect_ms: Option<f64>,
    /// Until the survivors agree on a new leader.
    pub elect_ms: Option<f64>,
    /// Until an acquire sent to a survivor after the fault is
    /// acknowledged (a prober retries every 10 ms, 500 ms per try).
    pub admit_ms: Option<f64>,
    /// Until every survivor follows the new leader with its view within
    /// the staleness bound.
    pub fresh_ms: Option<f64>,
    /// The fault's window in the drill's history.
    pub start_ns: u64,
    pub end_ns: u64,
}

/// Polls `addrs`' health at once; a slow or dead node is `None`.
async fn healths(probe: &RmClient, addrs: &[String]) -> Vec<Option<Health>> {
    let mut polls = tokio::task::JoinSet::new();
    for (i, addr) in addrs.iter().enumerate() {
        let (probe, addr) = (probe.clone(), addr.clone());
        polls.spawn(async move { (i, probe.health(&addr).await.ok()) });
    }
    let mut out = vec![None; addrs.len()];
    while let Some(done) = polls.join_next().await {
        if let Ok((i, h)) = done {
            out[i] = h;
        }
    }
    out
}

/// The state of a drill: the operator, the clients, the history.
pub struct Drill {
    pub op: Operator,
    /// Short timeouts, for polling health while nodes are faulted.
    probe: RmClient,
    /// Admin calls (step-down), which may take a while.
    admin: RmClient,
    pub history: Arc<Recorder>,
}

impl Drill {
    pub fn new(op: Operator, probe: RmClient, admin: RmClient, history: Arc<Recorder>) -> Drill {
        Drill {
            op,
            probe,
            admin,
            history,
        }
    }

    async fn leader(&self) -> Result<u64> {
        self.probe
            .wait_leader(&self.op.addr_list(), Duration::from_secs(15))
            .await
            .context("the RMs agree on no leader (waited 15 s)")
    }

    fn addr(&self, id: u64) -> String {
        self.op.addrs().get(&id).cloned().unwrap_or_default()
    }

    fn note(&self, kind: OpType, f: &str, node: u64) {
        self.history
            .record(NEMESIS, kind, f, json!({"node": node}), None);
    }

    /// Starts the load once the cluster has a leader.
    pub async fn start_load(&self, rm: RmClient, spec: LoadSpec) -> Result<Load> {
        let leader = self.leader().await?;
        self.check_group(leader, &spec.group).await?;
        Load::start(rm, self.op.addr_list(), spec, self.history.clone()).await
    }

    /// Fails unless the cluster has `group` as a linearizable leaf the load
    /// can acquire in (a wrong group would make every round fail with
    /// "first admission never").
    async fn check_group(&self, leader: u64, group: &str) -> Result<()> {
        let addr = self.addr(leader);
        if !self.probe.wait_config(&addr, Duration::from_secs(15)).await {
            bail!("the cluster has no resource-group configuration, or the secret is wrong (waited 15 s)");
        }
        // A leader just elected may not confirm its leadership at once
        // (503): ask again for a few seconds.
        let view = self
            .admin
            .at(&addr)
            .with_policy(common::rm::RetryPolicy {
                attempts: 15,
                backoff: Duration::from_millis(40),
            })
            .view(0)
            .await?;
        let Some(g) = view.group(group) else {
            bail!("the cluster has no resource group '{group}' (pass --group with a linearizable leaf group)");
        };
        if g.mode != Mode::Linearizable {
            bail!("resource group '{group}' is eventual, not linearizable");
        }
        Ok(())
    }

    /// One failover round against the current leader.
    pub async fn failover_round(
        &mut self,
        spec: &FailoverSpec,
        load: &Load,
        round: usize,
    ) -> Result<Round> {
        let old = self.leader().await?;
        let old_term = self.probe.health(&self.addr(old)).await?.term;
        let survivors: Vec<String> = self
            .op
            .addrs()
            .iter()
            .filter(|(id, _)| spec.fault == Fault::StepDown || **id != old)
            .map(|(_, a)| a.clone())
            .collect();
        self.note(OpType::Invoke, spec.fault.name(), old);
        let mut step_down = None;
        if spec.fault == Fault::StepDown {
            let (admin, addr) = (self.admin.clone(), self.addr(old));
            step_down = Some(tokio::spawn(async move { admin.step_down(&addr).await }));
        } else {
            self.op.inject(spec.fault, old).await?;
        }
        // The fault is in effect from here (a partition's rules take a
        // few ms to put in place).
        let start_ns = self.history.now_ns();
        let start = Instant::now();
        self.note(OpType::Info, spec.fault.name(), old);
        let mut prober = tokio::spawn(probe_admission(
            self.probe.clone(),
            survivors.clone(),
            spec.load.group.clone(),
            load.session(),
            format!("{}-probe{round}", spec.load.tag),
        ));
        let heal_after = match spec.fault {
            Fault::Pause => Some(spec.pause),
            Fault::Partition => Some(spec.partition),
            Fault::Kill | Fault::StepDown => None,
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut r = Round {
            round,
            fault: spec.fault,
            victim: old,
            new_leader: None,
            detect_ms: None,
            elect_ms: None,
            admit_ms: None,
            fresh_ms: None,
            start_ns,
            end_ns: start_ns,
        };
        let mut healed = false;
        let deadline = Duration::from_secs(30);
        while start.elapsed() < deadline {
            if !healed && heal_after.is_some_and(|h| start.elapsed() >= h) {
                self.heal(old).await?;
                healed = true;
            }
            let hs = healths(&self.probe, &survivors).await;
            let now = start.elapsed();
            if r.detect_ms.is_none() && hs.iter().flatten().any(|h| h.term > old_term) {
                r.detect_ms = Some(ms(now));
            }
            if r.new_leader.is_none() {
                r.new_leader = agreed(&hs).filter(|l| *l != old);
                if r.new_leader.is_some() {
                    r.elect_ms = Some(ms(now));
                }
            }
            if r.admit_ms.is_none() && prober.is_finished() {
                r.admit_ms = match (&mut prober).await {
                    Ok(acked) => Some(ms(acked.duration_since(start))),
                    Err(_) => Some(ms(now)),
                };
            }
            if let (None, Some(new)) = (r.fresh_ms, r.new_leader) {
                let fresh = hs.iter().all(|h| {
                    h.as_ref().is_some_and(|h| {
                        h.leader_id == Some(new)
                            && h.staleness_ms.is_some_and(|s| s <= spec.load.view_bound_ms)
                    })
                });
                if fresh {
                    r.fresh_ms = Some(ms(now));
                }
            }
            let measured = r.detect_ms.is_some()
                && r.elect_ms.is_some()
                && r.admit_ms.is_some()
                && r.fresh_ms.is_some();
            if measured && (healed || heal_after.is_none()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        prober.abort();
        if let Some(task) = step_down {
            match task.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => bail!("round {round}: the step-down failed: {e}"),
                Err(e) => bail!("round {round}: the step-down task failed: {e}"),
            }
        }
        self.heal(old).await?;
        self.wait_caught_up(old).await?;
        r.end_ns = self.history.now_ns();
        Ok(r)
    }

    /// Heals node `id` (if it is under a fault) and says so in the history.
    async fn heal(&mut self, id: u64) -> Result<()> {
        self.note(OpType::Invoke, "heal", id);
        self.op.heal(id).await?;
        self.note(OpType::Info, "heal", id);
        Ok(())
    }

    /// Waits until `node` has applied everything the leader had applied
    /// when the wait began, and the cluster agrees on a leader.
    async fn wait_caught_up(&self, node: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut target = None;
        while Instant::now() < deadline {
            let leader = self
                .probe
                .agreed_leader(&self.op.addr_list())
                .await
                .map(|l| self.addr(l));
            if let (None, Some(l)) = (target, &leader) {
                target = self.probe.health(l).await.ok().and_then(|h| h.last_applied);
            }
            if let (Some(t), Some(_)) = (target, leader) {
                if let Ok(h) = self.probe.health(&self.addr(node)).await {
                    if h.last_applied >= Some(t) {
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("node {node} did not catch up with the leader within 30 s")
    }

    /// Restarts every RM in turn, followers first, the leader last after a
    /// step-down, waiting for each to catch up before the next.
    pub async fn rolling_restart(&mut self, pause_between: Duration) -> Result<Vec<Restart>> {
        let leader = self.leader().await?;
        let mut order: Vec<u64> = self
            .op
            .addrs()
            .keys()
            .copied()
            .filter(|id| *id != leader)
            .collect();
        order.push(leader);
        let mut out = Vec::new();
        for id in order {
            let start_ns = self.history.now_ns();
            let mut handover_ms = None;
            if self.leader().await? == id {
                let t = Instant::now();
                self.note(OpType::Invoke, "step-down", id);
                self.admin
                    .step_down(&self.addr(id))
                    .await
                    .with_context(|| format!("stepping node {id} down"))?;
                let others: Vec<String> = self
                    .op
                    .addrs()
                    .iter()
                    .filter(|(i, _)| **i != id)
                    .map(|(_, a)| a.clone())
                    .collect();
                let new = self
                    .probe
                    .wait_leader(&others, Duration::from_secs(15))
                    .await
                    .filter(|l| *l != id)
                    .with_context(|| format!("no new leader after node {id} stepped down"))?;
                self.note(OpType::Info, "step-down", new);
                handover_ms = Some(t.elapsed().as_secs_f64() * 1000.0);
            }
            let t = Instant::now();
            self.note(OpType::Invoke, "stop", id);
            self.op.stop(id).await?;
            self.note(OpType::Info, "stop", id);
            self.heal(id).await?;
            self.wait_caught_up(id).await?;
            out.push(Restart {
                node: id,
                handover_ms,
                out_ms: t.elapsed().as_secs_f64() * 1000.0,
                start_ns,
                end_ns: self.history.now_ns(),
            });
            tokio::time::sleep(pause_between).await;
        }
        Ok(out)
    }
}

/// Sends fresh acquires to the survivors, round robin, each with the
/// probe's short timeout, until one is admitted (then releases it): the
/// first linearizable admission after the fault, as the cluster allows it,
/// not as a client stuck on the faulted leader sees it.
async fn probe_admission(
    rm: RmClient,
    survivors: Vec<String>,
    group: String,
    session: u64,
    query_id: String,
) -> Instant {
    let mut i = 0;
    loop {
        let addr = survivors[i % survivors.len()].clone();
        i += 1;
        if let Ok(a) = rm.acquire(&addr, &query_id, &group, session).await {
            if a.status == crate::rm_client::AcquireStatus::Admitted {
                let acked = Instant::now();
                // The release is not part of the measurement.
                tokio::spawn(async move { rm.release(&addr, &query_id).await });
                return acked;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One node's restart in a rolling restart.
#[derive(Debug, Clone, Serialize)]
pub struct Restart {
    pub node: u64,
    /// Step-down until the others agree on a new leader (the leader only).
    pub handover_ms: Option<f64>,
    /// Stop until restarted and caught up.
    pub out_ms: f64,
    pub start_ns: u64,
    pub end_ns: u64,
}
