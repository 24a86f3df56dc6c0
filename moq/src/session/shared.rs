//! The [`Session`] handle and the state it shares with its driver: routes for incoming data,
//! request ids, the control stream, GOAWAY. `Session::start` turns a finished handshake into
//! the handle and its driver. Methods that start requests are in `outgoing.rs`,
//! [`Session::accept`] is in `request.rs`.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use tokio::sync::{mpsc, oneshot, watch, Notify};
use url::Url;

use super::config::SessionConfig;
use super::driver::{EarlyStream, SessionDriver};
use super::error::Error;
use super::reader::StreamReader;
use super::transport::{Connection, SendStream, TransportKind};
use crate::coding::{ReasonPhrase, SessionErrorCode};
use crate::data::{ObjectDatagram, SubgroupHeader};
use crate::message::{Goaway, Message, Setup};
use crate::Version;

/// A MoQT session: a cheap, cloneable handle. Dropping every handle does not close the
/// session; call [`Session::close`].
#[derive(Clone, Debug)]
pub struct Session {
    pub(crate) shared: Arc<Shared>,
}

/// Which end of the session we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// We opened the connection.
    Client,
    /// We accepted it.
    Server,
}

/// Data the driver routes to a subscription: a subgroup stream whose header was read, or a
/// datagram. The subscription wraps a stream in its `SubgroupReader`.
#[derive(Debug)]
pub(crate) enum TrackData {
    Subgroup(SubgroupHeader, StreamReader),
    Datagram(ObjectDatagram),
}

/// A request stream the peer opened, its first message read and checked, queued for
/// [`Session::accept`].
#[derive(Debug)]
pub(crate) struct IncomingRequest {
    pub first: Message,
    pub send: Box<dyn SendStream>,
    pub reader: StreamReader,
}

/// A request stream answered in full, handed to the driver to read the peer's side to its
/// end (see `RequestStream::linger`).
#[derive(Debug)]
pub(crate) struct Lingering {
    /// Our (finished) side, kept until the peer's side has been read.
    pub _send: Box<dyn SendStream>,
    pub reader: StreamReader,
}

/// Where incoming data streams and datagrams go.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    /// Subscriptions we receive objects for, by the Track Alias the peer chose.
    pub tracks: HashMap<u64, mpsc::Sender<TrackData>>,
    /// FETCH requests awaiting their data stream, by Request ID.
    pub fetches: HashMap<u64, oneshot::Sender<StreamReader>>,
    /// Data streams currently waiting for their alias to be registered.
    pub orphans: usize,
    /// Request IDs the peer has used (for duplicate detection).
    pub peer_ids: RequestIds,
}

/// Request IDs seen from the peer: every id below `floor` (of the peer's parity) plus a
/// bounded set of ids at or above it, so detection is exact and memory stays bounded.
#[derive(Debug, Default)]
pub(crate) struct RequestIds {
    floor: u64,
    above: BTreeSet<u64>,
}

impl RequestIds {
    /// The most out-of-order ids tolerated before the peer is considered hostile.
    const MAX_GAPS: usize = 4096;

    pub fn with_parity(first: u64) -> Self {
        Self {
            floor: first,
            above: BTreeSet::new(),
        }
    }

    /// One past the highest id seen (the first id if none was).
    pub fn next_unseen(&self) -> u64 {
        self.above.last().map_or(self.floor, |last| last + 2)
    }

    /// Record `id`; `Err` for a duplicate or when the peer leaves too many gaps.
    pub fn insert(&mut self, id: u64) -> Result<(), Error> {
        if id < self.floor || !self.above.insert(id) {
            return Err(Error::protocol(
                SessionErrorCode::InvalidRequestId,
                format!("duplicate request id {id}"),
            ));
        }
        while self.above.first() == Some(&self.floor) {
            self.above.pop_first();
            self.floor += 2;
        }
        if self.above.len() > Self::MAX_GAPS {
            return Err(Error::violation("too many outstanding request ids"));
        }
        Ok(())
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub transport: Arc<dyn Connection>,
    pub kind: TransportKind,
    pub version: Version,
    pub role: Role,
    pub config: SessionConfig,
    pub url: Option<Url>,
    pub peer_setup: Setup,
    next_request_id: AtomicU64,
    next_alias: AtomicU64,
    pub routes: Mutex<Routes>,
    /// Woken whenever a route is added, for data that arrived before its route.
    pub route_added: Notify,
    /// Our control stream (SETUP was the first message on it).
    pub control: tokio::sync::Mutex<Box<dyn SendStream>>,
    pub goaway_sent: AtomicBool,
    pub goaway_received: watch::Sender<Option<Goaway>>,
    pub requests: tokio::sync::Mutex<mpsc::Receiver<IncomingRequest>>,
    /// Request streams we have answered in full, handed to the driver to read until the
    /// peer finishes its side (see [`RequestStream::linger`]).
    pub linger: mpsc::UnboundedSender<Lingering>,
}

impl Session {
    /// Start a session from what its handshake settled: `control` is our control stream (SETUP
    /// sent), `control_reader` the peer's (SETUP read), `early` the data and request streams
    /// that arrived before it. The driver must run for the session to make progress.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        transport: Arc<dyn Connection>,
        kind: TransportKind,
        version: Version,
        role: Role,
        config: SessionConfig,
        url: Option<Url>,
        peer_setup: Setup,
        control: Box<dyn SendStream>,
        control_reader: StreamReader,
        early: Vec<EarlyStream>,
    ) -> (Session, SessionDriver) {
        let (requests_tx, requests_rx) = mpsc::channel(config.max_queued_requests.max(1));
        let (linger_tx, linger_rx) = mpsc::unbounded_channel();
        let (first_own, first_peer) = match role {
            Role::Client => (0, 1),
            Role::Server => (1, 0),
        };
        let shared = Arc::new(Shared {
            transport,
            kind,
            version,
            role,
            config,
            url,
            peer_setup,
            next_request_id: AtomicU64::new(first_own),
            next_alias: AtomicU64::new(0),
            routes: Mutex::new(Routes {
                peer_ids: RequestIds::with_parity(first_peer),
                ..Default::default()
            }),
            route_added: Notify::new(),
            control: tokio::sync::Mutex::new(control),
            goaway_sent: AtomicBool::new(false),
            goaway_received: watch::Sender::new(None),
            requests: tokio::sync::Mutex::new(requests_rx),
            linger: linger_tx,
        });
        tracing::debug!(transport = %kind, %version, ?role, "session established");
        let driver = SessionDriver::new(shared.clone(), control_reader, requests_tx, linger_rx, early);
        (Session { shared }, driver)
    }
}

impl Shared {
    pub fn routes(&self) -> MutexGuard<'_, Routes> {
        self.routes.lock()
    }

    /// True if `id` has the parity of the peer's request ids.
    pub fn is_peer_request_id(&self, id: u64) -> bool {
        match self.role {
            Role::Client => id % 2 == 1,
            Role::Server => id % 2 == 0,
        }
    }

    pub fn close(&self, code: SessionErrorCode, reason: &str) {
        close_transport(self.transport.as_ref(), code, reason);
    }
}

impl Session {
    /// Which transport carries the session.
    pub fn transport(&self) -> TransportKind {
        self.shared.kind
    }

    /// The negotiated MoQT version.
    pub fn version(&self) -> Version {
        self.shared.version
    }

    /// Whether we are the client or the server.
    pub fn role(&self) -> Role {
        self.shared.role
    }

    /// The peer's SETUP message (its options: path, authority, tokens, implementation).
    pub fn peer_setup(&self) -> &Setup {
        &self.shared.peer_setup
    }

    /// The URL the session was established for: the WebTransport URL, or for raw QUIC the
    /// `moqt://` URL rebuilt from the AUTHORITY and PATH setup options (when sent).
    pub fn url(&self) -> Option<&Url> {
        self.shared.url.as_ref()
    }

    /// The peer's address.
    pub fn remote_address(&self) -> std::net::SocketAddr {
        self.shared.transport.remote_address()
    }

    /// The current round-trip time estimate.
    pub fn rtt(&self) -> std::time::Duration {
        self.shared.transport.rtt()
    }

    /// Allocate the next Request ID of our parity.
    pub fn next_request_id(&self) -> u64 {
        self.shared.next_request_id.fetch_add(2, Ordering::Relaxed)
    }

    /// Allocate a Track Alias unique within this session, for SUBSCRIBE_OK or PUBLISH.
    pub fn next_track_alias(&self) -> u64 {
        self.shared.next_alias.fetch_add(1, Ordering::Relaxed)
    }

    /// Send GOAWAY on the control stream: the peer should move to `new_uri` (servers only;
    /// empty keeps the current URI) within `timeout`. New requests are then refused with
    /// GOING_AWAY.
    pub async fn goaway(&self, new_uri: &str, timeout: std::time::Duration) -> Result<(), Error> {
        if self.shared.goaway_sent.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let uri = match self.shared.role {
            Role::Server => new_uri.to_string(),
            Role::Client => String::new(),
        };
        if uri.len() > crate::message::goaway::MAX_NEW_SESSION_URI_LEN {
            return Err(Error::InvalidArgument("GOAWAY URI longer than 8192 bytes".into()));
        }
        // The smallest peer Request ID we might not have processed: one past the highest seen.
        let next_peer_id = self.shared.routes().peer_ids.next_unseen();
        let goaway = Goaway {
            new_session_uri: uri,
            timeout: timeout.as_millis().try_into().unwrap_or(u64::MAX),
            request_id: Some(next_peer_id),
        };
        let mut buf = bytes::BytesMut::new();
        Message::from(goaway).encode_frame(&mut buf, self.shared.version)?;
        self.shared.control.lock().await.write_chunk(buf.freeze()).await?;
        Ok(())
    }

    /// True once the peer has sent GOAWAY (it wants no new requests on this session).
    pub fn is_going_away(&self) -> bool {
        self.shared.goaway_received.borrow().is_some()
    }

    /// The GOAWAY the peer sent, once it arrives.
    pub async fn goaway_received(&self) -> Goaway {
        let mut rx = self.shared.goaway_received.subscribe();
        loop {
            if let Some(goaway) = rx.borrow_and_update().clone() {
                return goaway;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as the session state; this is unreachable in
                // practice, but never resolve rather than invent a GOAWAY.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Close the session with a code and reason.
    pub fn close(&self, code: SessionErrorCode, reason: &str) {
        self.shared.close(code, reason);
    }

    /// True once the session has closed (either side).
    pub fn is_closed(&self) -> bool {
        self.shared.transport.close_reason().is_some()
    }

    /// Resolves when the session has closed, with the reason.
    pub async fn closed(&self) -> Error {
        self.shared.transport.closed().await.into()
    }
}

/// Close a transport with a MoQT termination code and a reason (cut to the spec's 1024 bytes).
pub(crate) fn close_transport(transport: &dyn Connection, code: SessionErrorCode, reason: &str) {
    transport.close(code.code(), ReasonPhrase::new(reason).as_str());
}
