use crate::coding::{DecodeError, EncodeError, RequestErrorCode, SessionErrorCode};

/// Why a session or one of its requests failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The QUIC connection or WebTransport session failed or was closed.
    #[error("transport: {0}")]
    Transport(String),
    /// The WebTransport CONNECT or the QUIC handshake failed.
    #[error("connect: {0}")]
    Connect(String),
    /// The peer sent bytes we could not decode.
    #[error("malformed input: {0}")]
    Decode(#[from] DecodeError),
    /// The peer broke a rule of the protocol; the session closes with `code`.
    #[error("{code}: {reason}")]
    Protocol {
        /// The termination code to close with (usually PROTOCOL_VIOLATION).
        code: SessionErrorCode,
        /// What the peer did.
        reason: String,
    },
    /// The peer closed the session with a MoQT error code.
    #[error("session closed by peer: {code}: {reason}")]
    Closed {
        /// The termination code.
        code: SessionErrorCode,
        /// The peer's reason.
        reason: String,
    },
    /// We closed the session ourselves.
    #[error("session closed locally: {code}: {reason}")]
    ClosedLocally {
        /// The termination code we sent.
        code: SessionErrorCode,
        /// Our reason.
        reason: String,
    },
    /// The peer refused a request with REQUEST_ERROR.
    #[error("request refused: {code}: {reason}")]
    Refused {
        /// The REQUEST_ERROR code.
        code: RequestErrorCode,
        /// The peer's reason.
        reason: String,
        /// The retry interval the peer suggested, in milliseconds plus one (0: do not retry).
        retry_interval: u64,
    },
    /// The request stream was reset or stopped by the peer with this code.
    #[error("request cancelled by peer (code {0:#x})")]
    Cancelled(u64),
    /// Something did not happen in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// A configured or spec limit was exceeded.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// The peer does not speak a version we speak.
    #[error("version negotiation failed: peer offered {0:?}")]
    Version(Vec<String>),
    /// The session has received or sent GOAWAY and no longer takes new requests.
    #[error("session is going away")]
    GoingAway,
    /// A value we were asked to send cannot be encoded.
    #[error("cannot encode: {0}")]
    Encode(#[from] EncodeError),
    /// The argument given to an API call is not valid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// The session termination code to close with when this error ends the session.
    pub fn session_code(&self) -> SessionErrorCode {
        match self {
            Error::Decode(e) => e.session_code(),
            Error::Protocol { code, .. } => *code,
            Error::Timeout("setup") => SessionErrorCode::ControlMessageTimeout,
            Error::Timeout(_) => SessionErrorCode::DataStreamTimeout,
            Error::Version(_) => SessionErrorCode::VersionNegotiationFailed,
            Error::Closed { code, .. } | Error::ClosedLocally { code, .. } => *code,
            _ => SessionErrorCode::InternalError,
        }
    }

    /// A protocol violation with a reason.
    pub(crate) fn violation(reason: impl Into<String>) -> Self {
        Error::Protocol {
            code: SessionErrorCode::ProtocolViolation,
            reason: reason.into(),
        }
    }

    /// A rule broken by the peer that closes the session with a specific code.
    pub(crate) fn protocol(code: SessionErrorCode, reason: impl Into<String>) -> Self {
        Error::Protocol {
            code,
            reason: reason.into(),
        }
    }
}

impl From<web_transport_quinn::SessionError> for Error {
    fn from(e: web_transport_quinn::SessionError) -> Self {
        closed_or_transport(&e, e.to_string())
    }
}

impl From<web_transport_quinn::ReadError> for Error {
    fn from(e: web_transport_quinn::ReadError) -> Self {
        match e {
            web_transport_quinn::ReadError::SessionError(s) => s.into(),
            web_transport_quinn::ReadError::Reset(code) => Error::Cancelled(code.into()),
            // A reset code outside the transport's code space (some peers send HTTP/3-mapped
            // codes on raw QUIC) is still a reset.
            web_transport_quinn::ReadError::InvalidReset(code) => Error::Cancelled(code.into_inner()),
            other => Error::Transport(other.to_string()),
        }
    }
}

impl From<web_transport_quinn::WriteError> for Error {
    fn from(e: web_transport_quinn::WriteError) -> Self {
        match e {
            web_transport_quinn::WriteError::SessionError(s) => s.into(),
            web_transport_quinn::WriteError::Stopped(code) => Error::Cancelled(code.into()),
            web_transport_quinn::WriteError::InvalidStopped(code) => Error::Cancelled(code.into_inner()),
            other => Error::Transport(other.to_string()),
        }
    }
}

impl From<web_transport_quinn::ClosedStream> for Error {
    fn from(e: web_transport_quinn::ClosedStream) -> Self {
        Error::Transport(e.to_string())
    }
}

/// Map a transport close carrying an application code to [`Error::Closed`].
fn closed_or_transport(e: &web_transport_quinn::SessionError, text: String) -> Error {
    use web_transport_quinn::{SessionError, WebTransportError};
    match e {
        SessionError::ConnectionError(quinn::ConnectionError::ApplicationClosed(close)) => Error::Closed {
            code: SessionErrorCode::from_code(close.error_code.into_inner()),
            reason: String::from_utf8_lossy(&close.reason).into_owned(),
        },
        SessionError::WebTransportError(WebTransportError::Closed(code, reason)) => Error::Closed {
            code: SessionErrorCode::from_code(u64::from(*code)),
            reason: reason.clone(),
        },
        SessionError::ConnectionError(quinn::ConnectionError::LocallyClosed) => Error::ClosedLocally {
            code: SessionErrorCode::NoError,
            reason: "closed".into(),
        },
        _ => Error::Transport(text),
    }
}
