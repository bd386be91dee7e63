//! The coordinator's side of the RMs. Any RM accepts any call (writes are
//! relayed to the leader), so a call that finds an RM unreachable or
//! without a leader moves on to the next one. Calls here are idempotent
//! (acquire and release by query id, renew by session), so retrying after
//! an unknown outcome is safe.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::http::{HttpClient, HttpError};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub struct Rms {
    addrs: Vec<String>,
    /// For calls: a short timeout, so an unreachable RM (a partition, a
    /// paused process) costs little before the next one is tried.
    http: HttpClient,
    /// For the watch's long polls.
    long: HttpClient,
    /// Where to start: the last RM that answered.
    preferred: AtomicUsize,
}

/// Tries per call, across the RMs.
const ATTEMPTS: usize = 6;

/// Longest one call to one RM may take. The RMs answer a write within their
/// commit timeout or say 504; past this the next RM is tried (the calls are
/// idempotent).
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

fn retryable(e: &HttpError) -> bool {
    matches!(e, HttpError::Unreachable { .. }) || matches!(e.status(), Some(502..=504))
}

impl Rms {
    /// `http`'s own timeout is used for long polls; calls get `CALL_TIMEOUT`.
    pub fn new(addrs: Vec<String>, http: HttpClient) -> Rms {
        Rms {
            addrs,
            long: http.clone(),
            http: http.with_timeout(CALL_TIMEOUT),
            preferred: AtomicUsize::new(0),
        }
    }

    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    pub async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
    ) -> Result<Resp, HttpError> {
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            let i = (self.preferred.load(Ordering::Relaxed) + attempt) % self.addrs.len();
            match self
                .http
                .post_json(&format!("http://{}{path}", self.addrs[i]), body)
                .await
            {
                Ok(v) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) if retryable(&e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(50 * (attempt as u64 + 1))).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    pub async fn get<Resp: DeserializeOwned>(&self, path: &str) -> Result<Resp, HttpError> {
        self.get_with(&self.http, path).await
    }

    /// A long poll (the watch), with the long timeout.
    pub async fn get_long<Resp: DeserializeOwned>(&self, path: &str) -> Result<Resp, HttpError> {
        self.get_with(&self.long, path).await
    }

    async fn get_with<Resp: DeserializeOwned>(
        &self,
        http: &HttpClient,
        path: &str,
    ) -> Result<Resp, HttpError> {
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            let i = (self.preferred.load(Ordering::Relaxed) + attempt) % self.addrs.len();
            match http
                .get_json(&format!("http://{}{path}", self.addrs[i]), 1)
                .await
            {
                Ok(v) => return Ok(v),
                Err(e) if retryable(&e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(50 * (attempt as u64 + 1))).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }
}
