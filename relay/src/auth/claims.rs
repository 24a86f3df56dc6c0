//! What a token grants ([`Action`], [`ClaimsExt`]) and why one is refused ([`AuthError`]).

use banyan_moq::coding::{RequestErrorCode, SessionErrorCode, TrackNamespace};

use super::Claims;

/// What a token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// PUBLISH_NAMESPACE and PUBLISH.
    Publish,
    /// SUBSCRIBE, FETCH, TRACK_STATUS and SUBSCRIBE_NAMESPACE.
    Subscribe,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
        })
    }
}

/// What a relay reads from [`Claims`]: the namespace prefix and what it grants.
pub trait ClaimsExt {
    /// The namespace prefix as a [`TrackNamespace`]; leading and trailing `/` are ignored.
    /// `None` when `ns` is not a valid namespace (e.g. `"a//b"`).
    fn prefix(&self) -> Option<TrackNamespace>;

    /// True when the token grants `action` (regardless of namespace).
    fn grants(&self, action: Action) -> bool;

    /// True when the token grants `action` on `namespace` (field-wise prefix match).
    fn allows(&self, action: Action, namespace: &TrackNamespace) -> bool {
        self.check(action, namespace).is_ok()
    }

    /// Like [`allows`](Self::allows), with the reason for a refusal:
    /// [`AuthError::NotAllowed`] when the action is not granted at all,
    /// [`AuthError::WrongNamespace`] when `namespace` is outside the prefix.
    fn check(&self, action: Action, namespace: &TrackNamespace) -> Result<(), AuthError> {
        if !self.grants(action) {
            return Err(AuthError::NotAllowed(action));
        }
        match self.prefix() {
            Some(prefix) if namespace.has_prefix(&prefix) => Ok(()),
            Some(_) => Err(AuthError::WrongNamespace),
            None => Err(AuthError::Malformed),
        }
    }
}

impl ClaimsExt for Claims {
    fn prefix(&self) -> Option<TrackNamespace> {
        TrackNamespace::from_path(self.ns.trim_matches('/')).ok()
    }

    fn grants(&self, action: Action) -> bool {
        match action {
            Action::Publish => self.publish,
            Action::Subscribe => self.subscribe,
        }
    }
}

/// Why a request or session was not authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token was presented.
    #[error("no authorization token")]
    Missing,
    /// The token is not a well-formed Banyan JWT (bad encoding, claims or size).
    #[error("malformed authorization token")]
    Malformed,
    /// The token's `exp` has passed.
    #[error("authorization token expired")]
    Expired,
    /// The signature does not verify with the relay's key (or uses another algorithm).
    #[error("authorization token signature does not verify")]
    BadSignature,
    /// The namespace is outside the token's `ns` prefix.
    #[error("authorization token does not cover this namespace")]
    WrongNamespace,
    /// The token does not grant this action.
    #[error("authorization token does not allow {0}")]
    NotAllowed(Action),
    /// A token offered to refresh a session names another subject (`sub`) than the session's.
    #[error("authorization token is for another subject than this session's")]
    OtherSubject,
    /// A token offered to refresh a session grants less (namespace or actions) than the
    /// session's.
    #[error("authorization token grants less than this session's token")]
    NarrowerScope,
    /// The token's `sub` is banned from the broadcast by a moderator.
    #[error("banned from this broadcast")]
    Banned,
}

impl AuthError {
    /// The REQUEST_ERROR code for refusing a request with this error.
    pub fn request_code(&self) -> RequestErrorCode {
        match self {
            AuthError::Malformed => RequestErrorCode::MalformedAuthToken,
            AuthError::Expired => RequestErrorCode::ExpiredAuthToken,
            AuthError::Missing
            | AuthError::BadSignature
            | AuthError::WrongNamespace
            | AuthError::NotAllowed(_)
            | AuthError::OtherSubject
            | AuthError::NarrowerScope
            | AuthError::Banned => RequestErrorCode::Unauthorized,
        }
    }

    /// The session termination code for refusing a session (token in SETUP) with this error.
    pub fn session_code(&self) -> SessionErrorCode {
        match self {
            AuthError::Malformed => SessionErrorCode::MalformedAuthToken,
            AuthError::Expired => SessionErrorCode::ExpiredAuthToken,
            AuthError::Missing
            | AuthError::BadSignature
            | AuthError::WrongNamespace
            | AuthError::NotAllowed(_)
            | AuthError::OtherSubject
            | AuthError::NarrowerScope
            | AuthError::Banned => SessionErrorCode::Unauthorized,
        }
    }
}
