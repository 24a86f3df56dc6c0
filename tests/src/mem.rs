//! An in-memory transport pair for `banyan-moq` sessions, on tokio's clock.
//!
//! [`pair`] returns two connected [`Transport`]s (client, server) implementing
//! [`banyan_moq::session::transport::Connection`]. Under `tokio::time::pause()` (or
//! `#[tokio::test(start_paused = true)]`) a whole MoQT session runs in milliseconds of wall time
//! and every delay is exact on the virtual clock.
//!
//! # The model
//! Each direction is a [`Link`] with a one-way latency and a loss probability, drawn from a
//! seeded RNG per direction:
//! - A datagram is dropped with probability `loss`, otherwise it arrives `latency` later.
//! - Stream data is reliable and in order. Each write (one "packet") is lost with probability
//!   `loss`; a lost write arrives one round trip later than it would have (`latency` out, then
//!   a retransmission after the round trip `latency + reverse latency`), and the stream's later
//!   data waits behind it (head-of-line blocking, as in QUIC).
//! - A new stream reaches the peer `latency` after it is opened; FIN, RESET_STREAM and
//!   STOP_SENDING take `latency` too and are never lost (RESET_STREAM does not overtake data).
//! - Closing reaches the peer `latency` later; the closing side sees it at once.
//! - Flow control: a stream writer blocks while `stream_window` bytes it wrote are unread by the
//!   application on the other side (credit returns at once, not after a latency). There is no
//!   bandwidth limit and no connection-level window.
//!
//! [`Transport::stats`] counts what each side sent, dropped and delayed, so a test can prove
//! the impairment happened. [`handshake`] and [`session_pair`] set up MoQT sessions over a pair.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use banyan_moq::session::transport::{
    BiStream, BoxFuture, Connection, RecvStream, SendStream, TransportError,
};
use banyan_moq::session::{
    ClientOptions, Error, PendingSession, Session, SessionConfig, SessionDriver, TransportKind,
};
use banyan_moq::Version;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::time::{Instant, Sleep};
use url::Url;

/// One direction of the pair.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Link {
    /// One-way delay of everything sent this way.
    pub latency: Duration,
    /// Probability (0 to 1) that a datagram is dropped or a stream write is retransmitted.
    pub loss: f64,
}

/// How the pair behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Client to server.
    pub to_server: Link,
    /// Server to client.
    pub to_client: Link,
    /// Seeds the loss draws (each direction gets its own generator).
    pub seed: u64,
    /// What the session believes carries it: [`TransportKind::Quic`] (the client sends
    /// AUTHORITY and PATH in SETUP) or [`TransportKind::WebTransport`] (the URL is given).
    pub kind: TransportKind,
    /// The client's address, as the server sees it.
    pub client_addr: SocketAddr,
    /// The server's address, as the client sees it.
    pub server_addr: SocketAddr,
    /// Larger datagrams are refused, like a QUIC path's limit.
    pub max_datagram_size: usize,
    /// Unread bytes a stream writer may have in flight before its writes wait.
    pub stream_window: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            to_server: Link::default(),
            to_client: Link::default(),
            seed: 0,
            kind: TransportKind::Quic,
            client_addr: SocketAddr::from(([127, 0, 0, 1], 50_000)),
            server_addr: SocketAddr::from(([127, 0, 0, 1], 4443)),
            max_datagram_size: 1200,
            stream_window: 1 << 20,
        }
    }
}

impl Config {
    /// The same latency and loss both ways.
    pub fn symmetric(latency: Duration, loss: f64) -> Self {
        let link = Link { latency, loss };
        Self {
            to_server: link,
            to_client: link,
            ..Self::default()
        }
    }
}

/// What one side of a pair has sent, to prove an impairment happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to the link (lost or not).
    pub datagrams_sent: u64,
    /// Datagrams the link dropped.
    pub datagrams_lost: u64,
    /// Stream writes (packets) handed to the link.
    pub stream_writes: u64,
    /// Stream writes delayed by a retransmission.
    pub stream_writes_retransmitted: u64,
    /// Stream payload bytes handed to the link.
    pub stream_bytes: u64,
    /// Streams opened.
    pub streams_opened: u64,
}

/// Two connected in-memory transports: (client, server).
pub fn pair(config: &Config) -> (Arc<Transport>, Arc<Transport>) {
    let client = Arc::new(End::new(
        config,
        config.client_addr,
        config.to_server,
        config.seed,
    ));
    let server = Arc::new(End::new(
        config,
        config.server_addr,
        config.to_client,
        config.seed ^ 0x9e37_79b9_7f4a_7c15,
    ));
    let client_side = Transport {
        conn: Arc::new(Conn {
            local: client.clone(),
            peer: server.clone(),
        }),
    };
    let server_side = Transport {
        conn: Arc::new(Conn {
            local: server,
            peer: client,
        }),
    };
    (Arc::new(client_side), Arc::new(server_side))
}

/// A client's handshake in progress: resolves with its session once the server accepts.
pub type ClientHandshake = Pin<Box<dyn Future<Output = Result<(Session, SessionDriver), Error>> + Send>>;

/// A server-side session waiting to be accepted, and the client's handshake waiting for it.
pub struct Handshake {
    /// The server side with the client's SETUP read: accept or reject it, or hand it to a relay.
    pub server: PendingSession,
    /// The client side; resolves once the server side accepts (or rejects). Poll it alongside
    /// whatever accepts `server`.
    pub client: ClientHandshake,
    /// The client's transport (for [`Transport::stats`] or closing it).
    pub client_transport: Arc<Transport>,
    /// The server's transport.
    pub server_transport: Arc<Transport>,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// Connect a client to `url` over a new pair and read its SETUP on the server side. The
/// version is the default one; `session` configures both sides.
pub async fn handshake(
    config: &Config,
    url: &Url,
    options: ClientOptions,
    session: SessionConfig,
) -> Result<Handshake, Error> {
    let (client_transport, server_transport) = pair(config);
    let (kind, version) = (config.kind, Version::default());
    let client_url = url.clone();
    let client_config = session.clone();
    let transport: Arc<dyn Connection> = client_transport.clone();
    let mut client: ClientHandshake = Box::pin(async move {
        Session::connect_transport(transport, kind, version, &client_url, options, client_config).await
    });
    let server_url = (kind == TransportKind::WebTransport).then(|| url.clone());
    let server =
        PendingSession::accept_transport(server_transport.clone(), kind, version, server_url, session);
    tokio::pin!(server);
    // The client cannot finish before the server answers, except by failing: keep its result.
    let mut early = None;
    let server = loop {
        tokio::select! {
            server = &mut server => break server,
            result = &mut client, if early.is_none() => early = Some(result),
        }
    };
    let server = match (server, early) {
        (Err(e), Some(Err(client_error))) => {
            tracing::debug!(error = %e, "server side failed after the client did");
            return Err(client_error);
        }
        (server, Some(result)) => {
            client = Box::pin(std::future::ready(result));
            server?
        }
        (server, None) => server?,
    };
    Ok(Handshake {
        server,
        client,
        client_transport,
        server_transport,
    })
}

/// Both sides of an established session over a new pair.
#[derive(Debug)]
pub struct SessionPair {
    /// The client's session and its driver (run it).
    pub client: (Session, SessionDriver),
    /// The server's session and its driver (run it).
    pub server: (Session, SessionDriver),
    /// The client's transport.
    pub client_transport: Arc<Transport>,
    /// The server's transport.
    pub server_transport: Arc<Transport>,
}

/// A client and a server session over a new pair, the server accepting the client's SETUP.
pub async fn session_pair(config: &Config, url: &Url, session: SessionConfig) -> Result<SessionPair, Error> {
    let Handshake {
        server,
        client,
        client_transport,
        server_transport,
    } = handshake(config, url, ClientOptions::default(), session).await?;
    let (client, server) = tokio::join!(client, server.accept());
    Ok(SessionPair {
        client: client?,
        server: server?,
        client_transport,
        server_transport,
    })
}

/// One side of an in-memory pair.
#[derive(Debug)]
pub struct Transport {
    conn: Arc<Conn>,
}

impl Transport {
    /// What this side has sent so far.
    pub fn stats(&self) -> Stats {
        let c = &self.conn.local.counters;
        Stats {
            datagrams_sent: c.datagrams_sent.load(Ordering::Relaxed),
            datagrams_lost: c.datagrams_lost.load(Ordering::Relaxed),
            stream_writes: c.stream_writes.load(Ordering::Relaxed),
            stream_writes_retransmitted: c.stream_writes_retransmitted.load(Ordering::Relaxed),
            stream_bytes: c.stream_bytes.load(Ordering::Relaxed),
            streams_opened: c.streams_opened.load(Ordering::Relaxed),
        }
    }
}

impl Connection for Transport {
    fn open_bi(&self) -> BoxFuture<'_, Result<BiStream, TransportError>> {
        Box::pin(async move {
            self.conn.check_open()?;
            let (ours, theirs) = (Arc::new(Pipe::new()), Arc::new(Pipe::new()));
            self.conn
                .announce(|inbox, at| inbox.bi.push_back((at, (ours.clone(), theirs.clone()))));
            Ok((self.conn.sender(ours), self.conn.receiver(theirs)))
        })
    }

    fn open_uni(&self) -> BoxFuture<'_, Result<Box<dyn SendStream>, TransportError>> {
        Box::pin(async move {
            self.conn.check_open()?;
            let pipe = Arc::new(Pipe::new());
            self.conn
                .announce(|inbox, at| inbox.uni.push_back((at, pipe.clone())));
            Ok(self.conn.sender(pipe))
        })
    }

    fn accept_bi(&self) -> BoxFuture<'_, Result<BiStream, TransportError>> {
        Box::pin(async move {
            let (recv, send) = self.conn.receive(|inbox| pop_due(&mut inbox.bi)).await?;
            Ok((self.conn.sender(send), self.conn.receiver(recv)))
        })
    }

    fn accept_uni(&self) -> BoxFuture<'_, Result<Box<dyn RecvStream>, TransportError>> {
        Box::pin(async move {
            let recv = self.conn.receive(|inbox| pop_due(&mut inbox.uni)).await?;
            Ok(self.conn.receiver(recv))
        })
    }

    fn send_datagram(&self, datagram: Bytes) -> Result<(), TransportError> {
        self.conn.check_open()?;
        let end = &self.conn.local;
        if datagram.len() > end.max_datagram_size {
            return Err(TransportError::Other(format!(
                "datagram of {} bytes exceeds {}",
                datagram.len(),
                end.max_datagram_size
            )));
        }
        end.counters.datagrams_sent.fetch_add(1, Ordering::Relaxed);
        if end.lost() {
            end.counters.datagrams_lost.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let at = Instant::now() + end.link.latency;
        let mut inbox = self.conn.peer.inbox();
        inbox.datagrams.push_back((at, datagram));
        wake_all(&mut inbox.wakers);
        Ok(())
    }

    fn read_datagram(&self) -> BoxFuture<'_, Result<Bytes, TransportError>> {
        Box::pin(self.conn.receive(|inbox| pop_due(&mut inbox.datagrams)))
    }

    fn close(&self, code: u64, reason: &str) {
        let now = Instant::now();
        {
            let mut inbox = self.conn.local.inbox();
            if inbox.closed.is_some() {
                return;
            }
            inbox.closed = Some((now, TransportError::LocallyClosed));
            wake_all(&mut inbox.wakers);
        }
        let mut peer = self.conn.peer.inbox();
        let at = now + self.conn.local.link.latency;
        match &peer.closed {
            Some((earlier, _)) if *earlier <= at => {}
            _ => {
                let reason = reason.to_string();
                peer.closed = Some((at, TransportError::Closed { code, reason }));
                wake_all(&mut peer.wakers);
            }
        }
    }

    fn closed(&self) -> BoxFuture<'_, TransportError> {
        Box::pin(async move {
            let mut timer = Timer::default();
            poll_fn(|cx| {
                poll_check(cx, &mut timer, |waker| match self.conn.closed(Some(waker)) {
                    Err(e) => Check::Ready(e),
                    Ok(at) => Check::Wait(at),
                })
            })
            .await
        })
    }

    fn close_reason(&self) -> Option<TransportError> {
        self.conn.closed(None).err()
    }

    fn remote_address(&self) -> SocketAddr {
        self.conn.peer.addr
    }

    fn rtt(&self) -> Duration {
        self.conn.rtt()
    }
}

/// Both ends, seen from one of them.
#[derive(Debug)]
struct Conn {
    local: Arc<End>,
    peer: Arc<End>,
}

/// One endpoint: what arrives at it, and the link it sends on.
#[derive(Debug)]
struct End {
    inbox: Mutex<Inbox>,
    /// The link from this end to its peer.
    link: Link,
    rng: Mutex<StdRng>,
    counters: Counters,
    addr: SocketAddr,
    max_datagram_size: usize,
    stream_window: usize,
}

#[derive(Debug, Default)]
struct Counters {
    datagrams_sent: AtomicU64,
    datagrams_lost: AtomicU64,
    stream_writes: AtomicU64,
    stream_writes_retransmitted: AtomicU64,
    stream_bytes: AtomicU64,
    streams_opened: AtomicU64,
}

/// What has been sent to one end, each with the instant it arrives.
#[derive(Debug, Default)]
struct Inbox {
    uni: VecDeque<(Instant, Arc<Pipe>)>,
    /// (the peer's sending pipe we read, our sending pipe the peer reads)
    bi: VecDeque<(Instant, PipePair)>,
    datagrams: VecDeque<(Instant, Bytes)>,
    /// When this end learns the connection closed, and how.
    closed: Option<(Instant, TransportError)>,
    wakers: Vec<Waker>,
}

impl End {
    fn new(config: &Config, addr: SocketAddr, link: Link, seed: u64) -> Self {
        Self {
            inbox: Mutex::new(Inbox::default()),
            link,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            counters: Counters::default(),
            addr,
            max_datagram_size: config.max_datagram_size,
            stream_window: config.stream_window,
        }
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock()
    }

    /// Draw whether the next packet on this end's link is lost.
    fn lost(&self) -> bool {
        self.link.loss > 0.0 && self.rng.lock().random_bool(self.link.loss.clamp(0.0, 1.0))
    }
}

impl Conn {
    fn rtt(&self) -> Duration {
        self.local.link.latency + self.peer.link.latency
    }

    /// `Err` once this end has learnt the connection closed; otherwise when it will (if it
    /// will). Registers `waker` for a change.
    fn closed(&self, waker: Option<&Waker>) -> Result<Option<Instant>, TransportError> {
        let mut inbox = self.local.inbox();
        match &inbox.closed {
            Some((at, error)) if *at <= Instant::now() => Err(error.clone()),
            closing => {
                let at = closing.as_ref().map(|(at, _)| *at);
                if let Some(waker) = waker {
                    register(&mut inbox.wakers, waker);
                }
                Ok(at)
            }
        }
    }

    fn check_open(&self) -> Result<(), TransportError> {
        self.closed(None).map(|_| ())
    }

    /// Queue a new stream at the peer, arriving one latency from now.
    fn announce(&self, push: impl FnOnce(&mut Inbox, Instant)) {
        self.local.counters.streams_opened.fetch_add(1, Ordering::Relaxed);
        let mut inbox = self.peer.inbox();
        push(&mut inbox, Instant::now() + self.local.link.latency);
        wake_all(&mut inbox.wakers);
    }

    /// Wait for `pop` to yield something that has arrived, or for the connection to close.
    async fn receive<T>(
        &self,
        mut pop: impl FnMut(&mut Inbox) -> Result<T, Option<Instant>>,
    ) -> Result<T, TransportError> {
        let mut timer = Timer::default();
        poll_fn(|cx| {
            poll_check(cx, &mut timer, |waker| {
                let mut inbox = self.local.inbox();
                let next = match pop(&mut inbox) {
                    Ok(item) => return Check::Ready(Ok(item)),
                    Err(next) => next,
                };
                match &inbox.closed {
                    Some((at, error)) if *at <= Instant::now() => Check::Ready(Err(error.clone())),
                    Some((at, _)) => {
                        let at = *at;
                        register(&mut inbox.wakers, waker);
                        Check::Wait(earliest(next, Some(at)))
                    }
                    None => {
                        register(&mut inbox.wakers, waker);
                        Check::Wait(next)
                    }
                }
            })
        })
        .await
    }

    fn sender(self: &Arc<Self>, pipe: Arc<Pipe>) -> Box<dyn SendStream> {
        Box::new(MemSend {
            pipe,
            conn: self.clone(),
            priority: AtomicI32::new(0),
            ended: false,
            timer: Timer::default(),
        })
    }

    fn receiver(self: &Arc<Self>, pipe: Arc<Pipe>) -> Box<dyn RecvStream> {
        Box::new(MemRecv {
            pipe,
            conn: self.clone(),
            done: false,
            timer: Timer::default(),
        })
    }
}

/// A bidirectional stream's pipes: (the one the opener writes, the one it reads).
type PipePair = (Arc<Pipe>, Arc<Pipe>);

/// One direction of one stream.
#[derive(Debug)]
struct Pipe {
    state: Mutex<PipeState>,
}

#[derive(Debug)]
struct PipeState {
    events: VecDeque<(Instant, Event)>,
    /// When the last event arrives: nothing may overtake it.
    last: Instant,
    /// Bytes written and not yet read by the application (flow control).
    unread: usize,
    /// STOP_SENDING from the reader, and when the writer learns it.
    stop: Option<(Instant, u64)>,
    /// The reader has read the FIN: a finished writer's `stopped` resolves with `None`.
    fin_read: bool,
    wakers: Vec<Waker>,
}

#[derive(Debug)]
enum Event {
    Data(Bytes),
    Fin,
    Reset(u64),
}

impl Pipe {
    fn new() -> Self {
        Self {
            state: Mutex::new(PipeState {
                events: VecDeque::new(),
                last: Instant::now(),
                unread: 0,
                stop: None,
                fin_read: false,
                wakers: Vec::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, PipeState> {
        self.state.lock()
    }

    /// Queue an event to arrive at `at` (or after the last one), and wake the reader.
    fn push(&self, at: Instant, event: Event) {
        let mut state = self.state();
        let at = at.max(state.last);
        state.last = at;
        state.events.push_back((at, event));
        wake_all(&mut state.wakers);
    }
}

#[derive(Debug)]
struct MemSend {
    pipe: Arc<Pipe>,
    conn: Arc<Conn>,
    priority: AtomicI32,
    /// Finished or reset.
    ended: bool,
    timer: Timer,
}

impl SendStream for MemSend {
    fn poll_write_chunks(
        &mut self,
        cx: &mut Context<'_>,
        chunks: &mut [Bytes],
    ) -> Poll<Result<usize, TransportError>> {
        let (pipe, conn, ended) = (&self.pipe, &self.conn, self.ended);
        poll_check(cx, &mut self.timer, |waker| {
            if ended {
                return Check::Ready(Err(TransportError::Other(
                    "stream already finished or reset".into(),
                )));
            }
            let closing = match conn.closed(Some(waker)) {
                Err(e) => return Check::Ready(Err(e)),
                Ok(at) => at,
            };
            let mut state = pipe.state();
            let now = Instant::now();
            if let Some((at, code)) = state.stop {
                if at <= now {
                    return Check::Ready(Err(TransportError::Stopped(code)));
                }
            }
            let room = conn.local.stream_window.saturating_sub(state.unread);
            if room == 0 {
                register(&mut state.wakers, waker);
                return Check::Wait(earliest(closing, state.stop.map(|(at, _)| at)));
            }
            drop(state);
            Check::Ready(Ok(write(conn, pipe, chunks, room)))
        })
    }

    fn set_priority(&self, order: i32) {
        // Recorded, not acted on: the link has no bandwidth limit to share out.
        self.priority.store(order, Ordering::Relaxed);
    }

    fn finish(&mut self) -> Result<(), TransportError> {
        if self.ended {
            return Err(TransportError::Other("stream already finished or reset".into()));
        }
        self.ended = true;
        self.pipe
            .push(Instant::now() + self.conn.local.link.latency, Event::Fin);
        Ok(())
    }

    fn reset(&mut self, code: u64) {
        if !self.ended {
            self.ended = true;
            self.pipe
                .push(Instant::now() + self.conn.local.link.latency, Event::Reset(code));
        }
    }

    fn stopped(&self) -> BoxFuture<'_, Result<Option<u64>, TransportError>> {
        Box::pin(async move {
            let mut timer = Timer::default();
            poll_fn(|cx| {
                poll_check(cx, &mut timer, |waker| {
                    let mut state = self.pipe.state();
                    match state.stop {
                        Some((at, code)) if at <= Instant::now() => return Check::Ready(Ok(Some(code))),
                        _ if state.fin_read => return Check::Ready(Ok(None)),
                        _ => {}
                    }
                    register(&mut state.wakers, waker);
                    let stop = state.stop.map(|(at, _)| at);
                    drop(state);
                    match self.conn.closed(Some(waker)) {
                        Err(e) => Check::Ready(Err(e)),
                        Ok(closing) => Check::Wait(earliest(stop, closing)),
                    }
                })
            })
            .await
        })
    }
}

impl Drop for MemSend {
    fn drop(&mut self) {
        // Like quinn: a stream dropped without finish or reset is finished.
        let _ = self.finish();
    }
}

/// Take up to `room` bytes from the front of `chunks` and send them as one packet.
fn write(conn: &Conn, pipe: &Pipe, chunks: &mut [Bytes], room: usize) -> usize {
    let end = &conn.local;
    let mut at = Instant::now() + end.link.latency;
    end.counters.stream_writes.fetch_add(1, Ordering::Relaxed);
    if end.lost() {
        end.counters
            .stream_writes_retransmitted
            .fetch_add(1, Ordering::Relaxed);
        at += conn.rtt();
    }
    let mut written = 0;
    let mut state = pipe.state();
    for chunk in chunks.iter_mut() {
        let take = chunk.len().min(room - written);
        if take == 0 {
            if chunk.is_empty() {
                continue;
            }
            break;
        }
        let data = chunk.split_to(take);
        written += take;
        let at = at.max(state.last);
        state.last = at;
        state.events.push_back((at, Event::Data(data)));
    }
    state.unread += written;
    wake_all(&mut state.wakers);
    end.counters
        .stream_bytes
        .fetch_add(written as u64, Ordering::Relaxed);
    written
}

#[derive(Debug)]
struct MemRecv {
    pipe: Arc<Pipe>,
    conn: Arc<Conn>,
    /// The FIN or a reset was read, or we stopped the stream.
    done: bool,
    timer: Timer,
}

impl RecvStream for MemRecv {
    fn poll_read_chunk(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Result<Option<Bytes>, TransportError>> {
        let (pipe, conn, done) = (&self.pipe, &self.conn, &mut self.done);
        poll_check(cx, &mut self.timer, |waker| {
            if *done {
                return Check::Ready(Ok(None));
            }
            let mut state = pipe.state();
            let next = state.events.front().map(|(at, _)| *at);
            if next.is_some_and(|at| at <= Instant::now()) {
                match state.events.pop_front() {
                    Some((at, Event::Data(mut data))) => {
                        let chunk = data.split_to(max.min(data.len()));
                        if !data.is_empty() {
                            state.events.push_front((at, Event::Data(data)));
                        }
                        state.unread = state.unread.saturating_sub(chunk.len());
                        wake_all(&mut state.wakers);
                        return Check::Ready(Ok(Some(chunk)));
                    }
                    Some((_, Event::Fin)) => {
                        *done = true;
                        state.fin_read = true;
                        wake_all(&mut state.wakers);
                        return Check::Ready(Ok(None));
                    }
                    Some((_, Event::Reset(code))) => {
                        *done = true;
                        return Check::Ready(Err(TransportError::Reset(code)));
                    }
                    None => {}
                }
            }
            register(&mut state.wakers, waker);
            drop(state);
            match conn.closed(Some(waker)) {
                Err(e) => Check::Ready(Err(e)),
                Ok(closing) => Check::Wait(earliest(next, closing)),
            }
        })
    }

    fn stop(&mut self, code: u64) {
        if self.done {
            return;
        }
        self.done = true;
        let mut state = self.pipe.state();
        state.stop = Some((Instant::now() + self.conn.local.link.latency, code));
        // What was not read never will be: give the writer its window back.
        state.events.clear();
        state.unread = 0;
        wake_all(&mut state.wakers);
    }
}

impl Drop for MemRecv {
    fn drop(&mut self) {
        // Like quinn: a stream dropped before its end was read is stopped with code 0.
        self.stop(0);
    }
}

/// The front item if it has arrived; otherwise when it will (`None`: nothing queued).
fn pop_due<T>(queue: &mut VecDeque<(Instant, T)>) -> Result<T, Option<Instant>> {
    match queue.front() {
        Some((at, _)) if *at <= Instant::now() => queue.pop_front().map(|(_, item)| item).ok_or(None),
        Some((at, _)) => Err(Some(*at)),
        None => Err(None),
    }
}

/// What a check found: a value, or when to look again (`None`: only when woken).
enum Check<T> {
    Ready(T),
    Wait(Option<Instant>),
}

/// Run `check` until it is ready, sleeping on tokio's clock until the instant it names.
fn poll_check<T>(
    cx: &mut Context<'_>,
    timer: &mut Timer,
    mut check: impl FnMut(&Waker) -> Check<T>,
) -> Poll<T> {
    loop {
        match check(cx.waker()) {
            Check::Ready(value) => return Poll::Ready(value),
            Check::Wait(None) => return Poll::Pending,
            Check::Wait(Some(at)) => {
                if timer.poll_until(cx, at).is_pending() {
                    return Poll::Pending;
                }
            }
        }
    }
}

/// A reusable sleep on tokio's clock.
#[derive(Default)]
struct Timer(Option<Pin<Box<Sleep>>>);

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Timer")
            .field(&self.0.as_ref().map(|s| s.deadline()))
            .finish()
    }
}

impl Timer {
    fn poll_until(&mut self, cx: &mut Context<'_>, at: Instant) -> Poll<()> {
        let sleep = self
            .0
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if sleep.deadline() != at {
            sleep.as_mut().reset(at);
        }
        sleep.as_mut().poll(cx)
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn register(wakers: &mut Vec<Waker>, waker: &Waker) {
    if !wakers.iter().any(|w| w.will_wake(waker)) {
        wakers.push(waker.clone());
    }
}

fn wake_all(wakers: &mut Vec<Waker>) {
    for waker in wakers.drain(..) {
        waker.wake();
    }
}
