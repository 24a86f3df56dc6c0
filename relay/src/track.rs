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

use banyan_moq::coding::{FullTrackName, KeyValuePairs, Location, PublishDoneCode, RequestErrorCode};
use banyan_moq::data::{ObjectDatagram, ObjectProperties, ObjectStatus};
use banyan_moq::message::{GroupOrder, HopPath, Parameters, Subscribe, SubscriptionFilter};
use banyan_moq::session::{Error as SessionError, SubgroupReader, Subscription, TrackEvent, TrackSender};
use bytes::Bytes;
use tokio::sync::watch;
use url::Url;

use crate::cache::{CacheBudget, CachedObject, Subgroup, TrackCache};
use crate::metrics::Metrics;
use crate::origin::{Origins, Publisher};
use crate::upstream::{Parents, UpstreamError};

/// Where a track stands.
#[derive(Clone, Debug)]
pub enum TrackState {
    /// Waiting for the upstream SUBSCRIBE_OK (or the publisher to appear).
    Pending,
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

/// Tuning for tracks, from the relay configuration.
#[derive(Clone, Debug)]
pub struct TrackConfig {
    /// Groups kept per track.
    pub cache_groups: usize,
    /// How long a SUBSCRIBE waits for its namespace to be published.
    pub namespace_wait: Duration,
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
            metrics,
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

    /// Wait until the track is live (or has failed / ended).
    pub async fn ready(&self) -> TrackState {
        let mut rx = self.state.subscribe();
        loop {
            let state = rx.borrow_and_update().clone();
            if !matches!(state, TrackState::Pending) {
                return state;
            }
            if rx.changed().await.is_err() {
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
    /// until its publisher ends it.
    pub fn insert_pushed(self: &Arc<Self>, name: FullTrackName, subscription: Subscription) -> Arc<Track> {
        let track = Arc::new(Track::new(
            name.clone(),
            &self.config,
            self.budget.clone(),
            self.metrics.clone(),
        ));
        track.set_state(TrackState::Live(live_info(&subscription)));
        if let Some(old) = lock(&self.tracks).insert(name, track.clone()) {
            old.closing.store(true, Ordering::SeqCst);
        }
        let tracks = self.clone();
        let pushed = track.clone();
        tokio::spawn(async move {
            let mut ingest = Ingest::new(subscription);
            let end = ingest
                .run(&pushed, None, &tracks.metrics, std::future::pending())
                .await;
            ingest.finish(&pushed).await;
            tracks.retire(&pushed, end.into_state());
        });
        track
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
    /// publisher that appears within the namespace wait.
    async fn upstream(&self, track: &Arc<Track>, path: &HopPath) -> TrackState {
        let name = &track.name;
        if let Some(publisher) = self.origins.route(&name.namespace) {
            return self.feed_from_publisher(track, publisher).await;
        }
        if let Some(parents) = &self.parents {
            if let Some(end) = self.feed_from_parents(track, parents, path).await {
                return end;
            }
        }
        match self
            .origins
            .wait_route(&name.namespace, self.config.namespace_wait)
            .await
        {
            Some(publisher) => self.feed_from_publisher(track, publisher).await,
            None => TrackState::Failed {
                code: RequestErrorCode::DoesNotExist,
                reason: format!("no publisher for namespace {}", name.namespace),
            },
        }
    }

    async fn feed_from_publisher(&self, track: &Arc<Track>, publisher: Publisher) -> TrackState {
        let name = &track.name;
        let subscribe = Subscribe {
            request_id: 0,
            track_namespace: name.namespace.clone(),
            track_name: name.name.clone(),
            parameters: Parameters::default(),
        };
        self.metrics.upstream_subscribe_total.inc();
        let subscription = match publisher.session.subscribe(subscribe).await {
            Ok(s) => s,
            Err(SessionError::Refused { code, reason, .. }) => return TrackState::Failed { code, reason },
            Err(e) => {
                return TrackState::Failed {
                    code: RequestErrorCode::InternalError,
                    reason: format!("upstream: {e}"),
                }
            }
        };
        let _upstream = UpstreamGauge::new(&self.metrics);
        tracing::debug!(track = %name, "upstream subscription live");
        track.set_state(TrackState::Live(live_info(&subscription)));
        let mut ingest = Ingest::new(subscription);
        // Another session taking over the namespace (`--replace-publisher`) ends this copy
        // (dropping the upstream subscription) so subscribers never get a mix of both; they
        // re-subscribe and reach the new publisher.
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
                tracing::debug!(track = %name, "publisher replaced; ending the track");
                TrackState::Ended {
                    code: PublishDoneCode::GoingAway,
                    reason: "the publisher was replaced".into(),
                }
            }
            IngestEnd::Abandoned => IngestEnd::Abandoned.into_state(),
            end => {
                ingest.finish(track).await;
                end.into_state()
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
    ) -> Option<TrackState> {
        let name = &track.name;
        let mut live = false;
        let mut lost_since: Option<Instant> = None;
        let mut backoff = FAILOVER_BACKOFF_MIN;
        let subscribers = track.subscribers.subscribe();
        loop {
            // After a failover, start at the group after the newest we have: the new parent
            // may still hold it, and nothing is received twice.
            let filter = track.cache.largest().map(|l| SubscriptionFilter::AbsoluteStart {
                start_location: Location::new(l.group.saturating_add(1), 0),
            });
            let result = parents
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
                .await;
            let (subscription, parent) = match result {
                Ok(ok) => ok,
                Err(UpstreamError::NoParent) if !live => return None,
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
                IngestEnd::Abandoned => return Some(end.into_state()),
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

/// How long, after upstream ends a track, its open subgroup streams may take to finish.
const SUBGROUP_DRAIN: Duration = Duration::from_secs(2);

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
}

impl IngestEnd {
    fn into_state(self) -> TrackState {
        let (code, reason) = match self {
            IngestEnd::Done { code, reason } => (code, reason),
            IngestEnd::Lost(reason) => (PublishDoneCode::InternalError, reason),
            IngestEnd::Abandoned => (PublishDoneCode::SubscriptionEnded, "no subscribers".into()),
            IngestEnd::Stopped => (PublishDoneCode::GoingAway, "upstream going away".into()),
        };
        TrackState::Ended { code, reason }
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
}

impl Ingest {
    fn new(subscription: Subscription) -> Self {
        Self {
            subscription,
            subgroups: tokio::task::JoinSet::new(),
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
