//! A buffered reader over a transport's receive stream that feeds the sans-IO decoders.

use bytes::{Buf, Bytes, BytesMut};

use super::transport::RecvStream;

use super::error::Error;
use crate::coding::DecodeError;
use crate::message::Message;
use crate::Version;

/// How much a single read pulls from the stream at most.
const READ_CHUNK: usize = 64 * 1024;

/// Reads a stream into a buffer and decodes values from it, reading more whenever a
/// decoder reports [`DecodeError::Incomplete`].
#[derive(Debug)]
pub(crate) struct StreamReader {
    stream: Box<dyn RecvStream>,
    buf: BytesMut,
    /// The most bytes a single decoded value (a header or message) may need.
    max_buffered: usize,
    finished: bool,
}

impl StreamReader {
    pub fn new(stream: Box<dyn RecvStream>, max_buffered: usize) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            max_buffered,
            finished: false,
        }
    }

    /// Read more bytes; `false` at the end of the stream.
    async fn fill(&mut self) -> Result<bool, Error> {
        if self.finished {
            return Ok(false);
        }
        match self.stream.read_chunk(READ_CHUNK).await? {
            Some(chunk) => {
                self.buf.extend_from_slice(&chunk);
                Ok(true)
            }
            None => {
                self.finished = true;
                Ok(false)
            }
        }
    }

    /// Decode one value, or `None` if the stream ended cleanly before any of it.
    pub async fn decode<T>(
        &mut self,
        mut decode: impl FnMut(&mut &[u8]) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, Error> {
        loop {
            if !self.buf.is_empty() {
                let mut cursor = &self.buf[..];
                match decode(&mut cursor) {
                    Ok(value) => {
                        let used = self.buf.len() - cursor.len();
                        self.buf.advance(used);
                        return Ok(Some(value));
                    }
                    Err(DecodeError::Incomplete) => {
                        if self.buf.len() > self.max_buffered {
                            return Err(Error::Limit(format!(
                                "more than {} bytes without a complete header",
                                self.max_buffered
                            )));
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if !self.fill().await? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(Error::violation("stream ended in the middle of a message"))
                };
            }
        }
    }

    /// Decode a value without consuming it, or `None` if the stream ended first.
    pub async fn peek<T>(
        &mut self,
        mut decode: impl FnMut(&mut &[u8]) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, Error> {
        loop {
            let mut cursor = &self.buf[..];
            match decode(&mut cursor) {
                Ok(value) => return Ok(Some(value)),
                Err(DecodeError::Incomplete) if self.buf.len() <= self.max_buffered => {}
                Err(DecodeError::Incomplete) => return Err(Error::Limit("header too long".into())),
                Err(e) => return Err(e.into()),
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Read exactly `len` bytes as one `Bytes`.
    ///
    /// Memory grows only as bytes arrive (never reserved up front from a declared length), so a
    /// peer that announces large objects and sends nothing costs nothing.
    pub async fn read_exact(&mut self, len: usize) -> Result<Bytes, Error> {
        while self.buf.len() < len {
            if !self.fill().await? {
                return Err(Error::violation("stream ended in the middle of an object"));
            }
        }
        Ok(self.buf.split_to(len).freeze())
    }

    /// Decode one framed control message, or `None` at a clean end of stream.
    pub async fn message(&mut self, version: Version, max_size: usize) -> Result<Option<Message>, Error> {
        self.decode(|cursor| Message::decode_frame(cursor, version, max_size))
            .await
    }

    /// True once the peer has finished the stream and every buffered byte was consumed.
    pub fn is_finished(&self) -> bool {
        self.finished && self.buf.is_empty()
    }

    /// Ask the peer to stop sending.
    pub fn stop(&mut self, code: u32) {
        self.stream.stop(code.into());
    }
}
