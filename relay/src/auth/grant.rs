//! A session's grant: the token that speaks for a session, the moment it runs out, and
//! refreshing it with a fresh token for the same subject.
//!
//! The grant starts as the SETUP (or `?jwt=`) token's claims; a session that presented none
//! takes the first token one of its requests carries. It ends `EXP_LEEWAY_SECS` after its
//! `exp` ([`Grant::deadline`]), when [`expire`] closes the session with EXPIRED_AUTH_TOKEN,
//! unless a fresh token was presented first ([`Grant::refresh`]): same `sub`, a namespace
//! prefix covering the grant's, at least the actions it grants, signature and expiry verified
//! by the caller. Anything else is refused and changes nothing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use banyan_moq::coding::SessionErrorCode;
use banyan_moq::session::Session;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::{Action, AuthError, Claims, ClaimsExt as _, EXP_LEEWAY_SECS};

/// The claims that speak for one session and when they run out.
#[derive(Debug)]
pub struct Grant {
    claims: Mutex<Option<Claims>>,
    /// Milliseconds since the Unix epoch after which the session is closed; `None` while the
    /// session has no token (auth off, or none presented yet).
    deadline: watch::Sender<Option<u64>>,
}

/// What [`Grant::refresh`] did with a valid token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// The token became the session's grant (it had none).
    Granted,
    /// The grant now ends later.
    Extended,
    /// The token is fine but ends no later than the grant: nothing changed.
    Unchanged,
}

impl Grant {
    /// A grant for the claims established at setup (`None`: no token yet).
    pub fn new(claims: Option<Claims>) -> Self {
        let deadline = claims.as_ref().map(deadline_ms);
        Self {
            claims: Mutex::new(claims),
            deadline: watch::Sender::new(deadline),
        }
    }

    /// The claims currently speaking for the session.
    pub fn claims(&self) -> Option<Claims> {
        self.claims.lock().clone()
    }

    /// The subject (`sub`) of the grant, if it has one.
    pub fn subject(&self) -> Option<String> {
        self.claims.lock().as_ref().and_then(|c| c.sub.clone())
    }

    /// When the session ends, in milliseconds since the Unix epoch (`exp` plus the leeway).
    pub fn deadline(&self) -> Option<u64> {
        *self.deadline.borrow()
    }

    /// Offer `fresh` (already verified: signature, expiry) as the session's new grant. It is
    /// refused with [`AuthError::OtherSubject`] when its `sub` differs from the grant's and
    /// with [`AuthError::NarrowerScope`] when it does not cover the grant's namespace prefix or
    /// actions; a refusal changes nothing.
    pub fn refresh(&self, fresh: &Claims) -> Result<Refreshed, AuthError> {
        let mut claims = self.claims.lock();
        let Some(current) = claims.as_ref() else {
            *claims = Some(fresh.clone());
            self.deadline.send_replace(Some(deadline_ms(fresh)));
            return Ok(Refreshed::Granted);
        };
        if fresh.sub != current.sub {
            return Err(AuthError::OtherSubject);
        }
        if !covers(fresh, current) {
            return Err(AuthError::NarrowerScope);
        }
        if fresh.exp <= current.exp {
            return Ok(Refreshed::Unchanged);
        }
        *claims = Some(fresh.clone());
        self.deadline.send_replace(Some(deadline_ms(fresh)));
        Ok(Refreshed::Extended)
    }

    /// A receiver that sees every change of the deadline.
    pub fn watch(&self) -> watch::Receiver<Option<u64>> {
        self.deadline.subscribe()
    }
}

/// Close `session` with EXPIRED_AUTH_TOKEN when `grant` runs out (its deadline, moved by
/// every refresh). Returns once it has closed the session; never returns for a grant without
/// a token. Run it beside the session (the relay runs it in the session's own task set).
pub async fn expire(grant: &Grant, session: &Session) {
    let mut deadline = grant.watch();
    loop {
        let Some(at) = *deadline.borrow_and_update() else {
            if deadline.changed().await.is_err() {
                return std::future::pending().await;
            }
            continue;
        };
        tokio::select! {
            _ = tokio::time::sleep(until(at)) => {
                // A refresh that raced the timer wins.
                if grant.deadline().is_some_and(|now_at| now_at > at) {
                    continue;
                }
                let reason = format!(
                    "authorization token expired ({EXP_LEEWAY_SECS} s after its exp); refresh it before exp"
                );
                tracing::info!(subject = grant.subject().as_deref().unwrap_or(""), "session closed: token expired");
                end_session(session, SessionErrorCode::ExpiredAuthToken, &reason);
                return;
            }
            changed = deadline.changed() => if changed.is_err() {
                return std::future::pending().await;
            },
        }
    }
}

/// End a session from the relay's side: its requests and subscriptions stop, and the peer
/// gets the session termination `code` and `reason` (CONNECTION_CLOSE on raw QUIC, the
/// WebTransport/WebSocket close elsewhere). The one path for "this client may no longer be
/// here" (token expiry; a ban).
pub fn end_session(session: &Session, code: SessionErrorCode, reason: &str) {
    session.close(code, reason);
}

/// True when `fresh` grants at least what `current` does: its prefix is `current`'s or a
/// shorter one, and it allows every action `current` allows.
fn covers(fresh: &Claims, current: &Claims) -> bool {
    let (Some(wide), Some(narrow)) = (fresh.prefix(), current.prefix()) else {
        return false;
    };
    narrow.has_prefix(&wide)
        && [Action::Publish, Action::Subscribe]
            .into_iter()
            .all(|action| !current.grants(action) || fresh.grants(action))
}

/// The grant's end: `exp` plus the leeway, in milliseconds since the Unix epoch.
fn deadline_ms(claims: &Claims) -> u64 {
    claims.exp.saturating_add(EXP_LEEWAY_SECS).saturating_mul(1000)
}

/// How long from now until `at_ms` (zero when it has passed).
fn until(at_ms: u64) -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Duration::from_millis(at_ms).saturating_sub(now)
}
