//! MoQT over QMux over WebSocket: the fallback for browsers without a working WebTransport
//! (draft-lcurley-qmux-websocket binding draft-ietf-quic-qmux). Each binary WebSocket message
//! is one QMux record of QUIC frames; the WebSocket subprotocol names the QMux draft and the
//! MoQT version (`qmux-01.moqt-18`). The `qmux` crate does the framing, streams, flow control
//! and datagrams ([`QmuxConnection`](super::transport::QmuxConnection)); this module does the
//! TCP (and TLS) listener and dialler and the HTTP upgrade, which is where the URL (path and
//! `?jwt=` query) comes from, as WebTransport's CONNECT gives it.
//!
//! - [`WsServer`]: a TCP listener, plain `ws://` or `wss://` with a rustls server config.
//! - [`WsIncoming::handshake`]: TLS, the upgrade with subprotocol negotiation, then SETUP, to a
//!   [`PendingSession`] the application authorizes like any other.
//! - [`connect`]: the client side, used by [`Client::connect`](super::Client::connect) for
//!   `ws://` and `wss://` URLs.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Sink, Stream};

use parking_lot::Mutex;
use qmux::ws::tokio_tungstenite::{self, tungstenite, WebSocketStream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::WebSocketConfig;
use url::Url;

use super::config::{SessionConfig, TransportConfig};
use super::error::Error;
use super::handshake::{ClientOptions, PendingSession};
use super::shared::Session;
use super::transport::{QmuxConnection, TransportKind};
use super::SessionDriver;
use crate::Version;

/// The QMux drafts we speak, in our order of preference. The subprotocol is the draft's
/// prefix and the MoQT ALPN, e.g. `qmux-01.moqt-18`.
const QMUX_VERSIONS: [qmux::Version; 2] = [qmux::Version::QMux01, qmux::Version::QMux02];

/// The largest WebSocket message (one QMux record) we accept. QMux records are at most the
/// peer's `max_record_size` (16 KiB unless raised); anything larger is refused.
const MAX_MESSAGE: usize = 64 * 1024;

/// Any byte stream a WebSocket can run on: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// The WebSocket under a QMux session: binary messages only. `qmux` skips text messages; a
/// peer sending one is broken or hostile, so this closes the WebSocket with 1003 (unsupported
/// data) and ends the stream, which ends the session.
struct BinaryOnly {
    ws: WebSocketStream<Box<dyn Io>>,
    refused: bool,
}

impl BinaryOnly {
    fn new(ws: WebSocketStream<Box<dyn Io>>) -> Self {
        Self { ws, refused: false }
    }
}

impl Stream for BinaryOnly {
    type Item = Result<tungstenite::Message, tungstenite::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.refused {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.ws).poll_next(cx) {
            Poll::Ready(Some(Ok(tungstenite::Message::Text(_)))) => {
                self.refused = true;
                let close = tungstenite::protocol::CloseFrame {
                    code: tungstenite::protocol::frame::coding::CloseCode::Unsupported,
                    reason: "MoQT over QMux takes binary WebSocket messages only".into(),
                };
                // Best effort: the socket is dropped with the session either way.
                if let Poll::Ready(Ok(())) = Pin::new(&mut self.ws).poll_ready(cx) {
                    let _ = Pin::new(&mut self.ws).start_send(tungstenite::Message::Close(Some(close)));
                    let _ = Pin::new(&mut self.ws).poll_flush(cx);
                }
                tracing::debug!("text message on a QMux WebSocket: closed with 1003");
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

impl Sink<tungstenite::Message> for BinaryOnly {
    type Error = tungstenite::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.ws).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: tungstenite::Message) -> Result<(), Self::Error> {
        Pin::new(&mut self.ws).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.ws).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.ws).poll_close(cx)
    }
}

/// Every subprotocol we accept, in our order of preference.
pub fn subprotocols() -> Vec<String> {
    QMUX_VERSIONS
        .iter()
        .flat_map(|q| {
            Version::SUPPORTED
                .iter()
                .map(move |v| format!("{}{}", q.prefix(), v.alpn()))
        })
        .collect()
}

/// The MoQT version a subprotocol we offered names.
fn version_of(subprotocol: &str) -> Option<Version> {
    QMUX_VERSIONS
        .iter()
        .find_map(|q| subprotocol.strip_prefix(q.prefix()))
        .and_then(Version::from_alpn)
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// QMux's session settings from the transport's (stream counts, windows, idle timeout).
fn qmux_config(transport: &TransportConfig) -> qmux::Config {
    let mut config = qmux::Config::default();
    config.max_streams_bidi = transport.max_concurrent_requests.into();
    config.max_streams_uni = transport.max_concurrent_data_streams.into();
    config.max_data = transport.connection_receive_window.into();
    config.max_stream_data_bidi_local = transport.stream_receive_window.into();
    config.max_stream_data_bidi_remote = transport.stream_receive_window.into();
    config.max_stream_data_uni = transport.stream_receive_window.into();
    config.max_idle_timeout = u64::try_from(transport.idle_timeout.as_millis()).unwrap_or(u64::MAX);
    config
}

fn keep_alive(transport: &TransportConfig) -> qmux::ws::KeepAlive {
    qmux::ws::KeepAlive::new(transport.keep_alive, transport.idle_timeout)
}

/// A MoQT server on a TCP port: QMux over WebSocket, plain or over TLS.
#[derive(Debug)]
pub struct WsServer {
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    qmux: qmux::Config,
    keep_alive: qmux::ws::KeepAlive,
    config: SessionConfig,
}

impl WsServer {
    /// Bind `addr` (an unspecified IPv6 address is bound dual-stack). With `tls`, clients
    /// connect with `wss://` (its ALPN list is replaced with `http/1.1`); without, `ws://`.
    pub fn bind(
        addr: SocketAddr,
        tls: Option<rustls::ServerConfig>,
        transport: &TransportConfig,
        config: SessionConfig,
    ) -> Result<Self, Error> {
        let listener = listen(addr).map_err(|e| Error::Transport(format!("bind tcp {addr}: {e}")))?;
        let tls = tls.map(|mut tls| {
            tls.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(tls)
        });
        Ok(Self {
            listener,
            tls,
            qmux: qmux_config(transport),
            keep_alive: keep_alive(transport),
            config,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// `wss` with TLS, `ws` without.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "wss"
        } else {
            "ws"
        }
    }

    /// The next incoming TCP connection. Errors accepting one (e.g. out of file descriptors)
    /// are returned so the caller can log them and go on.
    pub async fn accept(&self) -> std::io::Result<WsIncoming> {
        let (stream, remote) = self.listener.accept().await?;
        Ok(WsIncoming {
            stream,
            remote,
            tls: self.tls.clone(),
            qmux: self.qmux.clone(),
            keep_alive: self.keep_alive,
            config: self.config.clone(),
        })
    }
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// A TCP connection that has not completed its TLS, upgrade and SETUP yet.
#[derive(Debug)]
pub struct WsIncoming {
    stream: TcpStream,
    remote: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    qmux: qmux::Config,
    keep_alive: qmux::ws::KeepAlive,
    config: SessionConfig,
}

impl WsIncoming {
    /// Where the connection comes from.
    pub fn remote_address(&self) -> SocketAddr {
        self.remote
    }

    /// Refuse the connection (e.g. at the session limit): closed before the upgrade.
    pub fn refuse(self) {
        drop(self.stream);
    }

    /// TLS (for `wss`), the WebSocket upgrade with subprotocol negotiation, then the client's
    /// SETUP; each phase within the setup timeout. The URL is the upgrade request's.
    pub async fn handshake(self) -> Result<PendingSession, Error> {
        let config = self.config.clone();
        let remote = self.remote;
        let upgrade = tokio::time::timeout(config.setup_timeout, self.upgrade());
        let (connection, version, url) = upgrade.await.map_err(|_| Error::Timeout("setup"))??;
        tracing::debug!(%remote, %url, "websocket upgraded");
        PendingSession::accept_transport(
            Arc::new(connection),
            TransportKind::WebSocket,
            version,
            Some(url),
            config,
        )
        .await
    }

    async fn upgrade(self) -> Result<(QmuxConnection, Version, Url), Error> {
        let _ = self.stream.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            Some(tls) => Box::new(
                tokio_rustls::TlsAcceptor::from(tls.clone())
                    .accept(self.stream)
                    .await
                    .map_err(|e| Error::Connect(format!("TLS: {e}")))?,
            ),
            None => Box::new(self.stream),
        };
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let chosen = Arc::new(Mutex::new(None::<(String, String)>));
        let slot = chosen.clone();
        // tungstenite's callback type fixes the (large) error response.
        #[allow(clippy::result_large_err)]
        let callback = move |request: &Request, mut response: Response| {
            let offered: Vec<&str> = request
                .headers()
                .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .collect();
            let Some(protocol) = subprotocols().into_iter().find(|p| offered.contains(&p.as_str())) else {
                return Err(refusal(&offered));
            };
            let value = http::HeaderValue::from_str(&protocol).map_err(|_| refusal(&offered))?;
            response
                .headers_mut()
                .insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
            let host = request
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
            *slot.lock() = Some((protocol, format!("{scheme}://{host}{target}")));
            Ok(response)
        };
        let ws = tokio_tungstenite::accept_hdr_async_with_config(io, callback, Some(ws_config()))
            .await
            .map_err(|e| Error::Connect(format!("WebSocket upgrade: {e}")))?;
        let (protocol, url) = chosen
            .lock()
            .take()
            .ok_or_else(|| Error::Connect("WebSocket upgrade without a subprotocol".into()))?;
        let url = Url::parse(&url).map_err(|e| Error::Connect(format!("WebSocket URL {url:?}: {e}")))?;
        let version = version_of(&protocol).ok_or_else(|| Error::Version(vec![protocol.clone()]))?;
        let session = qmux::ws::Upgraded::new(BinaryOnly::new(ws))
            .with_alpn(&protocol)
            .with_keep_alive(self.keep_alive)
            .with_session_config(self.qmux)
            .accept();
        Ok((QmuxConnection::new(session, self.remote), version, url))
    }
}

/// The answer to an upgrade that offers none of our subprotocols.
fn refusal(offered: &[&str]) -> ErrorResponse {
    let body = format!(
        "no supported WebSocket subprotocol: offered {offered:?}, this relay speaks {:?}\n",
        subprotocols()
    );
    let mut response = ErrorResponse::new(Some(body));
    *response.status_mut() = http::StatusCode::BAD_REQUEST;
    response
}

/// Dial a `ws://` or `wss://` URL, upgrade offering our subprotocols and complete SETUP.
pub async fn connect(
    url: &Url,
    tls: &rustls::ClientConfig,
    transport: &TransportConfig,
    options: ClientOptions,
    config: SessionConfig,
) -> Result<(Session, SessionDriver), Error> {
    let work = dial(url, tls, transport);
    let (connection, version) = tokio::time::timeout(config.setup_timeout, work)
        .await
        .map_err(|_| Error::Timeout("setup"))??;
    Session::connect_transport(
        Arc::new(connection),
        TransportKind::WebSocket,
        version,
        url,
        options,
        config,
    )
    .await
}

async fn dial(
    url: &Url,
    tls: &rustls::ClientConfig,
    transport: &TransportConfig,
) -> Result<(QmuxConnection, Version), Error> {
    use tungstenite::client::IntoClientRequest;

    let secure = match url.scheme() {
        "ws" => false,
        "wss" => true,
        other => {
            return Err(Error::InvalidArgument(format!(
                "not a WebSocket URL scheme: {other:?}"
            )))
        }
    };
    let host = url
        .host_str()
        .ok_or_else(|| Error::InvalidArgument(format!("URL {url} has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port().unwrap_or(if secure { 443 } else { 80 });
    let stream = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| Error::Connect(format!("{host}:{port}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let remote = stream
        .peer_addr()
        .map_err(|e| Error::Connect(format!("{host}:{port}: {e}")))?;
    let io: Box<dyn Io> = if secure {
        let mut tls = tls.clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| Error::InvalidArgument(format!("server name {host:?}: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, stream)
            .await
            .map_err(|e| Error::Connect(format!("TLS to {host}: {e}")))?;
        Box::new(stream)
    } else {
        Box::new(stream)
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| Error::InvalidArgument(format!("WebSocket request for {url}: {e}")))?;
    let offer = subprotocols().join(", ");
    let value = http::HeaderValue::from_str(&offer)
        .map_err(|e| Error::InvalidArgument(format!("subprotocols {offer:?}: {e}")))?;
    request
        .headers_mut()
        .insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
    let (ws, response): (WebSocketStream<Box<dyn Io>>, _) =
        tokio_tungstenite::client_async_with_config(request, io, Some(ws_config()))
            .await
            .map_err(|e| Error::Connect(format!("WebSocket upgrade at {url}: {e}")))?;
    let protocol = response
        .headers()
        .get(http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let version = version_of(&protocol).ok_or_else(|| Error::Version(vec![protocol.clone()]))?;
    let session = qmux::ws::Upgraded::new(BinaryOnly::new(ws))
        .with_alpn(&protocol)
        .with_keep_alive(keep_alive(transport))
        .with_session_config(qmux_config(transport))
        .connect();
    Ok((QmuxConnection::new(session, remote), version))
}
