use super::transport::TransportError;
use crate::coding::{DecodeError, EncodeError, RequestErrorCode, SessionErrorCode};

/// Why a session or one of its requests failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The transport (QUIC connection, WebTransport session, ...) failed.
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

impl From<TransportError> for Error {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Reset(code) | TransportError::Stopped(code) => Error::Cancelled(code),
            TransportError::Closed { code, reason } => Error::Closed {
                code: SessionErrorCode::from_code(code),
                reason,
            },
            TransportError::LocallyClosed => Error::ClosedLocally {
                code: SessionErrorCode::NoError,
                reason: "closed".into(),
            },
            TransportError::Other(text) => Error::Transport(text),
        }
    }
}
