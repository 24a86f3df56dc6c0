//! `banyan-relay`: the MoQT draft-18 relay.
//!
//! A publisher's PUBLISH_NAMESPACE registers it in [`origin`]; the first SUBSCRIBE for a track
//! creates its entry in [`track`], which subscribes upstream exactly once and fills the track's
//! [`cache`]; every subscriber then gets a [`forward`]er that reads the cache with its own cursor.
//! A namespace nobody publishes here is fetched from a parent relay ([`upstream`]), so relays
//! form a replication tree: each holds one upstream copy of a track for all its subscribers.
//!
//! # Module map
//! - [`relay`]: [`Relay`]: binds the UDP port (raw QUIC + WebTransport) and the HTTP listener,
//!   accepts and authorizes sessions, shuts down with GOAWAY and a bounded drain.
//! - [`session`]: one session's requests: authorization, per-session limits, dispatch, and
//!   each request's handling (SUBSCRIBE with its rendezvous, FETCH including joining FETCH,
//!   SUBSCRIBE_TRACKS, PUBLISH, namespaces).
//! - [`origin`]: published namespaces (a new publisher takes a live one over), routing a
//!   track to its publisher, namespace watchers.
//! - [`track`]: one entry per track: the coalesced upstream subscription (to a local publisher,
//!   moving with a takeover, or a parent relay, with failover) and its ingest; the rendezvous
//!   that holds a track nobody publishes yet; pushed tracks and their SUBSCRIBE_TRACKS watchers.
//! - [`upstream`]: parent relays: route resolution (static `--upstream`, control plane), one
//!   session per parent, relay paths for loop and depth safety.
//! - [`cache`]: recent groups per track, bounded by count and by a shared byte budget.
//! - [`forward`]: per-subscriber fan-out that skips a slow subscriber forward.
//! - [`config`]: the one configuration struct for flags, `BANYAN_RELAY_*` variables and TOML,
//!   made of the modules' own settings structs (`relay::ServerSettings`, `cache::CacheSettings`,
//!   ...), its validation and the value parsers they share.
//! - [`auth`]: JWT (HS256/ES256) tokens scoped to namespace prefixes and publish/subscribe.
//! - [`heartbeat`]: reports to the control plane (`--control`) every interval: URLs, capacity,
//!   load, broadcasts, parents; a `drain: true` answer drains the relay like SIGTERM.
//! - [`metrics`]: counters in atomics and their Prometheus text rendering.
//! - [`http`]: the internal HTTP listener: `/metrics`, `/health`, `/certificate.sha256`,
//!   `/v1/gifts/{broadcast}`.
//! - [`interact`]: likes, comments and gifts up and down the tree: viewers' `interact`
//!   tracks, per-viewer admission (rate, size, UTF-8, room), cumulative like sums forwarded to
//!   the parent, the origin's `likes`, `chat/<room>` and `events` tracks and its SQLite gift
//!   ledger; see `docs/interactions.md`.

pub mod auth;
pub mod cache;
pub mod config;
pub mod forward;
pub mod heartbeat;
pub mod http;
pub mod interact;
pub mod metrics;
pub mod origin;
pub mod relay;
pub mod session;
pub mod track;
pub mod upstream;

pub use relay::Relay;
