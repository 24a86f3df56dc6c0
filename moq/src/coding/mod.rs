//! Wire primitives shared by every message and stream: the draft-18 variable-length
//! integer, Location, Key-Value-Pair, Reason Phrase, namespace tuples and track names,
//! and the [`Decode`]/[`Encode`] traits with their errors and error codes.
//!
//! Decoders read from any [`bytes::Buf`]; given a [`bytes::Bytes`] they slice payloads
//! without copying. A decoder that runs out of input returns [`DecodeError::Incomplete`],
//! which callers treat as "read more and try again" rather than as malformed input.

mod error;
mod kvp;
mod location;
mod name;
mod reason;
mod varint;
mod version;

pub use error::{
    DecodeError, EncodeError, PublishDoneCode, RequestErrorCode, SessionErrorCode, StreamResetCode,
};
pub use kvp::{KeyValuePair, KeyValuePairs, KvpValue, MAX_KVP_VALUE_LEN};
pub use location::Location;
pub use name::{
    FullTrackName, NameError, TrackName, TrackNamespace, MAX_FULL_TRACK_NAME_LEN, MAX_NAMESPACE_FIELDS,
};
pub use reason::{ReasonPhrase, MAX_REASON_PHRASE_LEN};
pub use varint::{decode_varint, encode_varint, varint_len, MAX_VARINT_LEN};
pub use version::Version;

use bytes::{Buf, BufMut, Bytes};

/// A value that can be read from the wire in a given protocol version.
pub trait Decode: Sized {
    /// Decode one value from the front of `buf`, advancing it.
    ///
    /// On [`DecodeError::Incomplete`] the buffer may have been partly consumed; callers
    /// decode from a cheap cursor (a `&[u8]` or a cloned `Bytes`) and commit only on success.
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError>;
}

/// A value that can be written to the wire in a given protocol version.
///
/// Types enforce their wire invariants at construction, so writing cannot fail;
/// only framing (which has length limits) returns [`EncodeError`].
pub trait Encode {
    /// Append the encoding of `self` to `buf`.
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version);

    /// The encoding as a fresh buffer; convenient in tests and for one-off frames.
    fn to_bytes(&self, version: Version) -> Bytes {
        let mut buf = bytes::BytesMut::new();
        self.encode(&mut buf, version);
        buf.freeze()
    }
}

impl Decode for u64 {
    fn decode<B: Buf>(buf: &mut B, _version: Version) -> Result<Self, DecodeError> {
        decode_varint(buf)
    }
}

impl Encode for u64 {
    fn encode<B: BufMut>(&self, buf: &mut B, _version: Version) {
        encode_varint(*self, buf)
    }
}

/// Read one byte.
pub fn decode_u8<B: Buf>(buf: &mut B) -> Result<u8, DecodeError> {
    if buf.remaining() < 1 {
        return Err(DecodeError::Incomplete);
    }
    Ok(buf.get_u8())
}

/// Read a big-endian 16-bit integer.
pub fn decode_u16<B: Buf>(buf: &mut B) -> Result<u16, DecodeError> {
    if buf.remaining() < 2 {
        return Err(DecodeError::Incomplete);
    }
    Ok(buf.get_u16())
}

/// Read exactly `len` bytes (zero-copy when `buf` is a `Bytes`).
pub fn decode_exact<B: Buf>(buf: &mut B, len: usize) -> Result<Bytes, DecodeError> {
    if buf.remaining() < len {
        return Err(DecodeError::Incomplete);
    }
    Ok(buf.copy_to_bytes(len))
}

/// Read a varint length, refuse it above `limit` (before buffering anything), then the bytes.
pub fn decode_length_prefixed<B: Buf>(
    buf: &mut B,
    what: &'static str,
    limit: usize,
) -> Result<Bytes, DecodeError> {
    let len = decode_varint(buf)?;
    if len > limit as u64 {
        return Err(DecodeError::TooLarge {
            what,
            size: len,
            limit: limit as u64,
        });
    }
    decode_exact(buf, len as usize)
}

/// Write a varint length followed by the bytes.
pub fn encode_length_prefixed<B: BufMut>(bytes: &[u8], buf: &mut B) {
    encode_varint(bytes.len() as u64, buf);
    buf.put_slice(bytes);
}

/// Read a boolean carried as a single byte that must be 0 or 1.
pub fn decode_bool<B: Buf>(buf: &mut B, what: &'static str) -> Result<bool, DecodeError> {
    match decode_u8(buf)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Invalid(what)),
    }
}
