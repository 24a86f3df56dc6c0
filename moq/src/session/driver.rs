//! The session driver: the I/O nobody asks for. It accepts request and data streams, routes
//! data streams and datagrams to their subscriptions, and reads the control stream.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

use super::error::Error;
use super::reader::StreamReader;
use super::shared::{IncomingRequest, Lingering, Role, Shared, TrackData};
use super::stream::RequestStream;
use super::transport::{RecvStream, SendStream};
use crate::coding::{Decode, RequestErrorCode, SessionErrorCode, StreamResetCode};
use crate::data::{Datagram, FetchHeader, StreamType, SubgroupHeader};
use crate::message::Message;

/// A data stream that arrived before setup completed.
#[derive(Debug)]
pub(crate) struct EarlyStream(pub StreamReader);

type Task = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

/// Drives a session: run it (usually with `tokio::spawn(driver.run())`) for as long as the
/// session should live. It resolves when the session closes, with `Ok` for a clean close.
#[must_use = "a session makes no progress unless its driver runs"]
pub struct SessionDriver {
    shared: Arc<Shared>,
    control: StreamReader,
    requests: mpsc::Sender<IncomingRequest>,
    linger: mpsc::UnboundedReceiver<Lingering>,
    early: Vec<EarlyStream>,
}

impl std::fmt::Debug for SessionDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionDriver")
            .field("transport", &self.shared.kind)
            .finish_non_exhaustive()
    }
}

impl SessionDriver {
    pub(crate) fn new(
        shared: Arc<Shared>,
        control: StreamReader,
        requests: mpsc::Sender<IncomingRequest>,
        linger: mpsc::UnboundedReceiver<Lingering>,
        early: Vec<EarlyStream>,
    ) -> Self {
        Self {
            shared,
            control,
            requests,
            linger,
            early,
        }
    }

    /// Run until the session closes. A protocol violation by the peer closes the session
    /// with the matching code and is returned as the error.
    pub async fn run(self) -> Result<(), Error> {
        let shared = self.shared.clone();
        let result = self.run_inner().await;
        match &result {
            Err(Error::Closed {
                code: SessionErrorCode::NoError,
                ..
            })
            | Err(Error::ClosedLocally { .. }) => Ok(()),
            Err(e @ Error::Closed { .. }) => {
                tracing::debug!(error = %e, "session closed by peer");
                result
            }
            Err(e) => {
                // A stream failing because the peer closed the connection is not our error:
                // keep the peer's code (e.g. EXPIRED_AUTH_TOKEN) rather than closing over it.
                if let Some(closed) = peer_closed(&shared) {
                    tracing::debug!(error = %e, by_peer = %closed, "session closed by peer");
                    return Err(closed);
                }
                tracing::debug!(error = %e, code = %e.session_code(), "closing session");
                shared.close(e.session_code(), &e.to_string());
                result
            }
            Ok(()) => Ok(()),
        }
    }

    async fn run_inner(self) -> Result<(), Error> {
        let SessionDriver {
            shared,
            control,
            requests,
            mut linger,
            early,
        } = self;
        let mut tasks: FuturesUnordered<Task> = FuturesUnordered::new();
        tasks.push(Box::pin(read_control(shared.clone(), control)));
        tasks.push(Box::pin(read_datagrams(shared.clone())));
        for EarlyStream(reader) in early {
            tasks.push(Box::pin(handle_data_stream(shared.clone(), reader)));
        }
        loop {
            tokio::select! {
                uni = shared.transport.accept_uni() => {
                    let reader = StreamReader::new(uni?, data_header_limit(&shared));
                    tasks.push(Box::pin(handle_data_stream(shared.clone(), reader)));
                }
                bi = shared.transport.accept_bi() => {
                    let (send, recv) = bi?;
                    tasks.push(Box::pin(handle_request_stream(shared.clone(), send, recv, requests.clone())));
                }
                Some(stream) = linger.recv() => {
                    tasks.push(Box::pin(drain_request_stream(shared.clone(), stream)));
                }
                Some(result) = tasks.next() => result?,
            }
        }
    }
}

/// Read a request stream we have answered in full until the peer finishes its side (or
/// `within` passes, or it misbehaves), then let it go. Dropping it unread would send
/// STOP_SENDING, which draft-18 §3.3.2 makes the signal for cancelling a request.
async fn drain_request_stream(shared: Arc<Shared>, stream: Lingering) -> Result<(), Error> {
    let Lingering { _send, mut reader } = stream;
    let (version, max) = (shared.version, shared.config.max_message_size);
    let drain = async { while let Ok(Some(_)) = reader.message(version, max).await {} };
    let _ = tokio::time::timeout(shared.config.request_timeout, drain).await;
    Ok(())
}

/// The most bytes a data stream may send before its headers are complete.
fn data_header_limit(_shared: &Shared) -> usize {
    crate::data::MAX_OBJECT_PROPERTIES_LEN + 64
}

/// The peer's control stream after SETUP: only GOAWAY may follow, once.
async fn read_control(shared: Arc<Shared>, mut control: StreamReader) -> Result<(), Error> {
    loop {
        match control
            .message(shared.version, shared.config.max_message_size)
            .await?
        {
            Some(Message::Goaway(goaway)) => {
                if shared.goaway_received.borrow().is_some() {
                    return Err(Error::violation("second GOAWAY on the control stream"));
                }
                if shared.role == Role::Server && !goaway.new_session_uri.is_empty() {
                    return Err(Error::violation("GOAWAY from a client carried a URI"));
                }
                tracing::info!(uri = %goaway.new_session_uri, "peer sent GOAWAY");
                shared.goaway_received.send_replace(Some(goaway));
            }
            Some(other) => {
                return Err(Error::violation(format!(
                    "message type {:#x} is not allowed on the control stream",
                    other.type_id()
                )))
            }
            None => return Err(Error::violation("the peer closed its control stream")),
        }
    }
}

async fn read_datagrams(shared: Arc<Shared>) -> Result<(), Error> {
    loop {
        let datagram: Bytes = shared.transport.read_datagram().await?;
        match Datagram::decode(datagram, shared.version)? {
            Datagram::Padding(_) => {}
            Datagram::Object(object) => {
                let route = shared.routes().tracks.get(&object.track_alias).cloned();
                // Datagrams are unreliable by nature: one for an unknown alias, or for a
                // subscriber that is not keeping up, is dropped rather than queued.
                if let Some(tx) = route {
                    let _ = tx.try_send(TrackData::Datagram(object));
                }
            }
        }
    }
}

/// A new unidirectional stream: read its type and header, then hand it to its subscription.
async fn handle_data_stream(shared: Arc<Shared>, mut reader: StreamReader) -> Result<(), Error> {
    let version = shared.version;
    let header = tokio::time::timeout(
        shared.config.data_header_timeout,
        reader.decode(|c| {
            let ty = StreamType::decode(c, version)?;
            Ok(match ty {
                StreamType::Subgroup(t) => {
                    DataHeader::Subgroup(SubgroupHeader::decode_after_type(t, c, version)?)
                }
                StreamType::Fetch => DataHeader::Fetch(FetchHeader::decode_after_type(c, version)?),
                StreamType::Setup => DataHeader::Setup,
                StreamType::Padding => DataHeader::Padding,
            })
        }),
    )
    .await;
    let header = match header {
        Err(_) => {
            reader.stop(StreamResetCode::Cancelled.code() as u32);
            return Ok(());
        }
        // Reset before its header: nothing to deliver.
        Ok(Err(Error::Cancelled(_))) | Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Some(header))) => header,
    };
    match header {
        DataHeader::Setup => Err(Error::violation("a second control stream")),
        DataHeader::Padding => {
            reader.stop(0);
            Ok(())
        }
        DataHeader::Subgroup(header) => route_subgroup(shared, header, reader).await,
        DataHeader::Fetch(header) => route_fetch(shared, header, reader).await,
    }
}

enum DataHeader {
    Subgroup(SubgroupHeader),
    Fetch(FetchHeader),
    Setup,
    Padding,
}

/// Deliver a subgroup stream to the subscription with its Track Alias, waiting a bounded
/// time for a subscription whose SUBSCRIBE_OK has not been read yet.
async fn route_subgroup(
    shared: Arc<Shared>,
    header: SubgroupHeader,
    mut reader: StreamReader,
) -> Result<(), Error> {
    let alias = header.track_alias;
    let deadline = tokio::time::Instant::now() + shared.config.orphan_timeout;
    let mut orphaned = false;
    let tx = loop {
        let notified = shared.route_added.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(tx) = shared.routes().tracks.get(&alias).cloned() {
            break Some(tx);
        }
        if !orphaned {
            let mut routes = shared.routes();
            if routes.orphans >= shared.config.max_orphan_streams {
                drop(routes);
                reader.stop(StreamResetCode::ExcessiveLoad.code() as u32);
                return Ok(());
            }
            routes.orphans += 1;
            orphaned = true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            break None;
        }
    };
    if orphaned {
        shared.routes().orphans -= 1;
    }
    let Some(tx) = tx else {
        tracing::debug!(alias, "data stream for an unknown track alias");
        reader.stop(StreamResetCode::Cancelled.code() as u32);
        return Ok(());
    };
    if let Err(mpsc::error::SendError(TrackData::Subgroup(_, mut reader))) =
        tx.send(TrackData::Subgroup(header, reader)).await
    {
        // The subscription is gone: tell the publisher to stop.
        reader.stop(StreamResetCode::Cancelled.code() as u32);
    }
    Ok(())
}

async fn route_fetch(
    shared: Arc<Shared>,
    header: FetchHeader,
    mut reader: StreamReader,
) -> Result<(), Error> {
    let tx = shared.routes().fetches.remove(&header.request_id);
    match tx {
        Some(tx) => {
            let _ = tx.send(reader);
        }
        None => reader.stop(StreamResetCode::Cancelled.code() as u32),
    }
    Ok(())
}

/// A new bidirectional stream: read the request, check its ID, queue it for the application.
async fn handle_request_stream(
    shared: Arc<Shared>,
    send: Box<dyn SendStream>,
    recv: Box<dyn RecvStream>,
    requests: mpsc::Sender<IncomingRequest>,
) -> Result<(), Error> {
    let mut reader = StreamReader::new(recv, shared.config.max_message_size + 16);
    let first = tokio::time::timeout(
        shared.config.request_timeout,
        reader.message(shared.version, shared.config.max_message_size),
    )
    .await;
    let first = match first {
        Err(_) => {
            reader.stop(StreamResetCode::Cancelled.code() as u32);
            return Ok(());
        }
        Ok(Ok(None)) | Ok(Err(Error::Cancelled(_))) => return Ok(()),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Some(message))) => message,
    };
    let Some(id) = first.request_id().filter(|_| first.is_request_start()) else {
        return Err(Error::violation(format!(
            "message type {:#x} cannot open a request stream",
            first.type_id()
        )));
    };
    if !shared.is_peer_request_id(id) {
        return Err(Error::protocol(
            SessionErrorCode::InvalidRequestId,
            format!("request id {id} has our parity"),
        ));
    }
    shared.routes().peer_ids.insert(id)?;
    if shared.goaway_sent.load(Ordering::SeqCst) {
        let mut stream = RequestStream::from_reader(shared.clone(), send, reader);
        let _ = stream.reject(RequestErrorCode::GoingAway, "going away").await;
        return Ok(());
    }
    let request = IncomingRequest { first, send, reader };
    if let Err(mpsc::error::SendError(IncomingRequest { send, reader, .. })) = requests.send(request).await {
        let stream = RequestStream::from_reader(shared.clone(), send, reader);
        let _ = stream
            .refuse(RequestErrorCode::NotSupported, "not accepting requests")
            .await;
    }
    Ok(())
}

/// The peer's close, when the transport has already been closed by the peer.
fn peer_closed(shared: &Shared) -> Option<Error> {
    match shared.transport.close_reason()? {
        reason @ super::transport::TransportError::Closed { .. } => Some(reason.into()),
        _ => None,
    }
}
