//! Heartbeats to the control plane (`--control`): the relay side of the contract in
//! [`banyan_control::api`].
//!
//! Every interval (1 s at first, then the `interval_ms` of the last answer) a [`Reporter`]
//! POSTs a [`Heartbeat`] to `{control}/v1/relays/heartbeat`: the relay's URLs, certificate hash,
//! region and capacity (from its flags), its load (sessions, egress and CPU over the last
//! interval), the broadcasts it carries with their viewers, the parents it pulls them from, and
//! whether it is draining. The control plane rebuilds its whole view of the fleet from these.
//!
//! An answer with `drain: true` orders a drain: the reporter notifies the relay, which shuts
//! down exactly as on SIGTERM (GOAWAY, bounded drain, exit). A failed heartbeat is logged (a
//! warning at most every [`WARN_EVERY`]) and retried at the next interval; it never stops the
//! relay.
//!
//! The rate arithmetic is pure ([`LoadSampler`], [`broadcasts`], [`relay_urls`]) so it is
//! tested without a clock, a socket or `/proc`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use banyan_control::api::{
    BroadcastLoad, Capacity, ErrorBody, Heartbeat, HeartbeatResponse, Load, ParentLink, RelayUrls,
    HEARTBEAT_PATH, MAX_HEARTBEAT_ITEMS, MAX_NAME_LEN,
};
use tokio::sync::{watch, Notify};
use url::Url;

use crate::interact::hub::chat_room;
use crate::metrics::Metrics;
use crate::namespaces::Namespaces;
use crate::track::Tracks;

/// The control plane and what the relay tells it about itself (part of
/// [`RelayConfig`](crate::config::RelayConfig)).
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
// Listed in --help after --upstream (display order 5), as they always were.
#[command(next_display_order = 6)]
pub struct HeartbeatSettings {
    /// The control plane (an http:// base URL). The relay asks it for parents:
    /// GET {control}/v1/route/{namespace}?relay={relay-id} → {"upstream": [URL, ...]}, and
    /// reports to it every interval: POST {control}/v1/relays/heartbeat (its URLs, capacity,
    /// load, broadcasts, parents); a response with "drain": true drains the relay like SIGTERM.
    #[arg(long, value_name = "URL", value_parser = crate::config::parse_control)]
    #[serde(with = "crate::config::serde_control", default)]
    pub control: Option<Url>,

    /// The host name (or IP address) clients and child relays reach this relay at, as reported
    /// to the control plane in heartbeats: moqt://HOST:PORT and https://HOST:PORT/ with the
    /// bound UDP port.
    #[arg(long, value_name = "HOST", default_value = "localhost", value_parser = crate::config::parse_public_host)]
    #[serde(deserialize_with = "crate::config::deserialize_public_host")]
    pub public_host: String,

    /// This relay's region (e.g. eu-west), reported to the control plane, which prefers relays
    /// in the viewer's region.
    #[arg(long, value_name = "REGION", default_value = "")]
    pub region: String,

    /// Most viewer sessions this relay offers the control plane for assignment
    /// [default: --max-sessions].
    #[arg(long, value_name = "N")]
    pub capacity_viewers: Option<u32>,

    /// Most egress this relay offers the control plane, in bits per second (suffixes Kbps,
    /// Mbps, Gbps accepted, decimal); 0 = not limited by egress.
    #[arg(long, value_name = "BPS", default_value = "0", value_parser = crate::config::parse_bitrate)]
    #[serde(with = "crate::config::serde_bitrate")]
    pub capacity_egress: u64,
}

/// The interval before the control plane has named one.
pub const FIRST_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest and longest interval accepted from the control plane (an answer outside is
/// clamped, so a bad answer can neither spin the relay nor silence it).
pub const INTERVAL_RANGE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(60));

/// While heartbeats keep failing, a warning is logged at most this often (the others at debug).
pub const WARN_EVERY: Duration = Duration::from_secs(30);

/// Clock ticks per second in `/proc/self/stat` (`USER_HZ`, 100 on every Linux architecture
/// the relay is built for).
const TICKS_PER_SECOND: u64 = 100;

/// What a [`Reporter`] says about the relay that does not change while it runs.
#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    /// The control plane's base URL (`--control`).
    pub control: Url,
    /// The relay's id (`--relay-id`).
    pub relay_id: String,
    /// Where clients reach the relay (see [`relay_urls`]).
    pub urls: RelayUrls,
    /// The development certificate's SHA-256 (hex), with `--dev-cert`.
    pub cert_sha256: Option<String>,
    /// `--region`.
    pub region: String,
    /// `--capacity-viewers`, `--capacity-egress`.
    pub capacity: Capacity,
    /// How long one heartbeat request may take.
    pub timeout: Duration,
}

/// Why a heartbeat failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    /// The HTTP client could not be built or the endpoint URL formed.
    #[error("setting up the control plane client: {0}")]
    Setup(String),
    /// The request did not get an answer (connect error, timeout).
    #[error("POST {url}: {reason}")]
    Unreachable {
        /// The heartbeat endpoint.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The control plane refused the heartbeat.
    #[error("POST {url}: HTTP {status}: {message}")]
    Refused {
        /// The heartbeat endpoint.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The error body's `error: message`, or the status text.
        message: String,
    },
    /// The answer is not a [`HeartbeatResponse`].
    #[error("POST {url}: unreadable answer: {reason}")]
    Unreadable {
        /// The heartbeat endpoint.
        url: String,
        /// Why it could not be read.
        reason: String,
    },
    /// The heartbeat this relay built fails [`Heartbeat::validate`] (a relay bug or a bad flag).
    #[error("invalid heartbeat: {0}")]
    Invalid(String),
}

/// The registries a heartbeat reports on.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Sessions and bytes out.
    pub metrics: Arc<Metrics>,
    /// Tracks carried, their subscribers and parents.
    pub tracks: Arc<Tracks>,
    /// Namespaces published here.
    pub namespaces: Arc<Namespaces>,
}

/// Sends heartbeats to the control plane; [`run`](Self::run) is its loop.
#[derive(Debug)]
pub struct Reporter {
    config: HeartbeatConfig,
    endpoint: Url,
    client: reqwest::Client,
}

impl Reporter {
    /// A reporter for `config`; no request is sent until [`run`](Self::run).
    pub fn new(config: HeartbeatConfig) -> Result<Self, HeartbeatError> {
        let base = config.control.as_str().trim_end_matches('/');
        let endpoint = Url::parse(&format!("{base}{HEARTBEAT_PATH}"))
            .map_err(|e| HeartbeatError::Setup(format!("{base}{HEARTBEAT_PATH} is not a URL: {e}")))?;
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| HeartbeatError::Setup(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            config,
            endpoint,
            client,
        })
    }

    /// Where heartbeats go: `{control}/v1/relays/heartbeat`.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// Send a heartbeat every interval until dropped. `draining` turns true when the relay
    /// starts draining (a heartbeat saying so goes out at once); `drain` is notified (once) when
    /// the control plane orders a drain.
    pub async fn run(self, sources: Sources, mut draining: watch::Receiver<bool>, drain: Arc<Notify>) {
        let mut interval = FIRST_INTERVAL;
        let mut sampler = LoadSampler::default();
        let mut warnings = WarnLimiter::default();
        let mut drain_ordered = false;
        tracing::info!(control = %self.endpoint, "sending heartbeats to the control plane");
        loop {
            let is_draining = *draining.borrow_and_update();
            let heartbeat = self.heartbeat(&sources, &mut sampler, is_draining);
            match self.send(&heartbeat).await {
                Ok(answer) => {
                    if warnings.succeeded() {
                        tracing::info!(control = %self.endpoint, "heartbeats reach the control plane again");
                    }
                    interval =
                        Duration::from_millis(answer.interval_ms).clamp(INTERVAL_RANGE.0, INTERVAL_RANGE.1);
                    if answer.drain && !drain_ordered {
                        drain_ordered = true;
                        tracing::info!("the control plane ordered a drain");
                        drain.notify_one();
                    }
                }
                Err(error) => match warnings.failed(Instant::now()) {
                    Some(suppressed) => tracing::warn!(
                        %error,
                        retry_in = ?interval,
                        suppressed,
                        "heartbeat to the control plane failed; retrying"
                    ),
                    None => tracing::debug!(%error, "heartbeat to the control plane failed"),
                },
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                Ok(()) = draining.changed() => {}
            }
        }
    }

    /// The heartbeat describing the relay now.
    pub fn heartbeat(&self, sources: &Sources, sampler: &mut LoadSampler, draining: bool) -> Heartbeat {
        let metrics = &sources.metrics;
        let (egress_bps, cpu) = sampler.sample(Instant::now(), metrics.bytes_out.get(), process_cpu_ticks());
        let tracks = sources.tracks.all().into_iter().map(|t| TrackSummary {
            namespace: t.name.namespace.to_path(),
            subscribers: t.subscribers(),
            parent: t.parent_url().map(String::from),
            live: t.is_live(),
            viewers: t.viewers(),
            chat_room: chat_room(&t.name.name, u64::MAX),
        });
        let published = sources
            .namespaces
            .namespaces()
            .iter()
            .map(|n| n.to_path())
            .collect::<Vec<_>>();
        let (broadcasts, parents) = broadcasts(tracks, published);
        Heartbeat {
            relay_id: self.config.relay_id.clone(),
            urls: self.config.urls.clone(),
            cert_sha256: self.config.cert_sha256.clone(),
            region: self.config.region.clone(),
            capacity: self.config.capacity,
            load: Load {
                sessions: u32::try_from(metrics.sessions_total().max(0)).unwrap_or(u32::MAX),
                egress_bps,
                cpu,
            },
            broadcasts,
            parents,
            draining,
        }
    }

    async fn send(&self, heartbeat: &Heartbeat) -> Result<HeartbeatResponse, HeartbeatError> {
        heartbeat
            .validate()
            .map_err(|e| HeartbeatError::Invalid(e.to_string()))?;
        let url = self.endpoint.to_string();
        let response = self
            .client
            .post(self.endpoint.clone())
            .json(heartbeat)
            .send()
            .await
            .map_err(|e| HeartbeatError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let status = response.status();
        if !status.is_success() {
            let message = match response.json::<ErrorBody>().await {
                Ok(body) => format!("{}: {}", body.error, body.message),
                Err(_) => status.canonical_reason().unwrap_or("error").to_owned(),
            };
            return Err(HeartbeatError::Refused {
                url,
                status: status.as_u16(),
                message,
            });
        }
        response
            .json::<HeartbeatResponse>()
            .await
            .map_err(|e| HeartbeatError::Unreadable {
                url,
                reason: e.to_string(),
            })
    }
}

/// The relay's public URLs: `moqt://HOST:PORT` and `https://HOST:PORT/` on the bound UDP port,
/// and `http://` the HTTP listener's bound address (`HOST` when it is bound to every
/// interface). `public_host` is a name or an IP address, IPv6 in brackets.
pub fn relay_urls(public_host: &str, udp: SocketAddr, http: SocketAddr) -> RelayUrls {
    let port = udp.port();
    let http = if http.ip().is_unspecified() {
        format!("http://{public_host}:{}", http.port())
    } else {
        format!("http://{http}")
    };
    RelayUrls {
        moqt: Some(format!("moqt://{public_host}:{port}")),
        webtransport: Some(format!("https://{public_host}:{port}/")),
        http: Some(http),
    }
}

/// One track as a heartbeat sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackSummary {
    /// Its namespace, `/`-separated.
    pub namespace: String,
    /// Downstream subscriptions reading it.
    pub subscribers: usize,
    /// The parent URL feeding it, when a parent does.
    pub parent: Option<String>,
    /// Whether objects flow (pending and ended tracks are not carried).
    pub live: bool,
    /// Of `subscribers`, those that are viewers, not child relays.
    pub viewers: usize,
    /// The room, when it is a chat room's track (`chat/<room>`).
    pub chat_room: Option<u64>,
}

/// The broadcasts and parent links a heartbeat lists, from the tracks at the relay and the
/// namespaces published on it, sorted by namespace and bounded by [`MAX_HEARTBEAT_ITEMS`].
///
/// - A namespace is carried when one of its tracks is live or it is published here.
/// - `viewers` is the most subscribers any one of its tracks has: a viewer subscribes each
///   track it plays once, so this counts viewer sessions (and child relays) without counting a
///   viewer of audio and video twice.
/// - `local` is true when it is published here or a live track of it comes from a publisher on
///   this relay (not from a parent).
/// - Each distinct (namespace, parent URL) of a live track is a parent link.
/// - `rooms` has the viewers (child relays left out) of each live `chat/<room>` track that has
///   any (at most [`MAX_HEARTBEAT_ITEMS`] rooms over all broadcasts).
///
/// Names the control plane would refuse (empty, too long, control characters) are left out,
/// so one odd namespace never costs the whole heartbeat.
pub fn broadcasts(
    tracks: impl IntoIterator<Item = TrackSummary>,
    published: impl IntoIterator<Item = String>,
) -> (Vec<BroadcastLoad>, Vec<ParentLink>) {
    let mut carried: BTreeMap<String, BroadcastLoad> = BTreeMap::new();
    let mut links: BTreeSet<(String, String)> = BTreeSet::new();
    let mut rooms = 0;
    for namespace in published.into_iter().filter(|n| reportable(n)) {
        carried
            .entry(namespace.clone())
            .or_insert_with(|| empty_load(namespace))
            .local = true;
    }
    for track in tracks {
        if !track.live || !reportable(&track.namespace) {
            continue;
        }
        let entry = carried
            .entry(track.namespace.clone())
            .or_insert_with(|| empty_load(track.namespace.clone()));
        let subscribers = u32::try_from(track.subscribers).unwrap_or(u32::MAX);
        entry.viewers = entry.viewers.max(subscribers);
        if let Some(room) = track.chat_room.filter(|_| track.viewers > 0) {
            let viewers = u32::try_from(track.viewers).unwrap_or(u32::MAX);
            if rooms < MAX_HEARTBEAT_ITEMS && entry.rooms.insert(room, viewers).is_none() {
                rooms += 1;
            }
        }
        match track.parent {
            Some(parent) if reportable(&parent) => {
                links.insert((track.namespace, parent));
            }
            Some(_) => {}
            None => entry.local = true,
        }
    }
    let broadcasts = carried.into_values().take(MAX_HEARTBEAT_ITEMS).collect();
    let parents = links
        .into_iter()
        .take(MAX_HEARTBEAT_ITEMS)
        .map(|(namespace, upstream)| ParentLink { namespace, upstream })
        .collect();
    (broadcasts, parents)
}

fn empty_load(namespace: String) -> BroadcastLoad {
    BroadcastLoad {
        namespace,
        viewers: 0,
        local: false,
        rooms: BTreeMap::new(),
    }
}

/// A name [`Heartbeat::validate`] accepts.
fn reportable(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && !name.chars().any(char::is_control)
}

/// Turns counter readings into rates over the interval between two samples.
#[derive(Debug, Clone, Default)]
pub struct LoadSampler {
    last: Option<Reading>,
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    bytes_out: u64,
    cpu_ticks: Option<u64>,
}

impl LoadSampler {
    /// Record the readings at `now` (`bytes_out` from the `bytes_out` counter, `cpu_ticks` the
    /// process's user + system clock ticks, `None` without `/proc`) and return the egress in
    /// bits per second and the CPU in cores since the previous sample. The first sample, and
    /// a figure whose reading is missing, gives 0.
    pub fn sample(&mut self, now: Instant, bytes_out: u64, cpu_ticks: Option<u64>) -> (u64, f64) {
        let current = Reading {
            at: now,
            bytes_out,
            cpu_ticks,
        };
        let Some(last) = self.last.replace(current) else {
            return (0, 0.0);
        };
        let elapsed = now.saturating_duration_since(last.at);
        let egress = bits_per_second(bytes_out.saturating_sub(last.bytes_out), elapsed);
        let cpu = match (last.cpu_ticks, cpu_ticks) {
            (Some(before), Some(after)) => cores(after.saturating_sub(before), TICKS_PER_SECOND, elapsed),
            _ => 0.0,
        };
        (egress, cpu)
    }
}

/// `bytes` sent over `elapsed`, in bits per second (0 over no time).
pub fn bits_per_second(bytes: u64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return 0;
    }
    // `as` saturates for floats: an absurd figure becomes u64::MAX, never a panic.
    (bytes as f64 * 8.0 / secs).round() as u64
}

/// CPU `ticks` (at `ticks_per_second`) used over `elapsed`, in cores (0 over no time).
pub fn cores(ticks: u64, ticks_per_second: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 || ticks_per_second == 0 {
        return 0.0;
    }
    ticks as f64 / ticks_per_second as f64 / secs
}

/// The process's user + system CPU time in clock ticks, from `/proc/self/stat`; `None` where
/// there is no `/proc`.
fn process_cpu_ticks() -> Option<u64> {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|text| parse_cpu_ticks(&text))
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field 2)
/// is in parentheses and may hold spaces and parentheses, so fields are counted after the last
/// `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts at field 3 (state): utime is field 14, the 12th from here.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

/// Rate-limits the warning for failing heartbeats.
#[derive(Debug, Default)]
struct WarnLimiter {
    last_warning: Option<Instant>,
    suppressed: u32,
    failing: bool,
}

impl WarnLimiter {
    /// A heartbeat failed at `now`: `Some(failures not warned about since the last warning)`
    /// when this one should be a warning.
    fn failed(&mut self, now: Instant) -> Option<u32> {
        self.failing = true;
        match self.last_warning {
            Some(at) if now.saturating_duration_since(at) < WARN_EVERY => {
                self.suppressed = self.suppressed.saturating_add(1);
                None
            }
            _ => {
                self.last_warning = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    /// A heartbeat succeeded: true when it follows failures (worth an info line).
    fn succeeded(&mut self) -> bool {
        self.last_warning = None;
        self.suppressed = 0;
        std::mem::take(&mut self.failing)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn egress_and_cpu_are_rates_over_the_interval() {
        let t0 = Instant::now();
        let mut sampler = LoadSampler::default();
        assert_eq!(sampler.sample(t0, 1_000, Some(50)), (0, 0.0), "first sample");
        // 125 000 bytes and 50 ticks (0.5 s of CPU) over 2 s: 500 kbit/s, a quarter core.
        let (egress, cpu) = sampler.sample(t0 + Duration::from_secs(2), 126_000, Some(100));
        assert_eq!(egress, 500_000);
        assert!((cpu - 0.25).abs() < 1e-9, "{cpu}");
        // Without /proc the CPU figure is 0, the egress still counts.
        let (egress, cpu) = sampler.sample(t0 + Duration::from_secs(3), 127_000, None);
        assert_eq!((egress, cpu), (8_000, 0.0));
        // A counter that went backwards, or no time passing, gives 0 rather than a panic.
        let (egress, cpu) = sampler.sample(t0 + Duration::from_secs(3), 0, Some(10));
        assert_eq!((egress, cpu), (0, 0.0));
    }

    #[test]
    fn rate_helpers_handle_edges() {
        assert_eq!(bits_per_second(1, Duration::ZERO), 0);
        assert_eq!(bits_per_second(u64::MAX, Duration::from_nanos(1)), u64::MAX);
        assert_eq!(bits_per_second(1_000, Duration::from_millis(500)), 16_000);
        assert_eq!(cores(100, 0, Duration::from_secs(1)), 0.0);
        assert!((cores(300, 100, Duration::from_secs(2)) - 1.5).abs() < 1e-9);
    }

    #[test]
    fn proc_stat_ticks_are_utime_plus_stime() {
        let stat = "4242 (banyan relay) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    731 29 0 0 20 0 9 0 100 123456789 2048 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(760));
        // A command name with a ')' in it.
        let stat = "7 (a) b) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_cpu_ticks(stat), Some(11));
        assert_eq!(parse_cpu_ticks("7 (x) R 1 2"), None);
        assert_eq!(parse_cpu_ticks(""), None);
        // This process's own figure parses where /proc exists.
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(process_cpu_ticks().is_some());
        }
    }

    fn track(namespace: &str, subscribers: usize, parent: Option<&str>, live: bool) -> TrackSummary {
        TrackSummary {
            namespace: namespace.into(),
            subscribers,
            parent: parent.map(Into::into),
            live,
            viewers: subscribers,
            chat_room: None,
        }
    }

    fn chat(namespace: &str, room: u64, subscribers: usize, relays: usize) -> TrackSummary {
        TrackSummary {
            chat_room: Some(room),
            viewers: subscribers - relays,
            ..track(namespace, subscribers, None, true)
        }
    }

    #[test]
    fn broadcasts_group_tracks_by_namespace() {
        let (broadcasts, parents) = broadcasts(
            [
                track("live/a", 3, None, true),
                track("live/a", 5, None, true),
                track("live/b", 2, Some("moqt://p1:1"), true),
                track("live/b", 4, Some("moqt://p2:1"), true),
                track("live/b", 1, Some("moqt://p2:1"), true),
                track("live/pending", 9, None, false),
                track("", 1, None, true),
                track("bad\nname", 1, None, true),
            ],
            ["live/c".to_string(), "live/a".to_string(), String::new()],
        );
        assert_eq!(
            broadcasts,
            vec![
                BroadcastLoad {
                    namespace: "live/a".into(),
                    viewers: 5,
                    local: true,
                    rooms: BTreeMap::new(),
                },
                BroadcastLoad {
                    namespace: "live/b".into(),
                    viewers: 4,
                    local: false,
                    rooms: BTreeMap::new(),
                },
                BroadcastLoad {
                    namespace: "live/c".into(),
                    viewers: 0,
                    local: true,
                    rooms: BTreeMap::new(),
                },
            ]
        );
        let links: Vec<(&str, &str)> = parents
            .iter()
            .map(|p| (p.namespace.as_str(), p.upstream.as_str()))
            .collect();
        assert_eq!(links, [("live/b", "moqt://p1:1"), ("live/b", "moqt://p2:1")]);
    }

    #[test]
    fn chat_room_tracks_report_their_subscribers_per_room() {
        let (carried, _) = broadcasts(
            [
                track("live/a", 9, None, true),
                chat("live/a", 0, 4, 0),
                // Child relays carrying a room are not its viewers.
                chat("live/a", 3, 3, 2),
                chat("live/a", 5, 2, 2),
                TrackSummary {
                    live: false,
                    ..chat("live/a", 6, 2, 0)
                },
                chat("live/b", 0, 7, 0),
            ],
            [],
        );
        let rooms: Vec<_> = carried.iter().map(|b| (b.namespace.as_str(), &b.rooms)).collect();
        assert_eq!(
            rooms,
            [
                ("live/a", &BTreeMap::from([(0, 4), (3, 1)])),
                ("live/b", &BTreeMap::from([(0, 7)])),
            ]
        );
        assert_eq!(
            carried[0].viewers, 9,
            "viewers is still the busiest track's subscribers"
        );
        let many = (0..MAX_HEARTBEAT_ITEMS as u64 + 3).map(|r| chat("live/a", r, 1, 0));
        let (bounded, _) = broadcasts(many, []);
        assert_eq!(bounded[0].rooms.len(), MAX_HEARTBEAT_ITEMS);
    }

    #[test]
    fn broadcasts_are_bounded() {
        let many = (0..MAX_HEARTBEAT_ITEMS + 5).map(|i| format!("ns/{i:06}"));
        let (broadcasts, _) = broadcasts([], many);
        assert_eq!(broadcasts.len(), MAX_HEARTBEAT_ITEMS);
    }

    #[test]
    fn urls_use_the_public_host_and_bound_ports() {
        let urls = relay_urls(
            "relay.example",
            "[::]:4443".parse().unwrap(),
            "127.0.0.1:9090".parse().unwrap(),
        );
        assert_eq!(urls.moqt.as_deref(), Some("moqt://relay.example:4443"));
        assert_eq!(urls.webtransport.as_deref(), Some("https://relay.example:4443/"));
        assert_eq!(urls.http.as_deref(), Some("http://127.0.0.1:9090"));
        let urls = relay_urls(
            "[2001:db8::7]",
            "[::]:1".parse().unwrap(),
            "[::]:2".parse().unwrap(),
        );
        assert_eq!(urls.moqt.as_deref(), Some("moqt://[2001:db8::7]:1"));
        assert_eq!(urls.http.as_deref(), Some("http://[2001:db8::7]:2"));
        let urls = relay_urls("h", "[::]:1".parse().unwrap(), "[::1]:2".parse().unwrap());
        assert_eq!(urls.http.as_deref(), Some("http://[::1]:2"));
    }

    #[test]
    fn failures_warn_at_most_every_interval() {
        let t0 = Instant::now();
        let mut w = WarnLimiter::default();
        assert_eq!(w.failed(t0), Some(0));
        assert_eq!(w.failed(t0 + Duration::from_secs(1)), None);
        assert_eq!(w.failed(t0 + Duration::from_secs(2)), None);
        assert_eq!(w.failed(t0 + WARN_EVERY), Some(2));
        assert!(w.succeeded());
        assert!(!w.succeeded());
        assert_eq!(w.failed(t0 + WARN_EVERY + Duration::from_secs(1)), Some(0));
    }

    #[test]
    fn endpoint_joins_the_base_url() {
        let config = |control: &str| HeartbeatConfig {
            control: Url::parse(control).unwrap(),
            relay_id: "r".into(),
            urls: RelayUrls::default(),
            cert_sha256: None,
            region: String::new(),
            capacity: Capacity::default(),
            timeout: Duration::from_secs(1),
        };
        let r = Reporter::new(config("http://control:8080")).unwrap();
        assert_eq!(r.endpoint().as_str(), "http://control:8080/v1/relays/heartbeat");
        let r = Reporter::new(config("http://control:8080/base/")).unwrap();
        assert_eq!(
            r.endpoint().as_str(),
            "http://control:8080/base/v1/relays/heartbeat"
        );
    }
}
