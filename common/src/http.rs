//! The one HTTP client: a pooled `reqwest` client with per-request timeouts,
//! the internal secret attached, and typed errors that separate "could not
//! reach the peer" (retry elsewhere, or report `Unreachable`) from "the peer
//! answered with an error" (report what it said).

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::{SharedSecret, AUTHORIZATION};

pub const CONTENT_BINCODE: &str = "application/x-bincode";
pub const CONTENT_JSON: &str = "application/json";

/// Clone: one failed batch request is every one of its operations' answer
/// (see `rm::RmClient::batching`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    /// Connect failure, reset, or timeout: nothing is known about whether
    /// the peer acted on the request.
    #[error("{url}: unreachable: {source}")]
    Unreachable {
        url: String,
        source: std::sync::Arc<reqwest::Error>,
    },
    /// The peer answered with a non-success status.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: cannot decode response: {message}")]
    Decode { url: String, message: String },
}

impl HttpError {
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The connection was never made (refused, or no route): the peer
    /// cannot have acted on the request, so sending it elsewhere is safe.
    pub fn never_sent(&self) -> bool {
        matches!(self, HttpError::Unreachable { source, .. } if source.is_connect())
    }

    /// No answer came in time: the peer may be alive and merely slow.
    pub fn timed_out(&self) -> bool {
        matches!(self, HttpError::Unreachable { source, .. } if source.is_timeout())
    }
}

#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: reqwest::Client,
    secret: Option<SharedSecret>,
    timeout: Duration,
    /// Set: the others are called over HTTPS, verified with this.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// A Trino client's `Authorization: Basic` value, sent instead of the
    /// secret.
    basic: Option<String>,
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(500))
        .pool_idle_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
}

impl HttpClient {
    /// `timeout` bounds each request unless a call gives its own.
    pub fn new(secret: Option<SharedSecret>, timeout: Duration) -> Self {
        let inner = builder()
            .build()
            // Building fails only if the TLS backend cannot initialise:
            // rustls with ring needs nothing from the system.
            .expect("reqwest client with the ring provider always builds");
        Self {
            inner,
            secret,
            timeout,
            tls: None,
            basic: None,
        }
    }

    /// The same client authenticating as `user` with `password` (HTTP
    /// basic authentication, as Trino's clients do), instead of any secret.
    pub fn with_basic_auth(self, user: &str, password: &str) -> Self {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Self {
            basic: Some(format!("Basic {token}")),
            ..self
        }
    }

    /// The same client calling the others over HTTPS with `tls` (their
    /// certificates verified against its CA, ours presented when asked);
    /// `None`: unchanged.
    pub fn with_tls(self, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        let Some(config) = tls else {
            return self;
        };
        let inner = builder()
            .use_preconfigured_tls(rustls::ClientConfig::clone(&config))
            .build()
            .expect("reqwest client with a rustls configuration always builds");
        Self {
            inner,
            tls: Some(config),
            ..self
        }
    }

    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The URL of `path` (with its `/`) on the process at `addr`
    /// (HOST:PORT), in this client's scheme.
    pub fn url(&self, addr: &str, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme())
    }

    /// The default timeout of each request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The same client (pool, secret) with another default timeout.
    pub fn with_timeout(&self, timeout: Duration) -> HttpClient {
        HttpClient {
            timeout,
            ..self.clone()
        }
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let mut req = self.inner.request(method, url).timeout(self.timeout);
        if let Some(basic) = &self.basic {
            req = req.header(AUTHORIZATION, basic);
        } else if let Some(secret) = &self.secret {
            req = req.header(AUTHORIZATION, secret.header_value());
        }
        req
    }

    async fn send(&self, url: &str, req: reqwest::RequestBuilder) -> Result<Vec<u8>, HttpError> {
        let unreachable = |source| HttpError::Unreachable {
            url: url.to_string(),
            source: std::sync::Arc::new(source),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(HttpError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).chars().take(2000).collect(),
            });
        }
        Ok(body.to_vec())
    }

    /// POSTs raw bytes; returns the body of a 2xx answer.
    pub async fn post_bytes(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        timeout: Option<Duration>,
        headers: &[(&str, &str)],
    ) -> Result<Vec<u8>, HttpError> {
        let mut req = self
            .request(reqwest::Method::POST, url)
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.send(url, req).await
    }

    /// GETs raw bytes (one attempt).
    pub async fn get_bytes(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Vec<u8>, HttpError> {
        let mut req = self.request(reqwest::Method::GET, url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.send(url, req).await
    }

    /// DELETEs `url`; returns the body of a 2xx answer (one attempt).
    pub async fn delete(&self, url: &str) -> Result<Vec<u8>, HttpError> {
        self.send(url, self.request(reqwest::Method::DELETE, url))
            .await
    }

    pub async fn post_json<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        url: &str,
        body: &Req,
    ) -> Result<Resp, HttpError> {
        let bytes = serde_json::to_vec(body).map_err(|e| HttpError::Decode {
            url: url.to_string(),
            message: format!("cannot encode request: {e}"),
        })?;
        let answer = self.post_bytes(url, CONTENT_JSON, bytes, None, &[]).await?;
        decode_json(url, &answer)
    }

    /// GETs JSON. `GET`s are idempotent, so an unreachable peer is retried
    /// `attempts` times in all, with a short pause in between.
    pub async fn get_json<Resp: DeserializeOwned>(
        &self,
        url: &str,
        attempts: u32,
    ) -> Result<Resp, HttpError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .send(url, self.request(reqwest::Method::GET, url))
                .await
            {
                Ok(body) => return decode_json(url, &body),
                Err(HttpError::Unreachable { .. }) if tries < attempts.max(1) => {
                    tokio::time::sleep(Duration::from_millis(50 * tries as u64)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn decode_json<T: DeserializeOwned>(url: &str, body: &[u8]) -> Result<T, HttpError> {
    serde_json::from_slice(body).map_err(|e| HttpError::Decode {
        url: url.to_string(),
        message: e.to_string(),
    })
}

/// `value` as one URL path segment: every byte but RFC 3986's unreserved
/// ones percent-encoded, so a `/` or `..` inside it stays inside it.
pub fn path_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    // A segment of dots alone is still "." or ".." to a URL parser.
    if !out.is_empty() && out.bytes().all(|b| b == b'.') {
        return out.replace('.', "%2E");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_peer_times_out_and_a_closed_port_was_never_sent_to() {
        // Accepts connections (the kernel backlog) but never answers.
        let slow = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = HttpClient::new(None, Duration::from_millis(100));
        let url = format!("http://{}/x", slow.local_addr().unwrap());
        let e = client.get_bytes(&url, &[]).await.unwrap_err();
        assert!(e.timed_out() && !e.never_sent(), "{e}");
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e = client
            .get_bytes(&format!("http://{closed}/x"), &[])
            .await
            .unwrap_err();
        assert!(e.never_sent() && !e.timed_out(), "{e}");
    }

    #[test]
    fn a_path_segment_cannot_leave_its_place() {
        assert_eq!(path_segment("q_1-a"), "q_1-a");
        assert_eq!(path_segment("../admin"), "..%2Fadmin");
        assert_eq!(path_segment(".."), "%2E%2E");
        assert_eq!(path_segment("a b?c#"), "a%20b%3Fc%23");
    }
}
