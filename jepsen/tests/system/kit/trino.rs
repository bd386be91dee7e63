//! A Trino-protocol client for the system tests: the steps one by one
//! (submit, poll, cancel) and a whole query recorded as a client saw it.
//! `jepsen::trino` is the harness's client; it reports how a query ended,
//! where these tests assert on every state, row and column seen.

use std::time::{Duration, Instant};

use common::http::{HttpClient, HttpError};
use serde_json::Value;

/// How long one query may take from submission to its end.
const QUERY_WITHIN: Duration = Duration::from_secs(15);

/// What a Trino client saw of one query.
#[derive(Debug, Default)]
pub struct Seen {
    pub states: Vec<String>,
    pub data: Option<Value>,
    pub columns: Option<Value>,
    pub error: Option<Value>,
    /// First and last poll that reported RUNNING.
    pub running: Option<(Instant, Instant)>,
}

#[derive(Clone)]
pub struct TrinoClient {
    http: HttpClient,
}

impl Default for TrinoClient {
    fn default() -> Self {
        // Clients of the protocol carry no internal secret.
        Self {
            http: HttpClient::new(None, Duration::from_secs(10)),
        }
    }
}

impl TrinoClient {
    /// `POST /v1/statement` as `user` (none: no user header) with session
    /// properties `session`; answers the first `QueryResults`.
    pub async fn submit(
        &self,
        coordinator: &str,
        user: Option<&str>,
        sql: &str,
        session: &[(&str, &str)],
    ) -> Result<Value, HttpError> {
        let session_header = session
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut headers = Vec::new();
        if let Some(user) = user {
            headers.push(("x-trino-user", user));
        }
        if !session_header.is_empty() {
            headers.push(("x-trino-session", session_header.as_str()));
        }
        let url = format!("http://{coordinator}/v1/statement");
        let body = self
            .http
            .post_bytes(&url, "text/plain", sql.as_bytes().to_vec(), None, &headers)
            .await?;
        serde_json::from_slice(&body).map_err(|e| HttpError::Decode {
            url,
            message: e.to_string(),
        })
    }

    /// One poll of a `nextUri`.
    pub async fn poll(&self, next: &str) -> Result<Value, HttpError> {
        self.http.get_json(next, 1).await
    }

    /// `DELETE` on a `nextUri`: cancels the query.
    pub async fn cancel(&self, next: &str) -> Result<(), HttpError> {
        self.http.delete(next).await.map(drop)
    }

    /// The exact status of a `DELETE` on `uri` (reqwest itself: the
    /// shared client does not say which success it got).
    pub async fn cancel_status(&self, uri: &str) -> u16 {
        reqwest::Client::new()
            .delete(uri)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// A coordinator's `/metrics` text.
    pub async fn metrics(&self, coordinator: &str) -> String {
        let bytes = self
            .http
            .get_bytes(&format!("http://{coordinator}/metrics"), &[])
            .await
            .unwrap();
        String::from_utf8(bytes).unwrap()
    }

    /// Submits `sql` and follows `nextUri` to the end, recording every
    /// state, row and column seen.
    pub async fn run(
        &self,
        coordinator: &str,
        user: &str,
        sql: &str,
        session: &[(&str, &str)],
    ) -> Seen {
        let mut r = self
            .submit(coordinator, Some(user), sql, session)
            .await
            .unwrap();
        let mut seen = Seen::default();
        let deadline = Instant::now() + QUERY_WITHIN;
        loop {
            let state = r["stats"]["state"].as_str().unwrap_or("").to_string();
            if state == "RUNNING" {
                let now = Instant::now();
                seen.running = Some(seen.running.map_or((now, now), |(a, _)| (a, now)));
            }
            if seen.states.last() != Some(&state) {
                seen.states.push(state);
            }
            // As real clients do: every response's rows are appended.
            if let Some(rows) = r["data"].as_array() {
                let mut all = seen
                    .data
                    .take()
                    .and_then(|d| d.as_array().cloned())
                    .unwrap_or_default();
                all.extend(rows.iter().cloned());
                seen.data = Some(Value::Array(all));
            }
            if r.get("columns").is_some() {
                seen.columns = Some(r["columns"].clone());
            }
            if r.get("error").is_some() {
                seen.error = Some(r["error"].clone());
            }
            let Some(next) = r["nextUri"].as_str() else {
                return seen;
            };
            assert!(Instant::now() < deadline, "query never ended: {seen:?}");
            r = self.poll(next).await.unwrap();
        }
    }
}

/// [`TrinoClient::run`] with a fresh client.
pub async fn run_query(coordinator: &str, user: &str, sql: &str, session: &[(&str, &str)]) -> Seen {
    TrinoClient::default()
        .run(coordinator, user, sql, session)
        .await
}
