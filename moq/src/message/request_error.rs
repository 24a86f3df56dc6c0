//! REQUEST_ERROR (draft-18 §10.6): the failure response to any request, with the Redirect
//! structure (§10.6.1) when the Error Code is REDIRECT.
//!
//! ```text
//! REQUEST_ERROR Message {
//!   Type (vi64) = 0x5,
//!   Length (16),
//!   Error Code (vi64),
//!   Retry Interval (vi64),
//!   Error Reason (Reason Phrase),
//!   [Redirect (Redirect),]
//! }
//!
//! Redirect {
//!   Connect URI Length (vi64),
//!   Connect URI (..),
//!   Track Namespace (..),
//!   Track Name Length (vi64),
//!   Track Name (..),
//! }
//! ```

use bytes::{Buf, BufMut};

use crate::coding::{
    decode_varint, encode_length_prefixed, encode_varint, Decode, DecodeError, Encode, ReasonPhrase,
    RequestErrorCode, TrackName, TrackNamespace, Version,
};

use super::{decode_string, decode_track, MAX_MESSAGE_SIZE};

/// A request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError {
    /// Why (unknown codes are kept; receivers treat them as INTERNAL_ERROR).
    pub error_code: RequestErrorCode,
    /// Minimum milliseconds before retrying, plus one; 0 = do not retry.
    pub retry_interval: u64,
    /// Diagnostic text.
    pub error_reason: ReasonPhrase,
    /// Where to retry. On the wire exactly when `error_code` is REDIRECT: decoding fills it
    /// then and only then; encoding writes it then (an absent one as the empty Redirect, "same
    /// URI, same track") and ignores it otherwise.
    pub redirect: Option<Redirect>,
}

impl RequestError {
    /// The Message Type.
    pub const TYPE: u64 = 0x5;
    /// The spec's name.
    pub const NAME: &'static str = "REQUEST_ERROR";

    /// An error without a redirect.
    pub fn new(
        error_code: RequestErrorCode,
        retry_interval: u64,
        error_reason: impl Into<ReasonPhrase>,
    ) -> Self {
        Self {
            error_code,
            retry_interval,
            error_reason: error_reason.into(),
            redirect: None,
        }
    }

    /// A REDIRECT error.
    pub fn redirect(redirect: Redirect, retry_interval: u64, error_reason: impl Into<ReasonPhrase>) -> Self {
        Self {
            error_code: RequestErrorCode::Redirect,
            retry_interval,
            error_reason: error_reason.into(),
            redirect: Some(redirect),
        }
    }
}

/// Where to retry a request: another URI and/or another Full Track Name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redirect {
    /// The URI to connect to; empty = the current session's URI (servers only receive empty).
    pub connect_uri: String,
    /// The namespace to use; with an empty name and namespace, the original request's.
    pub track_namespace: TrackNamespace,
    /// The track name to use (empty for namespace-scoped requests).
    pub track_name: TrackName,
}

impl Decode for Redirect {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let connect_uri = decode_string(buf, "Connect URI", MAX_MESSAGE_SIZE)?;
        let (track_namespace, track_name) = decode_track(buf, version)?;
        Ok(Self {
            connect_uri,
            track_namespace,
            track_name,
        })
    }
}

impl Encode for Redirect {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        encode_length_prefixed(self.connect_uri.as_bytes(), buf);
        self.track_namespace.encode(buf, version);
        self.track_name.encode(buf, version);
    }
}

impl Decode for RequestError {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let error_code = RequestErrorCode::from_code(decode_varint(buf)?);
        let retry_interval = decode_varint(buf)?;
        let error_reason = ReasonPhrase::decode(buf, version)?;
        let redirect = if error_code == RequestErrorCode::Redirect {
            Some(Redirect::decode(buf, version)?)
        } else {
            None
        };
        Ok(Self {
            error_code,
            retry_interval,
            error_reason,
            redirect,
        })
    }
}

impl Encode for RequestError {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        encode_varint(self.error_code.code(), buf);
        encode_varint(self.retry_interval, buf);
        self.error_reason.encode(buf, version);
        if self.error_code == RequestErrorCode::Redirect {
            match &self.redirect {
                Some(redirect) => redirect.encode(buf, version),
                None => Redirect::default().encode(buf, version),
            }
        }
    }
}
