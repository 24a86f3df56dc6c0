//! `banyan-relay`: the MoQT draft-18 relay.
//!
//! A publisher's PUBLISH_NAMESPACE registers it in [`namespaces`]; the first SUBSCRIBE for a
//! track creates its entry in the [`track`] table, which subscribes upstream exactly once and
//! fills the track's [`track::cache`]; every subscriber then gets a [`track::forward`]er that
//! reads the cache with its own cursor. A namespace nobody publishes here is fetched from a
//! parent relay ([`upstream`]), so relays form a replication tree: each holds one upstream
//! copy of a track for all its subscribers. "Origin" means the root of that tree (the relay
//! the publisher reaches), never the table of publishers.
//!
//! # Module map
//! - [`relay`]: [`relay::Node`], the relay without sockets: the shared state and the one path
//!   that authorizes, accepts and serves a session (given any transport, e.g. an in-memory
//!   pair in tests); [`Relay`]: binds the UDP port (raw QUIC + WebTransport) and the HTTP
//!   listener, feeds its node the sessions it accepts, shuts down with GOAWAY and a bounded drain
//!   (`mod.rs`); `node.rs` builds the node's shared state, `session.rs` serves one session.
//! - [`request`]: one session's requests: authorization, relay-path checks and dispatch
//!   (`mod.rs`), per-session limits (`limits.rs`: request rate, subscription and namespace
//!   slots), and one file per request kind: `subscribe.rs` (with its rendezvous),
//!   `fetch.rs` (standalone and joining; `join.rs` keeps the SUBSCRIBEs a joining FETCH can
//!   name), `publish.rs`, `publish_namespace.rs`, `subscribe_namespace.rs`,
//!   `subscribe_tracks.rs`, `track_status.rs`.
//! - [`namespaces`]: [`namespaces::Namespaces`], the table of local publishers: published
//!   namespaces (a new publisher takes a live one over), routing a track to its publisher,
//!   namespace watchers.
//! - [`track`]: one entry per track (`mod.rs`: [`track::Track`], its state, its subscriber
//!   count). `table.rs`: [`track::Tracks`], the table by name, joined by SUBSCRIBE, replaced
//!   by PUBLISH, watched by SUBSCRIBE_TRACKS. `feed.rs`: the coalesced upstream subscription
//!   (a local publisher, moving with a takeover; a parent relay, with failover; a pushed
//!   track) and the rendezvous that holds a track nobody publishes yet. `ingest.rs`: an
//!   upstream subscription written into the track's producer. `local.rs`: table entries for
//!   the tracks the relay produces itself (the interaction hub writes them like any producer).
//!   Every track is a [`banyan_moq::track`] producer: its recent groups, bounded by count and by
//!   one byte budget for all tracks. [`track::cache`]: those bounds' settings and the metrics
//!   observer. [`track::forward`]: one subscription around a `banyan_moq::track::Fanout` (which
//!   skips a slow subscriber forward): requests, range end, PUBLISH_DONE.
//! - [`upstream`]: parent relays: route resolution (static `--upstream`, control plane), one
//!   session per parent opened through a [`upstream::Dial`] (the QUIC client, or any other
//!   dialer), relay paths for loop and depth safety. `resolve.rs`: the resolvers;
//!   `parents.rs`: [`upstream::Dial`] and [`upstream::Parents`]; `mod.rs`: settings, errors,
//!   Hop IDs.
//! - [`tasks`]: [`tasks::Tasks`], a set of background tasks owned by its holder.
//! - [`config`]: the one configuration struct for flags, `BANYAN_RELAY_*` variables and TOML,
//!   made of the modules' own settings structs (`relay::ServerSettings`, `track::cache::CacheSettings`,
//!   ...): `mod.rs` ([`config::RelayConfig`] and its loading), `validate.rs` (range and
//!   consistency checks, one function per concern), `parse.rs` (the value parsers the settings
//!   share: sizes, bit rates, URLs, host names), `tests.rs` (how the layers merge).
//! - [`auth`]: JWT (HS256/ES256) tokens scoped to namespace prefixes and publish/subscribe:
//!   `claims.rs` (what a token grants, why it is refused), `key.rs` ([`auth::Authenticator`]:
//!   keys, verifying, minting), `token.rs` (where a token travels), `grant.rs`
//!   ([`auth::Grant`]: the token a session lives by, its refresh, and [`auth::expire`] /
//!   [`auth::end_session`], closing the session when it runs out).
//! - [`heartbeat`]: reports to the control plane (`--control`) every interval: URLs, capacity,
//!   load, broadcasts, parents; a `drain: true` answer drains the relay like SIGTERM
//!   (`mod.rs`: [`heartbeat::Reporter`]); `summary.rs`: URLs and broadcasts; `load.rs`: egress
//!   and CPU rates; `warn.rs`: the rate-limited failure warning.
//! - [`metrics`]: counters, gauges and a histogram as `prometheus-client` metrics in one
//!   registry, encoded as OpenMetrics text: `mod.rs` ([`metrics::Metrics`], its handles and
//!   gauge guards), `register.rs` (each metric's exported name, help text and labels).
//! - [`http`]: the internal HTTP listener: `/metrics`, `/health`, `/certificate.sha256`,
//!   `/v1/gifts/{broadcast}`, `/v1/moderation/{broadcast}`.
//! - [`interact`]: likes, comments, gifts and moderation up and down the tree: viewers'
//!   `interact` tracks, per-viewer admission (rate, size, UTF-8, room, bans, timeouts, slow
//!   mode, gates), cumulative like sums forwarded to the parent, the origin's `likes`,
//!   `chat/<room>`, `events` and `mod` tracks and its SQLite gift ledger and moderation log;
//!   see `docs/interactions.md`.
//!
//! # Where tasks run, and who owns them
//! Library code spawns nothing behind its caller's back: work that runs in the background is
//! a future handed to an owner.
//! - A [`relay::Node`] owns the relay-wide [`tasks::Tasks`] (`request::Shared::tasks`): each
//!   track's upstream feed ([`track::Tracks::subscribe`] and [`track::Tracks::insert_pushed`]
//!   return it; the request layer spawns it), and the interaction sweeper
//!   ([`interact::hub::Hub::sweeper`], started by [`relay::Node::start`]). They are aborted by
//!   [`relay::Node::shutdown`], which [`Relay::run`] calls when it returns. `Node::serve` runs
//!   a session's driver inside the caller's task. `run` also spawns, and stops, the HTTP
//!   listener and the heartbeat reporter, and one task per connection (calling `Node::serve`).
//! - Each session ([`request::SessionHandler`]) owns a [`tasks::Tasks`] for its requests and
//!   the PUBLISHes of its SUBSCRIBE_TRACKS, aborted when the session ends.
//! - The interaction hub ([`interact::hub::Hub`]) owns a [`tasks::Tasks`] for each
//!   broadcast's task (its `likes` writer at the origin, its `interact` publication to the
//!   parent elsewhere), aborted when its sweeper stops, that is with `run`'s set.
//! - The parent links ([`upstream::Parents`]) own a [`tasks::Tasks`] for each parent
//!   session's driver and request refuser (and the delayed close of one going away), aborted
//!   when the links are dropped with the relay's track table.
//! - Within a task, work it waits for stays in that task's own `JoinSet`: an ingest's
//!   subgroup streams, the subgroups a parent going away still sends, the stream readers of
//!   an `interact` publication the hub serves.

pub mod auth;
pub mod config;
pub mod heartbeat;
pub mod http;
pub mod interact;
pub mod metrics;
pub mod namespaces;
pub mod relay;
pub mod request;
pub mod tasks;
pub mod track;
pub mod upstream;

pub use relay::Relay;
