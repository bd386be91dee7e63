//! This coordinator's session with the RMs, kept by the one
//! [`common::session::SessionKeeper`] (registered at start, renewed at a
//! third of its lease, replaced when it expires or cannot be renewed within
//! its lease: then its admissions are being revoked and running queries
//! must stop). A query that finds the session expired (its acquire was
//! refused for it) pokes `recheck`, so the keeper renews at once instead of
//! at its next turn.

use std::sync::Arc;

pub use common::session::Lease;
use common::session::SessionKeeper;
use tokio::sync::{watch, Notify};

/// The current session, `None` while there is none.
pub type SessionId = Option<u64>;

/// What a coordinator's drivers hold of the session.
pub struct SessionLink {
    pub current: watch::Receiver<SessionId>,
    pub lease: Arc<Lease>,
    /// Asks the keeper to renew now (a refusal said it expired).
    pub recheck: Arc<Notify>,
}

impl SessionLink {
    pub fn of(keeper: &SessionKeeper) -> SessionLink {
        SessionLink {
            current: keeper.subscribe(),
            lease: keeper.lease(),
            recheck: keeper.recheck(),
        }
    }
}
