//! Fencing: follow the RMs' watch for revoked admissions and stop the tasks
//! that run on them. A coordinator whose session lapsed (a pause, a
//! partition) may not know yet; the worker does not wait for it. Memory
//! kills come on the same watch and are carried out at once (the heartbeat
//! answers repeat them, for a watch that fell behind).

use std::sync::Arc;
use std::time::Duration;

use common::http::HttpClient;
use common::wire::WatchAnswer;
use serde::Deserialize;
use tokio::sync::watch;

use crate::tasks::Tasks;

#[derive(Deserialize)]
struct Health {
    last_applied: Option<u64>,
}

pub async fn follow_revocations(
    rms: Vec<String>,
    http: HttpClient,
    tasks: Arc<Tasks>,
    mut stop: watch::Receiver<bool>,
) {
    let mut i = 0usize;
    // Start from the RMs' current position: revocations before this worker
    // started have no tasks here.
    let mut after = loop {
        let url = format!("http://{}/v1/health", rms[i % rms.len()]);
        // Finish the select before awaiting anything else: its output
        // borrows the stop channel.
        let health = tokio::select! {
            _ = stop.wait_for(|s| *s) => None,
            h = http.get_json::<Health>(&url, 1) => Some(h),
        };
        match health {
            None => return,
            Some(Ok(h)) => break h.last_applied.unwrap_or(0),
            Some(Err(_)) => {
                i += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    loop {
        let rm = &rms[i % rms.len()];
        let url = format!("http://{rm}/v1/watch?after={after}&timeout_ms=10000");
        let answer = tokio::select! {
            _ = stop.wait_for(|s| *s) => None,
            a = http.get_json::<WatchAnswer>(&url, 1) => Some(a),
        };
        let Some(answer) = answer else { return };
        match answer {
            Ok(w) => {
                if w.truncated {
                    tracing::warn!(after, "missed admission events (the RM dropped them); revocations in that gap are not applied here");
                }
                for e in w.events.iter().filter(|e| e.kind == "killed") {
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
                for e in w.events.iter().filter(|e| e.kind == "revoked") {
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
                tracing::debug!(rm = %rm, error = %e, "watch failed; trying the next RM");
                i += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
