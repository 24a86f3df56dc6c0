//! Interactions: likes, comments and gifts carried over the MoQT tree (see `docs/interactions.md`).
//!
//! [`payload`], [`likes`] and [`viewer`] are the logic without sockets or clocks: callers feed
//! payloads and `now`, and read back verdicts and what to send; [`hub`] wires them to sessions.
//!
//! # Module map
//! - [`payload`]: the wire format of interaction objects (`interact` track up, `likes`,
//!   `viewers`, `chat/<room>` and `events` tracks down).
//! - [`likes`]: cumulative like counters per source, summed without double counting, and the
//!   aggregation window that decides when a new total goes out.
//! - [`viewer`]: per-publisher admission: rate limits ([`viewer::Limit`], governor), size limits,
//!   UTF-8 and room checks.
//! - [`viewers`]: the live viewer count: child relays' latest reports (a gauge, expired when
//!   a child goes silent) and when a relay sends its own count up.
//! - [`moderation`]: moderation actions (delete, timeout, ban, slow mode, gates), the state
//!   they build, the verdict on a comment and the `mod` track object; no sockets or clocks.
//! - [`ledger`]: the origin's append-only gift ledger in SQLite (exactly once per client id),
//!   and in the same file the moderation action log.
//! - [`hub`]: per-broadcast state wired to sessions and tracks, one file per part it owns:
//!   the table of broadcasts and its sweep (`hub/mod.rs`), serving a viewer's or child
//!   relay's `interact` publication (`publication.rs`), the origin's `likes`, `chat/<room>`
//!   and `events` tracks and its gift recording (`origin.rs`), an edge's `interact`
//!   publication to its parent (`upward.rs`). The hub owns each broadcast's task; they stop
//!   with [`hub::Hub::sweeper`].

pub mod hub;
pub mod ledger;
pub mod likes;
pub mod moderation;
pub mod payload;
pub mod viewer;
pub mod viewers;

use std::time::Duration;

/// Interaction timing and rates (part of [`RelayConfig`](crate::config::RelayConfig)).
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InteractSettings {
    /// How long likes are summed before a new cumulative total goes to the parent (or, at
    /// the origin, onto the `likes` track) (e.g. 100ms).
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = humantime::parse_duration)]
    #[serde(with = "banyan_control::layered::serde_duration")]
    pub like_window: Duration,

    /// Sustained likes per second one viewer may add (its token bucket allows 5 s of them at once).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub like_rate: u32,

    /// Sustained comments per second one viewer may send (bursts of 5 s of them).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub comment_rate: u32,

    /// How long a broadcast's interaction state (like sums, chat rooms; at the origin its
    /// `likes`, `chat/<room>` and `events` tracks) outlives its last use: no viewer or child
    /// relay publishing interactions and, at the origin, no publisher (e.g. 60s).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    #[serde(with = "banyan_control::layered::serde_duration")]
    pub interact_idle: Duration,

    /// The gift ledger (SQLite, created if missing). Gifts reaching this relay as the origin
    /// are recorded there exactly once; without it they are refused as unavailable.
    #[arg(long, value_name = "FILE")]
    pub gift_ledger: Option<std::path::PathBuf>,
}

impl From<&InteractSettings> for InteractConfig {
    fn from(s: &InteractSettings) -> Self {
        Self {
            window: s.like_window,
            like_rate: f64::from(s.like_rate),
            like_burst: f64::from(s.like_rate) * 5.0,
            comment_rate: f64::from(s.comment_rate),
            comment_burst: f64::from(s.comment_rate) * 5.0,
            idle: s.interact_idle,
            ..Self::default()
        }
    }
}

/// Why an interaction was refused. Each maps to an application error code sent to the
/// viewer (see [`Refusal::code`]) and to a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The publisher sent likes, comments or gifts faster than its token bucket allows.
    #[error("rate limited")]
    RateLimited,
    /// A comment, room name or gift client id is longer than the configured limit.
    #[error("too large")]
    TooLarge,
    /// Comment text or a room name is not valid UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// The room is not one the control plane could have assigned (not a decimal room number
    /// below the configured count).
    #[error("unknown room")]
    BadRoom,
    /// The payload does not parse (unknown type, truncated, trailing bytes).
    #[error("malformed payload")]
    Malformed,
    /// A gift reached an origin without a working ledger (`--gift-ledger`); the viewer retries.
    #[error("gift ledger unavailable")]
    Unavailable,
    /// The commenter is banned from the broadcast's chat.
    #[error("banned")]
    Banned,
    /// The commenter is timed out.
    #[error("timed out")]
    TimedOut,
    /// Slow mode: the commenter's previous comment is too recent.
    #[error("slow mode")]
    SlowMode,
    /// The chat is followers- or subscribers-only and the token lacks the claim.
    #[error("chat is followers- or subscribers-only")]
    Gated,
    /// A moderation action from a publisher whose token has no `mod` claim for the broadcast.
    #[error("not a moderator")]
    NotModerator,
    /// The relay does not know the broadcast's moderation state yet (it is on its way from
    /// the origin); the viewer retries.
    #[error("moderation state not known yet")]
    Pending,
}

impl Refusal {
    /// Every refusal, in label order.
    pub const ALL: [Refusal; 12] = [
        Refusal::RateLimited,
        Refusal::TooLarge,
        Refusal::InvalidUtf8,
        Refusal::BadRoom,
        Refusal::Malformed,
        Refusal::Unavailable,
        Refusal::Banned,
        Refusal::TimedOut,
        Refusal::SlowMode,
        Refusal::Gated,
        Refusal::NotModerator,
        Refusal::Pending,
    ];

    /// The code the relay stops a viewer's stream with (STOP_SENDING; documented in
    /// `docs/interactions.md`), above the codes draft-18 assigns to streams.
    pub const fn code(self) -> u64 {
        match self {
            Refusal::RateLimited => 0x1001,
            Refusal::TooLarge => 0x1002,
            Refusal::InvalidUtf8 => 0x1003,
            Refusal::BadRoom => 0x1004,
            Refusal::Malformed => 0x1005,
            Refusal::Unavailable => 0x1006,
            Refusal::Banned => 0x1007,
            Refusal::TimedOut => 0x1008,
            Refusal::SlowMode => 0x1009,
            Refusal::Gated => 0x100a,
            Refusal::NotModerator => 0x100b,
            Refusal::Pending => 0x100c,
        }
    }

    /// The metric label value.
    pub const fn label(self) -> &'static str {
        match self {
            Refusal::RateLimited => "rate_limited",
            Refusal::TooLarge => "too_large",
            Refusal::InvalidUtf8 => "invalid_utf8",
            Refusal::BadRoom => "bad_room",
            Refusal::Malformed => "malformed",
            Refusal::Unavailable => "unavailable",
            Refusal::Banned => "banned",
            Refusal::TimedOut => "timed_out",
            Refusal::SlowMode => "slow_mode",
            Refusal::Gated => "gated",
            Refusal::NotModerator => "not_moderator",
            Refusal::Pending => "pending",
        }
    }
}

/// Interaction limits and timing, shared by every session of a relay.
#[derive(Clone, Debug)]
pub struct InteractConfig {
    /// How long likes are summed before a new cumulative total goes upstream or down.
    pub window: Duration,
    /// Sustained likes per second one publisher may add.
    pub like_rate: f64,
    /// Likes one publisher may add in a burst.
    pub like_burst: f64,
    /// Sustained comments and gifts per second one publisher may send.
    pub comment_rate: f64,
    /// Comments and gifts one publisher may send in a burst.
    pub comment_burst: f64,
    /// Longest comment text, in bytes.
    pub max_comment_bytes: usize,
    /// Number of chat rooms a broadcast may have (rooms are `0` to `rooms - 1`).
    pub rooms: u64,
    /// Longest gift client id, in bytes.
    pub max_client_id_bytes: usize,
    /// How long a finished source's last total is kept so that the same source returning
    /// (a child relay reconnecting) continues its count instead of adding it twice.
    pub source_retention: Duration,
    /// How long a broadcast's state outlives its last use before it is freed.
    pub idle: Duration,
}

impl Default for InteractConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_millis(100),
            like_rate: 20.0,
            like_burst: 100.0,
            comment_rate: 1.0,
            comment_burst: 5.0,
            max_comment_bytes: 500,
            rooms: 100_000,
            max_client_id_bytes: 64,
            source_retention: Duration::from_secs(60),
            idle: Duration::from_secs(60),
        }
    }
}
