//! Admission events for this coordinator, from the RMs' watch: promotions
//! wake queued queries; revocations and queue-timeout failures fail them.
//! An event may arrive before the query starts waiting for it, so
//! unclaimed events are kept (bounded) until claimed.
//!
//! Memory kills come to every coordinator (an eventual-mode query's owner
//! is not in the RMs' ledger); they go out on [`Events::kills`], and the
//! coordinator fails the query if it runs it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::rm::RmClient;
use common::wire::{WatchAnswer, WatchEvent, WatchEventKind};
use tokio::sync::{broadcast, oneshot, watch};

/// Unclaimed events kept, oldest dropped first.
const KEPT: usize = 10_000;

pub struct Events {
    state: Mutex<State>,
    kills: broadcast::Sender<WatchEvent>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            kills: broadcast::channel(1024).0,
        }
    }
}

#[derive(Default)]
struct State {
    waiting: BTreeMap<String, oneshot::Sender<WatchEvent>>,
    unclaimed: BTreeMap<String, WatchEvent>,
    order: VecDeque<String>,
}

impl Events {
    /// The next event for `query_id` (at once if it already came).
    pub fn wait_for(&self, query_id: &str) -> oneshot::Receiver<WatchEvent> {
        let (tx, rx) = oneshot::channel();
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.unclaimed.remove(query_id) {
            Some(e) => {
                let _ = tx.send(e);
            }
            None => {
                s.waiting.insert(query_id.to_string(), tx);
            }
        }
        rx
    }

    /// Memory kills as they arrive.
    pub fn kills(&self) -> broadcast::Receiver<WatchEvent> {
        self.kills.subscribe()
    }

    pub fn forget(&self, query_id: &str) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.waiting.remove(query_id);
        s.unclaimed.remove(query_id);
    }

    fn deliver(&self, e: WatchEvent) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.waiting.remove(&e.query_id) {
            Some(tx) => {
                let _ = tx.send(e);
            }
            None => {
                s.order.push_back(e.query_id.clone());
                s.unclaimed.insert(e.query_id.clone(), e);
                while s.order.len() > KEPT {
                    if let Some(old) = s.order.pop_front() {
                        s.unclaimed.remove(&old);
                    }
                }
            }
        }
    }
}

/// Follows the watch for `coordinator` from the RMs' current position.
pub async fn follow(
    rms: Arc<RmClient>,
    coordinator: String,
    events: Arc<Events>,
    mut stop: watch::Receiver<bool>,
) {
    let mut after: Option<u64> = None;
    loop {
        let answer = tokio::select! {
            _ = stop.wait_for(|s| *s) => None,
            a = async {
                match after {
                    None => rms.health().await.map(|h| WatchAnswer {
                        events: vec![],
                        next_after: h.last_applied.unwrap_or(0),
                        truncated: false,
                        staleness_ms: h.staleness_ms,
                        leader_id: h.leader_id,
                    }),
                    Some(a) => rms.watch(a, Some(&coordinator), 10_000).await,
                }
            } => Some(a),
        };
        let Some(answer) = answer else { return };
        match answer {
            Ok(w) => {
                if w.truncated {
                    tracing::warn!(
                        ?after,
                        "missed admission events; queued queries may wait for their timeout"
                    );
                }
                for e in w.events {
                    if e.kind == WatchEventKind::Killed {
                        // No receiver only means no query to fail.
                        let _ = events.kills.send(e);
                    } else {
                        events.deliver(e);
                    }
                }
                after = Some(w.next_after);
            }
            Err(e) => {
                tracing::debug!(error = %e, "watch failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
