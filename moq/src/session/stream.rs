//! A request's bidirectional stream (draft-18 §3.3: every request is one): framed control
//! messages both ways.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use super::error::Error;
use super::reader::StreamReader;
use super::shared::{Lingering, Session, Shared};
use super::transport::{RecvStream, SendStream};
use crate::coding::{ReasonPhrase, RequestErrorCode, StreamResetCode};
use crate::message::{Message, Publish, RequestError, Subscribe, SubscribeOk};

/// One request's bidirectional stream: framed control messages both ways.
#[derive(Debug)]
pub struct RequestStream {
    shared: Arc<Shared>,
    send: Box<dyn SendStream>,
    reader: StreamReader,
}

/// The send order of the control stream and every request stream: above all data (draft-18
/// §7: "the control streams SHOULD be prioritized highest, followed by the bidi request
/// streams and then all subscribed Objects"), so a SUBSCRIBE_OK or PUBLISH_DONE is never
/// queued behind media on a congested connection. Data streams' orders stay below it
/// ([`send_order`](super::publisher::send_order)).
pub(crate) const CONTROL_SEND_ORDER: i32 = i32::MAX;

impl RequestStream {
    pub(crate) fn new(shared: Arc<Shared>, send: Box<dyn SendStream>, recv: Box<dyn RecvStream>) -> Self {
        let max = shared.config.max_message_size;
        send.set_priority(CONTROL_SEND_ORDER);
        Self {
            shared,
            send,
            reader: StreamReader::new(recv, max + 16),
        }
    }

    pub(crate) fn from_reader(shared: Arc<Shared>, send: Box<dyn SendStream>, reader: StreamReader) -> Self {
        send.set_priority(CONTROL_SEND_ORDER);
        Self { shared, send, reader }
    }

    /// Send one message.
    pub async fn send(&mut self, message: &Message) -> Result<(), Error> {
        let mut buf = BytesMut::new();
        message.encode_frame(&mut buf, self.shared.version)?;
        self.send.write_chunk(buf.freeze()).await?;
        Ok(())
    }

    /// The next message from the peer, or `None` when the peer finished its side.
    pub async fn next(&mut self) -> Result<Option<Message>, Error> {
        self.reader
            .message(self.shared.version, self.shared.config.max_message_size)
            .await
    }

    /// Like [`next`](Self::next), but also ends (with `None`) when the peer stops reading
    /// our side of the stream (STOP_SENDING).
    pub async fn next_or_stopped(&mut self) -> Result<Option<Message>, Error> {
        let (version, max) = (self.shared.version, self.shared.config.max_message_size);
        tokio::select! {
            message = self.reader.message(version, max) => message,
            _ = self.send.stopped() => Ok(None),
        }
    }

    /// The first response to our request, within `timeout`. REQUEST_ERROR becomes
    /// [`Error::Refused`].
    pub(crate) async fn response(&mut self, timeout: Duration) -> Result<Message, Error> {
        match tokio::time::timeout(timeout, self.next()).await {
            Err(_) => {
                self.reset(StreamResetCode::Cancelled);
                Err(Error::Timeout("request response"))
            }
            Ok(Err(e)) => Err(e),
            Ok(Ok(None)) => Err(Error::violation("request stream closed without a response")),
            Ok(Ok(Some(Message::RequestError(e)))) => Err(unexpected(&Message::RequestError(e), "")),
            Ok(Ok(Some(message))) => Ok(message),
        }
    }

    /// Finish our side of the stream (FIN).
    pub fn finish(&mut self) {
        let _ = self.send.finish();
    }

    /// Finish our side and let the peer finish its own: a request answered in full. The
    /// session's driver reads the peer's side to its end (bounded by the request timeout)
    /// before the stream is dropped, so the peer sees a FIN, not the STOP_SENDING that an
    /// unread receive side gets on drop and that cancels a request (draft-18 §3.3.2).
    pub(crate) fn linger(mut self) {
        self.finish();
        if !self.reader.is_finished() {
            let RequestStream { shared, send, reader } = self;
            // If the driver is gone the session is over; dropping the stream is then moot.
            let _ = shared.linger.send(Lingering { _send: send, reader });
        }
    }

    /// Abruptly end our side of the stream.
    pub fn reset(&mut self, code: StreamResetCode) {
        self.send.reset(code.code());
    }

    /// Ask the peer to stop sending on this stream (cancels a subscription).
    pub fn stop(&mut self, code: StreamResetCode) {
        self.reader.stop(code.code().try_into().unwrap_or(0));
    }

    /// Resolves when the peer stops reading our side (STOP_SENDING), with its code.
    pub async fn stopped(&self) -> Option<u64> {
        self.send.stopped().await.ok().flatten()
    }

    /// Send REQUEST_ERROR and finish the stream.
    pub async fn reject(&mut self, code: RequestErrorCode, reason: &str) -> Result<(), Error> {
        let error = RequestError::new(code, 0, ReasonPhrase::new(reason));
        let result = self.send(&error.into()).await;
        self.finish();
        result
    }

    /// Send REQUEST_ERROR, finish the stream and let the peer finish its side (see
    /// [`linger`](Self::linger)), so the peer reads a refusal, not a cancelled request.
    pub(crate) async fn refuse(mut self, code: RequestErrorCode, reason: &str) -> Result<(), Error> {
        let result = self.reject(code, reason).await;
        self.linger();
        result
    }

    pub(crate) fn session(&self) -> Session {
        Session {
            shared: self.shared.clone(),
        }
    }
}

/// The error for a response other than the one expected (REQUEST_ERROR becomes `Refused`).
pub(crate) fn unexpected(message: &Message, expected: &str) -> Error {
    match message {
        Message::RequestError(e) => Error::Refused {
            code: e.error_code,
            reason: e.error_reason.to_string(),
            retry_interval: e.retry_interval,
        },
        other => Error::violation(format!(
            "expected {expected}, got message type {:#x}",
            other.type_id()
        )),
    }
}

/// The request a subscription's stream was opened with: a SUBSCRIBE and its SUBSCRIBE_OK, or a
/// PUBLISH. Kept by both ends ([`TrackWriter`](super::TrackWriter),
/// [`Subscription`](super::Subscription)).
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    Subscribe {
        subscribe: Box<Subscribe>,
        ok: Box<SubscribeOk>,
    },
    Publish(Box<Publish>),
}

impl Origin {
    /// A SUBSCRIBE answered with `ok`.
    pub(crate) fn subscribed(subscribe: Subscribe, ok: SubscribeOk) -> Self {
        Origin::Subscribe {
            subscribe: Box::new(subscribe),
            ok: Box::new(ok),
        }
    }

    /// The SUBSCRIBE and its SUBSCRIBE_OK (`None` for a PUBLISH).
    pub(crate) fn subscribe(&self) -> Option<(&Subscribe, &SubscribeOk)> {
        match self {
            Origin::Subscribe { subscribe, ok } => Some((subscribe, ok)),
            Origin::Publish(_) => None,
        }
    }

    /// The PUBLISH (`None` for a SUBSCRIBE).
    pub(crate) fn publish(&self) -> Option<&Publish> {
        match self {
            Origin::Publish(publish) => Some(publish),
            Origin::Subscribe { .. } => None,
        }
    }
}
