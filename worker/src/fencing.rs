//! Fencing: follow the RMs' watch for revoked admissions and stop the tasks
//! that run on them. A coordinator whose session lapsed (a pause, a
//! partition) may not know yet; the worker does not wait for it. Memory
//! kills come on the same watch and are carried out at once (the heartbeat
//! answers repeat them, for a watch that fell behind).

use std::sync::Arc;
use std::time::Duration;

use common::rm::RmClient;
use common::wire::WatchEventKind;
use tokio::sync::watch;

use crate::tasks::Tasks;

pub async fn follow_revocations(rms: RmClient, tasks: Arc<Tasks>, mut stop: watch::Receiver<bool>) {
    // Start from the RMs' current position: revocations before this worker
    // started have no tasks here.
    let mut after = loop {
        // Finish the select before awaiting anything else: its output
        // borrows the stop channel.
        let health = tokio::select! {
            _ = stop.wait_for(|s| *s) => None,
            h = rms.health() => Some(h),
        };
        match health {
            None => return,
            Some(Ok(h)) => break h.last_applied.unwrap_or(0),
            Some(Err(_)) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    loop {
        let answer = tokio::select! {
            _ = stop.wait_for(|s| *s) => None,
            a = rms.watch(after, None, 10_000) => Some(a),
        };
        let Some(answer) = answer else { return };
        match answer {
            Ok(w) => {
                if w.truncated {
                    tracing::warn!(after, "missed admission events (the RM dropped them); revocations in that gap are not applied here");
                }
                for e in w.events.iter().filter(|e| e.kind == WatchEventKind::Killed) {
                    crate::report::carry_out(
                        &tasks,
                        &common::wire::KillOrder {
                            query_id: e.query_id.clone(),
                            error_name: e.error_name.clone().unwrap_or_default(),
                            message: e.reason.clone().unwrap_or_default(),
                            decision: e.index,
                        },
                    );
                }
                for e in w
                    .events
                    .iter()
                    .filter(|e| e.kind == WatchEventKind::Revoked)
                {
                    if let Some(token) = e.fencing_token {
                        let n = tasks.revoke(&e.query_id, token);
                        if n > 0 {
                            tracing::warn!(query = %e.query_id, token, stopped = n, "admission revoked; tasks stopped");
                        }
                    }
                }
                after = w.next_after;
            }
            Err(e) => {
                tracing::debug!(error = %e, "watch failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
