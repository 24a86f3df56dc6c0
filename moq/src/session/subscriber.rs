//! Receiving objects: a [`Subscription`]'s subgroup streams and datagrams, and a FETCH's
//! [`FetchReader`].

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::error::Error;
use super::reader::StreamReader;
use super::shared::{Session, Shared, TrackData};
use super::stream::{Origin, RequestStream};
use crate::coding::{SessionErrorCode, StreamResetCode};
use crate::data::{
    FetchGroupOrder, FetchItem, FetchObject, FetchRecord, FetchStream, ObjectDatagram, SubgroupHeader,
    SubgroupObject, SubgroupStream,
};
use crate::message::{
    FetchOk, Message, Publish, PublishDone, RequestError, RequestOk, RequestUpdate, Subscribe, SubscribeOk,
};

/// What a subscription yields.
#[derive(Debug)]
pub enum TrackEvent {
    /// A new subgroup stream; read its objects with [`SubgroupReader::next`].
    Subgroup(SubgroupReader),
    /// One object received as a datagram.
    Datagram(ObjectDatagram),
    /// The publisher's answer to a REQUEST_UPDATE.
    UpdateOk(RequestOk),
    /// The publisher refused a REQUEST_UPDATE.
    UpdateError(RequestError),
    /// PUBLISH_DONE: the publisher ended the subscription. Streams it already opened may
    /// still arrive; `next` returns `None` once they have (or after a short grace period).
    Done(PublishDone),
}

/// An established subscription (ours via SUBSCRIBE, or the peer's PUBLISH we accepted).
/// Dropping it unsubscribes (STOP_SENDING on the request stream).
#[derive(Debug)]
pub struct Subscription {
    shared: Arc<Shared>,
    stream: RequestStream,
    origin: Origin,
    alias: u64,
    data: mpsc::Receiver<TrackData>,
    request_open: bool,
    done: Option<(u64, tokio::time::Instant)>,
    streams_received: u64,
}

/// Subgroup streams and datagrams queued for a subscription before the application reads them.
const TRACK_QUEUE: usize = 256;

impl Subscription {
    pub(crate) fn register(
        session: Session,
        stream: RequestStream,
        subscribe: Subscribe,
        ok: SubscribeOk,
    ) -> Result<Self, Error> {
        let alias = ok.track_alias;
        Self::new(session, stream, alias, Origin::subscribed(subscribe, ok))
    }

    pub(crate) fn register_publish(
        session: Session,
        stream: RequestStream,
        publish: Publish,
    ) -> Result<Self, Error> {
        let alias = publish.track_alias;
        Self::new(session, stream, alias, Origin::Publish(Box::new(publish)))
    }

    fn new(session: Session, stream: RequestStream, alias: u64, origin: Origin) -> Result<Self, Error> {
        let shared = session.shared;
        let (tx, data) = mpsc::channel(TRACK_QUEUE);
        {
            let mut routes = shared.routes();
            if routes
                .tracks
                .get(&alias)
                .is_some_and(|existing| !existing.is_closed())
            {
                drop(routes);
                let reason = format!("track alias {alias} is already in use");
                shared.close(SessionErrorCode::DuplicateTrackAlias, &reason);
                return Err(Error::ClosedLocally {
                    code: SessionErrorCode::DuplicateTrackAlias,
                    reason,
                });
            }
            routes.tracks.insert(alias, tx);
        }
        shared.route_added.notify_waiters();
        Ok(Self {
            shared,
            stream,
            origin,
            alias,
            data,
            request_open: true,
            done: None,
            streams_received: 0,
        })
    }

    /// The Track Alias the publisher chose.
    pub fn track_alias(&self) -> u64 {
        self.alias
    }

    /// The SUBSCRIBE we sent and the SUBSCRIBE_OK we got (`None` for an accepted PUBLISH).
    pub fn subscribe(&self) -> Option<(&Subscribe, &SubscribeOk)> {
        self.origin.subscribe()
    }

    /// The PUBLISH the peer sent (`None` for our own SUBSCRIBE).
    pub fn publish(&self) -> Option<&Publish> {
        self.origin.publish()
    }

    /// Send REQUEST_UPDATE; the answer arrives as [`TrackEvent::UpdateOk`]/[`TrackEvent::UpdateError`].
    pub async fn update(&mut self, update: RequestUpdate) -> Result<(), Error> {
        self.stream.send(&update.into()).await
    }

    /// The next event, or `None` when the subscription is over.
    pub async fn next(&mut self) -> Result<Option<TrackEvent>, Error> {
        loop {
            if let Some((count, _)) = self.done {
                if self.streams_received >= count && self.data.is_empty() {
                    return Ok(None);
                }
            }
            let grace = self.done.map(|(_, deadline)| deadline);
            tokio::select! {
                data = self.data.recv() => match data {
                    Some(TrackData::Subgroup(header, reader)) => {
                        self.streams_received += 1;
                        let subgroup = SubgroupReader::new(self.shared.clone(), header, reader);
                        return Ok(Some(TrackEvent::Subgroup(subgroup)));
                    }
                    Some(TrackData::Datagram(d)) => return Ok(Some(TrackEvent::Datagram(d))),
                    None => return Ok(None),
                },
                message = self.stream.next(), if self.request_open => match message {
                    Ok(Some(Message::PublishDone(done))) => {
                        if self.done.is_some() {
                            return Err(Error::violation("second PUBLISH_DONE"));
                        }
                        let deadline = tokio::time::Instant::now() + self.shared.config.orphan_timeout;
                        self.done = Some((done.stream_count, deadline));
                        return Ok(Some(TrackEvent::Done(done)));
                    }
                    Ok(Some(Message::RequestOk(ok))) => return Ok(Some(TrackEvent::UpdateOk(ok))),
                    Ok(Some(Message::RequestError(e))) => return Ok(Some(TrackEvent::UpdateError(e))),
                    Ok(Some(Message::Goaway(_))) => continue,
                    Ok(Some(other)) => {
                        return Err(Error::violation(format!(
                            "unexpected message type {:#x} on a subscription stream",
                            other.type_id()
                        )))
                    }
                    Ok(None) | Err(Error::Cancelled(_)) => {
                        self.request_open = false;
                        if self.done.is_none() {
                            // The publisher closed the stream without PUBLISH_DONE.
                            return Ok(None);
                        }
                    }
                    Err(e) => return Err(e),
                },
                _ = sleep_until(grace), if grace.is_some() => return Ok(None),
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.routes().tracks.remove(&self.alias);
        self.stream.stop(StreamResetCode::Cancelled);
        self.stream.finish();
    }
}

/// One subgroup stream: its header and then its objects in order.
#[derive(Debug)]
pub struct SubgroupReader {
    shared: Arc<Shared>,
    state: SubgroupStream,
    reader: StreamReader,
}

impl SubgroupReader {
    pub(crate) fn new(shared: Arc<Shared>, header: SubgroupHeader, reader: StreamReader) -> Self {
        Self {
            shared,
            state: SubgroupStream::new(header),
            reader,
        }
    }

    /// The stream's header (Track Alias, Group ID, Subgroup ID, priority, flags).
    pub fn header(&self) -> &SubgroupHeader {
        &self.state.header
    }

    /// The Group ID.
    pub fn group_id(&self) -> u64 {
        self.state.header.group_id
    }

    /// The Subgroup ID, once known.
    pub fn subgroup_id(&self) -> Option<u64> {
        self.state.subgroup_id()
    }

    /// The next object, or `None` at the end of the stream. A payload larger than the
    /// configured limit is refused (the stream is stopped) before any of it is buffered.
    pub async fn next(&mut self) -> Result<Option<SubgroupObject>, Error> {
        let version = self.shared.version;
        let state = &mut self.state;
        let decoded = self
            .reader
            .decode(|c| state.decode_object_header(c, version))
            .await;
        let Some(header) = close_on_violation(&self.shared, decoded)? else {
            return Ok(None);
        };
        let limit = self.shared.config.max_object_size;
        if header.payload_len > limit as u64 {
            self.stop(StreamResetCode::ExcessiveLoad);
            return Err(Error::Limit(format!(
                "object of {} bytes exceeds {limit}",
                header.payload_len
            )));
        }
        let read = self.reader.read_exact(header.payload_len as usize).await;
        let payload = close_on_violation(&self.shared, read)?;
        Ok(Some(SubgroupObject {
            object_id: header.object_id,
            properties: header.properties,
            status: header.status,
            payload,
        }))
    }

    /// Stop receiving this subgroup.
    pub fn stop(&mut self, code: StreamResetCode) {
        self.reader.stop(code.code().try_into().unwrap_or(0));
    }
}

/// The response to our FETCH: FETCH_OK and then the objects on the fetch's data stream.
#[derive(Debug)]
pub struct FetchReader {
    shared: Arc<Shared>,
    request: Option<RequestStream>,
    ok: Option<FetchOk>,
    reader: StreamReader,
    state: FetchStream,
}

impl FetchReader {
    /// The FETCH_HEADER stream the driver handed over, not yet tied to its FETCH_OK.
    fn stream(shared: Arc<Shared>, reader: StreamReader) -> Self {
        Self {
            shared,
            request: None,
            ok: None,
            reader,
            state: FetchStream::new(FetchGroupOrder::Ascending),
        }
    }

    pub(crate) async fn wait(
        session: Session,
        request: RequestStream,
        ok: FetchOk,
        data: oneshot::Receiver<StreamReader>,
    ) -> Result<Self, Error> {
        let timeout = session.shared.config.request_timeout;
        let mut reader = match tokio::time::timeout(timeout, data).await {
            Ok(Ok(stream)) => FetchReader::stream(session.shared.clone(), stream),
            Ok(Err(_)) => {
                return Err(Error::Transport(
                    "session closed before the fetch stream arrived".into(),
                ))
            }
            Err(_) => return Err(Error::Timeout("fetch data stream")),
        };
        let order = fetch_order(ok.parameters.group_order);
        reader.state = FetchStream::new(order);
        reader.request = Some(request);
        reader.ok = Some(ok);
        Ok(reader)
    }

    /// The FETCH_OK.
    pub fn fetch_ok(&self) -> Option<&FetchOk> {
        self.ok.as_ref()
    }

    /// The next object or End of Range, or `None` when the publisher finished the stream.
    pub async fn next(&mut self) -> Result<Option<FetchItem>, Error> {
        let version = self.shared.version;
        let state = &mut self.state;
        let decoded = self.reader.decode(|c| state.decode_record(c, version)).await;
        let Some(record) = close_on_violation(&self.shared, decoded)? else {
            return Ok(None);
        };
        match record {
            FetchRecord::EndOfRange(end) => Ok(Some(FetchItem::EndOfRange(end))),
            FetchRecord::Object(h) => {
                let limit = self.shared.config.max_object_size;
                if h.payload_len > limit as u64 {
                    self.reader.stop(StreamResetCode::ExcessiveLoad.code() as u32);
                    return Err(Error::Limit(format!(
                        "object of {} bytes exceeds {limit}",
                        h.payload_len
                    )));
                }
                let read = self.reader.read_exact(h.payload_len as usize).await;
                let payload = close_on_violation(&self.shared, read)?;
                Ok(Some(FetchItem::Object(FetchObject {
                    group_id: h.group_id,
                    subgroup_id: h.subgroup_id,
                    object_id: h.object_id,
                    publisher_priority: h.publisher_priority,
                    properties: h.properties,
                    payload,
                })))
            }
        }
    }
}

impl Drop for FetchReader {
    fn drop(&mut self) {
        if !self.reader.is_finished() {
            self.reader.stop(StreamResetCode::Cancelled.code() as u32);
        }
        if let Some(request) = &mut self.request {
            request.finish();
        }
    }
}

/// The data-plane order of a fetch response from FETCH_OK's GROUP_ORDER (ascending by default).
pub(crate) fn fetch_order(order: Option<crate::message::GroupOrder>) -> FetchGroupOrder {
    match order {
        Some(crate::message::GroupOrder::Descending) => FetchGroupOrder::Descending,
        _ => FetchGroupOrder::Ascending,
    }
}

/// A malformed data stream is a protocol violation of the whole session (draft-18 closes the
/// session for malformed input), not just of the stream: close it, then report the error.
fn close_on_violation<T>(shared: &Shared, result: Result<T, Error>) -> Result<T, Error> {
    if let Err(e @ (Error::Decode(_) | Error::Protocol { .. })) = &result {
        shared.close(e.session_code(), &e.to_string());
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use banyan_certs::{client_config, server_config, DevOptions, Identity, ServerVerification};
    use bytes::Bytes;

    use crate::coding::Location;
    use crate::data::{FetchItem, FetchObject};
    use crate::message::{Fetch, FetchOk, FetchType, Parameters, StandaloneFetch};
    use crate::session::{Client, ClientOptions, Request, Server, Session, SessionConfig, TransportConfig};

    /// A client and a server session over raw QUIC on loopback, drivers spawned.
    async fn pair() -> (Session, Session) {
        let identity = Identity::mint_dev(&DevOptions::default()).unwrap();
        let server = Server::bind(
            "127.0.0.1:0".parse().unwrap(),
            server_config(&identity, &[]).unwrap(),
            &TransportConfig::default(),
            SessionConfig::default(),
        )
        .unwrap();
        let port = server.local_addr().unwrap().port();
        let tls = client_config(&ServerVerification::InsecureSkipVerify, &[]).unwrap();
        let client = Client::new(tls, &TransportConfig::default(), SessionConfig::default()).unwrap();
        let url = format!("moqt://localhost:{port}/").parse().unwrap();
        let accept = async {
            let pending = server.accept().await.unwrap().handshake().await.unwrap();
            pending.accept().await.unwrap()
        };
        let (connected, accepted) = tokio::join!(client.connect(&url, ClientOptions::default()), accept);
        let ((client, client_driver), (server, server_driver)) = (connected.unwrap(), accepted);
        tokio::spawn(client_driver.run());
        tokio::spawn(server_driver.run());
        (client, server)
    }

    /// Completing a FETCH ends the request stream with FIN and leaves the requester's side
    /// to be finished by the requester: it must not STOP_SENDING it, which draft-18 §3.3.2
    /// makes the way to cancel a request (aiomoqt's client drops a FETCH whose request
    /// stream is stopped, even when FETCH_OK and the objects follow).
    #[tokio::test]
    async fn a_completed_fetch_finishes_its_request_stream_without_stopping_it() {
        let (client, server) = pair().await;
        let responder = tokio::spawn(async move {
            let Some(Request::Fetch(request)) = server.accept().await else {
                panic!("a FETCH")
            };
            let ok = FetchOk {
                end_location: Location::new(0, 1),
                ..Default::default()
            };
            let mut writer = request.accept(ok).await.unwrap();
            let object = FetchObject {
                group_id: 0,
                subgroup_id: Some(0),
                object_id: 0,
                publisher_priority: 128,
                properties: Default::default(),
                payload: Bytes::from_static(b"history"),
            };
            writer.write(&FetchItem::Object(object)).await.unwrap();
            writer.finish();
            server
        });
        let fetch = Fetch {
            request_id: 0,
            fetch_type: FetchType::Standalone(StandaloneFetch {
                track_namespace: crate::coding::TrackNamespace::from_path("a").unwrap(),
                track_name: "t".into(),
                start_location: Location::new(0, 0),
                end_location: Location::new(0, 1),
            }),
            parameters: Parameters::default(),
        };
        let mut reader = client.fetch(fetch).await.unwrap();
        let mut objects = 0;
        while let Some(item) = reader.next().await.unwrap() {
            objects += usize::from(matches!(item, FetchItem::Object(_)));
        }
        assert_eq!(objects, 1);
        let _server = responder.await.unwrap();
        let request = reader.request.as_mut().expect("the FETCH's request stream");
        assert!(
            request.next().await.unwrap().is_none(),
            "the responder FINs its side"
        );
        request.finish();
        let stopped = tokio::time::timeout(Duration::from_secs(5), request.stopped())
            .await
            .expect("our FIN is read or our side is stopped");
        assert_eq!(
            stopped, None,
            "the responder sent STOP_SENDING on a FETCH it completed"
        );
    }

    /// A refused request ends its stream with FIN after REQUEST_ERROR and lets the requester
    /// finish its side: stopping that side would make the refusal look like a cancelled
    /// request (draft-18 §3.3.2), and the requester could miss the REQUEST_ERROR.
    #[tokio::test]
    async fn a_refused_publish_is_read_as_a_refusal_not_a_cancellation() {
        use crate::coding::RequestErrorCode;
        use crate::message::{Message, Publish};
        let (client, server) = pair().await;
        let responder = tokio::spawn(async move {
            let Some(Request::Publish(request)) = server.accept().await else {
                panic!("a PUBLISH")
            };
            request
                .reject(RequestErrorCode::Uninterested, "someone else publishes it")
                .await
                .unwrap();
            server
        });
        let publish = Publish {
            track_namespace: crate::coding::TrackNamespace::from_path("a").unwrap(),
            track_name: "t".into(),
            ..Default::default()
        };
        let mut writer = client.publish(publish).await.unwrap();
        let _server = responder.await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), writer.next_request())
            .await
            .expect("an answer");
        match answer {
            Ok(Some(Message::RequestError(error))) => {
                assert_eq!(error.error_code, RequestErrorCode::Uninterested);
            }
            other => panic!("expected REQUEST_ERROR, got {other:?}"),
        }
        // Our side is read to its end, not stopped.
        writer.stream.finish();
        let stopped = tokio::time::timeout(Duration::from_secs(5), writer.stream.stopped())
            .await
            .expect("our FIN is read or our side is stopped");
        assert_eq!(stopped, None, "the refusing side sent STOP_SENDING");
    }
}
