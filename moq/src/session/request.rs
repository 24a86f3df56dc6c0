//! Request streams (draft-18 §3.3: every request is a bidirectional stream) and the
//! incoming requests an application accepts or rejects.

use super::error::Error;
use super::publisher::{FetchWriter, TrackWriter};
use super::shared::{IncomingRequest, Session};
use super::stream::RequestStream;
use super::subscriber::Subscription;
use crate::coding::{RequestErrorCode, StreamResetCode, TrackNamespace};
use crate::message::{
    Fetch, FetchOk, Message, Namespace, NamespaceDone, Publish, PublishNamespace, RequestOk, RequestUpdate,
    Subscribe, SubscribeNamespace, SubscribeOk, SubscribeTracks, TrackStatus,
};

impl Session {
    /// The next request from the peer, or `None` once the session has ended.
    pub async fn accept(&self) -> Option<Request> {
        loop {
            let IncomingRequest { first, send, reader } = self.shared.requests.lock().await.recv().await?;
            let stream = RequestStream::from_reader(self.shared.clone(), send, reader);
            // The driver queues only the seven types that open a request, so this never fails;
            // if it did, the dropped stream is reset and the next request is read.
            match Request::new(first, stream) {
                Ok(request) => return Some(request),
                Err(e) => tracing::debug!(error = %e, "dropping an unknown request"),
            }
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

    /// Publisher side: send REQUEST_UPDATE (e.g. a fresh AUTHORIZATION TOKEN) and wait for
    /// the answer: `Ok` on REQUEST_OK, [`Error::Refused`] on REQUEST_ERROR (the receiver then
    /// ends the publication).
    pub async fn update(&mut self, update: RequestUpdate) -> Result<(), Error> {
        let timeout = self.stream.session().shared.config.request_timeout;
        self.stream.send(&update.into()).await?;
        match self.stream.response(timeout).await? {
            Message::RequestOk(_) => Ok(()),
            other => Err(super::stream::unexpected(&other, "REQUEST_OK")),
        }
    }

    /// Receiver side: the next REQUEST_UPDATE the publisher sends, or `None` once it ends the
    /// publication (FIN, reset or session close). Answer it with [`respond`](Self::respond).
    /// Messages other than REQUEST_UPDATE and GOAWAY are a protocol violation.
    pub async fn next_update(&mut self) -> Result<Option<RequestUpdate>, Error> {
        loop {
            match self.stream.next().await {
                Ok(None) | Err(Error::Cancelled(_)) => return Ok(None),
                Ok(Some(Message::Goaway(_))) => continue,
                Ok(Some(Message::RequestUpdate(update))) => return Ok(Some(update)),
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

    /// Receiver side: answer a REQUEST_UPDATE (REQUEST_OK or REQUEST_ERROR).
    pub async fn respond(&mut self, answer: Message) -> Result<(), Error> {
        self.stream.send(&answer).await
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
