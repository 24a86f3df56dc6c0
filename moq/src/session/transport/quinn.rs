//! The binding for `web_transport_quinn`: one type serves raw QUIC (`Session::raw`) and
//! WebTransport over HTTP/3, so one set of impls covers both. Sessions run on a
//! [`QuicConnection`], which grants the peer data streams as it uses them ([`DataStreamLimit`]).
//!
//! Why the limit grows instead of starting at its ceiling: `quinn-proto` (0.11.19) keeps a
//! slot for every unidirectional stream the peer may open, and when a received stream is done
//! it recycles the stream's state (`Recv`, 136 bytes, with its reassembly heap's capacity) into
//! the slot of the next stream id allowed. So every data stream received leaves one more
//! slot holding state until every slot does: with 4096 allowed, memory grew by a few hundred
//! bytes to more than a KiB per group received for the first 4096 groups of every connection
//! (`StreamsState::received` and `Assembler::insert` in a heaptrack profile; see
//! docs/performance.md, "Memory per group"). Granting what the peer actually uses, doubling
//! while half is in use, bounds that state by the connection's peak of concurrent data streams.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use web_transport_quinn::{ClosedStream, ReadError, SessionError, WebTransportError, WriteError};

use super::{BiStream, BoxFuture, Connection, RecvStream, SendStream, TransportError};

/// The data-stream limit granted to the peer: it starts at [`DataStreamLimit::START`] (or the
/// ceiling, if lower) and doubles, up to the ceiling, whenever more than half of it is open.
#[derive(Debug)]
pub(crate) struct DataStreamLimit {
    /// Data streams accepted and not dropped yet.
    open: AtomicU32,
    /// The limit granted so far.
    granted: AtomicU32,
    /// The most ever granted (`TransportConfig::max_concurrent_data_streams`).
    ceiling: u32,
}

impl DataStreamLimit {
    /// The limit a connection starts with.
    pub const START: u32 = 64;

    /// The first limit for a `ceiling`.
    pub fn start(ceiling: u32) -> u32 {
        ceiling.min(Self::START)
    }

    pub fn new(ceiling: u32) -> Self {
        Self {
            open: AtomicU32::new(0),
            granted: AtomicU32::new(Self::start(ceiling)),
            ceiling,
        }
    }

    /// One more data stream is open: the new limit to grant, when it grows.
    pub fn opened(&self) -> Option<u32> {
        let open = self.open.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let granted = self.granted.load(Ordering::Relaxed);
        if open.saturating_mul(2) <= granted || granted >= self.ceiling {
            return None;
        }
        let next = granted.saturating_mul(2).min(self.ceiling);
        self.granted
            .compare_exchange(granted, next, Ordering::Relaxed, Ordering::Relaxed)
            .ok()
            .map(|_| next)
    }

    /// A data stream was dropped.
    pub fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A QUIC connection (raw or WebTransport) as a [`Connection`]: the `web_transport_quinn`
/// session and the data-stream limit it grants.
#[derive(Debug)]
pub(crate) struct QuicConnection {
    session: web_transport_quinn::Session,
    data_streams: Arc<DataStreamLimit>,
}

impl QuicConnection {
    /// `session`, configured with [`TransportConfig::to_quinn`](crate::session::TransportConfig::to_quinn)
    /// for `max_data_streams` (its data-stream ceiling).
    pub fn new(session: web_transport_quinn::Session, max_data_streams: u32) -> Self {
        Self {
            session,
            data_streams: Arc::new(DataStreamLimit::new(max_data_streams)),
        }
    }
}

impl Connection for QuicConnection {
    fn open_bi(&self) -> BoxFuture<'_, Result<BiStream, TransportError>> {
        Connection::open_bi(&self.session)
    }

    fn open_uni(&self) -> BoxFuture<'_, Result<Box<dyn SendStream>, TransportError>> {
        Connection::open_uni(&self.session)
    }

    fn accept_bi(&self) -> BoxFuture<'_, Result<BiStream, TransportError>> {
        Connection::accept_bi(&self.session)
    }

    fn accept_uni(&self) -> BoxFuture<'_, Result<Box<dyn RecvStream>, TransportError>> {
        Box::pin(async move {
            let stream = web_transport_quinn::Session::accept_uni(&self.session).await?;
            if let Some(limit) = self.data_streams.opened() {
                self.session.set_max_concurrent_uni_streams(limit.into());
            }
            Ok(Box::new(DataRecv {
                stream,
                limit: self.data_streams.clone(),
            }) as Box<dyn RecvStream>)
        })
    }

    fn send_datagram(&self, datagram: Bytes) -> Result<(), TransportError> {
        Connection::send_datagram(&self.session, datagram)
    }

    fn read_datagram(&self) -> BoxFuture<'_, Result<Bytes, TransportError>> {
        Connection::read_datagram(&self.session)
    }

    fn close(&self, code: u64, reason: &str) {
        Connection::close(&self.session, code, reason);
    }

    fn closed(&self) -> BoxFuture<'_, TransportError> {
        Connection::closed(&self.session)
    }

    fn close_reason(&self) -> Option<TransportError> {
        Connection::close_reason(&self.session)
    }

    fn remote_address(&self) -> SocketAddr {
        Connection::remote_address(&self.session)
    }

    fn rtt(&self) -> Duration {
        Connection::rtt(&self.session)
    }
}

/// A data stream the peer opened, counted in its connection's [`DataStreamLimit`] until dropped.
#[derive(Debug)]
struct DataRecv {
    stream: web_transport_quinn::RecvStream,
    limit: Arc<DataStreamLimit>,
}

impl RecvStream for DataRecv {
    fn poll_read_chunk(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Result<Option<Bytes>, TransportError>> {
        RecvStream::poll_read_chunk(&mut self.stream, cx, max)
    }

    fn stop(&mut self, code: u64) {
        RecvStream::stop(&mut self.stream, code);
    }
}

impl Drop for DataRecv {
    fn drop(&mut self) {
        self.limit.closed();
    }
}

impl Connection for web_transport_quinn::Session {
    fn open_bi(&self) -> BoxFuture<'_, Result<BiStream, TransportError>> {
        Box::pin(async move {
            let (send, recv) = web_transport_quinn::Session::open_bi(self).await?;
            Ok((
                Box::new(send) as Box<dyn SendStream>,
                Box::new(recv) as Box<dyn RecvStream>,
            ))
        })
    }

    fn open_uni(&self) -> BoxFuture<'_, Result<Box<dyn SendStream>, TransportError>> {
        Box::pin(async move {
            let send = web_transport_quinn::Session::open_uni(self).await?;
            Ok(Box::new(send) as Box<dyn SendStream>)
        })
    }

    fn accept_bi(&self) -> BoxFuture<'_, Result<BiStream, TransportError>> {
        Box::pin(async move {
            let (send, recv) = web_transport_quinn::Session::accept_bi(self).await?;
            Ok((
                Box::new(send) as Box<dyn SendStream>,
                Box::new(recv) as Box<dyn RecvStream>,
            ))
        })
    }

    fn accept_uni(&self) -> BoxFuture<'_, Result<Box<dyn RecvStream>, TransportError>> {
        Box::pin(async move {
            let recv = web_transport_quinn::Session::accept_uni(self).await?;
            Ok(Box::new(recv) as Box<dyn RecvStream>)
        })
    }

    fn send_datagram(&self, datagram: Bytes) -> Result<(), TransportError> {
        Ok(web_transport_quinn::Session::send_datagram(self, datagram)?)
    }

    fn read_datagram(&self) -> BoxFuture<'_, Result<Bytes, TransportError>> {
        Box::pin(async move { Ok(web_transport_quinn::Session::read_datagram(self).await?) })
    }

    fn close(&self, code: u64, reason: &str) {
        web_transport_quinn::Session::close(self, code.try_into().unwrap_or(u32::MAX), reason.as_bytes());
    }

    fn closed(&self) -> BoxFuture<'_, TransportError> {
        Box::pin(async move { web_transport_quinn::Session::closed(self).await.into() })
    }

    fn close_reason(&self) -> Option<TransportError> {
        web_transport_quinn::Session::close_reason(self).map(Into::into)
    }

    fn remote_address(&self) -> SocketAddr {
        quinn::Connection::remote_address(self)
    }

    fn rtt(&self) -> Duration {
        quinn::Connection::rtt(self)
    }
}

impl SendStream for web_transport_quinn::SendStream {
    fn poll_write_chunks(
        &mut self,
        cx: &mut Context<'_>,
        chunks: &mut [Bytes],
    ) -> Poll<Result<usize, TransportError>> {
        // quinn's `write_chunks` keeps no state between polls (a blocked writer is woken
        // through the connection), and takes nothing from `chunks` unless it resolves, so a
        // future made afresh on each poll is the poll-based write quinn does not export.
        match pin!(self.write_chunks(chunks)).poll(cx) {
            Poll::Ready(Ok(written)) => Poll::Ready(Ok(written.bytes)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn set_priority(&self, order: i32) {
        let _ = web_transport_quinn::SendStream::set_priority(self, order);
    }

    fn finish(&mut self) -> Result<(), TransportError> {
        Ok(web_transport_quinn::SendStream::finish(self)?)
    }

    fn reset(&mut self, code: u64) {
        let _ = web_transport_quinn::SendStream::reset(self, code.try_into().unwrap_or(0));
    }

    fn stopped(&self) -> BoxFuture<'_, Result<Option<u64>, TransportError>> {
        Box::pin(async move {
            let code = web_transport_quinn::SendStream::stopped(self).await?;
            Ok(code.map(u64::from))
        })
    }
}

impl RecvStream for web_transport_quinn::RecvStream {
    fn poll_read_chunk(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Result<Option<Bytes>, TransportError>> {
        // Like writes: quinn parks a blocked reader's waker in the connection, not in the
        // future, so a fresh future per poll loses nothing.
        match pin!(self.read_chunk(max, true)).poll(cx) {
            Poll::Ready(Ok(chunk)) => Poll::Ready(Ok(chunk.map(|c| c.bytes))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn stop(&mut self, code: u64) {
        let _ = web_transport_quinn::RecvStream::stop(self, code.try_into().unwrap_or(0));
    }
}

impl From<SessionError> for TransportError {
    fn from(e: SessionError) -> Self {
        match &e {
            SessionError::ConnectionError(quinn::ConnectionError::ApplicationClosed(close)) => {
                TransportError::Closed {
                    code: close.error_code.into_inner(),
                    reason: String::from_utf8_lossy(&close.reason).into_owned(),
                }
            }
            SessionError::WebTransportError(WebTransportError::Closed(code, reason)) => {
                TransportError::Closed {
                    code: u64::from(*code),
                    reason: reason.clone(),
                }
            }
            SessionError::ConnectionError(quinn::ConnectionError::LocallyClosed) => {
                TransportError::LocallyClosed
            }
            _ => TransportError::Other(e.to_string()),
        }
    }
}

impl From<ReadError> for TransportError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::SessionError(s) => s.into(),
            ReadError::Reset(code) => TransportError::Reset(code.into()),
            // A reset code outside the transport's code space (some peers send HTTP/3-mapped
            // codes on raw QUIC) is still a reset.
            ReadError::InvalidReset(code) => TransportError::Reset(code.into_inner()),
            other => TransportError::Other(other.to_string()),
        }
    }
}

impl From<WriteError> for TransportError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::SessionError(s) => s.into(),
            WriteError::Stopped(code) => TransportError::Stopped(code.into()),
            WriteError::InvalidStopped(code) => TransportError::Stopped(code.into_inner()),
            other => TransportError::Other(other.to_string()),
        }
    }
}

impl From<ClosedStream> for TransportError {
    fn from(e: ClosedStream) -> Self {
        TransportError::Other(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::DataStreamLimit;

    #[test]
    fn the_limit_doubles_while_more_than_half_is_open_up_to_the_ceiling() {
        let limit = DataStreamLimit::new(300);
        assert_eq!(DataStreamLimit::start(300), 64);
        let grants: Vec<(u32, u32)> = (1..=200)
            .filter_map(|open| Some((open, limit.opened()?)))
            .collect();
        assert_eq!(grants, [(33, 128), (65, 256), (129, 300)]);
        // Streams closing and opening again below half of what was granted grant nothing more.
        for _ in 0..100 {
            limit.closed();
        }
        assert_eq!((0..50).filter_map(|_| limit.opened()).count(), 0);
    }

    #[test]
    fn a_ceiling_below_the_start_is_granted_at_once_and_never_exceeded() {
        assert_eq!(DataStreamLimit::start(16), 16);
        let limit = DataStreamLimit::new(16);
        assert_eq!((0..40).filter_map(|_| limit.opened()).count(), 0);
    }
}
