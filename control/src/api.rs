//! The control plane's HTTP/JSON contract: request and response bodies of every endpoint.
//!
//! This module depends on `serde` only (build the crate with `default-features = false`), so
//! relays and other clients share one definition with the server. `control/README.md`
//! documents the same contract for non-Rust clients.
//!
//! | method | path | request | response |
//! |---|---|---|---|
//! | POST | [`HEARTBEAT_PATH`] | [`Heartbeat`] | [`HeartbeatResponse`] |
//! | GET | `/v1/watch/{broadcast}?region=R` | — | [`WatchResponse`] |
//! | POST | `/v1/refresh` | [`RefreshRequest`] | [`RefreshResponse`] |
//! | GET | `/v1/route/{namespace}?relay=ID` ([`route_path`]) | — | [`RouteResponse`] |
//! | POST | `/v1/publish/{broadcast}?region=R` | — | [`PublishResponse`] |
//! | POST | `/v1/relays/{id}/drain` | — | [`DrainResponse`] |
//! | GET | `/v1/status` | — | [`Status`] |
//! | GET | `/v1/history` | — | [`HistoryView`] |
//!
//! The tokens those responses carry are JWTs with [`Claims`]; relays verify them.
//!
//! Every error is an HTTP status with an [`ErrorBody`].
//!
//! Conventions: durations are integer milliseconds in fields ending `_ms`; rates are bits per
//! second in fields ending `_bps`; a namespace or broadcast name is its `/`-separated path
//! (`live/show1`); in a URL path its fields may be percent-encoded and the `/` between them
//! may be literal. Unknown JSON fields are ignored everywhere so either side can add fields
//! without breaking the other; fields marked optional may be omitted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The path relays POST their heartbeats to.
pub const HEARTBEAT_PATH: &str = "/v1/relays/heartbeat";

/// The longest relay id, region, namespace or URL accepted in a heartbeat, in bytes.
pub const MAX_NAME_LEN: usize = 1024;

/// The most broadcasts (and the most parent links) one heartbeat may list.
pub const MAX_HEARTBEAT_ITEMS: usize = 10_000;

/// What a relay tells the control plane every interval (`POST /v1/relays/heartbeat`).
///
/// The control plane's whole view of the fleet is rebuilt from these (soft state): a relay
/// that misses heartbeats for the configured expiry is dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The relay's stable id (`--relay-id`); unique in the fleet.
    pub relay_id: String,
    /// Where clients and child relays reach this relay.
    pub urls: RelayUrls,
    /// SHA-256 of the relay's development certificate, lowercase hex (64 digits), when it runs
    /// with `--dev-cert`; browsers pin it with `serverCertificateHashes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_sha256: Option<String>,
    /// The relay's region (`--region`), e.g. `eu-west`; assignment prefers the viewer's region.
    #[serde(default)]
    pub region: String,
    /// What the relay can carry.
    pub capacity: Capacity,
    /// What it carries now.
    #[serde(default)]
    pub load: Load,
    /// The broadcasts (namespaces) it carries, with viewers each.
    #[serde(default)]
    pub broadcasts: Vec<BroadcastLoad>,
    /// Its upstream links: which parent it pulls each namespace from.
    #[serde(default)]
    pub parents: Vec<ParentLink>,
    /// True while the relay is draining (after SIGTERM or a drain order): assign nothing to it.
    #[serde(default)]
    pub draining: bool,
}

/// A relay's public URLs. At least one must be present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayUrls {
    /// Raw QUIC MoQT (ALPN `moqt-18`): `moqt://host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moqt: Option<String>,
    /// WebTransport: `https://host:port/path` (the same UDP port as `moqt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webtransport: Option<String>,
    /// QMux over WebSocket (`ws://host:port/` or `wss://…`, the relay's `--ws-listen` TCP
    /// port), for browsers without WebTransport.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket: Option<String>,
    /// The relay's internal HTTP listener (`/health`, `/metrics`), `http://host:port`; optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
}

/// What a relay can carry (from its flags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Most viewer sessions (`--capacity-viewers`); must be at least 1.
    pub max_viewers: u32,
    /// Most egress, bits per second; 0 = not limited by egress.
    #[serde(default)]
    pub egress_bps: u64,
}

/// What a relay carries now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// Open sessions (viewers, publishers and child relays).
    #[serde(default)]
    pub sessions: u32,
    /// Egress over the last interval, bits per second.
    #[serde(default)]
    pub egress_bps: u64,
    /// CPU used by the relay process over the last interval, in cores (1.0 = one full core).
    #[serde(default)]
    pub cpu: f64,
    /// Sessions accepted since the relay started, a running count. Control takes each increase
    /// as that many assigned viewers arrived, so an assignment counts against the relay until
    /// its viewer is in `sessions`, however long the viewer takes to connect.
    #[serde(default)]
    pub accepted: u64,
}

/// One broadcast (namespace) a relay carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastLoad {
    /// The namespace as a `/`-separated path, e.g. `live/show1`.
    pub namespace: String,
    /// Viewer sessions subscribed to it at this relay: distinct sessions reading any of its
    /// tracks (viewers split over renditions each count once), child relays left out (each counts its own viewers), so the sum over the
    /// fleet counts every viewer once.
    #[serde(default)]
    pub viewers: u32,
    /// True when a publisher publishes it on this relay directly (this relay is its origin).
    #[serde(default)]
    pub local: bool,
    /// Viewers subscribed to each chat room's track (`chat/<room>`) at this relay, by room
    /// number (child relays carrying the room are not viewers; rooms without viewers are left
    /// out). Control sums them over the fleet to fill rooms viewers left before opening new ones.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rooms: BTreeMap<u64, u32>,
}

/// One upstream link of a relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    /// The namespace pulled over this link.
    pub namespace: String,
    /// The parent's URL as the relay dialled it (one of the parent's [`RelayUrls`]).
    pub upstream: String,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// Send the next heartbeat after this many milliseconds.
    pub interval_ms: u64,
    /// The control plane drops a relay it has not heard from for this long.
    pub expiry_ms: u64,
    /// Drain: send GOAWAY to sessions at a group boundary, accept no new ones and, when the
    /// control plane spawned this relay, exit once empty.
    #[serde(default)]
    pub drain: bool,
}

/// A viewer's assignment (`GET /v1/watch/{broadcast}?region=R`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchResponse {
    /// The broadcast, as asked.
    pub broadcast: String,
    /// The assigned relay's id.
    pub relay_id: String,
    /// Its region.
    pub region: String,
    /// How to reach it (`moqt`, `webtransport`, `cert_sha256` in the JSON).
    #[serde(flatten)]
    pub endpoint: RelayEndpoint,
    /// A subscribe-only JWT scoped to the broadcast (claims `ns`, `subs: true`, `exp`).
    pub token: String,
    /// The token's expiry, seconds since the Unix epoch.
    pub token_expires: u64,
    /// The chat room to join (the `chat/<room>` track of the broadcast).
    pub chat_room: String,
    /// The viewer's name in the token (`sub`): the `user` asked for, or `anon-…`. Moderation
    /// times out and bans by it.
    #[serde(default)]
    pub sub: String,
    /// The token carries the `mod` claim (the user is a named moderator of the broadcast).
    #[serde(default, skip_serializing_if = "is_false")]
    pub moderator: bool,
}

/// A fresh token for one a client holds (`POST /v1/refresh`), asked before it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRequest {
    /// The token to refresh: one this control plane minted, not yet past `exp` plus the
    /// relays' 5 s allowance.
    pub token: String,
}

/// The answer to `POST /v1/refresh`: a token with the same claims (subject, namespace,
/// actions, room) and a new expiry. Present it to the relay (REQUEST_UPDATE with AUTHORIZATION
/// TOKEN on an open subscription) before the old one runs out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshResponse {
    /// The fresh JWT.
    pub token: String,
    /// Its expiry, seconds since the Unix epoch.
    pub token_expires: u64,
}

/// How a client reaches the relay it was given: the fields [`WatchResponse`] and
/// [`PublishResponse`] share. Flattened into them, so in the JSON these are top-level fields,
/// in this order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayEndpoint {
    /// Raw QUIC URL (`moqt://…`), if the relay has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moqt: Option<String>,
    /// WebTransport URL (`https://…`), if the relay has one; browsers use this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webtransport: Option<String>,
    /// WebSocket URL (`ws://…` or `wss://…`), if the relay has one; browsers without
    /// WebTransport use this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket: Option<String>,
    /// Development certificate hash (hex SHA-256), when the relay uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_sha256: Option<String>,
}

/// A relay's parents for a namespace (`GET /v1/route/{namespace}?relay=ID`).
///
/// `upstream` is ordered by preference. It is empty when the asking relay is the namespace's
/// origin (it should wait for its publisher).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteResponse {
    /// Parent URLs, best first (raw QUIC `moqt://` URLs where the parent has one).
    pub upstream: Vec<String>,
}

/// Where a publisher publishes (`POST /v1/publish/{broadcast}?region=R`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResponse {
    /// The broadcast, as asked.
    pub broadcast: String,
    /// The origin relay's id.
    pub relay_id: String,
    /// How to reach the origin (`moqt`, `webtransport`, `cert_sha256` in the JSON).
    #[serde(flatten)]
    pub endpoint: RelayEndpoint,
    /// A publish-only JWT scoped to the broadcast (claims `ns`, `pub: true`, `exp`).
    pub token: String,
    /// The token's expiry, seconds since the Unix epoch.
    pub token_expires: u64,
}

/// The answer to `POST /v1/relays/{id}/drain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainResponse {
    /// The relay.
    pub relay_id: String,
    /// Always true: the relay gets `drain: true` in its next heartbeat response.
    pub draining: bool,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `unknown_broadcast`, `bad_heartbeat`,
    /// `rate_limited`, `no_capacity`, `unknown_relay`.
    pub error: String,
    /// A human-readable explanation.
    pub message: String,
}

/// The live view (`GET /v1/status`), drawn by the status page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Every live relay.
    pub relays: Vec<RelayStatus>,
    /// Every broadcast known (published somewhere).
    pub broadcasts: Vec<BroadcastStatus>,
}

/// One relay in [`Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayStatus {
    /// Its id.
    pub relay_id: String,
    /// Its region.
    pub region: String,
    /// Its URLs.
    pub urls: RelayUrls,
    /// Capacity.
    pub capacity: Capacity,
    /// Load.
    pub load: Load,
    /// Viewers assigned or reported (the larger of the two), summed over broadcasts.
    pub viewers: u32,
    /// Broadcasts carried.
    pub broadcasts: Vec<BroadcastLoad>,
    /// Parent links, with the parent's relay id where known.
    pub parents: Vec<ParentStatus>,
    /// Draining (ordered or self-reported).
    pub draining: bool,
    /// Spawned by this control plane.
    pub spawned: bool,
    /// Milliseconds since its last heartbeat.
    pub last_seen_ms: u64,
}

/// A parent link in [`RelayStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentStatus {
    /// The namespace.
    pub namespace: String,
    /// The parent URL as reported.
    pub upstream: String,
    /// The parent's relay id, when the URL belongs to a known relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_id: Option<String>,
}

/// One broadcast in [`Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BroadcastStatus {
    /// The broadcast (namespace).
    pub broadcast: String,
    /// Its origin relay, if one is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Viewers over all relays: the sum of each relay's own viewers (child relays are not
    /// viewers), the figure the origin's `viewers` track carries.
    pub viewers: u64,
    /// Smoothed join velocity, viewers per second.
    pub join_rate: f64,
    /// Relays carrying it.
    pub relays: Vec<String>,
}

/// The last minutes of the fleet (`GET /v1/history`), one [`Sample`] per interval, oldest
/// first, drawn by the status page's graphs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryView {
    /// Milliseconds between samples.
    pub interval_ms: u64,
    /// The control plane's clock now, on the samples' scale (`at_ms`).
    pub now_ms: u64,
    /// The samples, oldest first.
    pub samples: Vec<Sample>,
}

/// The fleet at one moment in [`HistoryView`], from the same figures as [`Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When, in milliseconds since the control plane started.
    pub at_ms: u64,
    /// Live relays.
    pub relays: u32,
    /// Of those, spawned by this control plane.
    pub spawned: u32,
    /// Egress summed over the relays, bits per second.
    pub egress_bps: u64,
    /// The busiest broadcasts (at most 32), busiest first.
    pub broadcasts: Vec<BroadcastSample>,
}

/// One broadcast in a [`Sample`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BroadcastSample {
    /// The broadcast (namespace).
    pub broadcast: String,
    /// Viewers over all relays, as in [`BroadcastStatus::viewers`].
    pub viewers: u64,
    /// Smoothed join velocity, viewers per second.
    pub join_rate: f64,
}

/// The claims of a relay token: a JWT the control plane mints (`token` in [`WatchResponse`]
/// and [`PublishResponse`]) and relays verify. JSON names and meaning:
///
/// | claim  | type    | meaning |
/// |--------|---------|---------|
/// | `ns`   | string  | namespace prefix as a `/`-separated path (`"live/show1"`); `""` = every namespace. Required. |
/// | `pub`  | bool    | may publish (PUBLISH_NAMESPACE, PUBLISH) under `ns`; default false |
/// | `subs` | bool    | may subscribe (SUBSCRIBE, FETCH, TRACK_STATUS, SUBSCRIBE_NAMESPACE) under `ns`; default false |
/// | `exp`  | integer | expiry, seconds since the Unix epoch. Required. |
/// | `room` | string  | the chat room the control plane assigned (`chat_room`); when present, the viewer's comments must name it. Optional. |
/// | `sub`  | string  | who the token was minted for: logged, and the identity moderation bans and times out. Optional: the control plane always sets it, other minters need not. |
/// | `mod`  | bool    | a moderator of the broadcasts under `ns`: may send moderation actions (delete, timeout, ban, slow mode, gates); default false |
/// | `fol`  | bool    | the viewer follows the broadcaster: may comment while the chat is followers-only; default false |
/// | `paid` | bool    | the viewer subscribes (pays): may comment while the chat is subscribers-only (or followers-only); default false |
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the token was minted for; informational (logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The namespace prefix the token covers, as a `/`-separated path; `""` covers everything.
    pub ns: String,
    /// May publish under `ns`.
    #[serde(rename = "pub", default)]
    pub publish: bool,
    /// May subscribe under `ns`.
    #[serde(rename = "subs", default)]
    pub subscribe: bool,
    /// Expiry in seconds since the Unix epoch.
    pub exp: u64,
    /// The chat room the control plane assigned the viewer (`chat_room` of `/v1/watch`); when
    /// present, comments the viewer sends must be in this room (others are a forged room).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// A moderator of the broadcasts under `ns` (JSON `mod`).
    #[serde(rename = "mod", default, skip_serializing_if = "is_false")]
    pub moderator: bool,
    /// Follows the broadcaster (JSON `fol`): passes a followers-only gate.
    #[serde(rename = "fol", default, skip_serializing_if = "is_false")]
    pub follower: bool,
    /// Subscribes to the broadcaster (JSON `paid`): passes a subscribers- or followers-only gate.
    #[serde(rename = "paid", default, skip_serializing_if = "is_false")]
    pub subscriber: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Why a [`Heartbeat`] was refused by [`Heartbeat::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidHeartbeat(pub String);

impl std::fmt::Display for InvalidHeartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidHeartbeat {}

impl Heartbeat {
    /// Check what serde cannot: non-empty bounded names, at least one URL with the right
    /// scheme, a 64-digit hex certificate hash, a capacity of at least one viewer, bounded
    /// lists and a finite, non-negative CPU figure.
    pub fn validate(&self) -> Result<(), InvalidHeartbeat> {
        let bad = |m: String| Err(InvalidHeartbeat(m));
        if let Err(m) = check_name("relay_id", &self.relay_id) {
            return bad(m);
        }
        if self.region.len() > MAX_NAME_LEN {
            return bad(format!("region is longer than {MAX_NAME_LEN} bytes"));
        }
        if self.urls.moqt.is_none() && self.urls.webtransport.is_none() {
            return bad("urls: give at least one of moqt (moqt://…) and webtransport (https://…)".into());
        }
        for (field, url, scheme) in [
            ("urls.moqt", &self.urls.moqt, "moqt://"),
            ("urls.webtransport", &self.urls.webtransport, "https://"),
            ("urls.http", &self.urls.http, "http://"),
            ("urls.websocket", &self.urls.websocket, "ws://"),
        ] {
            if let Some(url) = url {
                // A WebSocket URL is ws:// (development) or wss:// (TLS).
                let scheme = if field == "urls.websocket" && url.starts_with("wss://") {
                    "wss://"
                } else {
                    scheme
                };
                if !url.starts_with(scheme) || url.len() <= scheme.len() || url.len() > MAX_NAME_LEN {
                    return bad(format!("{field} must be a {scheme}host:port URL, got {url:?}"));
                }
            }
        }
        if let Some(hash) = &self.cert_sha256 {
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return bad("cert_sha256 must be 64 hex digits (a SHA-256)".into());
            }
        }
        if self.capacity.max_viewers == 0 {
            return bad("capacity.max_viewers must be at least 1".into());
        }
        if !self.load.cpu.is_finite() || self.load.cpu < 0.0 {
            return bad("load.cpu must be a finite, non-negative number of cores".into());
        }
        if self.broadcasts.len() > MAX_HEARTBEAT_ITEMS || self.parents.len() > MAX_HEARTBEAT_ITEMS {
            return bad(format!(
                "at most {MAX_HEARTBEAT_ITEMS} broadcasts and parent links"
            ));
        }
        for b in &self.broadcasts {
            if let Err(m) = check_name("broadcasts[].namespace", &b.namespace) {
                return bad(m);
            }
        }
        let rooms: usize = self.broadcasts.iter().map(|b| b.rooms.len()).sum();
        if rooms > MAX_HEARTBEAT_ITEMS {
            return bad(format!(
                "at most {MAX_HEARTBEAT_ITEMS} chat rooms over all broadcasts"
            ));
        }
        for p in &self.parents {
            if let Err(m) = check_name("parents[].namespace", &p.namespace) {
                return bad(m);
            }
            if let Err(m) = check_name("parents[].upstream", &p.upstream) {
                return bad(m);
            }
        }
        Ok(())
    }
}

/// The path (and query) of a route lookup for `namespace` by `relay_id`:
/// `/v1/route/{namespace}?relay={relay_id}`, each namespace field and the id percent-encoded.
pub fn route_path(namespace: &str, relay_id: &str) -> String {
    let fields: Vec<String> = namespace
        .trim_matches('/')
        .split('/')
        .map(percent_encode)
        .collect();
    format!(
        "/v1/route/{}?relay={}",
        fields.join("/"),
        percent_encode(relay_id)
    )
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn check_name(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        Err(format!("{field} must not be empty"))
    } else if value.len() > MAX_NAME_LEN {
        Err(format!("{field} is longer than {MAX_NAME_LEN} bytes"))
    } else if value.chars().any(char::is_control) {
        Err(format!("{field} contains control characters"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The shared endpoint fields are flattened: the JSON is what it was with them inline,
    /// byte for byte (clients read these top-level keys), and reads back the same.
    #[test]
    fn assignment_json_keeps_endpoint_fields_top_level_in_order() {
        let endpoint = RelayEndpoint {
            moqt: Some("moqt://r:1".into()),
            webtransport: None,
            websocket: None,
            cert_sha256: Some("ab".into()),
        };
        let watch = WatchResponse {
            broadcast: "live/a".into(),
            relay_id: "r".into(),
            region: "eu".into(),
            endpoint: endpoint.clone(),
            token: "t".into(),
            token_expires: 7,
            chat_room: "0".into(),
            sub: "anon-1".into(),
            moderator: false,
        };
        let json = serde_json::to_string(&watch).unwrap();
        assert_eq!(
            json,
            r#"{"broadcast":"live/a","relay_id":"r","region":"eu","moqt":"moqt://r:1","cert_sha256":"ab","token":"t","token_expires":7,"chat_room":"0","sub":"anon-1"}"#
        );
        assert_eq!(serde_json::from_str::<WatchResponse>(&json).unwrap(), watch);
        let publish = PublishResponse {
            broadcast: "live/a".into(),
            relay_id: "r".into(),
            endpoint,
            token: "t".into(),
            token_expires: 7,
        };
        let json = serde_json::to_string(&publish).unwrap();
        assert_eq!(
            json,
            r#"{"broadcast":"live/a","relay_id":"r","moqt":"moqt://r:1","cert_sha256":"ab","token":"t","token_expires":7}"#
        );
        assert_eq!(serde_json::from_str::<PublishResponse>(&json).unwrap(), publish);
    }

    fn heartbeat() -> Heartbeat {
        Heartbeat {
            relay_id: "r1".into(),
            urls: RelayUrls {
                moqt: Some("moqt://127.0.0.1:4443".into()),
                websocket: None,
                webtransport: Some("https://127.0.0.1:4443/".into()),
                http: None,
            },
            cert_sha256: Some("ab".repeat(32)),
            region: "eu".into(),
            capacity: Capacity {
                max_viewers: 100,
                egress_bps: 0,
            },
            load: Load::default(),
            broadcasts: vec![BroadcastLoad {
                namespace: "live/a".into(),
                viewers: 3,
                local: true,
                rooms: BTreeMap::from([(0, 2)]),
            }],
            parents: vec![],
            draining: false,
        }
    }

    #[test]
    fn minimal_heartbeat_parses_with_defaults() {
        let hb: Heartbeat = serde_json::from_str(
            r#"{"relay_id":"x","urls":{"moqt":"moqt://h:1"},"capacity":{"max_viewers":5},"extra":1}"#,
        )
        .unwrap();
        assert_eq!(hb.region, "");
        assert!(hb.broadcasts.is_empty());
        assert!(hb.validate().is_ok());
    }

    #[test]
    fn heartbeat_round_trips() {
        let hb = heartbeat();
        let text = serde_json::to_string(&hb).unwrap();
        assert_eq!(serde_json::from_str::<Heartbeat>(&text).unwrap(), hb);
        assert!(hb.validate().is_ok());
    }

    #[test]
    fn validation_names_the_field() {
        let mut hb = heartbeat();
        hb.capacity.max_viewers = 0;
        assert!(hb.validate().unwrap_err().0.contains("max_viewers"));
        let mut hb = heartbeat();
        hb.urls.moqt = Some("http://x".into());
        assert!(hb.validate().unwrap_err().0.contains("urls.moqt"));
        let mut hb = heartbeat();
        hb.cert_sha256 = Some("zz".into());
        assert!(hb.validate().unwrap_err().0.contains("cert_sha256"));
        let mut hb = heartbeat();
        hb.relay_id.clear();
        assert!(hb.validate().unwrap_err().0.contains("relay_id"));
        let mut hb = heartbeat();
        hb.urls = RelayUrls::default();
        assert!(hb.validate().is_err());
        let mut hb = heartbeat();
        hb.broadcasts[0].rooms = (0..=MAX_HEARTBEAT_ITEMS as u64).map(|r| (r, 1)).collect();
        assert!(hb.validate().unwrap_err().0.contains("chat rooms"));
    }

    #[test]
    fn rooms_travel_as_a_json_object_keyed_by_room_number() {
        let text = serde_json::to_string(&heartbeat().broadcasts[0]).unwrap();
        assert!(text.contains(r#""rooms":{"0":2}"#), "{text}");
        let load: BroadcastLoad = serde_json::from_str(r#"{"namespace":"live/a","rooms":{"7":3}}"#).unwrap();
        assert_eq!(load.rooms, BTreeMap::from([(7, 3)]));
        // A room that is not a number is a malformed heartbeat.
        assert!(serde_json::from_str::<BroadcastLoad>(r#"{"namespace":"a","rooms":{"x":1}}"#).is_err());
    }

    #[test]
    fn route_path_encodes_fields_not_slashes() {
        assert_eq!(
            route_path("live/show 1", "r/1"),
            "/v1/route/live/show%201?relay=r%2F1"
        );
    }

    #[test]
    fn claims_keep_their_json_names_and_optional_fields() {
        let viewer = Claims {
            sub: Some("viewer".into()),
            ns: "live/a".into(),
            publish: false,
            subscribe: true,
            exp: 1_700_000_060,
            room: Some("3".into()),
            ..Claims::default()
        };
        assert_eq!(
            serde_json::to_string(&viewer).unwrap(),
            r#"{"sub":"viewer","ns":"live/a","pub":false,"subs":true,"exp":1700000060,"room":"3"}"#
        );
        // Only `ns` and `exp` are required; a token without `sub` or `room` writes neither.
        let bare: Claims = serde_json::from_str(r#"{"ns":"","exp":1}"#).unwrap();
        assert_eq!(
            (bare.sub.as_deref(), bare.publish, bare.subscribe),
            (None, false, false)
        );
        assert_eq!(
            serde_json::to_string(&bare).unwrap(),
            r#"{"ns":"","pub":false,"subs":false,"exp":1}"#
        );
    }
}
