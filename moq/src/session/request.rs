//! Request streams (draft-18 §3.3: every request is a bidirectional stream) and the
//! incoming requests an application accepts or rejects.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use super::publisher::{FetchWriter, TrackWriter};
use super::reader::StreamReader;
use super::shared::{unexpected, Shared};
use super::subscriber::Subscription;
use super::transport::{RecvStream, SendStream};
use super::{Error, Session};
use crate::coding::{ReasonPhrase, RequestErrorCode, StreamResetCode, TrackNamespace};
use crate::message::{
    Fetch, FetchOk, Message, Namespace, NamespaceDone, Publish, PublishNamespace, RequestError, RequestOk,
    Subscribe, SubscribeNamespace, SubscribeOk, SubscribeTracks, TrackStatus,
};

/// One request's bidirectional stream: framed control messages both ways.
#[derive(Debug)]
pub struct RequestStream {
    shared: Arc<Shared>,
    send: Box<dyn SendStream>,
    reader: StreamReader,
}

impl RequestStream {
    pub(crate) fn new(shared: Arc<Shared>, send: Box<dyn SendStream>, recv: Box<dyn RecvStream>) -> Self {
        let max = shared.config.max_message_size;
        Self {
            shared,
            send,
            reader: StreamReader::new(recv, max + 16),
        }
    }

    pub(crate) fn from_reader(shared: Arc<Shared>, send: Box<dyn SendStream>, reader: StreamReader) -> Self {
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
            let linger = self.shared.linger.clone();
            // If the driver is gone the session is over; dropping the stream is then moot.
            let _ = linger.send(self);
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

/// A request from the peer, waiting for the application's answer. Dropping one unanswered
/// rejects it with INTERNAL_ERROR (by resetting the stream).
#[derive(Debug)]
pub enum Request {
    /// SUBSCRIBE: the peer wants a track's new objects.
    Subscribe(SubscribeRequest),
    /// FETCH: the peer wants past objects.
    Fetch(FetchRequest),
    /// TRACK_STATUS: the peer wants a track's status.
    TrackStatus(TrackStatusRequest),
    /// PUBLISH_NAMESPACE: the peer offers tracks under a namespace.
    PublishNamespace(PublishNamespaceRequest),
    /// SUBSCRIBE_NAMESPACE: the peer wants to hear about namespaces under a prefix.
    SubscribeNamespace(SubscribeNamespaceRequest),
    /// PUBLISH: the peer pushes a track.
    Publish(PublishRequest),
    /// SUBSCRIBE_TRACKS: the peer wants PUBLISH for every track under a prefix.
    SubscribeTracks(SubscribeTracksRequest),
}

impl Request {
    pub(crate) fn new(first: Message, stream: RequestStream) -> Result<Self, Error> {
        Ok(match first {
            Message::Subscribe(message) => Request::Subscribe(SubscribeRequest { message, stream }),
            Message::Fetch(message) => Request::Fetch(FetchRequest { message, stream }),
            Message::TrackStatus(message) => Request::TrackStatus(TrackStatusRequest { message, stream }),
            Message::PublishNamespace(message) => {
                Request::PublishNamespace(PublishNamespaceRequest { message, stream })
            }
            Message::SubscribeNamespace(message) => {
                Request::SubscribeNamespace(SubscribeNamespaceRequest { message, stream })
            }
            Message::Publish(message) => Request::Publish(PublishRequest { message, stream }),
            Message::SubscribeTracks(message) => {
                Request::SubscribeTracks(SubscribeTracksRequest { message, stream })
            }
            other => {
                return Err(Error::violation(format!(
                    "message type {:#x} cannot open a request stream",
                    other.type_id()
                )))
            }
        })
    }

    /// Refuse the request with REQUEST_ERROR.
    pub async fn reject(self, code: RequestErrorCode, reason: &str) -> Result<(), Error> {
        self.into_stream().refuse(code, reason).await
    }

    fn into_stream(self) -> RequestStream {
        match self {
            Request::Subscribe(r) => r.stream,
            Request::Fetch(r) => r.stream,
            Request::TrackStatus(r) => r.stream,
            Request::PublishNamespace(r) => r.stream,
            Request::SubscribeNamespace(r) => r.stream,
            Request::Publish(r) => r.stream,
            Request::SubscribeTracks(r) => r.stream,
        }
    }
}

/// An incoming SUBSCRIBE.
#[derive(Debug)]
pub struct SubscribeRequest {
    /// The request as received.
    pub message: Subscribe,
    stream: RequestStream,
}

impl SubscribeRequest {
    /// Accept with SUBSCRIBE_OK; its Track Alias is assigned here. Returns the writer for
    /// the subscription's objects.
    pub async fn accept(mut self, mut ok: SubscribeOk) -> Result<TrackWriter, Error> {
        let session = self.stream.session();
        ok.track_alias = session.next_track_alias();
        self.stream.send(&ok.clone().into()).await?;
        Ok(TrackWriter::for_subscribe(session, self.stream, self.message, ok))
    }

    /// Refuse with REQUEST_ERROR.
    pub async fn reject(self, code: RequestErrorCode, reason: &str) -> Result<(), Error> {
        self.stream.refuse(code, reason).await
    }
}

/// An incoming FETCH.
#[derive(Debug)]
pub struct FetchRequest {
    /// The request as received.
    pub message: Fetch,
    stream: RequestStream,
}

impl FetchRequest {
    /// Accept with FETCH_OK; objects go on the returned writer's data stream.
    pub async fn accept(mut self, ok: FetchOk) -> Result<FetchWriter, Error> {
        let order = super::subscriber::fetch_order(ok.parameters.group_order);
        self.stream.send(&ok.into()).await?;
        FetchWriter::open(self.stream, self.message.request_id, order).await
    }

    /// Refuse with REQUEST_ERROR.
    pub async fn reject(self, code: RequestErrorCode, reason: &str) -> Result<(), Error> {
        self.stream.refuse(code, reason).await
    }
}

/// An incoming TRACK_STATUS.
#[derive(Debug)]
pub struct TrackStatusRequest {
    /// The request as received.
    pub message: TrackStatus,
    stream: RequestStream,
}

impl TrackStatusRequest {
    /// Answer with REQUEST_OK (carrying the status parameters and track properties).
    pub async fn respond(mut self, ok: RequestOk) -> Result<(), Error> {
        let result = self.stream.send(&ok.into()).await;
        self.stream.linger();
        result
    }

    /// Refuse with REQUEST_ERROR.
    pub async fn reject(self, code: RequestErrorCode, reason: &str) -> Result<(), Error> {
        self.stream.refuse(code, reason).await
    }
}

/// An incoming PUBLISH_NAMESPACE.
#[derive(Debug)]
pub struct PublishNamespaceRequest {
    /// The request as received.
    pub message: PublishNamespace,
    stream: RequestStream,
}

impl PublishNamespaceRequest {
    /// Accept; the returned handle resolves [`NamespacePublication::withdrawn`] when the
    /// peer withdraws the namespace.
    pub async fn accept(mut self) -> Result<NamespacePublication, Error> {
        self.stream.send(&RequestOk::default().into()).await?;
        Ok(NamespacePublication::new(
            self.stream,
            self.message.track_namespace,
        ))
    }

    /// Refuse with REQUEST_ERROR.
    pub async fn reject(self, code: RequestErrorCode, reason: &str) -> Result<(), Error> {
        self.stream.refuse(code, reason).await
    }
}

/// A namespace published over a request stream, from either side: the publisher withdraws
/// it by dropping or [`withdraw`](Self::withdraw)ing; the receiver learns of that from
/// [`withdrawn`](Self::withdrawn).
#[derive(Debug)]
pub struct NamespacePublication {
    namespace: TrackNamespace,
    stream: RequestStream,
}

impl NamespacePublication {
    pub(crate) fn new(stream: RequestStream, namespace: TrackNamespace) -> Self {
        Self { namespace, stream }
    }

    /// The namespace.
    pub fn namespace(&self) -> &TrackNamespace {
        &self.namespace
    }

    /// Withdraw the namespace (finish our side of the request stream).
    pub fn withdraw(mut self) {
        self.stream.finish();
    }

    /// Resolves when the other side ends the publication (FIN, reset or session close).
    /// Messages other than GOAWAY on the stream are a protocol violation.
    pub async fn withdrawn(&mut self) -> Result<(), Error> {
        loop {
            match self.stream.next().await {
                Ok(None) | Err(Error::Cancelled(_)) => return Ok(()),
                Ok(Some(Message::Goaway(_))) => continue,
                Ok(Some(other)) => {
                    return Err(Error::violation(format!(
                        "unexpected message type {:#x} on a PUBLISH_NAMESPACE stream",
                        other.type_id()
                    )))
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for NamespacePublication {
    fn drop(&mut self) {
        self.stream.finish();
    }
}

/// An incoming SUBSCRIBE_NAMESPACE.
#[derive(Debug)]
pub struct SubscribeNamespaceRequest {
    /// The request as received.
    pub message: SubscribeNamespace,
    stream: RequestStream,
}

impl SubscribeNamespaceRequest {
    /// Accept; send NAMESPACE / NAMESPACE_DONE with the returned announcer.
    pub async fn accept(mut self) -> Result<NamespaceAnnouncer, Error> {
        self.stream.send(&RequestOk::default().into()).await?;
        Ok(NamespaceAnnouncer {
            prefix: self.message.track_namespace_prefix,
            stream: self.stream,
        })
    }

    /// Refuse with REQUEST_ERROR.
    pub async fn reject(self, code: RequestErrorCode, reason: &str) -> Result<(), Error> {
        self.stream.refuse(code, reason).await
    }
}

/// Sends NAMESPACE and NAMESPACE_DONE to a namespace subscriber.
#[derive(Debug)]
pub struct NamespaceAnnouncer {
    prefix: TrackNamespace,
    stream: RequestStream,
}

impl NamespaceAnnouncer {
    /// The prefix the peer subscribed to.
    pub fn prefix(&self) -> &TrackNamespace {
        &self.prefix
    }

    /// Announce `namespace` (which must start with the prefix).
    pub async fn announce(&mut self, namespace: &TrackNamespace) -> Result<(), Error> {
        let suffix = self.suffix(namespace)?;
        self.stream
            .send(
                &Namespace {
                    track_namespace_suffix: suffix,
                }
                .into(),
            )
            .await
    }

    /// Announce that `namespace` is gone.
    pub async fn done(&mut self, namespace: &TrackNamespace) -> Result<(), Error> {
        let suffix = self.suffix(namespace)?;
        self.stream
            .send(
                &NamespaceDone {
                    track_namespace_suffix: suffix,
                }
                .into(),
            )
            .await
    }

    /// Resolves when the subscriber cancels.
    pub async fn cancelled(&mut self) {
        let _ = self.stream.stopped().await;
    }

    fn suffix(&self, namespace: &TrackNamespace) -> Result<TrackNamespace, Error> {
        namespace
            .strip_prefix(&self.prefix)
            .ok_or_else(|| Error::InvalidArgument(format!("{namespace} is not under {}", self.prefix)))
    }
}

/// What a namespace subscription reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceEvent {
    /// A namespace (full, prefix included) is now published.
    Published(TrackNamespace),
    /// A namespace is no longer published.
    Done(TrackNamespace),
}

/// Our SUBSCRIBE_NAMESPACE: yields NAMESPACE and NAMESPACE_DONE as full namespaces.
#[derive(Debug)]
pub struct NamespaceSubscription {
    prefix: TrackNamespace,
    stream: RequestStream,
    active: std::collections::HashSet<TrackNamespace>,
}

impl NamespaceSubscription {
    pub(crate) fn new(stream: RequestStream, prefix: TrackNamespace) -> Self {
        Self {
            prefix,
            stream,
            active: Default::default(),
        }
    }

    /// The next change, or `None` when the publisher ends the subscription.
    pub async fn next(&mut self) -> Result<Option<NamespaceEvent>, Error> {
        let message = match self.stream.next().await {
            Ok(Some(m)) => m,
            Ok(None) | Err(Error::Cancelled(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let full = |suffix: &TrackNamespace| {
            self.prefix
                .join(suffix)
                .map_err(|e| Error::violation(format!("namespace too long: {e}")))
        };
        match message {
            Message::Namespace(n) => {
                let ns = full(&n.track_namespace_suffix)?;
                self.active.insert(ns.clone());
                Ok(Some(NamespaceEvent::Published(ns)))
            }
            Message::NamespaceDone(n) => {
                let ns = full(&n.track_namespace_suffix)?;
                if !self.active.remove(&ns) {
                    return Err(Error::violation("NAMESPACE_DONE before NAMESPACE"));
                }
                Ok(Some(NamespaceEvent::Done(ns)))
            }
            other => Err(Error::violation(format!(
                "unexpected message type {:#x} on a SUBSCRIBE_NAMESPACE stream",
                other.type_id()
            ))),
        }
    }
}

impl Drop for NamespaceSubscription {
    fn drop(&mut self) {
        self.stream.stop(StreamResetCode::Cancelled);
        self.stream.finish();
    }
}

/// An incoming PUBLISH.
#[derive(Debug)]
pub struct PublishRequest {
    /// The request as received.
    pub message: Publish,
    stream: RequestStream,
}

impl PublishRequest {
    /// Accept with PUBLISH_OK (a REQUEST_OK) and receive the track.
    pub async fn accept(mut self, ok: RequestOk) -> Result<Subscription, Error> {
        self.stream.send(&ok.into()).await?;
        Subscription::register_publish(self.stream.session(), self.stream, self.message)
    }

    /// Refuse (e.g. UNINTERESTED) with REQUEST_ERROR.
    pub async fn reject(self, code: RequestErrorCode, reason: &str) -> Result<(), Error> {
        self.stream.refuse(code, reason).await
    }
}

/// An incoming SUBSCRIBE_TRACKS.
#[derive(Debug)]
pub struct SubscribeTracksRequest {
    /// The request as received.
    pub message: SubscribeTracks,
    stream: RequestStream,
}

impl SubscribeTracksRequest {
    /// Accept; PUBLISH the matching tracks with [`Session::publish`]. The stream is returned
    /// for PUBLISH_BLOCKED messages.
    pub async fn accept(mut self) -> Result<RequestStream, Error> {
        self.stream.send(&RequestOk::default().into()).await?;
        Ok(self.stream)
    }

    /// Refuse with REQUEST_ERROR.
    pub async fn reject(self, code: RequestErrorCode, reason: &str) -> Result<(), Error> {
        self.stream.refuse(code, reason).await
    }
}
