//! GOAWAY (draft-18 §10.4): the sender intends to close the session (on the control stream) or
//! to migrate one request (on a request stream).
//!
//! ```text
//! GOAWAY Message {
//!   Type (vi64) = 0x10,
//!   Length (16),
//!   New Session URI Length (vi64),
//!   New Session URI (..),
//!   Timeout (vi64),
//!   [Request ID (vi64)],
//! }
//! ```

use bytes::{Buf, BufMut};

use crate::coding::{
    decode_varint, encode_length_prefixed, encode_varint, Decode, DecodeError, Encode, Version,
};

use super::decode_string;

/// The longest New Session URI the spec allows, in bytes.
pub const MAX_NEW_SESSION_URI_LEN: usize = 8192;

/// Go away, perhaps to a new URI.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Goaway {
    /// Where to reconnect or re-issue the request; empty = reuse the current URI (at most
    /// 8192 bytes; clients always send it empty).
    pub new_session_uri: String,
    /// Milliseconds the sender will wait for graceful closure; 0 = no specific timeout.
    pub timeout: u64,
    /// On the control stream only: the smallest peer Request ID that was not (or might not
    /// have been) processed. Decoded as present exactly when bytes follow the Timeout.
    pub request_id: Option<u64>,
}

impl Goaway {
    /// The Message Type.
    pub const TYPE: u64 = 0x10;
    /// The spec's name.
    pub const NAME: &'static str = "GOAWAY";
}

impl Decode for Goaway {
    /// `buf` must hold exactly the payload: the optional Request ID is present when bytes remain.
    fn decode<B: Buf>(buf: &mut B, _version: Version) -> Result<Self, DecodeError> {
        let new_session_uri = decode_string(buf, "New Session URI", MAX_NEW_SESSION_URI_LEN)?;
        let timeout = decode_varint(buf)?;
        let request_id = if buf.has_remaining() {
            Some(decode_varint(buf)?)
        } else {
            None
        };
        Ok(Self {
            new_session_uri,
            timeout,
            request_id,
        })
    }
}

impl Encode for Goaway {
    fn encode<B: BufMut>(&self, buf: &mut B, _version: Version) {
        encode_length_prefixed(self.new_session_uri.as_bytes(), buf);
        encode_varint(self.timeout, buf);
        if let Some(id) = self.request_id {
            encode_varint(id, buf);
        }
    }
}
