//! Parents: where this relay gets the namespaces nobody publishes to it directly.
//!
//! A relay that lacks a namespace asks its parent, never the origin directly, and holds one
//! upstream copy for all its subscribers (the replication tree). This module answers "which
//! parent" and "over which session":
//!
//! - A [`Resolver`] names the parents of a namespace, in order of preference:
//!   [`StaticResolver`] (`--upstream`, repeatable), [`HttpResolver`] (`--control`: asks the
//!   control plane `GET {control}/v1/route/{namespace}?relay={relay_id}`), and [`Resolvers`],
//!   which asks several in turn (control first, static list as the fallback).
//! - [`Parents`] keeps one MoQT session per parent, shared by every track and request that goes
//!   there, and sends each request with the relay path ([`HopPath`]) so loops and over-deep trees
//!   are refused (see [`banyan_moq::message::hop_path`]). A parent whose session dies, whose
//!   connection fails, or which sends GOAWAY is skipped for [`ParentsConfig::retry_after`], so
//!   the next request (a failover) goes straight to the next parent instead of waiting on a
//!   dead one.
//!
//! - A [`Dial`] opens a session to a parent's URL: the QUIC [`Client`] for real relays, or
//!   anything else (an in-memory transport in tests).
//!
//! Parent sessions use a short QUIC idle timeout with frequent keep-alives (`--upstream-timeout`):
//! a parent that dies without a word is noticed within that time, which bounds failover.

use std::time::Duration;

use banyan_moq::coding::RequestErrorCode;
use url::Url;

mod parents;
mod resolve;
#[cfg(test)]
mod tests;

pub use parents::{Dial, DialFuture, Parent, Parents, ParentsConfig};
pub use resolve::{HttpResolver, ResolveError, ResolveFuture, Resolver, Resolvers, StaticResolver};

/// The parents and how to reach them (part of [`RelayConfig`](crate::config::RelayConfig)).
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct UpstreamSettings {
    /// A parent relay to subscribe to for namespaces nobody publishes here (the replication
    /// tree): moqt://host[:port][/path] (raw QUIC) or https://host[:port]/path (WebTransport);
    /// the port defaults to 443. Repeatable, most preferred first; later ones are failovers.
    /// With --control, these are used when the control plane names no parent or cannot be reached.
    // Listed in --help before the control plane's flags, as it always was.
    #[arg(long, value_name = "URL", value_parser = crate::config::parse_upstream, display_order = 5)]
    #[serde(with = "crate::config::serde_urls", default)]
    pub upstream: Vec<Url>,

    /// Verify parent relays against the CA certificates in this PEM file (instead of the
    /// system roots).
    #[arg(long, value_name = "PEM")]
    pub upstream_ca: Option<std::path::PathBuf>,

    /// Accept any certificate from parent relays (still checking the handshake signature).
    /// For development and loopback tests with dev certificates only.
    #[arg(long, value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub upstream_insecure: bool,

    /// A JWT this relay presents to its parents in SETUP, when they require auth.
    #[arg(long, value_name = "JWT")]
    pub upstream_token: Option<String>,

    /// How long a parent may be silent (QUIC keep-alives included) before it is taken for dead
    /// and its tracks fail over to another parent. Also bounds connecting to a parent (3x).
    #[arg(long, value_name = "DURATION", default_value = "750ms", value_parser = humantime::parse_duration)]
    #[serde(with = "banyan_control::layered::serde_duration")]
    pub upstream_timeout: Duration,

    /// Most relays a request may pass through, this one included (edge = 1). A request relayed
    /// through more is refused, as is one whose path already contains this relay (a loop).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub max_depth: usize,
}

/// Why a request could not be sent upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No parent is configured or the control plane knows none for this namespace.
    #[error("no parent relay for this namespace")]
    NoParent,
    /// The route lookup failed.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// Every parent is unreachable (or skipped after a recent failure).
    #[error("no parent reachable: {0}")]
    Unreachable(String),
    /// Forwarding would loop: the parent is this relay or already on the request's path.
    #[error("relay loop: parent {parent} is already on the path {path}")]
    Loop {
        /// The parent's URL.
        parent: String,
        /// The path the request had travelled.
        path: String,
    },
    /// The parent refused the request.
    #[error("parent refused: {reason} (code {code:?})")]
    Refused {
        /// Its REQUEST_ERROR code, passed on downstream.
        code: RequestErrorCode,
        /// Its reason.
        reason: String,
    },
}

impl UpstreamError {
    /// The REQUEST_ERROR code to send downstream.
    pub fn request_code(&self) -> RequestErrorCode {
        match self {
            UpstreamError::NoParent | UpstreamError::Loop { .. } => RequestErrorCode::DoesNotExist,
            UpstreamError::Refused { code, .. } => *code,
            UpstreamError::Resolve(_) | UpstreamError::Unreachable(_) => RequestErrorCode::InternalError,
        }
    }

    /// The reason phrase to send downstream (the parent's own reason for a refusal).
    pub fn reason(&self) -> String {
        match self {
            UpstreamError::Refused { reason, .. } => reason.clone(),
            other => other.to_string(),
        }
    }

    /// Whether the track cannot be had from the parents now but might be later: no parent
    /// knows the namespace, or they answered DOES_NOT_EXIST for a reason other than the
    /// request's relay path (a loop or a tree too deep, which waiting cannot change).
    pub fn not_published_yet(&self) -> bool {
        match self {
            UpstreamError::NoParent => true,
            UpstreamError::Refused {
                code: RequestErrorCode::DoesNotExist,
                reason,
            } => !is_path_refusal(reason),
            _ => false,
        }
    }
}

/// The reason phrases Banyan relays give when a request's relay path is refused start with
/// one of these (and are passed down the tree unchanged).
pub const PATH_REFUSALS: [&str; 2] = ["relay loop", "relay tree too deep"];

/// Whether a refusal's reason says the request's relay path was refused (see
/// [`PATH_REFUSALS`]).
pub fn is_path_refusal(reason: &str) -> bool {
    PATH_REFUSALS.iter().any(|p| reason.starts_with(p))
}

/// The Hop ID of the relay named `relay_id`: the first 62 bits of its SHA-256, so the same id
/// always gives the same Hop ID and distinct ids practically never collide.
pub fn hop_id(relay_id: &str) -> u64 {
    use aws_lc_rs::digest::{digest, SHA256};
    let hash = digest(&SHA256, relay_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(hash.as_ref().get(..8).unwrap_or(&[0; 8]));
    u64::from_be_bytes(first) >> 2
}
