//! Decode errors and the draft-18 error code registries (§14.x, "Error Codes").

/// Why bytes could not be decoded.
///
/// [`DecodeError::Incomplete`] is not a failure: the input ended early and the caller should
/// read more. Every other variant is malformed input and maps to a session error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before the value did; read more bytes and try again.
    #[error("need more bytes")]
    Incomplete,
    /// A length or count exceeds a limit of the spec or of our configuration.
    #[error("{what} of {size} exceeds the limit of {limit}")]
    TooLarge {
        /// The field that was too large.
        what: &'static str,
        /// The size the peer declared.
        size: u64,
        /// The largest size accepted.
        limit: u64,
    },
    /// A control message type that this version does not define.
    #[error("unknown message type {0:#x}")]
    UnknownMessage(u64),
    /// A unidirectional stream type that this version does not define.
    #[error("unknown stream type {0:#x}")]
    UnknownStreamType(u64),
    /// A datagram type that this version does not define.
    #[error("unknown datagram type {0:#x}")]
    UnknownDatagramType(u64),
    /// A message parameter that this version does not define or that is not allowed here.
    #[error("unknown or disallowed parameter {0:#x}")]
    UnknownParameter(u64),
    /// A parameter that may appear once appeared more than once.
    #[error("duplicate parameter {0:#x}")]
    DuplicateParameter(u64),
    /// A Key-Value-Pair or parameter whose value does not match its type's serialization.
    #[error("badly formatted key-value pair {0:#x}")]
    KeyValueFormat(u64),
    /// A message's declared length disagrees with its contents.
    #[error("message length mismatch: declared {declared}, used {used}")]
    LengthMismatch {
        /// The length in the message header.
        declared: usize,
        /// The bytes the payload actually took.
        used: usize,
    },
    /// A field holds a value the spec forbids.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

impl DecodeError {
    /// True when more input could complete the value.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, DecodeError::Incomplete)
    }

    /// The session termination code a receiver closes with for this error.
    pub fn session_code(&self) -> SessionErrorCode {
        match self {
            DecodeError::KeyValueFormat(_) => SessionErrorCode::KeyValueFormattingError,
            _ => SessionErrorCode::ProtocolViolation,
        }
    }
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoding would exceed a length limit of the spec (e.g. 65535-byte control messages).
    #[error("{what} of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its encoded size.
        size: usize,
        /// The largest size allowed.
        limit: usize,
    },
    /// The value cannot be written in this context, e.g. an Object ID that does not follow
    /// the previous one on a subgroup stream, or properties on a stream whose type omits them.
    #[error("cannot encode: {0}")]
    Invalid(&'static str),
}

macro_rules! error_codes {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A code this version does not name (including grease values).
            Unknown(u64),
        }

        impl $name {
            /// The numeric code on the wire.
            pub const fn code(self) -> u64 {
                match self {
                    $($name::$variant => $code,)*
                    $name::Unknown(code) => code,
                }
            }

            /// The named code for a numeric value.
            pub const fn from_code(code: u64) -> Self {
                match code {
                    $($code => $name::$variant,)*
                    other => $name::Unknown(other),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self {
                    $($name::$variant => write!(f, "{} ({:#x})", stringify!($variant), $code),)*
                    $name::Unknown(code) => write!(f, "unknown ({code:#x})"),
                }
            }
        }
    };
}

error_codes! {
    /// Session termination codes (draft-18 §3.4, "Termination").
    SessionErrorCode {
        /// The session is ending without an error.
        NoError = 0x0,
        /// An implementation-specific error.
        InternalError = 0x1,
        /// The client may not establish a session.
        Unauthorized = 0x2,
        /// The peer did something the spec disallows.
        ProtocolViolation = 0x3,
        /// A Request ID with the wrong parity or a duplicate.
        InvalidRequestId = 0x4,
        /// A Track Alias already in use.
        DuplicateTrackAlias = 0x5,
        /// A Key-Value-Pair formatting error.
        KeyValueFormattingError = 0x6,
        /// A PATH the server does not support, or used where it is not allowed.
        InvalidPath = 0x8,
        /// A syntactically invalid PATH.
        MalformedPath = 0x9,
        /// The peer did not close in time after GOAWAY.
        GoawayTimeout = 0x10,
        /// The peer did not answer a control message in time.
        ControlMessageTimeout = 0x11,
        /// The peer stalled on a data stream.
        DataStreamTimeout = 0x12,
        /// The authorization token cache limit was exceeded.
        AuthTokenCacheOverflow = 0x13,
        /// A token alias that is already registered.
        DuplicateAuthTokenAlias = 0x14,
        /// No common version.
        VersionNegotiationFailed = 0x15,
        /// A token that could not be parsed.
        MalformedAuthToken = 0x16,
        /// A token alias that was never registered.
        UnknownAuthTokenAlias = 0x17,
        /// A token that has expired.
        ExpiredAuthToken = 0x18,
        /// An AUTHORITY this server does not serve.
        InvalidAuthority = 0x19,
        /// A syntactically invalid AUTHORITY.
        MalformedAuthority = 0x1a,
    }
}

error_codes! {
    /// REQUEST_ERROR codes (draft-18 §9.8).
    RequestErrorCode {
        /// An implementation-specific error.
        InternalError = 0x0,
        /// The request is not authorized.
        Unauthorized = 0x1,
        /// The request timed out.
        Timeout = 0x2,
        /// The endpoint does not support this request.
        NotSupported = 0x3,
        /// The request's token could not be parsed.
        MalformedAuthToken = 0x4,
        /// The request's token has expired.
        ExpiredAuthToken = 0x5,
        /// The endpoint is going away.
        GoingAway = 0x6,
        /// The endpoint is overloaded.
        ExcessiveLoad = 0x9,
        /// The track or namespace does not exist.
        DoesNotExist = 0x10,
        /// The requested range is invalid.
        InvalidRange = 0x11,
        /// The track is malformed.
        MalformedTrack = 0x12,
        /// A subscription to this track already exists on the session.
        DuplicateSubscription = 0x19,
        /// The receiver does not want this.
        Uninterested = 0x20,
        /// The namespace prefix overlaps an existing one.
        PrefixOverlap = 0x30,
        /// The namespace is too large.
        NamespaceTooLarge = 0x31,
        /// A joining FETCH named a request that is not a subscription.
        InvalidJoiningRequestId = 0x32,
        /// A required extension is not supported.
        UnsupportedExtension = 0x33,
        /// Try elsewhere (see the Redirect structure).
        Redirect = 0x34,
    }
}

error_codes! {
    /// PUBLISH_DONE status codes (draft-18 §9.12).
    PublishDoneCode {
        /// An implementation-specific error.
        InternalError = 0x0,
        /// The subscriber is no longer authorized.
        Unauthorized = 0x1,
        /// The track has ended.
        TrackEnded = 0x2,
        /// The subscription reached its end location.
        SubscriptionEnded = 0x3,
        /// The publisher is going away.
        GoingAway = 0x4,
        /// The subscriber fell too far behind.
        TooFarBehind = 0x5,
        /// The subscription expired.
        Expired = 0x6,
        /// A REQUEST_UPDATE could not be applied.
        UpdateFailed = 0x8,
        /// The publisher is overloaded.
        ExcessiveLoad = 0x9,
        /// The track is malformed.
        MalformedTrack = 0x12,
    }
}

error_codes! {
    /// Stream reset (RESET_STREAM / STOP_SENDING) codes (draft-18 §3.3.2).
    StreamResetCode {
        /// An implementation-specific error.
        InternalError = 0x0,
        /// The stream was cancelled.
        Cancelled = 0x1,
        /// A delivery timeout was exceeded.
        DeliveryTimeout = 0x2,
        /// The session is closing.
        SessionClosed = 0x3,
        /// The endpoint sent or received GOAWAY.
        GoingAway = 0x4,
        /// The subscription fell too far behind.
        TooFarBehind = 0x5,
        /// A FETCH responder cannot tell the next object's status.
        UnknownObjectStatus = 0x6,
        /// The authorization token expired.
        ExpiredAuthToken = 0x7,
        /// The endpoint is overloaded.
        ExcessiveLoad = 0x9,
        /// The track is malformed.
        MalformedTrack = 0x12,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_keep_unknown_values() {
        assert_eq!(
            SessionErrorCode::from_code(0x3),
            SessionErrorCode::ProtocolViolation
        );
        assert_eq!(SessionErrorCode::ProtocolViolation.code(), 0x3);
        assert_eq!(RequestErrorCode::from_code(0x34), RequestErrorCode::Redirect);
        assert_eq!(RequestErrorCode::from_code(0x9d), RequestErrorCode::Unknown(0x9d));
        assert_eq!(StreamResetCode::from_code(0x5).code(), 0x5);
        assert_eq!(
            DecodeError::KeyValueFormat(3).session_code(),
            SessionErrorCode::KeyValueFormattingError
        );
    }
}
