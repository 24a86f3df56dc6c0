//! Session initialization (draft-18 §3.2): each side opens a control stream that starts with
//! SETUP. Data and request streams that beat the control stream are held until setup is done.

use std::sync::Arc;

use bytes::BytesMut;
use url::Url;

use super::config::SessionConfig;
use super::driver::{EarlyStream, SessionDriver};
use super::error::Error;
use super::reader::StreamReader;
use super::shared::{close_transport, Role, Session};
use super::transport::{Connection, SendStream, TransportKind};
use crate::coding::{decode_varint, SessionErrorCode};
use crate::data::SETUP as SETUP_STREAM;
use crate::message::{Message, Setup, Token};
use crate::Version;

/// What a client sends in SETUP beyond what the URL implies.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// AUTHORIZATION TOKEN setup options for session establishment.
    pub tokens: Vec<Token>,
}

impl ClientOptions {
    /// Options carrying `token`, if any, as the one AUTHORIZATION TOKEN (alias type USE_VALUE,
    /// token type 0): how a Banyan relay expects its JWT.
    pub fn with_token(token: Option<&str>) -> Self {
        Self {
            tokens: token
                .map(|t| Token::UseValue {
                    token_type: 0,
                    token_value: bytes::Bytes::copy_from_slice(t.as_bytes()),
                })
                .into_iter()
                .collect(),
        }
    }
}

/// Data streams that may arrive before the peer's control stream and are held.
const MAX_EARLY_STREAMS: usize = 16;

/// A server-side session whose client SETUP has arrived: inspect it, then accept or reject.
#[derive(Debug)]
pub struct PendingSession {
    transport: Arc<dyn Connection>,
    kind: TransportKind,
    version: Version,
    url: Option<Url>,
    setup: Setup,
    control: StreamReader,
    early: Vec<EarlyStream>,
    config: SessionConfig,
}

impl PendingSession {
    /// The client's SETUP.
    pub fn setup(&self) -> &Setup {
        &self.setup
    }

    /// Which transport carries the session.
    pub fn transport(&self) -> TransportKind {
        self.kind
    }

    /// The negotiated version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The URL the client asked for: the WebTransport CONNECT URL, or for raw QUIC the
    /// `moqt://` URL rebuilt from the AUTHORITY and PATH options (absent if it sent neither).
    pub fn url(&self) -> Option<&Url> {
        self.url.as_ref()
    }

    /// The client's address.
    pub fn remote_address(&self) -> std::net::SocketAddr {
        self.transport.remote_address()
    }

    /// Server side over any transport whose own handshake is done: wait (up to the setup
    /// timeout) for the client's control stream and SETUP. `kind` decides where the URL comes
    /// from: `url` (the CONNECT's or the WebSocket upgrade's) for [`TransportKind::WebTransport`]
    /// and [`TransportKind::WebSocket`], the client's AUTHORITY and PATH for
    /// [`TransportKind::Quic`]. [`Incoming::handshake`](super::Incoming::handshake) is this over
    /// QUIC; `banyan_tests::mem` uses it over an in-memory pair.
    pub async fn accept_transport(
        transport: Arc<dyn Connection>,
        kind: TransportKind,
        version: Version,
        url: Option<Url>,
        config: SessionConfig,
    ) -> Result<Self, Error> {
        // Any failure here closes the transport with the error's code before it is returned.
        let checked = async {
            let (setup, control, early) = read_peer_setup(transport.as_ref(), version, &config).await?;
            let url = match kind {
                TransportKind::WebTransport | TransportKind::WebSocket
                    if setup.path.is_some() || setup.authority.is_some() =>
                {
                    return Err(Error::protocol(
                        SessionErrorCode::InvalidPath,
                        format!("PATH and AUTHORITY are not allowed over {kind}"),
                    ))
                }
                TransportKind::WebTransport | TransportKind::WebSocket => url,
                TransportKind::Quic => raw_url(&setup)?,
            };
            Ok((setup, control, early, url))
        };
        let (setup, control, early, url) =
            checked.await.inspect_err(|e| close_with(transport.as_ref(), e))?;
        Ok(Self {
            transport,
            kind,
            version,
            url,
            setup,
            control,
            early,
            config,
        })
    }

    /// Send our SETUP and start the session.
    pub async fn accept(self) -> Result<(Session, SessionDriver), Error> {
        let setup = Setup {
            moqt_implementation: self.config.implementation.clone().map(Into::into),
            hop_id: self.config.hop_id,
            ..Default::default()
        };
        let control = open_control(self.transport.as_ref(), &setup, self.version).await?;
        Ok(Session::start(
            self.transport,
            self.kind,
            self.version,
            Role::Server,
            self.config,
            self.url,
            self.setup,
            control,
            self.control,
            self.early,
        ))
    }

    /// Close the session before it starts (e.g. UNAUTHORIZED).
    pub fn reject(self, code: SessionErrorCode, reason: &str) {
        close_transport(self.transport.as_ref(), code, reason);
    }
}

impl Session {
    /// Client side over any transport whose own handshake is done: send SETUP (with AUTHORITY
    /// and PATH from `url` for [`TransportKind::Quic`]) and wait for the server's.
    /// [`Client::connect`](super::Client::connect) is this over QUIC; `banyan_tests::mem` uses
    /// it over an in-memory pair. Run the returned driver for the session to make progress.
    pub async fn connect_transport(
        transport: Arc<dyn Connection>,
        kind: TransportKind,
        version: Version,
        url: &Url,
        options: ClientOptions,
        config: SessionConfig,
    ) -> Result<(Session, SessionDriver), Error> {
        let mut setup = Setup {
            moqt_implementation: config.implementation.clone().map(Into::into),
            hop_id: config.hop_id,
            ..Default::default()
        };
        setup.authorization_tokens = options.tokens;
        if kind == TransportKind::Quic {
            let authority = match (url.host_str(), url.port()) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                (Some(host), None) => host.to_string(),
                (None, _) => return Err(Error::InvalidArgument(format!("URL {url} has no host"))),
            };
            let mut path = url.path().to_string();
            if let Some(query) = url.query() {
                path.push('?');
                path.push_str(query);
            }
            setup.authority = Some(authority);
            setup.path = Some(path);
        }
        let control = open_control(transport.as_ref(), &setup, version).await?;
        // Any failure here closes the transport with the error's code before it is returned.
        let checked = async {
            let (peer_setup, control_reader, early) =
                read_peer_setup(transport.as_ref(), version, &config).await?;
            if peer_setup.path.is_some() || peer_setup.authority.is_some() {
                return Err(Error::protocol(
                    SessionErrorCode::InvalidPath,
                    "a server must not send PATH or AUTHORITY",
                ));
            }
            Ok((peer_setup, control_reader, early))
        };
        let (peer_setup, control_reader, early) =
            checked.await.inspect_err(|e| close_with(transport.as_ref(), e))?;
        Ok(Session::start(
            transport,
            kind,
            version,
            Role::Client,
            config,
            Some(url.clone()),
            peer_setup,
            control,
            control_reader,
            early,
        ))
    }
}

async fn open_control(
    transport: &dyn Connection,
    setup: &Setup,
    version: Version,
) -> Result<Box<dyn SendStream>, Error> {
    let mut control = transport.open_uni().await?;
    control.set_priority(super::stream::CONTROL_SEND_ORDER);
    let mut buf = BytesMut::new();
    Message::from(setup.clone()).encode_frame(&mut buf, version)?;
    control.write_chunk(buf.freeze()).await?;
    Ok(control)
}

/// Accept unidirectional streams until the peer's control stream arrives, and read SETUP.
async fn read_peer_setup(
    transport: &dyn Connection,
    version: Version,
    config: &SessionConfig,
) -> Result<(Setup, StreamReader, Vec<EarlyStream>), Error> {
    tokio::time::timeout(
        config.setup_timeout,
        read_peer_setup_inner(transport, version, config),
    )
    .await
    .map_err(|_| Error::Timeout("setup"))?
}

async fn read_peer_setup_inner(
    transport: &dyn Connection,
    version: Version,
    config: &SessionConfig,
) -> Result<(Setup, StreamReader, Vec<EarlyStream>), Error> {
    let mut early = Vec::new();
    loop {
        let recv = transport.accept_uni().await?;
        let mut reader = StreamReader::new(recv, config.max_message_size + 16);
        // Peek the stream type without consuming it: SETUP's message type is the stream type.
        let stream_type = reader.peek(|c| decode_varint(c)).await?;
        match stream_type {
            Some(SETUP_STREAM) => {
                let setup = match reader.message(version, config.max_message_size).await? {
                    Some(Message::Setup(setup)) => setup,
                    _ => return Err(Error::violation("control stream did not start with SETUP")),
                };
                return Ok((setup, reader, early));
            }
            Some(_) if early.len() < MAX_EARLY_STREAMS => early.push(EarlyStream(reader)),
            _ => reader.stop(0),
        }
    }
}

/// Rebuild the `moqt://` URL a raw-QUIC client asked for from its AUTHORITY and PATH.
fn raw_url(setup: &Setup) -> Result<Option<Url>, Error> {
    let (authority, path) = (&setup.authority, &setup.path);
    if authority.is_none() && path.is_none() {
        return Ok(None);
    }
    if let Some(path) = path {
        if !path.is_empty() && !path.starts_with('/') {
            return Err(Error::protocol(
                SessionErrorCode::MalformedPath,
                "PATH must start with '/'",
            ));
        }
    }
    let text = format!(
        "moqt://{}{}",
        authority.as_deref().unwrap_or("localhost"),
        path.as_deref().unwrap_or("")
    );
    let code = if authority.is_some() {
        SessionErrorCode::MalformedAuthority
    } else {
        SessionErrorCode::MalformedPath
    };
    Url::parse(&text)
        .map(Some)
        .map_err(|_| Error::protocol(code, format!("malformed AUTHORITY/PATH: {text}")))
}

fn close_with(transport: &dyn Connection, error: &Error) {
    close_transport(transport, error.session_code(), &error.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_token_sends_one_use_value_token_of_type_0_or_none() {
        let options = ClientOptions::with_token(Some("a.b.c"));
        assert!(matches!(
            options.tokens.as_slice(),
            [Token::UseValue { token_type: 0, token_value }] if token_value.as_ref() == b"a.b.c"
        ));
        assert!(ClientOptions::with_token(None).tokens.is_empty());
    }
}
