//! Client-side batching of acquires and releases.
//!
//! A coordinator with many queries in flight sends one request per acquire
//! and per release; under load the leader spends more on HTTP than on the
//! commits, which its group commit already shares. Here the calls of one
//! client gather while a batch is on its way, and go out together as the
//! next `POST /v1/admission/batch` (at most [`IN_FLIGHT`] batches on their
//! way at once, [`MAX_BATCH_OPS`] operations each). A lone call goes to its
//! single route, so an idle client adds no latency and its errors are the
//! route's own.
//!
//! Each call keeps its own answer and the one retry policy: a batch is sent
//! under it like any call, a batch that fails as a whole gives every call
//! its error, and an operation the RMs answer with a retryable error (a
//! timeout, an overloaded leader) is retried alone through its single
//! route, as that call would have been. Retrying is safe because acquire
//! and release are idempotent by query id.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{retryable, RmClient};
use crate::api::{
    Acquire, AcquireAnswer, AdmissionBatch, AdmissionBatchAnswer, AdmissionOp, AdmissionOpAnswer,
    Release, ReleaseAnswer, MAX_BATCH_OPS,
};
use crate::http::HttpError;

/// Batches on their way at once. Measured side by side against unbatched
/// clients (`jepsen bench admission --baseline-unbatched`, release, 6 s):
/// with 2, 4 and 8, 16 clients made 1897, 1985 and 2034 acquires/s (the
/// unbatched ones about 2300), 64 clients 6553, 6531 and 6655 (about
/// 6450), 256 clients 18922, 18449 and 18636 (about 12100).
pub const IN_FLIGHT: usize = 8;

type OpResult = Result<AdmissionOpAnswer, HttpError>;

struct Call {
    op: AdmissionOp,
    answer: oneshot::Sender<OpResult>,
}

/// The queue of one batching client; dropping the last clone of the
/// client ends its task once the queue is empty.
pub struct Batcher {
    queue: mpsc::UnboundedSender<Call>,
}

const BATCH_PATH: &str = "/v1/admission/batch";

impl Batcher {
    /// Starts the task that sends `client`'s batches.
    pub fn start(client: RmClient) -> Batcher {
        let (queue, calls) = mpsc::unbounded_channel();
        tokio::spawn(run(client, calls));
        Batcher { queue }
    }

    pub async fn acquire(&self, request: Acquire) -> Result<AcquireAnswer, HttpError> {
        match self.call(AdmissionOp::Acquire(request)).await? {
            AdmissionOpAnswer::Acquire(a) => Ok(a),
            other => Err(mismatch(other)),
        }
    }

    pub async fn release(&self, request: Release) -> Result<ReleaseAnswer, HttpError> {
        match self.call(AdmissionOp::Release(request)).await? {
            AdmissionOpAnswer::Release(a) => Ok(a),
            other => Err(mismatch(other)),
        }
    }

    async fn call(&self, op: AdmissionOp) -> OpResult {
        let (answer, answered) = oneshot::channel();
        let stopped = || HttpError::Decode {
            url: BATCH_PATH.into(),
            message: "the batching task stopped (runtime shutting down)".into(),
        };
        self.queue
            .send(Call { op, answer })
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

/// An answer of the wrong kind, or an operation's error, as the error its
/// single route would have given.
fn mismatch(answer: AdmissionOpAnswer) -> HttpError {
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

async fn run(client: RmClient, mut calls: mpsc::UnboundedReceiver<Call>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = calls.recv().await {
        // Waiting for a slot is when the next batch gathers.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_OPS {
            match calls.try_recv() {
                Ok(call) => batch.push(call),
                Err(_) => break,
            }
        }
        let client = client.clone();
        tokio::spawn(async move {
            send(&client, batch).await;
            drop(slot);
        });
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
                    AdmissionOpAnswer::Error { .. } if retryable(&mismatch(answer.clone())) => {
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
