//! The relay's interaction state per broadcast, wired to sessions and tracks.
//!
//! At the broadcast's origin (its namespace is published here, or this relay has no
//! parents) accepted likes are summed and written once per window to the local `likes`
//! track, the live viewer count (own viewers plus child relays' reports) to `viewers` when it
//! changed, comments to `chat/<room>` and gifts, once recorded in the ledger, to `events`:
//! tracks that flow down the tree like video. Elsewhere the relay publishes its own
//! `interact` track to a parent: its sum as a LIKE datagram every window, its viewer count
//! as a VIEWERS datagram on change and every [`REPORT_REFRESH`], and accepted comments and
//! gifts in order on one stream.
//!
//! A broadcast's state lives while it is used (an `interact` publication is being served,
//! viewers of its media are counted here, or, at the origin, the publisher is here) and for
//! [`InteractConfig::idle`] after; then a sweep frees it: the origin ends its down tracks, a
//! relay sends its final like total to its parent reliably and ends its publication. A broadcast used again later starts afresh,
//! under a new like source id towards the parent so its new count never hides behind the old.
//!
//! Each broadcast has tasks of the hub's own (its `likes` writer and moderation start at the
//! origin; its publication to the parent and its `mod` follower elsewhere); the hub owns them,
//! and they stop with its sweeper.
//!
//! # Module map
//! - `mod.rs`: [`Hub`], its table of broadcasts (admission up to a maximum, the origin or edge
//!   role, the sweep that frees idle ones) and the track names.
//! - `publication.rs`: [`Hub::serve`], a viewer's or child relay's `interact` publication:
//!   its streams read, each object admitted and applied.
//! - `origin.rs`: the origin's down tracks: the like total per window on `likes`, the viewer
//!   count on `viewers`, comments on `chat/<room>`, gifts recorded in the ledger and
//!   announced on `events`.
//! - `upward.rs`: elsewhere, the relay's own `interact` publication to its parent.
//! - `moderate.rs`: moderation: at the origin actions recorded in the store and published on
//!   `mod` (the state replayed from the store first); elsewhere the `mod` track followed; the
//!   comment verdict, deleted-comment lookups for FETCH and ban notices for sessions.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use banyan_moq::coding::{FullTrackName, TrackName, TrackNamespace};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

use super::ledger::Ledger;
use super::likes::LikeSum;
use super::viewer::parse_room;
use super::viewers::ChildCounts;
#[cfg(doc)]
use super::viewers::REPORT_REFRESH;
use super::InteractConfig;
use crate::metrics::Metrics;
use crate::namespaces::Namespaces;
use crate::tasks::Tasks;
use crate::track::{Track, Tracks};

mod moderate;
mod origin;
mod publication;
mod upward;

/// The up track's name.
pub const INTERACT: &[u8] = b"interact";
/// The origin's like total track.
pub const LIKES: &[u8] = b"likes";
/// The origin's live viewer count track.
pub const VIEWERS: &[u8] = b"viewers";
/// The origin's recorded-gifts track.
pub const EVENTS: &[u8] = b"events";
/// The origin's moderation track (each action and the state after it).
pub const MOD: &[u8] = b"mod";
/// The prefix of the origin's per-room chat tracks.
pub const CHAT_PREFIX: &[u8] = b"chat/";

/// Comments per `chat/<room>` group: comment `seq` is object `seq % CHAT_GROUP` of group
/// `seq / CHAT_GROUP`, so a busy room opens few groups (fan-out skips subscribers that lag by
/// groups) and a joiner's first group already holds recent history.
pub const CHAT_GROUP: u64 = 64;

/// The room of a chat room's track name (`chat/<room>`, the room below `rooms`), if it is one.
pub fn chat_room(name: &TrackName, rooms: u64) -> Option<u64> {
    let bytes = name.as_bytes();
    parse_room(bytes.strip_prefix(CHAT_PREFIX)?, rooms).ok()
}

/// Each broadcast's own viewers at a relay (broadcasts with none left out).
type OwnViewers = HashMap<TrackNamespace, usize>;

/// Most broadcasts with interaction state at one relay.
const MAX_BROADCASTS: usize = 10_000;
/// Comments queued for a parent before new ones are refused as rate limited.
const UPSTREAM_QUEUE: usize = 1024;
/// How long a finished `interact` publication's last streams may take to be read.
const PUBLICATION_DRAIN: Duration = Duration::from_secs(2);

/// Interaction state for every broadcast at this relay.
#[derive(Debug)]
pub struct Hub {
    config: InteractConfig,
    tracks: Arc<Tracks>,
    namespaces: Arc<Namespaces>,
    metrics: Arc<Metrics>,
    /// Mixed with a counter into each broadcast's like source id towards the parent.
    source: u64,
    /// Broadcast states created so far (the counter).
    created: AtomicU64,
    /// `interact` publications served so far (the counter): each child's count is kept
    /// under its publication's number.
    served: AtomicU64,
    /// The gift ledger, at an origin configured with one.
    ledger: Option<Arc<Ledger>>,
    broadcasts: Mutex<HashMap<TrackNamespace, Arc<Broadcast>>>,
    /// Own viewers per broadcast (see [`Hub::own_viewers`]) and when they were counted: one
    /// pass over the track table serves every broadcast for half a window.
    own: Mutex<Option<(Instant, Arc<OwnViewers>)>>,
    /// Each broadcast's task (see the module doc), aborted when the sweeper stops.
    tasks: Arc<Tasks>,
    /// Bumped when any broadcast's bans may have changed (see [`Hub::ban_notices`]).
    bans: watch::Sender<u64>,
}

#[derive(Debug)]
struct Broadcast {
    namespace: TrackNamespace,
    likes: Mutex<LikeSum>,
    /// The latest viewer counts child relays reported.
    children: Mutex<ChildCounts>,
    /// The subtree's viewer count last computed (own viewers plus children's reports).
    count: AtomicU64,
    role: Role,
    /// This state's like source id towards the parent (not at the origin).
    source: u64,
    /// `interact` publications being served for it now.
    publications: AtomicUsize,
    /// When it was last seen in use.
    last_used: Mutex<Instant>,
    /// Turns true when the sweep frees it; its tasks then end.
    freed: watch::Sender<bool>,
    /// Its moderation state here.
    moderation: Mutex<moderate::Moderation>,
    /// Whether this relay follows the broadcast's `mod` track (below the origin, from the
    /// first interaction user on: a viewer publishing `interact` or subscribing to a down track).
    following: std::sync::atomic::AtomicBool,
    /// Turns true once the moderation state is known (restored at the origin, first `mod`
    /// update elsewhere); comments wait for it.
    synced: watch::Sender<bool>,
}

impl Broadcast {
    /// Resolves once the broadcast has been freed.
    async fn freed(&self) {
        let mut freed = self.freed.subscribe();
        let _ = freed.wait_for(|freed| *freed).await;
    }
}

/// Counts a publication being served for as long as it lives.
struct Serving(Arc<Broadcast>);

impl Serving {
    fn new(broadcast: Arc<Broadcast>) -> Self {
        broadcast.publications.fetch_add(1, Ordering::SeqCst);
        Self(broadcast)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        *self.0.last_used.lock() = Instant::now();
        self.0.publications.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug)]
struct Room {
    track: Arc<Track>,
    /// The next comment's sequence number in the room.
    next: u64,
    /// The open subgroup of the current group.
    open: Option<banyan_moq::track::SubgroupProducer>,
}

#[derive(Debug)]
enum Role {
    /// This relay publishes the broadcast's down tracks.
    Origin {
        likes: Arc<Track>,
        likes_group: AtomicU64,
        viewers: Arc<Track>,
        viewers_group: AtomicU64,
        events: Arc<Track>,
        events_group: AtomicU64,
        /// The `mod` track (group = action sequence number).
        moderation: Arc<Track>,
        /// Room → its track and where the next comment goes.
        rooms: Mutex<HashMap<u64, Room>>,
    },
    /// This relay forwards to a parent.
    Edge { comments: mpsc::Sender<Bytes> },
}

impl Hub {
    /// A hub with no broadcasts yet; `ledger` records gifts when this relay is an origin.
    /// Idle broadcasts are freed only while the caller runs [`Hub::sweeper`].
    pub fn new(
        config: InteractConfig,
        tracks: Arc<Tracks>,
        namespaces: Arc<Namespaces>,
        metrics: Arc<Metrics>,
        ledger: Option<Arc<Ledger>>,
    ) -> Arc<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        // Distinct per relay process: the clock mixed with the process id, kept to 62 bits.
        let source =
            ((nanos as u64) ^ (u64::from(std::process::id()) << 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 2;
        Arc::new(Self {
            config,
            tracks,
            namespaces,
            metrics,
            source,
            created: AtomicU64::new(0),
            served: AtomicU64::new(0),
            ledger,
            broadcasts: Mutex::new(HashMap::new()),
            own: Mutex::new(None),
            tasks: Arc::default(),
            bans: watch::channel(0).0,
        })
    }

    /// The sweeper for the caller to run: frees unused broadcasts every quarter of
    /// [`InteractConfig::idle`] ; it ends once the hub is dropped. The broadcasts' tasks are
    /// owned with it: when the caller stops it (aborts or drops it), they are aborted too.
    pub fn sweeper(self: &Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        let owned = AbortOnDrop(self.tasks.clone());
        let sweep = sweep_every(Arc::downgrade(self), self.config.idle / 4);
        async move {
            sweep.await;
            drop(owned);
        }
    }

    /// Free the state of every broadcast unused for [`InteractConfig::idle`] at `now`
    /// (run every quarter of it by [`sweep_every`]).
    fn sweep(&self, now: Instant) {
        let own = self.own_viewers(now);
        let mut freed = Vec::new();
        let mut broadcasts = self.broadcasts.lock();
        broadcasts.retain(|namespace, broadcast| {
            let in_use = broadcast.publications.load(Ordering::SeqCst) > 0
                || broadcast.count.load(Ordering::SeqCst) > 0
                || (matches!(broadcast.role, Role::Origin { .. })
                    && self.namespaces.route(namespace).is_some())
                || own.contains_key(namespace);
            let mut last_used = broadcast.last_used.lock();
            if in_use {
                *last_used = now;
                return true;
            }
            if now.saturating_duration_since(*last_used) < self.config.idle {
                return true;
            }
            freed.push(broadcast.clone());
            false
        });
        self.metrics.interact_broadcasts.set(broadcasts.len() as i64);
        drop(broadcasts);
        for broadcast in &freed {
            tracing::debug!(broadcast = %broadcast.namespace, "interactions: freeing idle broadcast state");
            broadcast.freed.send_replace(true);
            if let Role::Origin {
                likes,
                viewers,
                events,
                moderation,
                rooms,
                ..
            } = &broadcast.role
            {
                const REASON: &str = "broadcast over";
                self.tracks.end_local(moderation, REASON);
                self.tracks.end_local(likes, REASON);
                self.tracks.end_local(viewers, REASON);
                self.tracks.end_local(events, REASON);
                for room in rooms.lock().values() {
                    self.tracks.end_local(&room.track, REASON);
                }
            }
        }
    }

    /// Whether `name` is an interaction track sent down the tree (`likes`, `viewers`,
    /// `events`, `mod`, `chat/<room>`).
    pub fn is_down_track(name: &TrackName) -> bool {
        let bytes = name.as_bytes();
        bytes.as_ref() == LIKES
            || bytes.as_ref() == MOD
            || bytes.as_ref() == VIEWERS
            || bytes.as_ref() == EVENTS
            || bytes.starts_with(CHAT_PREFIX)
    }

    /// Whether `name` is any interaction track: one sent down, or the `interact` track
    /// viewers and child relays publish up.
    pub fn is_interaction_track(name: &TrackName) -> bool {
        Self::is_down_track(name) || name.as_bytes().as_ref() == INTERACT
    }

    /// Before a SUBSCRIBE or FETCH for `name`: at the broadcast's origin, make sure the local
    /// interaction track exists so the request finds it rather than asking the publisher.
    /// Elsewhere, a subscriber of an interaction track is an interaction user: the relay
    /// follows the broadcast's moderation from then on.
    pub fn prepare(self: &Arc<Self>, name: &FullTrackName) {
        if !Self::is_down_track(&name.name) {
            return;
        }
        if !self.is_origin(&name.namespace) {
            if let Some(broadcast) = self.broadcast(&name.namespace) {
                self.follow(&broadcast);
            }
            return;
        }
        let Some(broadcast) = self.broadcast(&name.namespace) else {
            return;
        };
        if let Some(room) = chat_room(&name.name, self.config.rooms) {
            self.room(&broadcast, room);
        }
    }

    /// A viewer (not a child relay) is now subscribed to `name`: when it is the broadcast's
    /// media, make sure the broadcast has state here, so its viewers are counted and the
    /// count reported up (or, at the origin, published) even if nobody sends interactions.
    pub fn watched(self: &Arc<Self>, name: &FullTrackName) {
        if !Self::is_interaction_track(&name.name) {
            // The next count includes this viewer, however recent the last pass was.
            *self.own.lock() = None;
            let _ = self.broadcast(&name.namespace);
        }
    }

    /// The broadcast's viewers in this relay's subtree at `now`: its own viewers (the most
    /// viewers any of its media tracks has here: child relays are not viewers, and a viewer
    /// of audio and video is one) plus the latest counts its child relays reported.
    fn subtree_count(&self, broadcast: &Broadcast, now: Instant) -> u64 {
        let own = self
            .own_viewers(now)
            .get(&broadcast.namespace)
            .copied()
            .unwrap_or(0);
        let count = (own as u64).saturating_add(broadcast.children.lock().sum(now));
        broadcast.count.store(count, Ordering::SeqCst);
        count
    }

    /// Every broadcast's own viewers at this relay (those with any): the distinct viewer
    /// sessions reading any of its media tracks. Counted in one pass over the track table, reused for half a
    /// window unless a viewer joined since ([`Hub::watched`]), so while viewers only watch or
    /// leave the work per window grows with the tracks here, not with tracks × broadcasts (a
    /// leave is seen at most half a window late).
    fn own_viewers(&self, now: Instant) -> Arc<OwnViewers> {
        let mut own = self.own.lock();
        match &*own {
            Some((at, counted)) if now.saturating_duration_since(*at) < self.config.window / 2 => {
                counted.clone()
            }
            _ => {
                let counted = Arc::new(
                    self.tracks
                        .viewers_by_namespace(|name| !Self::is_interaction_track(name)),
                );
                *own = Some((now, counted.clone()));
                counted
            }
        }
    }

    fn is_origin(&self, namespace: &TrackNamespace) -> bool {
        self.tracks.parents().is_none() || self.namespaces.route(namespace).is_some()
    }

    fn broadcast(self: &Arc<Self>, namespace: &TrackNamespace) -> Option<Arc<Broadcast>> {
        let mut broadcasts = self.broadcasts.lock();
        if let Some(broadcast) = broadcasts.get(namespace) {
            // In use from now: the sweep leaves it at least `idle` (the caller's publication,
            // if any, is counted well before that).
            *broadcast.last_used.lock() = Instant::now();
            return Some(broadcast.clone());
        }
        if broadcasts.len() >= MAX_BROADCASTS {
            return None;
        }
        // Distinct per state: a freed broadcast's successor is a new source to the parent.
        let instance = self.created.fetch_add(1, Ordering::Relaxed);
        let source = (self.source ^ instance.wrapping_mul(0x9e37_79b9_7f4a_7c15)) & ((1 << 62) - 1);
        let mut queued = None;
        let role = if self.is_origin(namespace) {
            let likes = self.tracks.local(FullTrackName {
                namespace: namespace.clone(),
                name: TrackName::new(LIKES.to_vec()),
            });
            let viewers = self.tracks.local(FullTrackName {
                namespace: namespace.clone(),
                name: TrackName::new(VIEWERS.to_vec()),
            });
            let events = self.tracks.local(FullTrackName {
                namespace: namespace.clone(),
                name: TrackName::new(EVENTS.to_vec()),
            });
            let moderation = self.tracks.local(FullTrackName {
                namespace: namespace.clone(),
                name: TrackName::new(MOD.to_vec()),
            });
            Role::Origin {
                moderation,
                likes,
                likes_group: AtomicU64::new(0),
                viewers,
                viewers_group: AtomicU64::new(0),
                events,
                events_group: AtomicU64::new(0),
                rooms: Mutex::new(HashMap::new()),
            }
        } else {
            let (comments, receiver) = mpsc::channel(UPSTREAM_QUEUE);
            queued = Some(receiver);
            Role::Edge { comments }
        };
        let broadcast = Arc::new(Broadcast {
            namespace: namespace.clone(),
            likes: Mutex::new(LikeSum::new()),
            children: Mutex::new(ChildCounts::new()),
            count: AtomicU64::new(0),
            role,
            source,
            publications: AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
            freed: watch::channel(false).0,
            moderation: Mutex::default(),
            following: std::sync::atomic::AtomicBool::new(false),
            synced: watch::channel(false).0,
        });
        broadcasts.insert(namespace.clone(), broadcast.clone());
        self.metrics.interact_broadcasts.set(broadcasts.len() as i64);
        match queued {
            None => {
                let (hub, started) = (self.clone(), broadcast.clone());
                self.tasks
                    .spawn(async move { hub.start_moderation(&started).await });
                self.tasks.spawn(self.clone().publish_likes(broadcast.clone()));
            }
            Some(queued) => self.tasks.spawn(self.clone().upstream(broadcast.clone(), queued)),
        }
        Some(broadcast)
    }
}

/// Sweep `hub` every `period` while it exists.
async fn sweep_every(hub: Weak<Hub>, period: Duration) {
    let mut tick = tokio::time::interval(period.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else {
            return;
        };
        hub.sweep(Instant::now());
    }
}

/// Aborts the hub's broadcast tasks when the sweeper that holds it stops.
struct AbortOnDrop(Arc<Tasks>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
