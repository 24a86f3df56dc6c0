//! `banyan-moq`: Media over QUIC Transport, draft-ietf-moq-transport-18.
//!
//! The codec is sans-IO: bytes in, messages out, no tokio and no clock. The session layer
//! (feature `session`, on by default) runs it over raw QUIC (quinn, ALPN `moqt-18`) and over
//! WebTransport (HTTP/3), both on one UDP port.
//!
//! # Module map
//! - [`coding`]: varints, Location, Key-Value-Pairs, Reason Phrase, names; the `Decode`/`Encode`
//!   traits and the error-code registries.
//! - [`message`]: every control message, one file each, named as the spec names them, and the
//!   control-message framing (type, 16-bit length, payload).
//! - [`data`]: the data plane: subgroup and fetch stream headers, objects, datagrams, padding.
//! - `session` (feature `session`): endpoints, sessions, request streams, publishing and
//!   subscribing over a small transport trait (`session::transport`), bound to quinn and
//!   web-transport-quinn (raw QUIC and WebTransport); `banyan_tests::mem` is an in-memory pair.
//! - `track` (feature `session`): the track model shared by the relay, the publisher and the
//!   benchmark: a producer writes groups of objects, consumers read them with their own
//!   cursors within bounded memory, and `Fanout` sends a consumer's groups to one subscriber.

pub mod coding;
pub mod data;
pub mod message;
#[cfg(feature = "session")]
pub mod session;
#[cfg(feature = "session")]
pub mod track;

pub use coding::Version;
