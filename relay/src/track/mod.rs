//! Tracks at this relay: one entry per Full Track Name, holding exactly one upstream copy
//! (coalescing) and the cache every local subscriber reads from.
//!
//! The first SUBSCRIBE for a track creates its entry and starts the upstream task: find the
//! publisher, subscribe once, and ingest objects into the cache. Later SUBSCRIBEs join the
//! same entry. When the last subscriber leaves, the entry lingers briefly (a viewer who
//! reconnects finds it warm), then unsubscribes upstream and disappears.

pub mod cache;
mod feed;
pub mod forward;
mod ingest;
mod local;
mod table;

pub use table::{TrackWatch, Tracks};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use banyan_moq::coding::{FullTrackName, KeyValuePairs, Location, PublishDoneCode, RequestErrorCode};
use banyan_moq::data::ObjectDatagram;
use banyan_moq::message::GroupOrder;
use banyan_moq::session::{Subscription, TrackSender};
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};
use url::Url;

use crate::metrics::Metrics;
use crate::track::cache::CacheObserver;
use banyan_moq::track::{Budget, LatencyBudget, Limits, TrackConsumer, TrackProducer};

/// Where a track stands.
#[derive(Clone, Debug)]
pub enum TrackState {
    /// Waiting for the upstream SUBSCRIBE_OK.
    Pending,
    /// Nobody publishes the track here and no parent knows it: held while subscribers that
    /// asked for a rendezvous (RENDEZVOUS_TIMEOUT) wait for a publisher to appear. Each
    /// subscriber gives up at its own deadline.
    Waiting,
    /// Objects are flowing (or will).
    Live(LiveInfo),
    /// The publisher ended the track.
    Ended {
        /// The PUBLISH_DONE status to pass on.
        code: PublishDoneCode,
        /// Why.
        reason: String,
    },
    /// The upstream subscription failed.
    Failed {
        /// The REQUEST_ERROR code to pass on.
        code: RequestErrorCode,
        /// Why.
        reason: String,
    },
}

/// What downstream SUBSCRIBE_OKs repeat from upstream.
#[derive(Clone, Debug, Default)]
pub struct LiveInfo {
    /// Track properties from the publisher.
    pub track_properties: KeyValuePairs,
    /// The publisher's group order.
    pub group_order: Option<GroupOrder>,
    /// The Largest Object upstream reported when it accepted: objects up to it exist
    /// upstream even while this relay's cache has not received them yet.
    pub largest: Option<Location>,
}

/// How a track serves late and slow subscribers (part of
/// [`RelayConfig`](crate::config::RelayConfig)).
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TrackSettings {
    /// How many groups a subscriber may fall behind the newest before its older group streams
    /// are reset and it is skipped forward to the newest group.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub max_lag_groups: u64,

    /// How late a group may reach a subscriber: once a newer group has begun, an older group
    /// the subscriber has not acknowledged within this (plus the round trip) has its streams
    /// reset, so a viewer on a path slower than the stream skips groups instead of falling
    /// behind live (half that long after, it already goes after the newer groups). The round
    /// trip is the lowest the subscriber has shown. `auto` is one GOP (the track's measured time between group starts, at
    /// least 200 ms); `off` never skips for lateness; or a duration (e.g. 1500ms). Interaction
    /// tracks (likes, chat, events) are never skipped for lateness.
    #[arg(long, value_name = "auto|off|DURATION", default_value = "auto")]
    #[serde(with = "budget_serde")]
    pub latency_budget: BudgetSetting,

    /// The longest a SUBSCRIBE for a track nobody publishes (yet) is held waiting for a
    /// publisher: a SUBSCRIBE asks with RENDEZVOUS_TIMEOUT and gets the lesser of the two; one
    /// without the parameter is refused at once with DOES_NOT_EXIST (draft-18) (e.g. 5s, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    #[serde(with = "banyan_control::layered::serde_duration")]
    pub rendezvous_max: Duration,
}

/// `--latency-budget`: a [`LatencyBudget`] written `auto`, `off` or as a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetSetting(pub LatencyBudget);

impl std::str::FromStr for BudgetSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(BudgetSetting(LatencyBudget::Auto)),
            "off" => Ok(BudgetSetting(LatencyBudget::Off)),
            other => humantime::parse_duration(other)
                .map(|d| BudgetSetting(LatencyBudget::Fixed(d)))
                .map_err(|e| {
                    format!("expected `auto`, `off` or a duration like 1500ms or 2s, got {other:?}: {e}")
                }),
        }
    }
}

impl std::fmt::Display for BudgetSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            LatencyBudget::Auto => f.write_str("auto"),
            LatencyBudget::Off => f.write_str("off"),
            LatencyBudget::Fixed(d) => write!(f, "{}", humantime::format_duration(d)),
        }
    }
}

/// [`BudgetSetting`] in TOML: the same text as on the command line.
mod budget_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::BudgetSetting;

    pub fn serialize<S: Serializer>(b: &BudgetSetting, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&b.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BudgetSetting, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Tuning for tracks, from the relay configuration.
#[derive(Clone, Debug)]
pub struct TrackConfig {
    /// Groups kept per track.
    pub cache_groups: usize,
    /// The longest a track nobody publishes is held for subscribers waiting for a publisher
    /// (the cap on RENDEZVOUS_TIMEOUT).
    pub rendezvous_max: Duration,
    /// How long a track without subscribers keeps its upstream subscription.
    pub linger: Duration,
    /// How long a live track whose parent was lost keeps trying other parents before it ends.
    pub failover_window: Duration,
}

/// One track at this relay.
#[derive(Debug)]
pub struct Track {
    /// Its name.
    pub name: FullTrackName,
    /// Writes its groups (the upstream ingest, or this relay for a local track).
    pub producer: TrackProducer,
    /// Reads its recent groups (forwarders, FETCH).
    pub cache: TrackConsumer,
    state: watch::Sender<TrackState>,
    subscribers: watch::Sender<usize>,
    /// Of those, the ones from child relays (requests carrying a relay path).
    relay_subscribers: AtomicUsize,
    /// The others, viewers: how many subscriptions of this track each viewer session has.
    viewer_sessions: Mutex<HashMap<u64, usize>>,
    datagram_senders: Mutex<HashMap<u64, TrackSender>>,
    next_subscriber: AtomicU64,
    closing: AtomicBool,
    /// The parent relay feeding this track, when a parent does.
    parent: Mutex<Option<ParentRef>>,
    /// While the track waits for a publisher ([`TrackState::Waiting`]): where a PUBLISH of
    /// this very track hands its subscription, so the held SUBSCRIBEs proceed with it.
    rendezvous: Mutex<Option<oneshot::Sender<Subscription>>>,
    /// Whether a publisher pushed it (PUBLISH): SUBSCRIBE_TRACKS hears of these.
    pushed: AtomicBool,
    /// Set when another session's PUBLISH of the same track replaces this pushed track.
    replaced: watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

/// The parent relay a track comes from.
#[derive(Debug, Clone)]
struct ParentRef {
    /// Its URL, as dialled.
    url: Url,
    /// Its Hop ID, when it declared one.
    hop: Option<u64>,
}

impl Track {
    fn new(name: FullTrackName, config: &TrackConfig, budget: Arc<Budget>, metrics: Arc<Metrics>) -> Self {
        let producer = TrackProducer::new(Limits {
            max_groups: config.cache_groups,
            budget,
            observer: Arc::new(CacheObserver(metrics.clone())),
        });
        Self {
            name,
            cache: producer.consume(),
            producer,
            state: watch::Sender::new(TrackState::Pending),
            subscribers: watch::Sender::new(0),
            relay_subscribers: AtomicUsize::new(0),
            viewer_sessions: Mutex::new(HashMap::new()),
            datagram_senders: Mutex::new(HashMap::new()),
            next_subscriber: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            parent: Mutex::new(None),
            rendezvous: Mutex::new(None),
            pushed: AtomicBool::new(false),
            replaced: watch::Sender::new(false),
            metrics,
        }
    }

    /// Whether a publisher pushed this track with PUBLISH.
    pub fn is_pushed(&self) -> bool {
        self.pushed.load(Ordering::SeqCst)
    }

    /// What a PUBLISH of this track to a subscriber repeats: the publisher's track
    /// properties, group order and the Largest Object.
    pub fn live_info(&self) -> Option<LiveInfo> {
        match &*self.state.borrow() {
            TrackState::Live(info) => Some(LiveInfo {
                largest: self.largest(),
                ..info.clone()
            }),
            _ => None,
        }
    }

    /// The Hop ID of the parent relay this track comes from, if it comes from one that
    /// declared it. A request from that relay for this track would loop.
    pub fn parent_hop(&self) -> Option<u64> {
        self.parent.lock().as_ref().and_then(|p| p.hop)
    }

    /// The URL of the parent relay this track comes from (the last one, after a failover),
    /// when a parent feeds it.
    pub fn parent_url(&self) -> Option<Url> {
        self.parent.lock().as_ref().map(|p| p.url.clone())
    }

    /// How many downstream subscriptions read this track now.
    pub fn subscribers(&self) -> usize {
        *self.subscribers.borrow()
    }

    /// How many of [`Track::subscribers`] are viewers: not child relays (whose requests carry
    /// a relay path).
    pub fn viewers(&self) -> usize {
        self.subscribers()
            .saturating_sub(self.relay_subscribers.load(Ordering::SeqCst))
    }

    /// The viewer sessions reading this track now (their ids at this relay): a viewer of
    /// several tracks of a broadcast (audio and video, or renditions it switches between) is
    /// one session, counted once per broadcast ([`Tracks::viewers_by_namespace`]).
    pub fn viewer_sessions(&self) -> Vec<u64> {
        self.viewer_sessions.lock().keys().copied().collect()
    }

    /// True while objects flow (or will): upstream accepted the subscription and has not
    /// ended it.
    pub fn is_live(&self) -> bool {
        matches!(*self.state.borrow(), TrackState::Live(_))
    }

    /// Wait until the track is live (or has failed / ended), or until `rendezvous` (from the
    /// call) has passed while it waits for a publisher ([`TrackState::Waiting`]): then the
    /// state returned is [`TrackState::Waiting`]. The time upstream takes to answer once a
    /// publisher is found does not count against `rendezvous`.
    pub async fn ready(&self, rendezvous: Duration) -> TrackState {
        let deadline = tokio::time::Instant::now() + rendezvous;
        let mut rx = self.state.subscribe();
        loop {
            let state = rx.borrow_and_update().clone();
            let changed = match state {
                TrackState::Pending => rx.changed().await,
                TrackState::Waiting => match tokio::time::timeout_at(deadline, rx.changed()).await {
                    Ok(changed) => changed,
                    Err(_) => return TrackState::Waiting,
                },
                state => return state,
            };
            if changed.is_err() {
                return TrackState::Failed {
                    code: RequestErrorCode::InternalError,
                    reason: "track gone".into(),
                };
            }
        }
    }

    /// The Largest Object known to exist: the newest cached, or the one upstream reported
    /// when it accepted if that is newer (its objects are still on their way). SUBSCRIBE_OK
    /// and the Joining Location report this, so a subscriber that FETCHes up to it asks for
    /// objects that exist.
    pub fn largest(&self) -> Option<Location> {
        let upstream = match &*self.state.borrow() {
            TrackState::Live(info) => info.largest,
            _ => None,
        };
        self.cache.largest().max(upstream)
    }

    /// Wait (at most `limit`) until the cache holds every object up to `last` that upstream
    /// reported as existing, so a FETCH answered from the cache does not miss objects still
    /// in flight from upstream. Returns at once when nothing is owed.
    pub async fn caught_up(&self, last: Location, limit: Duration) {
        let Some(owed) = self.largest().map(|l| l.min(last)) else {
            return;
        };
        let _ = tokio::time::timeout(limit, self.cache.reached(owed)).await;
    }

    /// A receiver for state changes (to notice the end of the track).
    pub fn state(&self) -> watch::Receiver<TrackState> {
        self.state.subscribe()
    }

    /// Register a subscriber's datagram sender; datagram objects go to every registered one.
    pub fn add_datagram_sender(&self, sender: TrackSender) -> u64 {
        let id = self.next_subscriber.fetch_add(1, Ordering::Relaxed);
        self.datagram_senders.lock().insert(id, sender);
        id
    }

    /// Unregister a datagram sender.
    pub fn remove_datagram_sender(&self, id: u64) {
        self.datagram_senders.lock().remove(&id);
    }

    fn set_state(&self, state: TrackState) {
        self.state.send_replace(state);
    }

    fn fan_out_datagram(&self, datagram: &ObjectDatagram) {
        let senders: Vec<TrackSender> = self.datagram_senders.lock().values().cloned().collect();
        for sender in senders {
            if sender.send_datagram(datagram.clone()).is_ok() {
                self.metrics.objects_out.inc();
                self.metrics.bytes_out.inc_by(datagram.payload.len() as u64);
            }
        }
    }
}

/// Who subscribes to a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscriber {
    /// A viewer, by its session's id at this relay.
    Viewer(u64),
    /// A child relay (its request carries a relay path): the viewers behind it are its own
    /// to count.
    Relay,
}

/// Counts a subscriber of a track for as long as it lives.
#[derive(Debug)]
pub struct SubscriberGuard {
    track: Arc<Track>,
    subscriber: Subscriber,
}

impl SubscriberGuard {
    /// Count a subscriber of a track this relay already has (one it PUBLISHes to a
    /// SUBSCRIBE_TRACKS subscriber).
    pub fn join(track: &Arc<Track>, subscriber: Subscriber) -> Self {
        Self::new(track.clone(), subscriber)
    }

    /// Count a subscriber.
    fn new(track: Arc<Track>, subscriber: Subscriber) -> Self {
        match subscriber {
            Subscriber::Relay => {
                track.relay_subscribers.fetch_add(1, Ordering::SeqCst);
            }
            Subscriber::Viewer(session) => {
                *track.viewer_sessions.lock().entry(session).or_default() += 1;
            }
        }
        track.subscribers.send_modify(|n| *n += 1);
        Self { track, subscriber }
    }

    /// The track.
    pub fn track(&self) -> &Arc<Track> {
        &self.track
    }
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.track.subscribers.send_modify(|n| *n = n.saturating_sub(1));
        match self.subscriber {
            Subscriber::Relay => {
                self.track.relay_subscribers.fetch_sub(1, Ordering::SeqCst);
            }
            Subscriber::Viewer(session) => {
                let mut sessions = self.track.viewer_sessions.lock();
                if let Some(n) = sessions.get_mut(&session) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        sessions.remove(&session);
                    }
                }
            }
        }
    }
}
