//! The cluster web UI, served by every coordinator at `/ui/` (no separate
//! server): three pages and a query page, one static HTML file, one script
//! and one style sheet embedded in the binary (no build step), polling this
//! coordinator's JSON every second.
//!
//! - `/ui/api/cluster`, `/ui/api/groups`, `/ui/api/queries`,
//!   `/ui/api/query/{id}`: each page's data ([`common::api::ClusterPage`]
//!   and the others), built in [`pages`] from the RMs' global view, this
//!   coordinator's own state, and the other coordinators' accounts relayed
//!   by an RM. Read-only.
//! - `/ui/api/local/queries[/{id}]`: this coordinator's own queries, for
//!   the RMs' relay (internal: the shared secret guards them).
//!
//! Who may open the pages is `--web-ui`: requests from loopback only (the
//! default), everyone (read-only), or no one; and then the client
//! authentication Trino's clients get (`--password-file`).

pub mod pages;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use common::auth::{SecretGuard, SharedSecret};
use serde_json::json;

use crate::config::WebUi;
use crate::http::AppState;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

pub fn router(
    state: AppState,
    access: WebUi,
    secret: Option<SharedSecret>,
    mutual_tls: bool,
) -> Router {
    let pages = Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(|| asset("text/html; charset=utf-8", INDEX_HTML)),
        )
        .route(
            "/ui/app.js",
            get(|| asset("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/ui/app.css",
            get(|| asset("text/css; charset=utf-8", APP_CSS)),
        )
        .route("/ui/api/cluster", get(cluster))
        .route("/ui/api/groups", get(groups))
        .route("/ui/api/queries", get(queries))
        .route("/ui/api/query/{id}", get(query))
        // Beyond the access rule, the client authentication clients get.
        .layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            crate::authn::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(access, guard));
    let internal = Router::new()
        .route("/ui/api/local/queries", get(local_queries))
        .route("/ui/api/local/queries/{id}", get(local_query))
        // The RMs' relay (and operators' tools) only.
        .layer(axum::middleware::from_fn_with_state(
            common::auth::RoleGuard {
                roles: &["raft-rm", "admin"],
                enforced: mutual_tls,
                reads_open: false,
            },
            common::auth::require_role,
        ))
        .layer(axum::middleware::from_fn_with_state(
            SecretGuard::new(secret),
            common::auth::require_secret,
        ));
    pages.merge(internal).with_state(state)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The assets are the binary's: a new version must not run an
            // old cached script against its new JSON.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Whether `--web-ui` lets this request in.
fn allowed(access: WebUi, peer: Option<std::net::SocketAddr>) -> bool {
    match access {
        WebUi::All => true,
        WebUi::Off => false,
        WebUi::Loopback => peer.is_some_and(|p| p.ip().is_loopback()),
    }
}

async fn guard(State(access): State<WebUi>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<common::listener::Peer>>()
        .map(|c| c.0.addr);
    if allowed(access, peer) {
        return next.run(request).await;
    }
    let why = match access {
        WebUi::Off => "the web UI is off on this coordinator (--web-ui off)",
        _ => "the web UI answers requests from this machine only (--web-ui loopback); start the coordinator with --web-ui all to open it to the network",
    };
    (StatusCode::FORBIDDEN, Json(json!({"error": why}))).into_response()
}

fn not_found(message: String) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": message}))).into_response()
}

async fn cluster(State(state): State<AppState>) -> Response {
    Json(pages::cluster_page(&state.coordinator).await).into_response()
}

async fn groups(State(state): State<AppState>) -> Response {
    Json(pages::groups_page(&state.coordinator).await).into_response()
}

async fn queries(State(state): State<AppState>) -> Response {
    Json(pages::queries_page(&state.coordinator).await).into_response()
}

async fn query(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    if !common::api::is_query_id(&id) {
        return not_found(format!("'{id}' is not a query id"));
    }
    match pages::query_page(&state.coordinator, &id).await {
        Some(page) => Json(page).into_response(),
        None => not_found(format!("No query {id} is known to this cluster")),
    }
}

async fn local_queries(State(state): State<AppState>) -> Response {
    Json(pages::local_queries(&state.coordinator)).into_response()
}

async fn local_query(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match pages::local_query(&state.coordinator, &id) {
        Some(detail) => Json(detail).into_response(),
        None => not_found(format!("Query not found: {id}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_web_ui_is_open_as_configured() {
        let local = Some("127.0.0.1:5000".parse().unwrap());
        let remote = Some("10.1.2.3:5000".parse().unwrap());
        assert!(allowed(WebUi::Loopback, local));
        assert!(!allowed(WebUi::Loopback, remote));
        assert!(!allowed(WebUi::Loopback, None), "unknown peer");
        assert!(allowed(WebUi::All, remote));
        assert!(!allowed(WebUi::Off, local));
    }

    #[test]
    fn the_assets_are_embedded_and_refer_to_each_other() {
        assert!(INDEX_HTML.contains("app.js") && INDEX_HTML.contains("app.css"));
        for route in ["api/cluster", "api/groups", "api/queries", "api/query/"] {
            assert!(APP_JS.contains(route), "app.js fetches {route}");
        }
    }
}
