//! The internal shared secret.
//!
//! Raft RPCs, admin and internal endpoints carry it as a bearer token. It is
//! read from a file (never a flag, so it does not show in `ps`), trimmed of
//! surrounding white space, and compared in constant time.

use std::fmt;
use std::path::Path;

/// Header that carries the secret: `Authorization: Bearer <secret>`.
pub const AUTHORIZATION: &str = "authorization";

/// Shortest secret accepted: anything shorter is guessable.
pub const MIN_SECRET_LEN: usize = 16;

/// The secret this process sends, and every secret it accepts: the file
/// holds one per line, the first sent and each accepted, so a secret can
/// be changed without a moment when two processes disagree (add the new
/// one second everywhere, then first, then remove the old one).
#[derive(Clone, PartialEq, Eq)]
pub struct SharedSecret {
    accepted: Vec<String>,
}

/// Most secrets a file may hold: the one in use and the one replacing it.
pub const MAX_SECRETS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read shared secret file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("shared secret in {path} is {len} bytes; at least {MIN_SECRET_LEN} are required")]
    TooShort { path: String, len: usize },
    #[error("shared secret in {path} contains a character that cannot go in an HTTP header")]
    NotHeaderSafe { path: String },
    #[error("{path} holds {count} secrets; at most {MAX_SECRETS} (one per line: the one sent, then the one being replaced or replacing it)")]
    TooMany { path: String, count: usize },
}

impl SharedSecret {
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let shown = path.display().to_string();
        let raw = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&raw, &shown)
    }

    fn parse(text: &str, path: &str) -> Result<Self, SecretError> {
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if lines.len() > MAX_SECRETS {
            return Err(SecretError::TooMany {
                path: path.to_string(),
                count: lines.len(),
            });
        }
        if lines.is_empty() {
            return Err(SecretError::TooShort {
                path: path.to_string(),
                len: 0,
            });
        }
        for secret in &lines {
            if secret.len() < MIN_SECRET_LEN {
                return Err(SecretError::TooShort {
                    path: path.to_string(),
                    len: secret.len(),
                });
            }
            if !secret.bytes().all(|b| (0x21..0x7f).contains(&b)) {
                return Err(SecretError::NotHeaderSafe {
                    path: path.to_string(),
                });
            }
        }
        Ok(Self {
            accepted: lines.into_iter().map(str::to_string).collect(),
        })
    }

    /// The value of the `Authorization` header (the first secret).
    pub fn header_value(&self) -> String {
        format!("Bearer {}", self.accepted[0])
    }

    /// Checks an `Authorization` header value against every accepted
    /// secret, each in time independent of where the first difference is.
    pub fn verify_header(&self, header: Option<&str>) -> bool {
        let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        let mut any = false;
        for secret in &self.accepted {
            let (a, b) = (token.as_bytes(), secret.as_bytes());
            let mut diff = a.len() ^ b.len();
            for (i, expected) in b.iter().enumerate() {
                diff |= (a.get(i).copied().unwrap_or(0) ^ expected) as usize;
            }
            any |= diff == 0;
        }
        any
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

/// The one check of internal requests, for every process that serves them
/// (an axum middleware: `from_fn_with_state(guard, require_secret)`). A
/// process without a secret (allowed on loopback only) lets every request
/// through. A refusal is logged with the peer and answered 401
/// `{"error": ..., "kind": "unauthorized"}`.
#[derive(Clone)]
pub struct SecretGuard {
    secret: Option<SharedSecret>,
    /// Called on each refusal (a node counts them in its metrics).
    on_refusal: std::sync::Arc<dyn Fn() + Send + Sync>,
}

impl SecretGuard {
    pub fn new(secret: Option<SharedSecret>) -> SecretGuard {
        SecretGuard {
            secret,
            on_refusal: std::sync::Arc::new(|| {}),
        }
    }

    /// Also calls `f` on every refusal.
    pub fn on_refusal(mut self, f: impl Fn() + Send + Sync + 'static) -> SecretGuard {
        self.on_refusal = std::sync::Arc::new(f);
        self
    }
}

/// What a refused request is told.
pub const REFUSED: &str = "missing or wrong shared secret";

/// The middleware of [`SecretGuard`].
pub async fn require_secret(
    axum::extract::State(guard): axum::extract::State<SecretGuard>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(secret) = &guard.secret else {
        return next.run(request).await;
    };
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if secret.verify_header(header) {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<crate::listener::Peer>>()
        .map(|c| c.0.addr.to_string())
        .unwrap_or_else(|| "unknown".into());
    tracing::warn!(
        path = %request.uri().path(),
        peer = %peer,
        had_header = header.is_some(),
        "refused request: {REFUSED}"
    );
    (guard.on_refusal)();
    (
        axum::http::StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({"error": REFUSED, "kind": "unauthorized"})),
    )
        .into_response()
}

/// Limits routes to peers whose client certificate names one of `roles`
/// (an axum middleware: `from_fn_with_state(guard, require_role)`), when
/// the server verifies client certificates (mutual TLS). Without mutual
/// TLS every request passes: the shared secret is the check then. A
/// refusal is 403 `{"error": ..., "kind": "forbidden"}`.
#[derive(Clone, Copy, Debug)]
pub struct RoleGuard {
    pub roles: &'static [&'static str],
    /// The server verifies client certificates.
    pub enforced: bool,
    /// `GET`s pass whatever the role (reads of the configuration that
    /// every process follows).
    pub reads_open: bool,
}

pub async fn require_role(
    axum::extract::State(guard): axum::extract::State<RoleGuard>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !guard.enforced || (guard.reads_open && request.method() == axum::http::Method::GET) {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<crate::listener::Peer>>()
        .map(|c| c.0.clone());
    let role = peer.as_ref().and_then(|p| p.role);
    if role.is_some_and(|r| guard.roles.contains(&r)) {
        return next.run(request).await;
    }
    let presented = match (&peer, role) {
        (_, Some(r)) => format!("a {r} certificate"),
        (Some(p), None) if p.certified => "a certificate naming no role (its subject's OU)".into(),
        _ => "no client certificate".into(),
    };
    tracing::warn!(
        path = %request.uri().path(),
        peer = %peer.map(|p| p.addr.to_string()).unwrap_or_else(|| "unknown".into()),
        "refused request: {presented}"
    );
    (
        axum::http::StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({
            "error": format!("{} takes only {} certificates; the peer presented {presented}", request.uri().path(), guard.roles.join(" or ")),
            "kind": "forbidden",
        })),
    )
        .into_response()
}

/// A name another process gives us (a node, coordinator, query or task
/// id): non-empty, at most 256 bytes, no control characters.
pub fn check_name(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
        return Err(format!("{field}: must be 1 to 256 printable characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_exact_bearer_token() {
        let s = SharedSecret::parse("0123456789abcdef", "t").unwrap();
        assert!(s.verify_header(Some("Bearer 0123456789abcdef")));
        assert!(!s.verify_header(Some("Bearer 0123456789abcdeF")));
        assert!(!s.verify_header(Some("Bearer 0123456789abcde")));
        assert!(!s.verify_header(Some("Bearer 0123456789abcdef0")));
        assert!(!s.verify_header(Some("0123456789abcdef")));
        assert!(!s.verify_header(None));
    }

    #[test]
    fn refuses_short_or_unsafe_secrets_and_never_prints_them() {
        assert!(matches!(
            SharedSecret::parse("short", "f"),
            Err(SecretError::TooShort { len: 5, .. })
        ));
        assert!(SharedSecret::parse("0123456789 abcdef", "f").is_err());
        let s = SharedSecret::parse("0123456789abcdef", "f").unwrap();
        assert!(!format!("{s:?}").contains("0123"));
    }

    #[test]
    fn a_second_secret_is_accepted_during_a_change_and_the_first_is_sent() {
        let s =
            SharedSecret::parse("new-secret-0123456789\n old-secret-0123456789 \n", "f").unwrap();
        assert_eq!(s.header_value(), "Bearer new-secret-0123456789");
        assert!(s.verify_header(Some("Bearer old-secret-0123456789")));
        assert!(s.verify_header(Some("Bearer new-secret-0123456789")));
        assert!(!s.verify_header(Some("Bearer other-secret-0123456")));
        assert!(matches!(
            SharedSecret::parse("aaaaaaaaaaaaaaaa\nbbbbbbbbbbbbbbbb\ncccccccccccccccc", "f"),
            Err(SecretError::TooMany { count: 3, .. })
        ));
        assert!(matches!(
            SharedSecret::parse("\n\n", "f"),
            Err(SecretError::TooShort { len: 0, .. })
        ));
    }

    #[test]
    fn reads_and_trims_a_file() {
        let dir = std::env::temp_dir().join(format!("secret-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("secret");
        std::fs::write(&f, "  0123456789abcdef\n").unwrap();
        let s = SharedSecret::from_file(&f).unwrap();
        assert!(s.verify_header(Some("Bearer 0123456789abcdef")));
        assert!(SharedSecret::from_file(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
