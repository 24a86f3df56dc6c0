//! The async session layer: MoQT draft-18 over raw QUIC, WebTransport, or any [`transport`].
//!
//! - [`Server`] serves both QUIC transports on one UDP port (chosen by ALPN) and yields
//!   [`PendingSession`]s whose path and SETUP the application inspects before accepting.
//! - [`WsServer`] serves QMux over WebSocket (`ws://`, `wss://`) on a TCP port, the fallback
//!   for browsers without WebTransport ([`websocket`]).
//! - [`Client`] dials `moqt://` (raw QUIC), `https://` (WebTransport) or `ws://`/`wss://`
//!   (QMux over WebSocket) URLs.
//! - Over any other [`transport::Connection`] (e.g. an in-memory pair), a server
//!   calls [`PendingSession::accept_transport`] and a client [`Session::connect_transport`].
//! - A [`Session`] is a cheap handle; its [`SessionDriver`] future does the I/O the caller
//!   does not ask for (accepting streams, routing data streams and datagrams to
//!   subscriptions, reading the control stream). The library never spawns tasks: the caller
//!   runs the driver, typically with `tokio::spawn(driver.run())`.
//! - Every draft-18 request is a bidirectional stream. Outgoing requests are methods on
//!   [`Session`] (`subscribe`, `fetch`, `publish`, ...); incoming ones arrive from
//!   [`Session::accept`] as a [`Request`] to accept or reject.
//! - Publishing objects: [`TrackWriter`] opens [`SubgroupWriter`]s and sends datagrams;
//!   [`FetchWriter`] answers a FETCH. Receiving: [`Subscription`] yields [`SubgroupReader`]s
//!   and datagrams; [`FetchReader`] reads a FETCH response.
//!
//! # Layers
//! Each file `use`s only files of the layers above it in this list (never a later one; unit
//! tests excepted), so
//! the session reads from the bottom up without cycles:
//! 1. `transport/`: the [`transport::Connection`], `SendStream` and `RecvStream` traits,
//!    [`TransportKind`], [`TransportError`]; `transport/quinn.rs` binds `web_transport_quinn`,
//!    `transport/qmux.rs` the `qmux` crate.
//! 2. Primitives: `config.rs`, `congestion.rs`, `error.rs` (maps [`TransportError`] into
//!    [`Error`]), `reader.rs` (a buffered stream reader feeding the sans-IO decoders),
//!    `udp_thread.rs` (the quinn runtime that reads a server's UDP socket on its own thread).
//! 3. `shared.rs`: the [`Session`] handle and the state it shares with its driver (routes for
//!    incoming data as raw streams, request ids, the control stream, GOAWAY), [`Role`].
//! 4. `stream.rs`: [`RequestStream`], one request's bidirectional stream, and the request a
//!    subscription's stream was opened with (SUBSCRIBE or PUBLISH), kept by both ends.
//! 5. `publisher.rs` ([`TrackWriter`], [`SubgroupWriter`], [`FetchWriter`]) and
//!    `subscriber.rs` ([`Subscription`], [`SubgroupReader`], [`FetchReader`]), independent
//!    of each other.
//! 6. `request.rs` (incoming [`Request`]s, [`Session::accept`], namespace handles) and
//!    `outgoing.rs` (the [`Session`] methods that send a request).
//! 7. `driver.rs`: [`SessionDriver`], accepting and routing streams and datagrams.
//! 8. `handshake.rs`: SETUP both ways, [`PendingSession`], [`Session::connect_transport`].
//! 9. `websocket.rs`: [`WsServer`] and the WebSocket dialler; `endpoint.rs`: the QUIC
//!    [`Server`], [`AnyIncoming`] (a connection from either listener) and the [`Client`] for
//!    every URL scheme.

mod config;
mod congestion;
mod driver;
mod endpoint;
mod error;
mod handshake;
mod outgoing;
mod publisher;
mod reader;
mod request;
mod shared;
mod stream;
mod subscriber;
pub mod transport;
mod udp_thread;
pub mod websocket;

pub use config::{SessionConfig, TransportConfig};
pub use driver::SessionDriver;
pub use endpoint::{AnyIncoming, Client, ConnectTimings, Incoming, Server, ALPN_H3};
pub use error::Error;
pub use handshake::{ClientOptions, PendingSession};
pub use publisher::{send_order, yielded_send_order, FetchWriter, SubgroupWriter, TrackSender, TrackWriter};
pub use request::{
    FetchRequest, NamespaceAnnouncer, NamespaceEvent, NamespacePublication, NamespaceSubscription,
    PublishNamespaceRequest, PublishRequest, Request, SubscribeNamespaceRequest, SubscribeRequest,
    SubscribeTracksRequest, TrackStatusRequest,
};
pub use shared::{Role, Session};
pub use stream::RequestStream;
pub use subscriber::{FetchReader, SubgroupReader, Subscription, TrackEvent};
pub use transport::{Connection, TransportError, TransportKind};
pub use websocket::{WsIncoming, WsServer};
