//! The track table: every track at this relay by name, joined by SUBSCRIBE, replaced by a
//! PUBLISH of the same track, and watched by SUBSCRIBE_TRACKS.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use banyan_moq::coding::{FullTrackName, TrackName, TrackNamespace};
use banyan_moq::message::HopPath;
use banyan_moq::session::Subscription;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::feed::live_info;
use super::{Subscriber, SubscriberGuard, Track, TrackConfig, TrackState};
use crate::metrics::Metrics;
use crate::namespaces::Namespaces;
use crate::upstream::Parents;
use banyan_moq::track::Budget;

/// Every track at this relay, by name.
#[derive(Debug)]
pub struct Tracks {
    pub(super) tracks: Mutex<HashMap<FullTrackName, Arc<Track>>>,
    /// SUBSCRIBE_TRACKS requests, told of every pushed track under their prefix.
    watchers: Mutex<Vec<TrackWatcher>>,
    next_watcher: AtomicU64,
    pub(super) namespaces: Arc<Namespaces>,
    pub(super) parents: Option<Arc<Parents>>,
    pub(super) config: TrackConfig,
    pub(super) budget: Arc<Budget>,
    pub(super) metrics: Arc<Metrics>,
}

impl Tracks {
    /// An empty registry that finds publishers in `namespaces`, and otherwise (when given) asks
    /// `parents`.
    pub fn new(
        namespaces: Arc<Namespaces>,
        parents: Option<Arc<Parents>>,
        config: TrackConfig,
        budget: Arc<Budget>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            tracks: Mutex::new(HashMap::new()),
            watchers: Mutex::new(Vec::new()),
            next_watcher: AtomicU64::new(0),
            namespaces,
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
    ///
    /// For a new track, also returns its upstream task for the caller to run (in the relay's
    /// [`Tasks`](crate::tasks::Tasks)): it feeds the track until it ends, then retires it.
    pub fn subscribe(
        self: &Arc<Self>,
        name: FullTrackName,
        path: &HopPath,
        session: Option<u64>,
    ) -> (SubscriberGuard, Option<impl Future<Output = ()> + Send + 'static>) {
        // A request with a relay path comes from a child relay, one without from a viewer's
        // `session`; no session is this relay itself (e.g. following moderation): not a viewer.
        let subscriber = match session {
            Some(session) if path.is_empty() => Subscriber::Viewer(session),
            _ => Subscriber::Relay,
        };
        let mut tracks = self.tracks.lock();
        if let Some(track) = tracks.get(&name) {
            if !track.closing.load(Ordering::SeqCst) {
                return (SubscriberGuard::new(track.clone(), subscriber), None);
            }
        }
        let track = Arc::new(Track::new(
            name.clone(),
            &self.config,
            self.budget.clone(),
            self.metrics.clone(),
        ));
        tracks.insert(name, track.clone());
        let guard = SubscriberGuard::new(track.clone(), subscriber);
        drop(tracks);
        (guard, Some(self.clone().run_upstream(track, path.clone())))
    }

    /// A track pushed to us with PUBLISH: it replaces any entry of the same name and lives
    /// until its publisher ends it. SUBSCRIBEs held waiting for a publisher of this track
    /// (RENDEZVOUS_TIMEOUT) proceed with it instead (draft-18 §"Relays": they get no PUBLISH).
    ///
    /// Unless held subscribers took it, also returns the task that reads the track into its
    /// cache until it ends, for the caller to run (in the relay's [`Tasks`](crate::tasks::Tasks)).
    pub fn insert_pushed(
        self: &Arc<Self>,
        name: FullTrackName,
        subscription: Subscription,
    ) -> (Arc<Track>, Option<impl Future<Output = ()> + Send + 'static>) {
        let mut tracks = self.tracks.lock();
        let waiting = tracks
            .get(&name)
            .filter(|t| !t.closing.load(Ordering::SeqCst))
            .and_then(|t| t.rendezvous.lock().take().map(|tx| (t.clone(), tx)));
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
                    return (track, None);
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
        let feed = async move {
            let end = tracks.feed_pushed(&pushed, subscription).await;
            tracks.retire(&pushed, end);
        };
        (track, Some(feed))
    }

    /// Whether a live track pushed by a session that is still open has the name `name`
    /// (a second PUBLISH of it is refused when takeover is off).
    pub fn pushed_and_live(&self, name: &FullTrackName) -> bool {
        self.tracks
            .lock()
            .get(name)
            .is_some_and(|t| t.is_pushed() && t.is_live() && !t.closing.load(Ordering::SeqCst))
    }

    /// The track `name` if this relay has it.
    pub fn get(&self, name: &FullTrackName) -> Option<Arc<Track>> {
        self.tracks.lock().get(name).cloned()
    }

    /// Tell the SUBSCRIBE_TRACKS watchers whose prefix covers it of a pushed track.
    pub(super) fn announce_pushed(&self, track: &Arc<Track>) {
        self.watchers
            .lock()
            .retain(|w| !track.name.namespace.has_prefix(&w.prefix) || w.tracks.send(track.clone()).is_ok());
    }

    /// Hear of pushed tracks under `prefix` (SUBSCRIBE_TRACKS): the live ones at once, then
    /// each new one as its PUBLISH arrives.
    pub fn watch(self: &Arc<Self>, prefix: TrackNamespace) -> TrackWatch {
        let id = self.next_watcher.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        // The registry lock orders this against `insert_pushed`: a track is either listed
        // here or sent to the watcher, never neither.
        let tracks = self.tracks.lock();
        for track in tracks.values() {
            if track.is_pushed() && track.is_live() && track.name.namespace.has_prefix(&prefix) {
                let _ = tx.send(track.clone());
            }
        }
        self.watchers.lock().push(TrackWatcher {
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
        self.tracks.lock().values().cloned().collect()
    }

    /// Per namespace with any, the distinct viewer sessions (not child relays) reading any
    /// of its tracks whose name passes `counted` now: one pass over the table. A viewer of
    /// audio and video counts once, and so do viewers split over renditions: each once.
    pub fn viewers_by_namespace(
        &self,
        counted: impl Fn(&TrackName) -> bool,
    ) -> HashMap<TrackNamespace, usize> {
        let mut sessions: HashMap<TrackNamespace, HashSet<u64>> = HashMap::new();
        for (name, track) in self.tracks.lock().iter() {
            if counted(&name.name) {
                let viewers = track.viewer_sessions();
                if !viewers.is_empty() {
                    sessions
                        .entry(name.namespace.clone())
                        .or_default()
                        .extend(viewers);
                }
            }
        }
        sessions.into_iter().map(|(ns, s)| (ns, s.len())).collect()
    }

    /// The parents this registry asks, if any.
    pub fn parents(&self) -> Option<&Arc<Parents>> {
        self.parents.as_ref()
    }

    /// Close `track` to new subscribers if it has none (checked under the registry lock, so
    /// none can join in between). False if one joined meanwhile.
    pub(super) fn close_unwatched(&self, track: &Arc<Track>) -> bool {
        let _tracks = self.tracks.lock();
        if track.subscribers() > 0 {
            return false;
        }
        track.closing.store(true, Ordering::SeqCst);
        true
    }

    /// Take a finished track out of the registry and tell its readers.
    pub(super) fn retire(&self, track: &Arc<Track>, end: TrackState) {
        {
            let mut tracks = self.tracks.lock();
            track.closing.store(true, Ordering::SeqCst);
            if tracks.get(&track.name).is_some_and(|t| Arc::ptr_eq(t, track)) {
                tracks.remove(&track.name);
            }
        }
        track.producer.end();
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
        self.registry.watchers.lock().retain(|w| w.id != self.id);
    }
}
