//! This coordinator's session with the RMs: registered at start, renewed at
//! a third of its lease (the lease the latest answer states: it is
//! configuration, and may change while the session lives). If renewal keeps failing past the lease (a
//! partition, a long pause), the session is lost: its admissions are being
//! revoked, so running queries must stop. Then a new session is registered.
//! A query that finds the session expired (its acquire was refused for it)
//! pokes `recheck`, so the keeper renews at once instead of at its next turn.

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::api::{RegisterSession, RenewSession, SessionAnswer};
use tokio::sync::{watch, Notify};

use crate::rm::Rms;

/// The current session, `None` while there is none.
pub type SessionId = Option<u64>;

/// What a coordinator's drivers hold of the session.
pub struct SessionLink {
    pub current: watch::Receiver<SessionId>,
    pub lease: Arc<Lease>,
    /// Asks the keeper to renew now (a refusal said it expired).
    pub recheck: Arc<Notify>,
}

/// Until when this side may count on the session, by its own monotonic
/// clock. The keeper notices a lost session only when it runs again, and
/// after a pause the HTTP server may run first: a poll checks this, so it
/// never reports a query running on an admission the RMs have revoked.
#[derive(Debug, Default)]
pub struct Lease {
    valid_until: std::sync::Mutex<Option<Instant>>,
}

impl Lease {
    /// Whether the session is certainly still alive at the RMs now.
    pub fn holds(&self) -> bool {
        self.lock().is_some_and(|t| Instant::now() < t)
    }

    fn set(&self, until: Option<Instant>) {
        *self.lock() = until;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.valid_until.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub async fn keep(
    rms: Arc<Rms>,
    coordinator: String,
    current: watch::Sender<SessionId>,
    lease_clock: Arc<Lease>,
    recheck: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let asked = Instant::now();
        let registered: Result<SessionAnswer, _> = rms
            .post(
                "/v1/sessions",
                &RegisterSession {
                    coordinator: coordinator.to_string(),
                },
            )
            .await;
        let (session, mut lease) = match registered {
            Ok(a) => (a.session, Duration::from_millis(a.lease_ms)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot register a session; retrying");
                (0, Duration::ZERO)
            }
        };
        if lease.is_zero() {
            if sleep_or_stop(&mut stop, Duration::from_millis(500)).await {
                return;
            }
            continue;
        }
        tracing::info!(
            session,
            lease_ms = lease.as_millis() as u64,
            "session registered"
        );
        // The RMs expire the session a lease after they commit a renewal,
        // which is after it was sent: counting from the send, with a margin
        // for clock drift, this side gives up first.
        let mut valid_until = asked + safe(lease);
        lease_clock.set(Some(valid_until));
        current.send_replace(Some(session));
        loop {
            let stopped = tokio::select! {
                s = sleep_or_stop(&mut stop, lease / 3) => s,
                _ = recheck.notified() => false,
            };
            if stopped {
                return;
            }
            let sent = Instant::now();
            // A renewal still unanswered when the session runs out must not
            // keep it alive here.
            let renewed = tokio::time::timeout_at(
                valid_until.into(),
                rms.post::<_, SessionAnswer>("/v1/sessions/renew", &RenewSession { session }),
            )
            .await;
            match renewed {
                Ok(Ok(a)) => {
                    // The lease is configuration and may change: follow it.
                    if a.lease_ms > 0 {
                        lease = Duration::from_millis(a.lease_ms);
                    }
                    valid_until = sent + safe(lease);
                    lease_clock.set(Some(valid_until));
                }
                Ok(Err(e)) if e.status() == Some(410) => {
                    tracing::warn!(session, "session expired; its admissions are revoked");
                    break;
                }
                Ok(Err(e)) => tracing::warn!(session, error = %e, "cannot renew the session"),
                Err(_) => {}
            }
            if Instant::now() >= valid_until {
                tracing::warn!(
                    session,
                    "no renewal within the lease; treating the session as lost"
                );
                break;
            }
        }
        lease_clock.set(None);
        current.send_replace(None);
    }
}

/// The part of a lease this side counts on: 90%, for clock drift between
/// this process and the RM leader that stamps log time.
fn safe(lease: Duration) -> Duration {
    lease * 9 / 10
}

/// Sleeps; true if asked to stop meanwhile.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let stopped = tokio::select! {
        _ = stop.wait_for(|s| *s) => true,
        _ = tokio::time::sleep(d) => false,
    };
    stopped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_holds_only_until_its_time() {
        let l = Lease::default();
        assert!(!l.holds(), "no session yet");
        l.set(Some(Instant::now() + Duration::from_secs(60)));
        assert!(l.holds());
        l.set(Some(Instant::now() - Duration::from_millis(1)));
        assert!(!l.holds(), "past its time (a pause outlived it)");
        l.set(None);
        assert!(!l.holds());
    }
}
