//! The async session layer: MoQT draft-18 over raw QUIC and WebTransport.
//!
//! - [`Server`] serves both transports on one UDP port (chosen by ALPN) and yields
//!   [`PendingSession`]s whose path and SETUP the application inspects before accepting.
//! - [`Client`] dials `moqt://` (raw QUIC) or `https://` (WebTransport) URLs.
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

mod config;
mod congestion;
mod driver;
mod endpoint;
mod error;
mod handshake;
mod publisher;
mod reader;
mod request;
mod shared;
mod subscriber;
pub mod transport;

pub use config::{SessionConfig, TransportConfig};
pub use driver::SessionDriver;
pub use endpoint::{Client, Incoming, Server, ALPN_H3};
pub use error::Error;
pub use handshake::{ClientOptions, PendingSession, Role};
pub use publisher::{send_order, FetchWriter, SubgroupWriter, TrackSender, TrackWriter};
pub use request::{
    FetchRequest, NamespaceAnnouncer, NamespaceEvent, NamespacePublication, NamespaceSubscription,
    PublishNamespaceRequest, PublishRequest, Request, RequestStream, SubscribeNamespaceRequest,
    SubscribeRequest, SubscribeTracksRequest, TrackStatusRequest,
};
pub use shared::Session;
pub use subscriber::{FetchReader, SubgroupReader, Subscription, TrackEvent};
pub use transport::{Connection, TransportError, TransportKind};
