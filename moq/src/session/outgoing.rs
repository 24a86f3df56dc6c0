//! Requests we send: the [`Session`] methods that open a request stream (SUBSCRIBE, FETCH,
//! TRACK_STATUS, PUBLISH_NAMESPACE, SUBSCRIBE_NAMESPACE, SUBSCRIBE_TRACKS, PUBLISH).

use tokio::sync::oneshot;

use super::error::Error;
use super::publisher::TrackWriter;
use super::request::{NamespacePublication, NamespaceSubscription};
use super::shared::Session;
use super::stream::{unexpected, RequestStream};
use super::subscriber::{FetchReader, Subscription};
use crate::message::{
    Fetch, Message, Publish, PublishNamespace, RequestOk, Subscribe, SubscribeNamespace, SubscribeTracks,
    TrackStatus,
};

impl Session {
    /// Subscribe to a track. The Request ID is assigned here. Resolves on SUBSCRIBE_OK.
    pub async fn subscribe(&self, mut subscribe: Subscribe) -> Result<Subscription, Error> {
        subscribe.request_id = self.next_request_id();
        let mut stream = self.open_request(subscribe.clone().into()).await?;
        match stream.response(self.shared.config.request_timeout).await? {
            Message::SubscribeOk(ok) => Subscription::register(self.clone(), stream, subscribe, ok),
            other => Err(unexpected(&other, "SUBSCRIBE_OK")),
        }
    }

    /// Fetch past objects. Resolves on FETCH_OK; objects then arrive on the returned reader.
    pub async fn fetch(&self, mut fetch: Fetch) -> Result<FetchReader, Error> {
        fetch.request_id = self.next_request_id();
        let (tx, rx) = oneshot::channel();
        self.shared.routes().fetches.insert(fetch.request_id, tx);
        self.shared.route_added.notify_waiters();
        let result = async {
            let mut stream = self.open_request(fetch.clone().into()).await?;
            match stream.response(self.shared.config.request_timeout).await? {
                Message::FetchOk(ok) => Ok((stream, ok)),
                other => Err(unexpected(&other, "FETCH_OK")),
            }
        }
        .await;
        match result {
            Ok((stream, ok)) => FetchReader::wait(self.clone(), stream, ok, rx).await,
            Err(e) => {
                self.shared.routes().fetches.remove(&fetch.request_id);
                Err(e)
            }
        }
    }

    /// Ask for a track's status. Resolves with TRACK_STATUS's REQUEST_OK.
    pub async fn track_status(&self, mut request: TrackStatus) -> Result<RequestOk, Error> {
        request.request_id = self.next_request_id();
        let mut stream = self.open_request(request.into()).await?;
        let reply = stream.response(self.shared.config.request_timeout).await?;
        stream.finish();
        match reply {
            Message::RequestOk(ok) => Ok(ok),
            other => Err(unexpected(&other, "REQUEST_OK")),
        }
    }

    /// Advertise a namespace. Dropping (or [`NamespacePublication::withdraw`]ing) the result
    /// withdraws it.
    pub async fn publish_namespace(
        &self,
        mut request: PublishNamespace,
    ) -> Result<NamespacePublication, Error> {
        request.request_id = self.next_request_id();
        let mut stream = self.open_request(request.clone().into()).await?;
        match stream.response(self.shared.config.request_timeout).await? {
            Message::RequestOk(_) => Ok(NamespacePublication::new(stream, request.track_namespace)),
            other => Err(unexpected(&other, "REQUEST_OK")),
        }
    }

    /// Subscribe to namespaces under a prefix; NAMESPACE / NAMESPACE_DONE arrive on the result.
    pub async fn subscribe_namespace(
        &self,
        mut request: SubscribeNamespace,
    ) -> Result<NamespaceSubscription, Error> {
        request.request_id = self.next_request_id();
        let mut stream = self.open_request(request.clone().into()).await?;
        match stream.response(self.shared.config.request_timeout).await? {
            Message::RequestOk(_) => Ok(NamespaceSubscription::new(stream, request.track_namespace_prefix)),
            other => Err(unexpected(&other, "REQUEST_OK")),
        }
    }

    /// Ask the peer to PUBLISH every track under a prefix. The returned stream stays open
    /// for PUBLISH_BLOCKED messages; dropping it cancels the request.
    pub async fn subscribe_tracks(&self, mut request: SubscribeTracks) -> Result<RequestStream, Error> {
        request.request_id = self.next_request_id();
        let mut stream = self.open_request(request.into()).await?;
        match stream.response(self.shared.config.request_timeout).await? {
            Message::RequestOk(_) => Ok(stream),
            other => Err(unexpected(&other, "REQUEST_OK")),
        }
    }

    /// Push a track to the peer (PUBLISH). The Request ID and Track Alias are assigned here.
    ///
    /// Objects may be written at once (before PUBLISH_OK, as the spec allows); the peer's
    /// answer (PUBLISH_OK or REQUEST_ERROR) is read with [`TrackWriter::next_request`].
    pub async fn publish(&self, mut publish: Publish) -> Result<TrackWriter, Error> {
        publish.request_id = self.next_request_id();
        publish.track_alias = self.next_track_alias();
        let stream = self.open_request(publish.clone().into()).await?;
        Ok(TrackWriter::for_publish(self.clone(), stream, publish))
    }

    async fn open_request(&self, first: Message) -> Result<RequestStream, Error> {
        if self.shared.goaway_received.borrow().is_some() {
            return Err(Error::GoingAway);
        }
        let (send, recv) = self.shared.transport.open_bi().await?;
        let mut stream = RequestStream::new(self.shared.clone(), send, recv);
        stream.send(&first).await?;
        Ok(stream)
    }
}
