//! PUBLISH_DONE (draft-18 §10.11): the publisher's last message on a subscription's stream.
//!
//! ```text
//! PUBLISH_DONE Message {
//!   Type (vi64) = 0xB,
//!   Length (16),
//!   Status Code (vi64),
//!   Stream Count (vi64),
//!   Error Reason (Reason Phrase)
//! }
//! ```

use bytes::{Buf, BufMut};

use crate::coding::{
    decode_varint, encode_varint, Decode, DecodeError, Encode, PublishDoneCode, ReasonPhrase, Version,
};

/// A subscription has ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishDone {
    /// Why (unknown codes are kept; receivers treat them as INTERNAL_ERROR).
    pub status_code: PublishDoneCode,
    /// Data streams opened for the subscription; [`PublishDone::UNKNOWN_STREAM_COUNT`] if not
    /// known exactly.
    pub stream_count: u64,
    /// Diagnostic text.
    pub error_reason: ReasonPhrase,
}

impl PublishDone {
    /// The Message Type.
    pub const TYPE: u64 = 0xB;
    /// The spec's name.
    pub const NAME: &'static str = "PUBLISH_DONE";
    /// The Stream Count a publisher sends when it cannot count exactly (2^62 - 1).
    pub const UNKNOWN_STREAM_COUNT: u64 = (1 << 62) - 1;
}

impl Decode for PublishDone {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            status_code: PublishDoneCode::from_code(decode_varint(buf)?),
            stream_count: decode_varint(buf)?,
            error_reason: ReasonPhrase::decode(buf, version)?,
        })
    }
}

impl Encode for PublishDone {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        encode_varint(self.status_code.code(), buf);
        encode_varint(self.stream_count, buf);
        self.error_reason.encode(buf, version);
    }
}
