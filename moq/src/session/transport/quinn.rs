//! The binding for `web_transport_quinn`: one type serves raw QUIC (`Session::raw`) and
//! WebTransport over HTTP/3, so one set of impls covers both.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use web_transport_quinn::{ClosedStream, ReadError, SessionError, WebTransportError, WriteError};

use super::{BiStream, BoxFuture, Connection, RecvStream, SendStream, TransportError};

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
