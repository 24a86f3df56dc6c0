//! Tracks at this relay: one entry per Full Track Name, holding exactly one upstream copy
//! (coalescing) and the cache every local subscriber reads from.
//!
//! The first SUBSCRIBE for a track creates its entry and starts the upstream task: find the
//! publisher, subscribe once, and ingest objects into the cache. Later SUBSCRIBEs join the
//! same entry. When the last subscriber leaves, the entry lingers briefly (a viewer who
//! reconnects finds it warm), then unsubscribes upstream and disappears.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use banyan_moq::coding::{FullTrackName, KeyValuePairs, PublishDoneCode, RequestErrorCode};
use banyan_moq::data::ObjectDatagram;
use banyan_moq::message::{GroupOrder, Parameters, Subscribe};
use banyan_moq::session::{Error as SessionError, SubgroupReader, Subscription, TrackEvent, TrackSender};
use tokio::sync::watch;

use crate::cache::{CacheBudget, CachedObject, Subgroup, TrackCache};
use crate::metrics::Metrics;
use crate::origin::Origins;

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
    datagram_senders: Mutex<HashMap<u64, TrackSender>>,
    next_subscriber: AtomicU64,
    closing: AtomicBool,
    metrics: Arc<Metrics>,
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
            datagram_senders: Mutex::new(HashMap::new()),
            next_subscriber: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            metrics,
        }
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
}

impl SubscriberGuard {
    fn new(track: Arc<Track>) -> Self {
        track.subscribers.send_modify(|n| *n += 1);
        Self { track }
    }

    /// The track.
    pub fn track(&self) -> &Arc<Track> {
        &self.track
    }
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.track.subscribers.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Every track at this relay, by name.
#[derive(Debug)]
pub struct Tracks {
    tracks: Mutex<HashMap<FullTrackName, Arc<Track>>>,
    origins: Arc<Origins>,
    config: TrackConfig,
    budget: Arc<CacheBudget>,
    metrics: Arc<Metrics>,
}

impl Tracks {
    /// An empty registry that finds publishers in `origins`.
    pub fn new(
        origins: Arc<Origins>,
        config: TrackConfig,
        budget: Arc<CacheBudget>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            tracks: Mutex::new(HashMap::new()),
            origins,
            config,
            budget,
            metrics,
        })
    }

    /// Join the track `name`, starting its one upstream subscription if this is the first
    /// subscriber. However many subscribers call this at once, upstream sees one SUBSCRIBE.
    pub fn subscribe(self: &Arc<Self>, name: FullTrackName) -> SubscriberGuard {
        let mut tracks = lock(&self.tracks);
        if let Some(track) = tracks.get(&name) {
            if !track.closing.load(Ordering::SeqCst) {
                return SubscriberGuard::new(track.clone());
            }
        }
        let track = Arc::new(Track::new(
            name.clone(),
            &self.config,
            self.budget.clone(),
            self.metrics.clone(),
        ));
        tracks.insert(name, track.clone());
        let guard = SubscriberGuard::new(track.clone());
        drop(tracks);
        tokio::spawn(self.clone().run_upstream(track));
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
        let info = LiveInfo {
            track_properties: subscription
                .publish()
                .map(|p| p.track_properties.clone())
                .unwrap_or_default(),
            group_order: subscription.publish().and_then(|p| p.parameters.group_order),
        };
        track.set_state(TrackState::Live(info));
        if let Some(old) = lock(&self.tracks).insert(name, track.clone()) {
            old.closing.store(true, Ordering::SeqCst);
        }
        let tracks = self.clone();
        let pushed = track.clone();
        tokio::spawn(async move {
            let end = ingest(&pushed, subscription, None, &tracks.metrics).await;
            tracks.retire(&pushed, end);
        });
        track
    }

    /// The track `name` if this relay has it.
    pub fn get(&self, name: &FullTrackName) -> Option<Arc<Track>> {
        lock(&self.tracks).get(name).cloned()
    }

    async fn run_upstream(self: Arc<Self>, track: Arc<Track>) {
        let end = self.upstream(&track).await;
        self.retire(&track, end);
    }

    async fn upstream(&self, track: &Arc<Track>) -> TrackState {
        let name = &track.name;
        let Some(publisher) = self
            .origins
            .wait_route(&name.namespace, self.config.namespace_wait)
            .await
        else {
            return TrackState::Failed {
                code: RequestErrorCode::DoesNotExist,
                reason: format!("no publisher for namespace {}", name.namespace),
            };
        };
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
        self.metrics.upstream_subscriptions.inc();
        let info = subscription
            .subscribe()
            .map(|(_, ok)| LiveInfo {
                track_properties: ok.track_properties.clone(),
                group_order: ok.parameters.group_order,
            })
            .unwrap_or_default();
        tracing::debug!(track = %name, "upstream subscription live");
        track.set_state(TrackState::Live(info));
        let end = tokio::select! {
            end = ingest(track, subscription, Some(self.config.linger), &self.metrics) => end,
            // Another session took over the namespace (`--replace-publisher`): end this copy
            // (dropping the upstream subscription) so subscribers never get a mix of both;
            // they re-subscribe and reach the new publisher.
            () = publisher.replaced() => {
                tracing::debug!(track = %name, "publisher replaced; ending the track");
                TrackState::Ended {
                    code: PublishDoneCode::GoingAway,
                    reason: "the publisher was replaced".into(),
                }
            }
        };
        self.metrics.upstream_subscriptions.dec();
        end
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

/// Read an upstream subscription into the track's cache until it ends, or (with `linger`)
/// until the track has had no subscribers for that long. Returns the final state.
async fn ingest(
    track: &Arc<Track>,
    mut subscription: Subscription,
    linger: Option<Duration>,
    metrics: &Arc<Metrics>,
) -> TrackState {
    let mut done: Option<(PublishDoneCode, String)> = None;
    let mut subscribers = track.subscribers.subscribe();
    // The subgroup ingests in flight: when upstream ends the track, their last objects may
    // still be on the way, and the cache must not close under them.
    let mut subgroups = tokio::task::JoinSet::new();
    let mut abandoned = false;
    loop {
        let idle = async {
            match linger {
                Some(linger) => wait_idle(&mut subscribers, linger).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = subscription.next() => match event {
                Ok(Some(TrackEvent::Subgroup(mut reader))) => {
                    // Enter the subgroup in the cache now, in the order its stream arrived,
                    // when its header names it; waiting for its first (possibly large) object
                    // would let a later group's stream overtake it.
                    let Some(cached) = open_cached(track, &mut reader) else { continue };
                    subgroups.spawn(ingest_subgroup(track.clone(), reader, cached, metrics.clone()));
                }
                Ok(Some(TrackEvent::Datagram(datagram))) => {
                    metrics.objects_in.inc();
                    metrics.bytes_in.add(datagram.payload.len() as u64);
                    track.fan_out_datagram(&datagram);
                }
                Ok(Some(TrackEvent::Done(d))) => done = Some((d.status_code, d.error_reason.to_string())),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(track = %track.name, error = %e, "upstream subscription failed");
                    done.get_or_insert((PublishDoneCode::InternalError, e.to_string()));
                    break;
                }
            },
            Some(_) = subgroups.join_next(), if !subgroups.is_empty() => {}
            _ = idle => {
                tracing::debug!(track = %track.name, "no subscribers left; unsubscribing upstream");
                done = Some((PublishDoneCode::SubscriptionEnded, "no subscribers".into()));
                abandoned = true;
                break;
            }
        }
    }
    if !abandoned {
        // Let the subgroups upstream already opened finish (bounded), so the end of the
        // track never cuts off their last objects; then abort whatever is left.
        let finished = tokio::time::timeout(SUBGROUP_DRAIN, async {
            while subgroups.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::debug!(track = %track.name, left = subgroups.len(), "upstream subgroups unfinished at the end of the track");
        }
    }
    drop(subgroups);
    let (code, reason) = done.unwrap_or((PublishDoneCode::TrackEnded, "upstream ended".into()));
    TrackState::Ended { code, reason }
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
