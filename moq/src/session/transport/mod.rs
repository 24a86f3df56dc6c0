//! The transport under a MoQT session, in the spirit of h3's `quic.rs`: a small set of traits
//! for what the session needs from QUIC — bidirectional and unidirectional streams, datagrams,
//! closing with a code and reason — and nothing else.
//!
//! - [`Connection`] is one QUIC connection or WebTransport session: open and accept streams,
//!   send and read datagrams, close, the peer's address and RTT.
//! - [`SendStream`] and [`RecvStream`] are its streams. Writing is poll-based and takes
//!   [`Bytes`] chunks ([`SendStream::poll_write_chunks`]), so writing an object neither copies
//!   its payload nor allocates; `write_all`/`write_all_chunks` on `dyn SendStream` drive it.
//! - [`TransportError`] is every transport's error, in the terms the session maps to
//!   [`Error`](super::Error): a stream reset or stopped with a code, the session closed by the
//!   peer with a code and reason, closed locally, or anything else as text.
//!
//! The session is not generic: it holds an `Arc<dyn Connection>` and boxed streams. Opening or
//! accepting a stream, reading a datagram and waiting for STOP_SENDING allocate (the stream's
//! box and the boxed future that yields it; the driver makes a new accept future per event);
//! writing to or reading from a stream costs nothing beyond the data itself. Bindings:
//! `web_transport_quinn::Session` (raw QUIC via `Session::raw`, and WebTransport) in
//! [`quinn`](self::quinn), where sessions run on a `QuicConnection` that grants the peer data
//! streams as it uses them (quinn keeps state for every stream allowed); QMux over WebSocket ([`QmuxConnection`], the `qmux` crate) in
//! [`qmux`](self::qmux); an in-memory pair with latency and loss in `banyan_tests::mem`.

mod qmux;
mod quinn;

pub use self::qmux::QmuxConnection;
pub(crate) use self::quinn::{DataStreamLimit, QuicConnection};

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;

/// A boxed future borrowing its transport, as the object-safe traits return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Both halves of a bidirectional stream.
pub type BiStream = (Box<dyn SendStream>, Box<dyn RecvStream>);

/// How a session is carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// MoQT directly on a QUIC connection (ALPN `moqt-18`): the client sends AUTHORITY and
    /// PATH in SETUP.
    Quic,
    /// MoQT inside a WebTransport session over HTTP/3: the URL is the CONNECT's.
    WebTransport,
    /// MoQT over QMux over a WebSocket (TCP): the URL is the upgrade request's.
    WebSocket,
}

impl TransportKind {
    /// A short label for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransportKind::Quic => "quic",
            TransportKind::WebTransport => "webtransport",
            TransportKind::WebSocket => "websocket",
        }
    }
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transport operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The peer reset the stream we read with this code.
    #[error("stream reset by peer (code {0:#x})")]
    Reset(u64),
    /// The peer stopped reading the stream we write (STOP_SENDING) with this code.
    #[error("stream stopped by peer (code {0:#x})")]
    Stopped(u64),
    /// The peer closed the connection or session with an application code and reason.
    #[error("closed by peer: {code:#x}: {reason}")]
    Closed {
        /// The application close code.
        code: u64,
        /// The peer's reason.
        reason: String,
    },
    /// We closed the connection ourselves.
    #[error("closed locally")]
    LocallyClosed,
    /// Anything else (a lost connection, an idle timeout, a stream already finished...).
    #[error("{0}")]
    Other(String),
}

/// One QUIC connection or WebTransport session.
///
/// Object safe: the session holds an `Arc<dyn Connection>`. Methods that wait return a boxed
/// future; they are called per stream, per datagram read or per driver event, never per write.
pub trait Connection: Send + Sync + std::fmt::Debug + 'static {
    /// Open a bidirectional stream (one per request).
    fn open_bi(&self) -> BoxFuture<'_, Result<BiStream, TransportError>>;

    /// Open a unidirectional stream (the control stream, subgroups, fetch responses).
    fn open_uni(&self) -> BoxFuture<'_, Result<Box<dyn SendStream>, TransportError>>;

    /// The next bidirectional stream the peer opened. Cancel safe: a stream that arrives while
    /// the future is dropped is yielded to the next call.
    fn accept_bi(&self) -> BoxFuture<'_, Result<BiStream, TransportError>>;

    /// The next unidirectional stream the peer opened. Cancel safe, like [`accept_bi`](Self::accept_bi).
    fn accept_uni(&self) -> BoxFuture<'_, Result<Box<dyn RecvStream>, TransportError>>;

    /// Send one datagram, unreliably; an error if it is too large or the connection is closed.
    fn send_datagram(&self, datagram: Bytes) -> Result<(), TransportError>;

    /// The next datagram from the peer. Cancel safe.
    fn read_datagram(&self) -> BoxFuture<'_, Result<Bytes, TransportError>>;

    /// Close with an application code and a reason (already cut to the spec's length).
    fn close(&self, code: u64, reason: &str);

    /// Resolves once the connection has closed, with why.
    fn closed(&self) -> BoxFuture<'_, TransportError>;

    /// Why the connection closed, or `None` while it is open.
    fn close_reason(&self) -> Option<TransportError>;

    /// The peer's address.
    fn remote_address(&self) -> SocketAddr;

    /// The current round-trip time estimate.
    fn rtt(&self) -> Duration;
}

/// The sending half of a stream.
pub trait SendStream: Send + Sync + std::fmt::Debug {
    /// Write from the front of `chunks` as much as flow control allows. Written bytes are taken
    /// out of the chunks in place (a chunk written in full is left empty, one written in part
    /// is advanced). `Ready(Ok(n))` with `n` bytes written (at least one unless every chunk was
    /// empty); `Pending` until the stream can take more.
    fn poll_write_chunks(
        &mut self,
        cx: &mut Context<'_>,
        chunks: &mut [Bytes],
    ) -> Poll<Result<usize, TransportError>>;

    /// Set the send order against the connection's other streams (higher goes first).
    fn set_priority(&self, order: i32);

    /// Finish the stream (FIN) after what was written.
    fn finish(&mut self) -> Result<(), TransportError>;

    /// Abandon the stream with a code (RESET_STREAM).
    fn reset(&mut self, code: u64);

    /// Resolves when the peer stops reading: `Some(code)` for STOP_SENDING, `None` once
    /// everything written was acknowledged after a FIN. An error if the connection closed.
    fn stopped(&self) -> BoxFuture<'_, Result<Option<u64>, TransportError>>;
}

/// The receiving half of a stream.
pub trait RecvStream: Send + Sync + std::fmt::Debug {
    /// The next chunk of at most `max` bytes, in order; `Ready(Ok(None))` at the end of the
    /// stream. `Pending` until data arrives.
    fn poll_read_chunk(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Result<Option<Bytes>, TransportError>>;

    /// Ask the peer to stop sending (STOP_SENDING) with a code.
    fn stop(&mut self, code: u64);
}

impl dyn SendStream + '_ {
    /// Write every chunk in full, without copying them.
    pub async fn write_all_chunks(&mut self, mut chunks: &mut [Bytes]) -> Result<(), TransportError> {
        loop {
            let skip = chunks.iter().take_while(|c| c.is_empty()).count();
            chunks = chunks.get_mut(skip..).unwrap_or_default();
            if chunks.is_empty() {
                return Ok(());
            }
            poll_fn(|cx| self.poll_write_chunks(cx, chunks)).await?;
        }
    }

    /// Write one chunk in full.
    pub async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), TransportError> {
        self.write_all_chunks(&mut [chunk]).await
    }
}

impl dyn RecvStream + '_ {
    /// The next chunk of at most `max` bytes, or `None` at the end of the stream.
    pub async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, TransportError> {
        poll_fn(|cx| self.poll_read_chunk(cx, max)).await
    }
}
