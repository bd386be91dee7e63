//! Shared-secret check for internal and admin routes. A node configured
//! without a secret (allowed on loopback only) lets every request through.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use common::auth::AUTHORIZATION;

use super::{ApiError, AppState};

pub async fn require_secret(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(secret) = &state.secret else {
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
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "unknown".into());
    tracing::warn!(
        path = %request.uri().path(),
        peer = %peer,
        had_header = header.is_some(),
        "refused request: missing or wrong shared secret"
    );
    state.metrics.auth_failed();
    ApiError::Unauthorized.into_response()
}
