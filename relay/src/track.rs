//! Tracks at this relay: one entry per Full Track Name, holding exactly one upstream copy
//! (coalescing) and the cache every local subscriber reads from.
//!
//! The first SUBSCRIBE for a track creates its entry and starts the upstream task: find the
//! publisher, subscribe once, and ingest objects into the cache. Later SUBSCRIBEs join the
//! same entry. When the last subscriber leaves, the entry lingers briefly (a viewer who
//! reconnects finds it warm), then unsubscribes upstream and disappears.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use banyan_moq::coding::{
    FullTrackName, KeyValuePairs, Location, PublishDoneCode, RequestErrorCode, TrackNamespace,
};
use banyan_moq::data::{ObjectDatagram, ObjectProperties, ObjectStatus};
use banyan_moq::message::{GroupOrder, HopPath, Parameters, Subscribe, SubscriptionFilter};
use banyan_moq::session::{Error as SessionError, SubgroupReader, Subscription, TrackEvent, TrackSender};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use url::Url;

use crate::cache::{CacheBudget, CachedObject, Subgroup, TrackCache};
use crate::metrics::Metrics;
use crate::origin::{Origins, Publisher};
use crate::upstream::{Parent, Parents, UpstreamError};

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

    /// The longest a SUBSCRIBE for a track nobody publishes (yet) is held waiting for a
    /// publisher: a SUBSCRIBE asks with RENDEZVOUS_TIMEOUT and gets the lesser of the two; one
    /// without the parameter is refused at once with DOES_NOT_EXIST (draft-18) (e.g. 5s, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    #[serde(with = "banyan_control::layered::serde_duration")]
    pub rendezvous_max: Duration,
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
    /// Its recent groups.
    pub cache: TrackCache,
    state: watch::Sender<TrackState>,
    subscribers: watch::Sender<usize>,
    /// Of those, the ones from child relays (requests carrying a relay path).
    relay_subscribers: AtomicUsize,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Track {
    fn new(
        name: FullTrackName,
        config: &TrackConfig,
        budget: Arc<CacheBudget>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            name,
            cache: TrackCache::new(config.cache_groups, budget, metrics.clone()),
            state: watch::Sender::new(TrackState::Pending),
            subscribers: watch::Sender::new(0),
            relay_subscribers: AtomicUsize::new(0),
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
        lock(&self.parent).as_ref().and_then(|p| p.hop)
    }

    /// The URL of the parent relay this track comes from (the last one, after a failover),
    /// when a parent feeds it.
    pub fn parent_url(&self) -> Option<Url> {
        lock(&self.parent).as_ref().map(|p| p.url.clone())
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
        lock(&self.datagram_senders).insert(id, sender);
        id
    }

    /// Unregister a datagram sender.
    pub fn remove_datagram_sender(&self, id: u64) {
        lock(&self.datagram_senders).remove(&id);
    }

    /// Append group `group_id` holding one object with `payload` (for a locally produced
    /// track; group ids must grow). Returns false if the cache refused it as too old.
    pub fn append_group(&self, group_id: u64, payload: Bytes) -> bool {
        let Some(subgroup) = self.open_local(group_id) else {
            return false;
        };
        self.append(&subgroup, 0, payload);
        self.cache.finish(&subgroup);
        true
    }

    /// Open subgroup 0 of group `group_id` on a locally produced track; `None` if the cache
    /// refused it as too old.
    pub fn open_local(&self, group_id: u64) -> Option<Arc<Subgroup>> {
        self.cache.open_subgroup(group_id, 0, None, false)
    }

    /// Append object `id` (ids must grow) to a subgroup from [`Track::open_local`].
    pub fn append(&self, subgroup: &Subgroup, id: u64, payload: Bytes) {
        self.metrics.objects_in.inc();
        let object = CachedObject {
            id,
            status: ObjectStatus::Normal,
            properties: ObjectProperties::default(),
            payload,
            received: Instant::now(),
        };
        self.cache.push(subgroup, object);
    }

    /// Mark a subgroup from [`Track::open_local`] complete.
    pub fn finish_local(&self, subgroup: &Subgroup) {
        self.cache.finish(subgroup);
    }

    fn set_state(&self, state: TrackState) {
        self.state.send_replace(state);
    }

    fn fan_out_datagram(&self, datagram: &ObjectDatagram) {
        let senders: Vec<TrackSender> = lock(&self.datagram_senders).values().cloned().collect();
        for sender in senders {
            if sender.send_datagram(datagram.clone()).is_ok() {
                self.metrics.objects_out.inc();
                self.metrics.bytes_out.add(datagram.payload.len() as u64);
            }
        }
    }
}

/// Counts a subscriber of a track for as long as it lives.
#[derive(Debug)]
pub struct SubscriberGuard {
    track: Arc<Track>,
    relay: bool,
}

impl SubscriberGuard {
    /// Count a subscriber of a track this relay already has (one it PUBLISHes to a
    /// SUBSCRIBE_TRACKS subscriber); `relay` when it is a child relay.
    pub fn join(track: &Arc<Track>, relay: bool) -> Self {
        Self::new(track.clone(), relay)
    }

    /// Count a subscriber; `relay` when it is a child relay.
    fn new(track: Arc<Track>, relay: bool) -> Self {
        if relay {
            track.relay_subscribers.fetch_add(1, Ordering::SeqCst);
        }
        track.subscribers.send_modify(|n| *n += 1);
        Self { track, relay }
    }

    /// The track.
    pub fn track(&self) -> &Arc<Track> {
        &self.track
    }
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.track.subscribers.send_modify(|n| *n = n.saturating_sub(1));
        if self.relay {
            self.track.relay_subscribers.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Every track at this relay, by name.
#[derive(Debug)]
pub struct Tracks {
    tracks: Mutex<HashMap<FullTrackName, Arc<Track>>>,
    /// SUBSCRIBE_TRACKS requests, told of every pushed track under their prefix.
    watchers: Mutex<Vec<TrackWatcher>>,
    next_watcher: AtomicU64,
    origins: Arc<Origins>,
    parents: Option<Arc<Parents>>,
    config: TrackConfig,
    budget: Arc<CacheBudget>,
    metrics: Arc<Metrics>,
}

impl Tracks {
    /// An empty registry that finds publishers in `origins`, and otherwise (when given) asks
    /// `parents`.
    pub fn new(
        origins: Arc<Origins>,
        parents: Option<Arc<Parents>>,
        config: TrackConfig,
        budget: Arc<CacheBudget>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            tracks: Mutex::new(HashMap::new()),
            watchers: Mutex::new(Vec::new()),
            next_watcher: AtomicU64::new(0),
            origins,
            parents,
            config,
            budget,
            metrics,
        })
    }

    /// Join the track `name`, starting its one upstream subscription if this is the first
    /// subscriber. However many subscribers call this at once, upstream sees one SUBSCRIBE.
    /// `path` is the relay path of the request that creates the track (sent on to a parent).
    /// A track nobody publishes is held while subscribers wait ([`Track::ready`]).
    pub fn subscribe(self: &Arc<Self>, name: FullTrackName, path: &HopPath) -> SubscriberGuard {
        let mut tracks = lock(&self.tracks);
        if let Some(track) = tracks.get(&name) {
            if !track.closing.load(Ordering::SeqCst) {
                return SubscriberGuard::new(track.clone(), !path.is_empty());
            }
        }
        let track = Arc::new(Track::new(
            name.clone(),
            &self.config,
            self.budget.clone(),
            self.metrics.clone(),
        ));
        tracks.insert(name, track.clone());
        let guard = SubscriberGuard::new(track.clone(), !path.is_empty());
        drop(tracks);
        tokio::spawn(self.clone().run_upstream(track, path.clone()));
        guard
    }

    /// A track pushed to us with PUBLISH: it replaces any entry of the same name and lives
    /// until its publisher ends it. SUBSCRIBEs held waiting for a publisher of this track
    /// (RENDEZVOUS_TIMEOUT) proceed with it instead (draft-18 §"Relays": they get no PUBLISH).
    pub fn insert_pushed(self: &Arc<Self>, name: FullTrackName, subscription: Subscription) -> Arc<Track> {
        let mut tracks = lock(&self.tracks);
        let waiting = tracks
            .get(&name)
            .filter(|t| !t.closing.load(Ordering::SeqCst))
            .and_then(|t| lock(&t.rendezvous).take().map(|tx| (t.clone(), tx)));
        let info = live_info(&subscription);
        let subscription = match waiting {
            Some((track, tx)) => match tx.send(subscription) {
                // The held subscribers proceed with it (their sessions get no PUBLISH for it);
                // SUBSCRIBE_TRACKS subscribers hear of it as of any pushed track.
                Ok(()) => {
                    track.pushed.store(true, Ordering::SeqCst);
                    track.set_state(TrackState::Live(info));
                    drop(tracks);
                    self.announce_pushed(&track);
                    return track;
                }
                Err(subscription) => subscription,
            },
            None => subscription,
        };
        let track = Arc::new(Track::new(
            name.clone(),
            &self.config,
            self.budget.clone(),
            self.metrics.clone(),
        ));
        track.pushed.store(true, Ordering::SeqCst);
        track.set_state(TrackState::Live(info));
        if let Some(old) = tracks.insert(name, track.clone()) {
            old.closing.store(true, Ordering::SeqCst);
            // Another session pushes the track now (a restarted publisher, say): the old
            // one's subscribers get PUBLISH_DONE GOING_AWAY and subscribe again to reach it.
            old.replaced.send_replace(true);
        }
        drop(tracks);
        self.announce_pushed(&track);
        let tracks = self.clone();
        let pushed = track.clone();
        tokio::spawn(async move {
            let end = tracks.feed_pushed(&pushed, subscription).await;
            tracks.retire(&pushed, end);
        });
        track
    }

    /// Read a pushed track's subscription into its cache until its publisher ends it or
    /// another session's PUBLISH of the same track replaces it.
    async fn feed_pushed(&self, track: &Arc<Track>, subscription: Subscription) -> TrackState {
        let mut ingest = Ingest::new(subscription);
        let mut replaced = track.replaced.subscribe();
        let stop = async move {
            // The sender lives in the track, so this only ends when it is set.
            let _ = replaced.wait_for(|r| *r).await;
        };
        match ingest.run(track, None, &self.metrics, stop).await {
            IngestEnd::Stopped => TrackState::Ended {
                code: PublishDoneCode::GoingAway,
                reason: "another session publishes the track now".into(),
            },
            end => {
                ingest.finish(track).await;
                end.into_state()
            }
        }
    }

    /// Whether a live track pushed by a session that is still open has the name `name`
    /// (a second PUBLISH of it is refused when takeover is off).
    pub fn pushed_and_live(&self, name: &FullTrackName) -> bool {
        lock(&self.tracks)
            .get(name)
            .is_some_and(|t| t.is_pushed() && t.is_live() && !t.closing.load(Ordering::SeqCst))
    }

    /// A track this relay produces itself (the interaction tracks an origin publishes):
    /// the live entry for `name`, created if there is none. It has no upstream and never
    /// lingers out; its producer writes whole groups with [`Track::append_group`].
    pub fn local(self: &Arc<Self>, name: FullTrackName) -> Arc<Track> {
        let mut tracks = lock(&self.tracks);
        if let Some(track) = tracks.get(&name) {
            if !track.closing.load(Ordering::SeqCst) {
                return track.clone();
            }
        }
        let track = Arc::new(Track::new(
            name.clone(),
            &self.config,
            self.budget.clone(),
            self.metrics.clone(),
        ));
        track.set_state(TrackState::Live(LiveInfo::default()));
        tracks.insert(name, track.clone());
        track
    }

    /// End a track from [`Tracks::local`]: its subscribers get PUBLISH_DONE (track ended)
    /// once they have what is cached, and the name is free for a new track.
    pub fn end_local(&self, track: &Arc<Track>, reason: &str) {
        self.retire(
            track,
            TrackState::Ended {
                code: PublishDoneCode::TrackEnded,
                reason: reason.to_owned(),
            },
        );
    }

    /// The track `name` if this relay has it.
    pub fn get(&self, name: &FullTrackName) -> Option<Arc<Track>> {
        lock(&self.tracks).get(name).cloned()
    }

    /// Tell the SUBSCRIBE_TRACKS watchers whose prefix covers it of a pushed track.
    fn announce_pushed(&self, track: &Arc<Track>) {
        lock(&self.watchers)
            .retain(|w| !track.name.namespace.has_prefix(&w.prefix) || w.tracks.send(track.clone()).is_ok());
    }

    /// Hear of pushed tracks under `prefix` (SUBSCRIBE_TRACKS): the live ones at once, then
    /// each new one as its PUBLISH arrives.
    pub fn watch(self: &Arc<Self>, prefix: TrackNamespace) -> TrackWatch {
        let id = self.next_watcher.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        // The registry lock orders this against `insert_pushed`: a track is either listed
        // here or sent to the watcher, never neither.
        let tracks = lock(&self.tracks);
        for track in tracks.values() {
            if track.is_pushed() && track.is_live() && track.name.namespace.has_prefix(&prefix) {
                let _ = tx.send(track.clone());
            }
        }
        lock(&self.watchers).push(TrackWatcher {
            id,
            prefix,
            tracks: tx,
        });
        drop(tracks);
        TrackWatch {
            registry: self.clone(),
            id,
            tracks: rx,
        }
    }

    /// The longest this relay holds a SUBSCRIBE that asked for `requested` milliseconds
    /// (RENDEZVOUS_TIMEOUT; absent means 0): at most `--rendezvous-max`.
    pub fn rendezvous(&self, requested: Option<u64>) -> Duration {
        Duration::from_millis(requested.unwrap_or(0)).min(self.config.rendezvous_max)
    }

    /// Every track at this relay now.
    pub fn all(&self) -> Vec<Arc<Track>> {
        lock(&self.tracks).values().cloned().collect()
    }

    /// The parents this registry asks, if any.
    pub fn parents(&self) -> Option<&Arc<Parents>> {
        self.parents.as_ref()
    }

    async fn run_upstream(self: Arc<Self>, track: Arc<Track>, path: HopPath) {
        let end = self.upstream(&track, &path).await;
        self.retire(&track, end);
    }

    /// Feed the track from a local publisher if there is one, else from a parent, else from a
    /// publisher that appears, here or at a parent, while subscribers wait for one (each for
    /// its RENDEZVOUS_TIMEOUT, at most `--rendezvous-max`).
    async fn upstream(&self, track: &Arc<Track>, path: &HopPath) -> TrackState {
        let name = &track.name;
        if let Some(publisher) = self.origins.route(&name.namespace) {
            return self.feed_from_publisher(track, publisher).await;
        }
        if let Some(parents) = &self.parents {
            if let Some(end) = self.feed_from_parents(track, parents, path, None).await {
                return end;
            }
        }
        let (tx, mut pushed) = oneshot::channel();
        *lock(&track.rendezvous) = Some(tx);
        track.set_state(TrackState::Waiting);
        let awaiting = AwaitingGauge::new(&self.metrics);
        let mut subscribers = track.subscribers.subscribe();
        // Each subscriber gives up at its own deadline (at most `--rendezvous-max`); the track
        // waits while any of them does.
        let publisher = loop {
            let nobody_waits = async {
                // The sender lives in `track`, so this only ends when the count reaches zero.
                let _ = subscribers.wait_for(|n| *n == 0).await;
            };
            let at_parent = async {
                let Some(parents) = &self.parents else {
                    return std::future::pending().await;
                };
                loop {
                    tokio::time::sleep(PARENT_POLL).await;
                    if let Ok(found) = self.subscribe_parent(track, parents, path).await {
                        return (parents, found);
                    }
                }
            };
            let local = async {
                loop {
                    if let Some(publisher) = self
                        .origins
                        .wait_route(&name.namespace, self.config.rendezvous_max)
                        .await
                    {
                        return publisher;
                    }
                }
            };
            tokio::select! {
                publisher = local => break publisher,
                (parents, found) = at_parent => {
                    drop(awaiting);
                    return self
                        .feed_from_parents(track, parents, path, Some(found))
                        .await
                        .unwrap_or_else(|| TrackState::Failed {
                            code: RequestErrorCode::DoesNotExist,
                            reason: format!("no publisher for namespace {}", name.namespace),
                        });
                }
                Ok(subscription) = &mut pushed => {
                    drop(awaiting);
                    tracing::debug!(track = %name, "a PUBLISH of the track ends the rendezvous");
                    return self.feed_pushed(track, subscription).await;
                }
                () = nobody_waits => {
                    if self.close_unwatched(track) {
                        return TrackState::Failed {
                            code: RequestErrorCode::DoesNotExist,
                            reason: format!("no publisher for namespace {}", name.namespace),
                        };
                    }
                }
            }
        };
        // A PUBLISH of the track from now on is a track of its own.
        lock(&track.rendezvous).take();
        drop(awaiting);
        self.feed_from_publisher(track, publisher).await
    }

    /// Close `track` to new subscribers if it has none (checked under the registry lock, so
    /// none can join in between). False if one joined meanwhile.
    fn close_unwatched(&self, track: &Arc<Track>) -> bool {
        let _tracks = lock(&self.tracks);
        if track.subscribers() > 0 {
            return false;
        }
        track.closing.store(true, Ordering::SeqCst);
        true
    }

    /// Feed the track from a publisher at this relay. When another session takes the
    /// namespace over (`--publisher-takeover`), the track moves to it: the old upstream
    /// subscription is dropped, the groups it left unfinished end, and the new publisher's
    /// groups follow in the same cache, so subscribers carry on at its next group without
    /// subscribing again.
    async fn feed_from_publisher(&self, track: &Arc<Track>, mut publisher: Publisher) -> TrackState {
        let name = &track.name;
        let mut live = false;
        loop {
            // After a takeover, groups must continue above what subscribers have seen.
            let floor = if live { track.cache.newest_group() } else { None };
            let subscribe = Subscribe {
                request_id: 0,
                track_namespace: name.namespace.clone(),
                track_name: name.name.clone(),
                parameters: Parameters::default(),
            };
            self.metrics.upstream_subscribe_total.inc();
            let subscription = match publisher.session.subscribe(subscribe).await {
                Ok(s) => s,
                Err(SessionError::Refused { code, reason, .. }) if !live => {
                    return TrackState::Failed { code, reason }
                }
                Err(e) if !live => {
                    return TrackState::Failed {
                        code: RequestErrorCode::InternalError,
                        reason: format!("upstream: {e}"),
                    }
                }
                Err(e) => {
                    tracing::info!(track = %name, error = %e, "the new publisher does not serve this track; ending it");
                    return TrackState::Ended {
                        code: PublishDoneCode::TrackEnded,
                        reason: format!("the new publisher of the namespace does not serve the track: {e}"),
                    };
                }
            };
            let info = live_info(&subscription);
            if let (Some(floor), Some(largest)) = (floor, info.largest) {
                if largest.group <= floor {
                    return restarted(name, floor, largest.group);
                }
            }
            let _upstream = UpstreamGauge::new(&self.metrics);
            if !live {
                live = true;
                tracing::debug!(track = %name, "upstream subscription live");
                track.set_state(TrackState::Live(info));
            } else {
                tracing::info!(track = %name, "track moved to the publisher that took its namespace over");
            }
            let mut ingest = Ingest::new(subscription);
            ingest.floor = floor;
            match ingest
                .run(
                    track,
                    Some(self.config.linger),
                    &self.metrics,
                    publisher.replaced(),
                )
                .await
            {
                IngestEnd::Stopped => {
                    // The old publisher is usually gone (a crashed encoder whose session has
                    // not timed out yet): nothing more comes from it. Drop its subscription
                    // and end what it left open so no subscriber waits on those groups.
                    drop(ingest);
                    track.cache.close();
                    self.metrics.publisher_takeovers.inc();
                    match self.origins.route(&name.namespace) {
                        Some(next) => publisher = next,
                        None => {
                            return TrackState::Ended {
                                code: PublishDoneCode::GoingAway,
                                reason: "the publisher was replaced".into(),
                            }
                        }
                    }
                }
                IngestEnd::Restarted { floor, group } => return restarted(name, floor, group),
                IngestEnd::Abandoned => return IngestEnd::Abandoned.into_state(),
                end => {
                    ingest.finish(track).await;
                    return end.into_state();
                }
            }
        }
    }

    /// Feed the track from parent relays, failing over to another parent (or a new session to
    /// the same one) when a parent dies or sends GOAWAY, resuming at the group after the
    /// newest one cached. `None` when no parent is known for the namespace.
    async fn feed_from_parents(
        &self,
        track: &Arc<Track>,
        parents: &Parents,
        path: &HopPath,
        mut first: Option<(Subscription, Parent)>,
    ) -> Option<TrackState> {
        let name = &track.name;
        let mut live = false;
        let mut lost_since: Option<Instant> = None;
        let mut backoff = FAILOVER_BACKOFF_MIN;
        let subscribers = track.subscribers.subscribe();
        loop {
            let result = match first.take() {
                Some(found) => Ok(found),
                None => self.subscribe_parent(track, parents, path).await,
            };
            let (subscription, parent) = match result {
                Ok(ok) => ok,
                // No parent has it (yet): the caller waits for a publisher.
                Err(e) if !live && e.not_published_yet() => return None,
                Err(e) if !live => {
                    return Some(TrackState::Failed {
                        code: e.request_code(),
                        reason: e.reason(),
                    })
                }
                Err(e) => {
                    let since = *lost_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.config.failover_window || *subscribers.borrow() == 0 {
                        tracing::info!(track = %name, error = %e, "no parent to fail over to; ending the track");
                        return Some(TrackState::Ended {
                            code: PublishDoneCode::InternalError,
                            reason: format!("lost the upstream relay: {}", e.reason()),
                        });
                    }
                    tracing::debug!(track = %name, error = %e, retry_in = ?backoff, "failover attempt failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(FAILOVER_BACKOFF_MAX);
                    continue;
                }
            };
            self.metrics.upstream_subscribe_total.inc();
            if let Some(since) = lost_since.take() {
                self.metrics.upstream_failovers.inc();
                tracing::info!(track = %name, parent = %parent.url, after = ?since.elapsed(), "failed over to parent");
            }
            backoff = FAILOVER_BACKOFF_MIN;
            *lock(&track.parent) = Some(ParentRef {
                url: parent.url.clone(),
                hop: parent.session.peer_setup().hop_id,
            });
            if !live {
                live = true;
                tracing::debug!(track = %name, parent = %parent.url, "upstream subscription live");
                track.set_state(TrackState::Live(live_info(&subscription)));
            }
            let _upstream = UpstreamGauge::new(&self.metrics);
            let mut ingest = Ingest::new(subscription);
            let goaway = parent.session.clone();
            let end = ingest
                .run(track, Some(self.config.linger), &self.metrics, async move {
                    goaway.goaway_received().await;
                })
                .await;
            match end {
                IngestEnd::Abandoned | IngestEnd::Restarted { .. } => return Some(end.into_state()),
                IngestEnd::Done { .. } if !parent.session.is_closed() => {
                    ingest.finish(track).await;
                    return Some(end.into_state());
                }
                IngestEnd::Stopped => {
                    tracing::info!(track = %name, parent = %parent.url, "parent going away; moving");
                    // The groups already on their way from the old parent may finish.
                    let track = track.clone();
                    tokio::spawn(async move { ingest.finish(&track).await });
                }
                IngestEnd::Lost(ref reason) | IngestEnd::Done { ref reason, .. } => {
                    tracing::info!(track = %name, parent = %parent.url, %reason, "lost the parent; failing over");
                }
            }
            parents.failed(&parent);
            lost_since = Some(Instant::now());
        }
    }

    /// Subscribe to the track at the first parent that has it. Parents answer at once (no
    /// RENDEZVOUS_TIMEOUT): with several parents, one holding the request would keep the
    /// others from being asked; a relay waiting for a publisher asks again
    /// ([`PARENT_POLL`]) instead.
    async fn subscribe_parent(
        &self,
        track: &Track,
        parents: &Parents,
        path: &HopPath,
    ) -> Result<(Subscription, Parent), UpstreamError> {
        let name = &track.name;
        // After a failover, start at the group after the newest we have: the new parent may
        // still hold it, and nothing is received twice.
        let filter = track.cache.largest().map(|l| SubscriptionFilter::AbsoluteStart {
            start_location: Location::new(l.group.saturating_add(1), 0),
        });
        parents
            .request(&name.namespace, path, |session, hop_path| {
                let subscribe = Subscribe {
                    request_id: 0,
                    track_namespace: name.namespace.clone(),
                    track_name: name.name.clone(),
                    parameters: Parameters {
                        subscription_filter: filter,
                        hop_path,
                        ..Default::default()
                    },
                };
                async move { session.subscribe(subscribe).await }
            })
            .await
    }

    /// Take a finished track out of the registry and tell its readers.
    fn retire(&self, track: &Arc<Track>, end: TrackState) {
        {
            let mut tracks = lock(&self.tracks);
            track.closing.store(true, Ordering::SeqCst);
            if tracks.get(&track.name).is_some_and(|t| Arc::ptr_eq(t, track)) {
                tracks.remove(&track.name);
            }
        }
        track.cache.close();
        track.set_state(end);
    }
}

#[derive(Debug)]
struct TrackWatcher {
    id: u64,
    prefix: TrackNamespace,
    tracks: mpsc::UnboundedSender<Arc<Track>>,
}

/// A SUBSCRIBE_TRACKS request's view of the pushed tracks under its prefix.
#[derive(Debug)]
pub struct TrackWatch {
    registry: Arc<Tracks>,
    id: u64,
    tracks: mpsc::UnboundedReceiver<Arc<Track>>,
}

impl TrackWatch {
    /// The next pushed track under the prefix.
    pub async fn next(&mut self) -> Option<Arc<Track>> {
        self.tracks.recv().await
    }
}

impl Drop for TrackWatch {
    fn drop(&mut self) {
        lock(&self.registry.watchers).retain(|w| w.id != self.id);
    }
}

/// How long, after upstream ends a track, its open subgroup streams may take to finish.
const SUBGROUP_DRAIN: Duration = Duration::from_secs(2);

/// How often a track waiting for a publisher asks its parents again.
const PARENT_POLL: Duration = Duration::from_millis(200);

/// The first pause between failover attempts; doubled up to [`FAILOVER_BACKOFF_MAX`].
const FAILOVER_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest pause between failover attempts.
const FAILOVER_BACKOFF_MAX: Duration = Duration::from_millis(500);

/// How an [`Ingest`] stopped.
#[derive(Debug)]
enum IngestEnd {
    /// Upstream ended the track (PUBLISH_DONE, or the end of the subscription).
    Done {
        /// The status to pass on.
        code: PublishDoneCode,
        /// Why.
        reason: String,
    },
    /// The subscription (or its session) failed.
    Lost(String),
    /// The track had no subscribers for the linger time; the subscription was dropped.
    Abandoned,
    /// The caller's stop signal fired (publisher replaced, parent going away).
    Stopped,
    /// After a takeover, the new publisher's group `group` is not above `floor`, the newest
    /// group subscribers have already had.
    Restarted {
        /// The newest group cached before the takeover.
        floor: u64,
        /// The new publisher's group.
        group: u64,
    },
}

impl IngestEnd {
    fn into_state(self) -> TrackState {
        let (code, reason) = match self {
            IngestEnd::Done { code, reason } => (code, reason),
            IngestEnd::Lost(reason) => (PublishDoneCode::InternalError, reason),
            IngestEnd::Abandoned => (PublishDoneCode::SubscriptionEnded, "no subscribers".into()),
            IngestEnd::Stopped => (PublishDoneCode::GoingAway, "upstream going away".into()),
            IngestEnd::Restarted { floor, group } => {
                return TrackState::Ended {
                    code: PublishDoneCode::GoingAway,
                    reason: format!(
                        "the new publisher restarted the group numbering ({group} after {floor})"
                    ),
                }
            }
        };
        TrackState::Ended { code, reason }
    }
}

/// Counts a track held for a publisher for as long as it waits.
struct AwaitingGauge(Arc<Metrics>);

impl AwaitingGauge {
    fn new(metrics: &Arc<Metrics>) -> Self {
        metrics.tracks_awaiting_publisher.inc();
        Self(metrics.clone())
    }
}

impl Drop for AwaitingGauge {
    fn drop(&mut self) {
        self.0.tracks_awaiting_publisher.dec();
    }
}

/// Counts an active upstream subscription for as long as it lives.
struct UpstreamGauge(Arc<Metrics>);

impl UpstreamGauge {
    fn new(metrics: &Arc<Metrics>) -> Self {
        metrics.upstream_subscriptions.inc();
        Self(metrics.clone())
    }
}

impl Drop for UpstreamGauge {
    fn drop(&mut self) {
        self.0.upstream_subscriptions.dec();
    }
}

/// A track whose new publisher (after a takeover) numbers its groups from below what
/// subscribers have had: subscribers cannot follow it in the same subscription, so it ends
/// with GOING_AWAY and they subscribe again.
fn restarted(name: &FullTrackName, floor: u64, group: u64) -> TrackState {
    tracing::info!(track = %name, floor, group, "new publisher's groups start below the old ones; ending the track");
    IngestEnd::Restarted { floor, group }.into_state()
}

/// What downstream SUBSCRIBE_OKs repeat from an upstream subscription.
fn live_info(subscription: &Subscription) -> LiveInfo {
    if let Some((_, ok)) = subscription.subscribe() {
        return LiveInfo {
            track_properties: ok.track_properties.clone(),
            group_order: ok.parameters.group_order,
            largest: ok.parameters.largest_object,
        };
    }
    subscription
        .publish()
        .map(|p| LiveInfo {
            track_properties: p.track_properties.clone(),
            group_order: p.parameters.group_order,
            largest: p.parameters.largest_object,
        })
        .unwrap_or_default()
}

/// One upstream subscription being read into a track's cache, with the subgroup streams it
/// has opened (each copied by its own task).
struct Ingest {
    subscription: Subscription,
    subgroups: tokio::task::JoinSet<()>,
    /// Groups at or below this are refused ([`IngestEnd::Restarted`]): set after a takeover.
    floor: Option<u64>,
}

impl Ingest {
    fn new(subscription: Subscription) -> Self {
        Self {
            subscription,
            subgroups: tokio::task::JoinSet::new(),
            floor: None,
        }
    }

    /// Read the subscription into the track's cache until it ends, `stop` resolves, or (with
    /// `linger`) the track has had no subscribers for that long.
    async fn run(
        &mut self,
        track: &Arc<Track>,
        linger: Option<Duration>,
        metrics: &Arc<Metrics>,
        stop: impl std::future::Future<Output = ()>,
    ) -> IngestEnd {
        let mut subscribers = track.subscribers.subscribe();
        let mut done = None;
        tokio::pin!(stop);
        loop {
            let idle = async {
                match linger {
                    Some(linger) => wait_idle(&mut subscribers, linger).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = self.subscription.next() => match event {
                    Ok(Some(TrackEvent::Subgroup(mut reader))) => {
                        let group = reader.header().group_id;
                        if let Some(floor) = self.floor.filter(|floor| group <= *floor) {
                            return IngestEnd::Restarted { floor, group };
                        }
                        // Enter the subgroup in the cache now, in the order its stream arrived,
                        // when its header names it; waiting for its first (possibly large)
                        // object would let a later group's stream overtake it.
                        let Some(cached) = open_cached(track, &mut reader) else { continue };
                        self.subgroups
                            .spawn(ingest_subgroup(track.clone(), reader, cached, metrics.clone()));
                    }
                    Ok(Some(TrackEvent::Datagram(datagram))) => {
                        metrics.objects_in.inc();
                        metrics.bytes_in.add(datagram.payload.len() as u64);
                        track.fan_out_datagram(&datagram);
                    }
                    // PUBLISH_DONE can overtake the data streams it counts: keep reading
                    // until the session has seen them all (or gave up waiting), then end.
                    Ok(Some(TrackEvent::Done(d))) => {
                        done = Some(IngestEnd::Done {
                            code: d.status_code,
                            reason: d.error_reason.to_string(),
                        });
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        return done.take().unwrap_or_else(|| IngestEnd::Done {
                            code: PublishDoneCode::TrackEnded,
                            reason: "upstream ended".into(),
                        })
                    }
                    Err(e) => {
                        tracing::debug!(track = %track.name, error = %e, "upstream subscription failed");
                        // After PUBLISH_DONE the track is over whatever happens to the session.
                        return done.take().unwrap_or(IngestEnd::Lost(e.to_string()));
                    }
                },
                Some(_) = self.subgroups.join_next(), if !self.subgroups.is_empty() => {}
                () = &mut stop => return IngestEnd::Stopped,
                () = idle => {
                    tracing::debug!(track = %track.name, "no subscribers left; unsubscribing upstream");
                    return IngestEnd::Abandoned;
                }
            }
        }
    }

    /// Let the subgroups upstream already opened finish (bounded), so the end of the track
    /// never cuts off their last objects; then abort whatever is left.
    async fn finish(mut self, track: &Track) {
        let finished = tokio::time::timeout(SUBGROUP_DRAIN, async {
            while self.subgroups.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::debug!(track = %track.name, left = self.subgroups.len(), "upstream subgroups unfinished at the end of the track");
        }
    }
}

/// Resolve when the subscriber count has been zero for `linger`.
async fn wait_idle(subscribers: &mut watch::Receiver<usize>, linger: Duration) {
    loop {
        while *subscribers.borrow_and_update() > 0 {
            if subscribers.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
        match tokio::time::timeout(linger, subscribers.changed()).await {
            Err(_) => return,
            Ok(Err(_)) => return std::future::pending().await,
            Ok(Ok(())) => continue,
        }
    }
}

/// The cache entry for an upstream subgroup whose header carries its Subgroup ID:
/// `Some(None)` when the ID comes with the first object, `None` when the group is too old
/// to cache (the stream is then stopped: nobody can be served from it).
fn open_cached(track: &Track, reader: &mut SubgroupReader) -> Option<Option<Arc<Subgroup>>> {
    let Some(subgroup_id) = reader.subgroup_id() else {
        return Some(None);
    };
    let header = reader.header();
    match track.cache.open_subgroup(
        header.group_id,
        subgroup_id,
        header.publisher_priority,
        header.properties,
    ) {
        Some(subgroup) => Some(Some(subgroup)),
        None => {
            reader.stop(banyan_moq::coding::StreamResetCode::Cancelled);
            None
        }
    }
}

/// Copy one upstream subgroup stream into the cache (entered already when `cached`).
async fn ingest_subgroup(
    track: Arc<Track>,
    mut reader: SubgroupReader,
    mut cached: Option<Arc<Subgroup>>,
    metrics: Arc<Metrics>,
) {
    let header = reader.header().clone();
    loop {
        let object = match reader.next().await {
            Ok(Some(object)) => object,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(track = %track.name, group = header.group_id, error = %e, "upstream subgroup failed");
                break;
            }
        };
        if cached.is_none() {
            let subgroup_id = reader.subgroup_id().unwrap_or(0);
            match track.cache.open_subgroup(
                header.group_id,
                subgroup_id,
                header.publisher_priority,
                header.properties,
            ) {
                Some(subgroup) => cached = Some(subgroup),
                None => {
                    // Too old for the cache: nobody can be served from it.
                    reader.stop(banyan_moq::coding::StreamResetCode::Cancelled);
                    return;
                }
            }
        }
        metrics.objects_in.inc();
        metrics.bytes_in.add(object.payload.len() as u64);
        if let Some(subgroup) = &cached {
            track.cache.push(
                subgroup,
                CachedObject {
                    id: object.object_id,
                    status: object.status,
                    properties: object.properties,
                    payload: object.payload,
                    received: Instant::now(),
                },
            );
        }
    }
    if let Some(subgroup) = &cached {
        track.cache.finish(subgroup);
    }
}
