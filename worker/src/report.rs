//! Every interval, announce this worker and send its heartbeat to every RM
//! (each RM builds its own view; no Raft traffic). An RM that does not
//! answer is logged once per outage and retried next interval. Each answer
//! lists the memory kills the RMs decided; the worker stops those queries'
//! tasks itself, so a kill holds even when the query's coordinator is dead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::cpu::CpuMeter;
use common::rm::RmClient;
use common::wire::{Announcement, WorkerHeartbeat};
use tokio::sync::watch;

use crate::tasks::Tasks;

pub struct Reporter {
    pub node_id: String,
    pub advertise: String,
    pub rms: RmClient,
    pub interval: Duration,
    pub tasks: Arc<Tasks>,
}

impl Reporter {
    /// Reports to every RM, each on its own loop: a paused or cut-off RM
    /// delays only its own reports, never the others' (which would let
    /// this worker's entry expire on healthy RMs).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let cpu = Arc::new(AtomicU64::new(0f64.to_bits()));
        let mut loops = tokio::task::JoinSet::new();
        for rm in this.rms.addrs().to_vec() {
            loops.spawn(this.clone().report_to(rm, cpu.clone(), stop.clone()));
        }
        let mut meter = CpuMeter::new(None);
        let mut tick = tokio::time::interval(this.interval);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = tick.tick() => cpu.store(meter.cores_since_last().to_bits(), Ordering::Relaxed),
            }
        }
        loops.shutdown().await;
    }

    async fn report_to(
        self: Arc<Self>,
        rm: String,
        cpu: Arc<AtomicU64>,
        mut stop: watch::Receiver<bool>,
    ) {
        // Three missed intervals and an RM forgets this worker; a report
        // slower than that is of no use.
        let ttl = self.interval * 3;
        let ttl_ms = ttl.as_millis() as u64;
        let to = self.rms.at(&rm);
        let mut down = false;
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tick.tick() => {}
            }
            let announcement = Announcement {
                node_id: self.node_id.clone(),
                role: "worker".into(),
                addr: self.advertise.clone(),
                ttl_ms,
            };
            let heartbeat = WorkerHeartbeat {
                node_id: self.node_id.clone(),
                memory: self.tasks.pool().snapshot(),
                cpu_cores: f64::from_bits(cpu.load(Ordering::Relaxed)),
                running_tasks: self.tasks.running(),
                ttl_ms,
                queries: self.tasks.resources(),
            };
            let sent = async {
                to.announce(&announcement).await?;
                to.heartbeat(&heartbeat).await
            };
            let answer = match tokio::time::timeout(ttl, sent).await {
                Ok(Ok(a)) => Ok(a),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {} ms", ttl_ms)),
            };
            match answer {
                Ok(a) => {
                    for k in &a.kills {
                        carry_out(&self.tasks, k);
                    }
                    if std::mem::take(&mut down) {
                        tracing::info!(rm = %rm, "reporting to RM again");
                    }
                }
                Err(e) if !down => {
                    down = true;
                    tracing::warn!(rm = %rm, error = %e, "cannot report to RM");
                }
                Err(_) => {}
            }
        }
    }
}

/// Stops the tasks of a query the RMs killed (a no-op if none runs here).
pub fn carry_out(tasks: &Tasks, k: &common::wire::KillOrder) {
    let stopped = tasks.kill_query(&k.query_id, &k.error_name, &k.message);
    if stopped > 0 {
        tracing::warn!(query = %k.query_id, error = %k.error_name, decision = k.decision, stopped, "query killed for memory; tasks stopped");
    }
}
