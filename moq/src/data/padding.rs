//! Padding (draft-18 §10.5): padding streams (§10.5.1, type 0x132B3E28) and padding datagrams
//! (§10.5.2, type 0x132B3E29). Both carry zero or more bytes that MUST be zero and that the
//! receiver discards.

use bytes::{Buf, BufMut, Bytes};

use super::stream_type::PADDING_STREAM;
use crate::coding::{decode_varint, encode_varint, DecodeError, Version};

/// The datagram type of a padding datagram.
pub const PADDING_DATAGRAM: u64 = 0x132B_3E29;

/// A padding stream: the stream type, then `padding_len` zero bytes until FIN.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PaddingStream {
    /// Padding Data length in bytes.
    pub padding_len: usize,
}

impl PaddingStream {
    /// Consume whatever padding is buffered after the stream type, returning how many bytes
    /// were discarded. Padding streams only end at FIN, so this never needs more bytes.
    ///
    /// A non-zero byte is [`DecodeError::Invalid`]; a lenient receiver may instead just discard
    /// everything (the spec only requires discarding).
    pub fn skip<B: Buf>(buf: &mut B) -> Result<usize, DecodeError> {
        let mut skipped = 0;
        while buf.has_remaining() {
            let chunk = buf.chunk();
            if chunk.iter().any(|b| *b != 0) {
                return Err(DecodeError::Invalid("non-zero padding"));
            }
            let n = chunk.len();
            buf.advance(n);
            skipped += n;
        }
        Ok(skipped)
    }

    /// Decode a whole padding stream (type included) from everything received before FIN.
    pub fn decode<B: Buf>(buf: &mut B, _version: Version) -> Result<Self, DecodeError> {
        let code = decode_varint(buf)?;
        if code != PADDING_STREAM {
            return Err(DecodeError::Invalid("stream type is not PADDING"));
        }
        Ok(Self {
            padding_len: Self::skip(buf)?,
        })
    }

    /// Write the stream type and the zero bytes.
    pub fn encode<B: BufMut>(&self, buf: &mut B, _version: Version) {
        encode_varint(PADDING_STREAM, buf);
        buf.put_bytes(0, self.padding_len);
    }
}

/// A padding datagram: the datagram type, then `padding_len` zero bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PaddingDatagram {
    /// Padding Data length in bytes.
    pub padding_len: usize,
}

impl PaddingDatagram {
    /// Decode a whole padding datagram (type included).
    pub fn decode(mut datagram: Bytes, _version: Version) -> Result<Self, DecodeError> {
        let code = decode_varint(&mut datagram).map_err(|_| DecodeError::Invalid("truncated datagram"))?;
        if code != PADDING_DATAGRAM {
            return Err(DecodeError::UnknownDatagramType(code));
        }
        Self::decode_after_type(datagram)
    }

    /// Check the bytes after the type.
    pub fn decode_after_type(mut rest: Bytes) -> Result<Self, DecodeError> {
        Ok(Self {
            padding_len: PaddingStream::skip(&mut rest)?,
        })
    }

    /// Write the datagram type and the zero bytes.
    pub fn encode<B: BufMut>(&self, buf: &mut B, _version: Version) {
        encode_varint(PADDING_DATAGRAM, buf);
        buf.put_bytes(0, self.padding_len);
    }
}
