//! Client-side batching of acquires and releases.
//!
//! A coordinator with many queries in flight would send one request per
//! acquire and per release, and with hundreds of them the leader's
//! per-request work (HTTP, one task each) outweighs the commits, which its
//! group commit already shares. Here the calls of one client gather while
//! batches are on their way, and go out together as the next
//! `POST /v1/admission/batch` (at most [`IN_FLIGHT`] batches on their way
//! at once, [`MAX_BATCH_OPS`] operations each). A call that finds a free
//! slot and nothing queued goes at once, from its own task, to its single
//! route: an idle client adds no latency and its errors are the route's
//! own.
//!
//! Each call keeps its own answer and the one retry policy: a batch is sent
//! under it like any call, a batch that fails as a whole gives every call
//! its error, and an operation the RMs answer with a retryable error (a
//! timeout, an overloaded leader) is retried alone through its single
//! route, as that call would have been. Retrying is safe because acquire
//! and release are idempotent by query id.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::{retryable, RmClient};
use crate::api::{
    Acquire, AcquireAnswer, AdmissionBatch, AdmissionBatchAnswer, AdmissionOp, AdmissionOpAnswer,
    Release, ReleaseAnswer, MAX_BATCH_OPS,
};
use crate::http::HttpError;

/// Batches on their way at once. Side by side against unbatched clients
/// (`jepsen bench admission --baseline-unbatched`, release, 6 s, log in
/// segment files), acquires/s batched vs unbatched: with 8 in flight, 16
/// clients 2921 vs 3306, 64 clients 9056 vs 8469, 256 clients 23039 vs
/// 13764; with 16 in flight, 3297 vs 3461, 9399 vs 8537 and 20908 vs
/// 13646. A lone call is sent at once either way (1 client: 539 vs 506).
pub const IN_FLIGHT: usize = 16;

type OpResult = Result<AdmissionOpAnswer, HttpError>;

struct Call {
    /// Tells the caller's own call from the others'.
    id: u64,
    op: AdmissionOp,
    answer: oneshot::Sender<OpResult>,
}

/// One batching client's queue. No task of its own: a caller that finds
/// a free slot sends what is queued (its own call among it), so a lone
/// call goes out at once from the caller's task, with no hop; a batch
/// holding other callers' calls is sent from a task of its own, so that
/// no caller giving up can cancel the others' request.
pub struct Batcher {
    client: RmClient,
    queue: Arc<Mutex<Vec<Call>>>,
    slots: Arc<Semaphore>,
    next_id: AtomicU64,
}

const BATCH_PATH: &str = "/v1/admission/batch";

impl Batcher {
    /// A batcher sending through `client` (which must not batch itself).
    pub fn start(client: RmClient) -> Batcher {
        Batcher {
            client,
            queue: Arc::new(Mutex::new(Vec::new())),
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
            next_id: AtomicU64::new(0),
        }
    }

    pub async fn acquire(&self, request: Acquire) -> Result<AcquireAnswer, HttpError> {
        match self.call(AdmissionOp::Acquire(request)).await? {
            AdmissionOpAnswer::Acquire(a) => Ok(a),
            other => Err(as_error(other)),
        }
    }

    pub async fn release(&self, request: Release) -> Result<ReleaseAnswer, HttpError> {
        match self.call(AdmissionOp::Release(request)).await? {
            AdmissionOpAnswer::Release(a) => Ok(a),
            other => Err(as_error(other)),
        }
    }

    async fn call(&self, op: AdmissionOp) -> OpResult {
        let (answer, answered) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.queue).push(Call { id, op, answer });
        // Queued first, then a slot tried: a sender that frees its slot
        // after this try looks at the queue after this push (see `Slot`).
        if let Some((slot, batch)) = take(&self.client, &self.queue, &self.slots) {
            if batch.len() == 1 && batch[0].id == id {
                // Only our own call: sent from this task.
                slot.send(batch).await;
            } else {
                tokio::spawn(slot.send(batch));
            }
        }
        answered.await.map_err(|_| HttpError::Decode {
            url: BATCH_PATH.into(),
            message: "the batch carrying this call was dropped (runtime shutting down)".into(),
        })?
    }
}

fn lock(queue: &Mutex<Vec<Call>>) -> std::sync::MutexGuard<'_, Vec<Call>> {
    queue.lock().unwrap_or_else(|p| p.into_inner())
}

/// One of the [`IN_FLIGHT`] places for a batch on its way. Freeing it
/// (however its sender ends, a caller giving up included) sends what
/// queued meanwhile, from a task: the callers waiting for it found no
/// free place.
struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    client: RmClient,
    queue: Arc<Mutex<Vec<Call>>>,
    slots: Arc<Semaphore>,
}

impl Slot {
    async fn send(self, batch: Vec<Call>) {
        send(&self.client, batch).await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.permit.take());
        // Outside a runtime (it is going away) the queued calls are
        // dropped with it, and their callers told so.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if let Some((slot, batch)) = take(&self.client, &self.queue, &self.slots) {
            runtime.spawn(slot.send(batch));
        }
    }
}

/// A free slot and what is queued (at most [`MAX_BATCH_OPS`]), if both.
fn take(
    client: &RmClient,
    queue: &Arc<Mutex<Vec<Call>>>,
    slots: &Arc<Semaphore>,
) -> Option<(Slot, Vec<Call>)> {
    let mut q = lock(queue);
    if q.is_empty() {
        return None;
    }
    let permit = slots.clone().try_acquire_owned().ok()?;
    let n = q.len().min(MAX_BATCH_OPS);
    let batch = q.drain(..n).collect();
    let slot = Slot {
        permit: Some(permit),
        client: client.clone(),
        queue: queue.clone(),
        slots: slots.clone(),
    };
    Some((slot, batch))
}

/// An operation's error as the error its single route would have given,
/// or an answer of the wrong kind as a decoding error.
fn as_error(answer: AdmissionOpAnswer) -> HttpError {
    match answer {
        AdmissionOpAnswer::Error { status, body } => HttpError::Status {
            url: BATCH_PATH.into(),
            status,
            body,
        },
        other => HttpError::Decode {
            url: BATCH_PATH.into(),
            message: format!("answer of the wrong kind: {other:?}"),
        },
    }
}

/// Sends `batch` and answers each of its calls.
async fn send(client: &RmClient, batch: Vec<Call>) {
    if batch.len() == 1 {
        let call = batch.into_iter().next().expect("one call");
        let answer = single(client, &call.op).await;
        let _ = call.answer.send(answer);
        return;
    }
    let (ops, answers): (Vec<AdmissionOp>, Vec<oneshot::Sender<OpResult>>) =
        batch.into_iter().map(|c| (c.op, c.answer)).unzip();
    let body = AdmissionBatch { ops };
    let result: Result<AdmissionBatchAnswer, HttpError> = client.post(BATCH_PATH, &body).await;
    match result {
        Ok(a) if a.answers.len() == answers.len() => {
            for ((op, answer), to) in body.ops.iter().zip(a.answers).zip(answers) {
                let answer = match answer {
                    AdmissionOpAnswer::Error { .. } if retryable(&as_error(answer.clone())) => {
                        single(client, op).await
                    }
                    answer => Ok(answer),
                };
                let _ = to.send(answer);
            }
        }
        Ok(a) => {
            let e = HttpError::Decode {
                url: BATCH_PATH.into(),
                message: format!(
                    "{} answers to {} operations",
                    a.answers.len(),
                    answers.len()
                ),
            };
            for to in answers {
                let _ = to.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for to in answers {
                let _ = to.send(Err(e.clone()));
            }
        }
    }
}

/// `op` through its single route, under the client's retry policy.
async fn single(client: &RmClient, op: &AdmissionOp) -> OpResult {
    match op {
        AdmissionOp::Acquire(r) => client
            .post("/v1/admission/acquire", r)
            .await
            .map(AdmissionOpAnswer::Acquire),
        AdmissionOp::Release(r) => client
            .post("/v1/admission/release", r)
            .await
            .map(AdmissionOpAnswer::Release),
    }
}
