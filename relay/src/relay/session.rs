//! One session at the relay: handshake, authorize, accept and serve it; and the live
//! sessions, for GOAWAY at shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::future::Future;
use std::net::SocketAddr;

use banyan_moq::session::{Error, PendingSession, Session};
use parking_lot::Mutex;
use tracing::Instrument;

use super::Node;
use crate::auth::{self, Claims, Grant};
use crate::request::{SessionHandler, Shared};

/// Live sessions, for GOAWAY at shutdown and for ending a subject's sessions.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    map: Mutex<HashMap<u64, (Session, Arc<Grant>)>>,
    next: AtomicU64,
    pub(super) changed: tokio::sync::Notify,
}

impl Sessions {
    fn insert(&self, session: Session, grant: Arc<Grant>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.map.lock().insert(id, (session, grant));
        id
    }

    fn remove(&self, id: u64) {
        self.map.lock().remove(&id);
        self.changed.notify_waiters();
    }

    pub(super) fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub(super) fn all(&self) -> Vec<Session> {
        self.map
            .lock()
            .values()
            .map(|(session, _)| session.clone())
            .collect()
    }

    /// The live sessions whose token names `subject` (`sub`).
    pub(super) fn of_subject(&self, subject: &str) -> Vec<Session> {
        self.map
            .lock()
            .values()
            .filter(|(_, grant)| grant.subject().as_deref() == Some(subject))
            .map(|(session, _)| session.clone())
            .collect()
    }
}

/// Handshake (QUIC or WebSocket), authorize and serve one connection.
pub(super) async fn serve_connection(
    remote: SocketAddr,
    handshake: impl Future<Output = Result<PendingSession, Error>>,
    node: &Node,
) {
    let pending = match handshake.await {
        Ok(pending) => pending,
        Err(e) => {
            tracing::debug!(%remote, error = %e, "handshake failed");
            return;
        }
    };
    let kind = pending.transport();
    let span = tracing::info_span!("conn", %remote, transport = %kind);
    node.serve(pending).instrument(span).await;
}

/// Authorize, accept and serve one session until it ends (see [`Node::serve`]).
pub(super) async fn serve_session(pending: PendingSession, shared: &Arc<Shared>, sessions: &Sessions) {
    let kind = pending.transport();
    let claims = match session_claims(&pending, shared) {
        Ok(claims) => claims,
        Err(e) => {
            shared.metrics.auth_failures.inc();
            tracing::info!(error = %e, "session refused: bad token");
            pending.reject(e.session_code(), &e.to_string());
            return;
        }
    };
    let (session, driver) = match pending.accept().await {
        Ok(parts) => parts,
        Err(e) => {
            tracing::debug!(error = %e, "session setup failed");
            return;
        }
    };
    let _gauge = shared.metrics.session_guard(kind);
    shared.metrics.sessions_accepted.inc();
    let grant = Arc::new(Grant::new(claims));
    let id = sessions.insert(session.clone(), grant.clone());
    tracing::info!("session started");
    let handler = SessionHandler::new(shared.clone(), session, grant);
    let driver = tokio::spawn(driver.run().in_current_span());
    handler.run().await;
    match driver.await {
        Ok(Err(e)) => tracing::info!(error = %e, "session ended"),
        _ => tracing::info!("session ended"),
    }
    sessions.remove(id);
}

/// Session-level claims from a SETUP AUTHORIZATION TOKEN, or `?jwt=` in the URL for browsers.
/// `Ok(None)` when auth is off or no token was sent (requests may then carry their own).
fn session_claims(pending: &PendingSession, shared: &Shared) -> Result<Option<Claims>, auth::AuthError> {
    let Some(authenticator) = &shared.auth else {
        return Ok(None);
    };
    let token = auth::jwt_from_tokens(&pending.setup().authorization_tokens)
        .or_else(|| pending.url().and_then(auth::token_from_url).map(Ok));
    match token {
        None => Ok(None),
        Some(jwt) => authenticator.verify(&jwt?).map(Some),
    }
}
