//! QUIC endpoints: a server that serves raw-QUIC MoQT and WebTransport on one UDP port (chosen
//! by ALPN), and a client that dials `moqt://` (raw QUIC) or `https://` (WebTransport) URLs,
//! and `ws://`/`wss://` ones through [`websocket`](super::websocket).

use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use url::Url;
use web_transport_quinn::proto::ConnectResponse;

use super::config::{SessionConfig, TransportConfig};
use super::driver::SessionDriver;
use super::error::Error;
use super::handshake::{ClientOptions, PendingSession};
use super::shared::Session;
use super::transport::{QuicConnection, TransportKind};
use super::udp_thread::UdpThreadRuntime;
use super::websocket::WsIncoming;
use crate::Version;

/// The ALPN token for WebTransport over HTTP/3.
pub const ALPN_H3: &str = "h3";

/// The UDP socket buffer size requested for every endpoint.
const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

/// Bind a UDP socket; an unspecified IPv6 address is bound dual-stack so IPv4 clients
/// (and `localhost` resolving to either family) reach it.
fn bind_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Dual-stack wherever the OS allows it; an IPv6-only host still works.
        let _ = socket.set_only_v6(false);
    }
    // Many sessions share one socket: the kernel's default buffers (~208 KiB) overflow and
    // drop datagrams under fan-out. Ask for more; the kernel caps it at net.core.[rw]mem_max.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A quinn endpoint on `addr`. A server's socket is read on a thread of its own
/// ([`UdpThreadRuntime`]), so its many connections' sending never starves its receiving; a
/// client (one or a few connections) runs wholly on the caller's runtime.
fn endpoint(addr: SocketAddr, server: Option<quinn::ServerConfig>) -> std::io::Result<quinn::Endpoint> {
    let socket = bind_socket(addr)?;
    let runtime: Arc<dyn quinn::Runtime> = if server.is_some() {
        // Thread names are cut at 15 bytes: "moq-udp-65535" fits.
        UdpThreadRuntime::new(&format!("moq-udp-{}", socket.local_addr()?.port()))?
    } else {
        quinn::default_runtime()
            .ok_or_else(|| std::io::Error::other("no async runtime found (run inside tokio)"))?
    };
    quinn::Endpoint::new(quinn::EndpointConfig::default(), server, socket, runtime)
}

/// A MoQT server endpoint: one UDP port, raw QUIC and WebTransport.
#[derive(Debug)]
pub struct Server {
    endpoint: quinn::Endpoint,
    config: SessionConfig,
    /// `TransportConfig::max_concurrent_data_streams`.
    max_data_streams: u32,
}

impl Server {
    /// Bind `addr` and serve with `tls` (its ALPN list is replaced with ours). The socket is
    /// read on a thread of its own (named `moq-udp-PORT`), which ends with the endpoint or the
    /// caller's runtime; connections run on the caller's runtime.
    pub fn bind(
        addr: SocketAddr,
        mut tls: rustls::ServerConfig,
        transport: &TransportConfig,
        config: SessionConfig,
    ) -> Result<Self, Error> {
        tls.alpn_protocols = Version::SUPPORTED
            .iter()
            .map(|v| v.alpn().as_bytes().to_vec())
            .chain(std::iter::once(ALPN_H3.as_bytes().to_vec()))
            .collect();
        // QUIC requires early data to be either disabled or unlimited; we take no 0-RTT.
        tls.max_early_data_size = 0;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| Error::InvalidArgument(format!("TLS configuration unusable for QUIC: {e}")))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(Arc::new(transport.to_quinn()));
        let endpoint =
            endpoint(addr, Some(server)).map_err(|e| Error::Transport(format!("bind {addr}: {e}")))?;
        Ok(Self {
            endpoint,
            config,
            max_data_streams: transport.max_concurrent_data_streams,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The next incoming connection, or `None` once the endpoint is closed.
    pub async fn accept(&self) -> Option<Incoming> {
        let incoming = self.endpoint.accept().await?;
        Some(Incoming {
            incoming,
            config: self.config.clone(),
            max_data_streams: self.max_data_streams,
        })
    }

    /// Close every connection and stop accepting.
    pub fn close(&self, code: u32, reason: &str) {
        self.endpoint.close(code.into(), reason.as_bytes());
    }

    /// Wait until every connection has finished closing.
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }
}

/// A connection attempt that has not completed its handshakes yet.
#[derive(Debug)]
pub struct Incoming {
    incoming: quinn::Incoming,
    config: SessionConfig,
    max_data_streams: u32,
}

impl Incoming {
    /// Where the connection comes from.
    pub fn remote_address(&self) -> SocketAddr {
        self.incoming.remote_address()
    }

    /// Refuse the connection (e.g. at the session limit) without completing the handshake.
    pub fn refuse(self) {
        self.incoming.refuse();
    }

    /// Complete QUIC (and, for `h3`, the WebTransport CONNECT), then read the client's SETUP.
    ///
    /// The returned [`PendingSession`] lets the application look at the path and SETUP
    /// (e.g. to authorize) before it accepts or rejects the session.
    pub async fn handshake(self) -> Result<PendingSession, Error> {
        let config = self.config;
        // Each phase has the setup timeout: the QUIC (and CONNECT) handshake here, SETUP in
        // `PendingSession::accept_transport`, which closes the session with CONTROL_MESSAGE_TIMEOUT.
        let connect = tokio::time::timeout(config.setup_timeout, Self::connect(self.incoming));
        let (transport, kind, version, url) = connect.await.map_err(|_| Error::Timeout("setup"))??;
        let transport = QuicConnection::new(transport, self.max_data_streams);
        PendingSession::accept_transport(Arc::new(transport), kind, version, url, config).await
    }

    /// The QUIC handshake and, for `h3`, the WebTransport CONNECT with version negotiation.
    async fn connect(
        incoming: quinn::Incoming,
    ) -> Result<(web_transport_quinn::Session, TransportKind, Version, Option<Url>), Error> {
        let conn = incoming.await.map_err(|e| Error::Connect(e.to_string()))?;
        match negotiated_alpn(&conn).as_deref() {
            Some(ALPN_H3) => {
                let request = web_transport_quinn::Request::accept(conn)
                    .await
                    .map_err(|e| Error::Connect(format!("WebTransport CONNECT: {e}")))?;
                let url = request.url.clone();
                // Clients that send no WT-Available-Protocols get the default version.
                let (version, response) = if request.protocols.is_empty() {
                    (Version::default(), ConnectResponse::OK)
                } else if let Some(v) = Version::negotiate(&request.protocols) {
                    (v, ConnectResponse::OK.with_protocol(v.alpn()))
                } else {
                    let offered = request.protocols.clone();
                    let _ = request.reject(http::StatusCode::NOT_ACCEPTABLE).await;
                    return Err(Error::Version(offered));
                };
                let transport = request
                    .respond(response)
                    .await
                    .map_err(|e| Error::Connect(format!("WebTransport response: {e}")))?;
                Ok((transport, TransportKind::WebTransport, version, Some(url)))
            }
            Some(other) => {
                let version = Version::from_alpn(other).ok_or_else(|| Error::Version(vec![other.into()]))?;
                Ok((
                    web_transport_quinn::Session::raw(conn),
                    TransportKind::Quic,
                    version,
                    None,
                ))
            }
            None => Err(Error::Version(Vec::new())),
        }
    }
}

/// A connection waiting to be admitted, from either listener: the QUIC endpoint ([`Incoming`],
/// raw QUIC or WebTransport) or the WebSocket one ([`WsIncoming`]). A server applies one
/// admission policy (limits, refusal) to both and then completes the handshake.
#[derive(Debug)]
pub enum AnyIncoming {
    /// From the UDP port.
    Quic(Incoming),
    /// From the WebSocket (TCP) port.
    WebSocket(WsIncoming),
}

impl AnyIncoming {
    /// Where the connection comes from.
    pub fn remote_address(&self) -> SocketAddr {
        match self {
            AnyIncoming::Quic(incoming) => incoming.remote_address(),
            AnyIncoming::WebSocket(incoming) => incoming.remote_address(),
        }
    }

    /// Which listener it arrived on, for logs: `"quic"` (raw QUIC or WebTransport, not known
    /// before the handshake) or `"websocket"`.
    pub fn listener(&self) -> &'static str {
        match self {
            AnyIncoming::Quic(_) => "quic",
            AnyIncoming::WebSocket(_) => "websocket",
        }
    }

    /// Refuse it without completing the handshake.
    pub fn refuse(self) {
        match self {
            AnyIncoming::Quic(incoming) => incoming.refuse(),
            AnyIncoming::WebSocket(incoming) => incoming.refuse(),
        }
    }

    /// Complete its handshakes and read the client's SETUP ([`Incoming::handshake`],
    /// [`WsIncoming::handshake`]).
    pub async fn handshake(self) -> Result<PendingSession, Error> {
        match self {
            AnyIncoming::Quic(incoming) => incoming.handshake().await,
            AnyIncoming::WebSocket(incoming) => incoming.handshake().await,
        }
    }
}

impl From<Incoming> for AnyIncoming {
    fn from(incoming: Incoming) -> Self {
        AnyIncoming::Quic(incoming)
    }
}

impl From<WsIncoming> for AnyIncoming {
    fn from(incoming: WsIncoming) -> Self {
        AnyIncoming::WebSocket(incoming)
    }
}

fn negotiated_alpn(conn: &quinn::Connection) -> Option<String> {
    let data = conn.handshake_data()?;
    let data = data.downcast::<quinn::crypto::rustls::HandshakeData>().ok()?;
    data.protocol.map(|p| String::from_utf8_lossy(&p).into_owned())
}

/// How long the stages of [`Client::connect_timed`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectTimings {
    /// The QUIC + TLS handshake (and, for WebTransport, the CONNECT request); `None` over
    /// WebSocket, whose dialler does not separate it from SETUP.
    pub handshake: Option<Duration>,
    /// From the end of the handshake to the server's SETUP (the whole connect over WebSocket).
    pub setup: Duration,
}

/// A MoQT client endpoint. One UDP socket serves any number of sessions.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: quinn::Endpoint,
    tls: Arc<rustls::ClientConfig>,
    transport: Arc<quinn::TransportConfig>,
    /// The same settings, for QMux over WebSocket.
    transport_config: TransportConfig,
    config: SessionConfig,
}

impl Client {
    /// A client that verifies servers with `tls` (its ALPN list is set per connection).
    pub fn new(
        tls: rustls::ClientConfig,
        transport: &TransportConfig,
        config: SessionConfig,
    ) -> Result<Self, Error> {
        let endpoint = endpoint(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)), None)
            .or_else(|_| endpoint(SocketAddr::from(([0, 0, 0, 0], 0)), None))
            .map_err(|e| Error::Transport(format!("bind client socket: {e}")))?;
        Ok(Self {
            endpoint,
            tls: Arc::new(tls),
            transport: Arc::new(transport.to_quinn()),
            transport_config: transport.clone(),
            config,
        })
    }

    /// Connect to `url` and complete SETUP.
    ///
    /// `moqt://host:port/path` uses raw QUIC and sends the authority and path in SETUP;
    /// `https://host:port/path` uses WebTransport. The returned driver must be polled (e.g.
    /// spawned) for the session to make progress.
    pub async fn connect(
        &self,
        url: &Url,
        options: ClientOptions,
    ) -> Result<(Session, SessionDriver), Error> {
        let (session, driver, _) = self.connect_timed(url, options).await?;
        Ok((session, driver))
    }

    /// [`connect`](Self::connect), also saying how long the transport handshake and SETUP
    /// each took (a benchmark's per-stage join timings).
    pub async fn connect_timed(
        &self,
        url: &Url,
        options: ClientOptions,
    ) -> Result<(Session, SessionDriver, ConnectTimings), Error> {
        let started = tokio::time::Instant::now();
        // Over QUIC: raw (`moqt`) or WebTransport (`https`); WebSocket is another dialler.
        let webtransport = match url.scheme() {
            "moqt" => false,
            "https" => true,
            "ws" | "wss" => {
                let (session, driver) = super::websocket::connect(
                    url,
                    &self.tls,
                    &self.transport_config,
                    options,
                    self.config.clone(),
                )
                .await?;
                let timings = ConnectTimings {
                    handshake: None,
                    setup: started.elapsed(),
                };
                return Ok((session, driver, timings));
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unsupported URL scheme {other:?} (use moqt://, https://, ws:// or wss://)"
                )))
            }
        };
        let host = url
            .host_str()
            .ok_or_else(|| Error::InvalidArgument(format!("URL {url} has no host")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = url.port().unwrap_or(443);
        let remote = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| Error::Connect(format!("resolve {host}: {e}")))?
            .next()
            .ok_or_else(|| Error::Connect(format!("{host} has no address")))?;

        let mut tls = (*self.tls).clone();
        tls.alpn_protocols = if webtransport {
            vec![ALPN_H3.as_bytes().to_vec()]
        } else {
            Version::SUPPORTED
                .iter()
                .map(|v| v.alpn().as_bytes().to_vec())
                .collect()
        };
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| Error::InvalidArgument(format!("TLS configuration unusable for QUIC: {e}")))?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        client.transport_config(self.transport.clone());

        let config = self.config.clone();
        // The setup timeout bounds the QUIC (and CONNECT) handshake here, and reading the
        // server's SETUP inside `Session::connect_transport`.
        let work = async {
            let conn = self
                .endpoint
                .connect_with(client, remote, &host)
                .map_err(|e| Error::Connect(e.to_string()))?
                .await
                .map_err(|e| Error::Connect(format!("{remote}: {e}")))?;
            if !webtransport {
                let alpn = negotiated_alpn(&conn).unwrap_or_default();
                let version = Version::from_alpn(&alpn).ok_or_else(|| Error::Version(vec![alpn]))?;
                return Ok::<_, Error>((web_transport_quinn::Session::raw(conn), version));
            }
            let protocols = Version::SUPPORTED.iter().map(|v| v.alpn().to_string());
            let request =
                web_transport_quinn::proto::ConnectRequest::new(url.clone()).with_protocols(protocols);
            let transport = web_transport_quinn::Session::connect(conn, request)
                .await
                .map_err(|e| Error::Connect(format!("WebTransport CONNECT: {e}")))?;
            // A server that ignores WT-Available-Protocols gets our default version.
            let version = match transport.protocol() {
                Some(p) => Version::from_alpn(p).ok_or_else(|| Error::Version(vec![p.to_string()]))?,
                None => Version::default(),
            };
            Ok((transport, version))
        };
        let (transport, version) = tokio::time::timeout(config.setup_timeout, work)
            .await
            .map_err(|_| Error::Timeout("setup"))??;
        let handshake = started.elapsed();
        let kind = if webtransport {
            TransportKind::WebTransport
        } else {
            TransportKind::Quic
        };
        let transport = QuicConnection::new(transport, self.transport_config.max_concurrent_data_streams);
        let (session, driver) =
            Session::connect_transport(Arc::new(transport), kind, version, url, options, config).await?;
        let timings = ConnectTimings {
            handshake: Some(handshake),
            setup: started.elapsed().saturating_sub(handshake),
        };
        Ok((session, driver, timings))
    }

    /// The local address of the client socket.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Close every session of this client.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"client closing");
    }
}
