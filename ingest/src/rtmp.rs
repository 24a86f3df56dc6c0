//! The RTMP listener and one encoder connection: the handshake and chunk/AMF session are
//! `rml_rtmp`'s (sans-IO: bytes in, packets and events out); this module does the I/O with
//! every bound, and decides: `connect` is accepted for any app, `publish` only once the key
//! resolved and the relay accepted the broadcast, `play` never.
//!
//! Bounds: `--max-connections` open at once (more are closed at once), `--handshake-timeout`
//! from the first byte to an accepted `publish` and at most [`MAX_PRE_PUBLISH_BYTES`] before
//! it, `--idle-timeout` of silence while publishing. A message's size is bounded by RTMP's
//! 24-bit length (16 MiB), which `rml_rtmp` reassembles.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::broadcasts::{key_label, ClaimError, Live, Registry};
use crate::config::IngestConfig;
use crate::keys::KeyTable;
use crate::mapping::{MapError, Mapper};
use crate::metrics::Metrics;

/// Bytes a connection may send before its `publish` is accepted (commands are small).
pub const MAX_PRE_PUBLISH_BYTES: usize = 256 * 1024;

/// What every connection shares.
#[derive(Debug)]
pub struct Context {
    /// The configuration.
    pub config: IngestConfig,
    /// The `[keys]` table.
    pub keys: KeyTable,
    /// The broadcasts.
    pub registry: Arc<Registry>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    next_conn: AtomicU64,
}

impl Context {
    /// A context.
    pub fn new(config: IngestConfig, keys: KeyTable, registry: Arc<Registry>, metrics: Arc<Metrics>) -> Self {
        Self {
            config,
            keys,
            registry,
            metrics,
            next_conn: AtomicU64::new(1),
        }
    }

    /// A new connection's id.
    pub fn next_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Resolve stream key `key` (RTMP stream key or SRT streamid) and claim its broadcast for
    /// connection `conn`; refusals are counted and logged with the key's hash only.
    pub async fn admit(&self, key: &str, conn: u64, peer: SocketAddr) -> Result<Arc<Live>, Refusal> {
        let label = key_label(key);
        let target = match self.keys.resolve(key) {
            Ok(t) => t,
            Err(e) => {
                self.metrics.refused_keys.inc();
                tracing::warn!(%peer, key = %label, "stream key refused: {e}");
                return Err(Refusal::Key("stream key refused".into()));
            }
        };
        match self.registry.claim(&target, key, conn).await {
            Ok((live, resumed)) => {
                tracing::info!(%peer, key = %label, broadcast = %live.namespace, resumed, "publishing");
                Ok(live)
            }
            Err(e @ ClaimError::Refused { .. }) => {
                self.metrics.refused_keys.inc();
                tracing::warn!(%peer, key = %label, "{e}");
                Err(Refusal::Key("stream key refused by the relay".into()))
            }
            Err(e @ ClaimError::Busy(_)) => {
                tracing::warn!(%peer, key = %label, "{e}");
                Err(Refusal::Busy(e.to_string()))
            }
        }
    }

    /// Count a media error the way every transport does; whether the encoder should not be
    /// waited for (it must change codec or configuration first).
    pub fn media_error(&self, error: &MapError) -> bool {
        match error {
            MapError::Unsupported(_) => {
                self.metrics.refused_codecs.inc();
                true
            }
            MapError::Malformed(_) => {
                self.metrics.malformed_tags.inc();
                false
            }
            MapError::ConfigChanged(_) => true,
        }
    }
}

/// Why [`Context::admit`] refused a key: the text is for the encoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The key is unknown here or the relay refused it.
    #[error("{0}")]
    Key(String),
    /// Another encoder publishes that broadcast right now.
    #[error("{0}")]
    Busy(String),
}

/// Accept encoders on `listener` until `shutdown` resolves; then close every connection.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(ctx.config.max_connections));
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        ctx.registry.prune();
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            ctx.metrics.connections_refused.inc();
            tracing::warn!(%peer, max = ctx.config.max_connections, "too many connections; closing");
            drop(stream);
            continue;
        };
        let ctx = ctx.clone();
        connections.spawn(async move {
            ctx.metrics.connections.inc();
            ctx.metrics.connections_total.inc();
            let conn = ctx.next_id();
            let mut connection = Connection::new(ctx.clone(), conn, peer);
            let result = connection.run(stream).await;
            connection.close(result.as_ref().err());
            ctx.metrics.connections.dec();
            drop(permit);
        });
    }
    connections.shutdown().await;
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("not RTMP: {0}")]
    Handshake(String),
    #[error("no publish within the handshake timeout")]
    Timeout,
    #[error("more than {MAX_PRE_PUBLISH_BYTES} bytes before publish")]
    TooMuch,
    #[error("silent for the idle timeout")]
    Idle,
    #[error("RTMP session: {0}")]
    Session(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("a newer connection with the same stream key took the broadcast over")]
    TakenOver,
    #[error(transparent)]
    Media(#[from] MapError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

struct Connection {
    ctx: Arc<Context>,
    id: u64,
    peer: SocketAddr,
    publishing: Option<(Arc<Live>, Mapper)>,
    /// The encoder unpublished (deleteStream / FCUnpublish): no grace period.
    unpublished: bool,
}

impl Connection {
    fn new(ctx: Arc<Context>, id: u64, peer: SocketAddr) -> Self {
        Self {
            ctx,
            id,
            peer,
            publishing: None,
            unpublished: false,
        }
    }

    async fn run(&mut self, mut stream: TcpStream) -> Result<(), ConnError> {
        let _ = stream.set_nodelay(true);
        let deadline = Instant::now() + self.ctx.config.handshake_timeout;
        let mut buf = vec![0u8; 16 * 1024];
        let mut received = 0usize;

        // Handshake (C0/C1/C2 ↔ S0/S1/S2).
        let mut handshake = Handshake::new(PeerType::Server);
        let leftover = loop {
            let n = self.read(&mut stream, &mut buf, deadline).await?;
            received += n;
            if received > MAX_PRE_PUBLISH_BYTES {
                return Err(ConnError::TooMuch);
            }
            match handshake.process_bytes(buf.get(..n).unwrap_or_default()) {
                Ok(HandshakeProcessResult::InProgress { response_bytes }) => {
                    stream.write_all(&response_bytes).await?
                }
                Ok(HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                }) => {
                    stream.write_all(&response_bytes).await?;
                    break remaining_bytes;
                }
                Err(e) => return Err(ConnError::Handshake(format!("{e:?}"))),
            }
        };

        let (mut session, results) = ServerSession::new(ServerSessionConfig::new())
            .map_err(|e| ConnError::Session(format!("{e:?}")))?;
        self.handle(&mut stream, &mut session, results).await?;
        let results = session
            .handle_input(&leftover)
            .map_err(|e| ConnError::Session(format!("{e:?}")))?;
        self.handle(&mut stream, &mut session, results).await?;

        loop {
            if self.unpublished {
                return Ok(());
            }
            let n = if self.publishing.is_some() {
                match tokio::time::timeout(self.ctx.config.idle_timeout, stream.read(&mut buf)).await {
                    Ok(read) => read?,
                    Err(_) => return Err(ConnError::Idle),
                }
            } else {
                let n = self.read(&mut stream, &mut buf, deadline).await?;
                received += n;
                if received > MAX_PRE_PUBLISH_BYTES {
                    return Err(ConnError::TooMuch);
                }
                n
            };
            if n == 0 {
                return Ok(());
            }
            let results = session
                .handle_input(buf.get(..n).unwrap_or_default())
                .map_err(|e| ConnError::Session(format!("{e:?}")))?;
            self.handle(&mut stream, &mut session, results).await?;
        }
    }

    /// Read before `publish`: bounded by the handshake deadline; EOF is an error.
    async fn read(
        &self,
        stream: &mut TcpStream,
        buf: &mut [u8],
        deadline: Instant,
    ) -> Result<usize, ConnError> {
        match tokio::time::timeout_at(deadline, stream.read(buf)).await {
            Ok(Ok(0)) => Err(ConnError::Handshake("closed before publishing".into())),
            Ok(read) => Ok(read?),
            Err(_) => Err(ConnError::Timeout),
        }
    }

    async fn handle(
        &mut self,
        stream: &mut TcpStream,
        session: &mut ServerSession,
        results: Vec<ServerSessionResult>,
    ) -> Result<(), ConnError> {
        let session_err = |e| ConnError::Session(format!("{e:?}"));
        for result in results {
            match result {
                ServerSessionResult::OutboundResponse(packet) => stream.write_all(&packet.bytes).await?,
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
                ServerSessionResult::RaisedEvent(event) => match event {
                    ServerSessionEvent::ConnectionRequested { request_id, app_name } => {
                        tracing::debug!(peer = %self.peer, app = %app_name, "connect");
                        let more = session.accept_request(request_id).map_err(session_err)?;
                        Box::pin(self.handle(stream, session, more)).await?;
                    }
                    ServerSessionEvent::PublishStreamRequested {
                        request_id,
                        stream_key,
                        ..
                    } => {
                        if self.publishing.is_some() {
                            return Err(ConnError::Refused("a second publish on one connection".into()));
                        }
                        match self.claim(&stream_key).await {
                            Ok(()) => {
                                let more = session.accept_request(request_id).map_err(session_err)?;
                                Box::pin(self.handle(stream, session, more)).await?;
                            }
                            Err(reason) => {
                                let packets = session
                                    .reject_request(request_id, "NetStream.Publish.BadName", &reason)
                                    .map_err(session_err)?;
                                for r in packets {
                                    if let ServerSessionResult::OutboundResponse(p) = r {
                                        stream.write_all(&p.bytes).await?;
                                    }
                                }
                                let _ = stream.flush().await;
                                return Err(ConnError::Refused(reason));
                            }
                        }
                    }
                    ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                        let packets = session
                            .reject_request(
                                request_id,
                                "NetStream.Play.Failed",
                                "an ingest gateway: publish only",
                            )
                            .map_err(session_err)?;
                        for r in packets {
                            if let ServerSessionResult::OutboundResponse(p) = r {
                                stream.write_all(&p.bytes).await?;
                            }
                        }
                        return Err(ConnError::Refused("play requested".into()));
                    }
                    ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                        if let (Some((_, mapper)), Some(w), Some(h)) = (
                            self.publishing.as_mut(),
                            metadata.video_width,
                            metadata.video_height,
                        ) {
                            mapper.set_size(w, h);
                        }
                    }
                    ServerSessionEvent::VideoDataReceived { data, timestamp, .. } => {
                        self.media(true, timestamp.value, &data)?;
                    }
                    ServerSessionEvent::AudioDataReceived { data, timestamp, .. } => {
                        self.media(false, timestamp.value, &data)?;
                    }
                    ServerSessionEvent::PublishStreamFinished { .. } => self.unpublished = true,
                    _ => {}
                },
            }
        }
        Ok(())
    }

    fn media(&mut self, video: bool, ts: u32, data: &Bytes) -> Result<(), ConnError> {
        let Some((live, mapper)) = self.publishing.as_mut() else {
            return Ok(()); // media before publish is not taken
        };
        if !live.held_by(self.id) {
            return Err(ConnError::TakenOver);
        }
        self.ctx.metrics.bytes.inc_by(data.len() as u64);
        let result = if video {
            mapper.video(ts, data)
        } else {
            mapper.audio(ts, data)
        };
        result.map_err(|e| {
            // Nothing to wait for if the encoder must change codec or configuration.
            self.unpublished |= self.ctx.media_error(&e);
            e.into()
        })
    }

    /// Resolve the key and claim its broadcast; the reason for the encoder if refused.
    async fn claim(&mut self, key: &str) -> Result<(), String> {
        let live = self
            .ctx
            .admit(key, self.id, self.peer)
            .await
            .map_err(|r| r.to_string())?;
        let mapper = Mapper::new(live.clone(), self.ctx.metrics.clone());
        self.publishing = Some((live, mapper));
        Ok(())
    }

    /// The connection is over: count and log why, and release its broadcast (now, if the
    /// encoder unpublished; else after the grace period unless it returns).
    fn close(&mut self, error: Option<&ConnError>) {
        match error {
            None => tracing::info!(peer = %self.peer, "connection closed"),
            Some(e @ (ConnError::Handshake(_) | ConnError::Timeout | ConnError::TooMuch)) => {
                self.ctx.metrics.handshake_failures.inc();
                tracing::info!(peer = %self.peer, "closing: {e}");
            }
            Some(e) => tracing::warn!(peer = %self.peer, "closing: {e}"),
        }
        if let Some((live, _)) = self.publishing.take() {
            self.ctx.registry.release(&live, self.id, self.unpublished);
        }
    }
}
