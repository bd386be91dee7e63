//! Every interval, announce this worker and send its heartbeat to every RM
//! (each RM builds its own view; no Raft traffic), each RM on its own loop
//! ([`common::rm::report_to_every_rm`]). Each answer
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
    /// Reports to every RM, each on its own loop (see
    /// [`common::rm::report_to_every_rm`]), and samples this node's CPU
    /// every interval for the heartbeats.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let cpu = Arc::new(AtomicU64::new(0f64.to_bits()));
        let ttl_ms = common::rm::report_ttl(this.interval).as_millis() as u64;
        let (me, sampled) = (this.clone(), cpu.clone());
        let reports =
            common::rm::report_to_every_rm(&this.rms, this.interval, stop.clone(), move |to| {
                let (me, sampled) = (me.clone(), sampled.clone());
                async move {
                    let announcement = Announcement {
                        node_id: me.node_id.clone(),
                        role: "worker".into(),
                        addr: me.advertise.clone(),
                        ttl_ms,
                    };
                    let heartbeat = WorkerHeartbeat {
                        node_id: me.node_id.clone(),
                        memory: me.tasks.pool().snapshot(),
                        cpu_cores: f64::from_bits(sampled.load(Ordering::Relaxed)),
                        running_tasks: me.tasks.running(),
                        ttl_ms,
                        queries: me.tasks.resources(),
                    };
                    to.announce(&announcement).await?;
                    for k in &to.heartbeat(&heartbeat).await?.kills {
                        carry_out(&me.tasks, k);
                    }
                    Ok(())
                }
            });
        let sample = async {
            let mut meter = CpuMeter::new(None);
            let mut tick = tokio::time::interval(this.interval);
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tick.tick() => cpu.store(meter.cores_since_last().to_bits(), Ordering::Relaxed),
                }
            }
        };
        tokio::join!(reports, sample);
    }
}

/// Stops the tasks of a query the RMs killed (a no-op if none runs here).
pub fn carry_out(tasks: &Tasks, k: &common::wire::KillOrder) {
    let stopped = tasks.kill_query(&k.query_id, &k.error_name, &k.message);
    if stopped > 0 {
        tracing::warn!(query = %k.query_id, error = %k.error_name, decision = k.decision, stopped, "query killed for memory; tasks stopped");
    }
}
