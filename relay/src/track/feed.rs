//! Feeding a track: from a publisher at this relay (moving with a takeover), from parent
//! relays (with failover), from a pushed PUBLISH, or, while nobody publishes it, holding it
//! for subscribers that wait for a publisher (the rendezvous).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use banyan_moq::coding::{FullTrackName, Location, PublishDoneCode, RequestErrorCode};
use banyan_moq::message::{HopPath, Parameters, Subscribe, SubscriptionFilter};
use banyan_moq::session::{Error as SessionError, Subscription};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::ingest::{Ingest, IngestEnd};
use super::{LiveInfo, ParentRef, Track, TrackState, Tracks};
use crate::metrics::Metrics;
use crate::namespaces::Publisher;
use crate::upstream::{Parent, Parents, UpstreamError};

impl Tracks {
    /// Read a pushed track's subscription into its cache until its publisher ends it or
    /// another session's PUBLISH of the same track replaces it.
    pub(super) async fn feed_pushed(&self, track: &Arc<Track>, subscription: Subscription) -> TrackState {
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

    pub(super) async fn run_upstream(self: Arc<Self>, track: Arc<Track>, path: HopPath) {
        let end = self.upstream(&track, &path).await;
        self.retire(&track, end);
    }

    /// Feed the track from a local publisher if there is one, else from a parent, else from a
    /// publisher that appears, here or at a parent, while subscribers wait for one (each for
    /// its RENDEZVOUS_TIMEOUT, at most `--rendezvous-max`).
    async fn upstream(&self, track: &Arc<Track>, path: &HopPath) -> TrackState {
        let name = &track.name;
        if let Some(publisher) = self.namespaces.route(&name.namespace) {
            return self.feed_from_publisher(track, publisher).await;
        }
        if let Some(parents) = &self.parents {
            if let Some(end) = self.feed_from_parents(track, parents, path, None).await {
                return end;
            }
        }
        let (tx, mut pushed) = oneshot::channel();
        *track.rendezvous.lock() = Some(tx);
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
                        .namespaces
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
        track.rendezvous.lock().take();
        drop(awaiting);
        self.feed_from_publisher(track, publisher).await
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
            let subscription = match self.subscribe_publisher(name, &publisher, live).await {
                Ok(subscription) => subscription,
                Err(end) => return end,
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
                    track.producer.close_groups();
                    self.metrics.publisher_takeovers.inc();
                    match self.namespaces.route(&name.namespace) {
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

    /// Subscribe to the track at `publisher`; on failure, the state the track ends in (it
    /// fails before it was `live`, and ends after, when a new publisher does not serve it).
    async fn subscribe_publisher(
        &self,
        name: &FullTrackName,
        publisher: &Publisher,
        live: bool,
    ) -> Result<Subscription, TrackState> {
        let subscribe = Subscribe {
            request_id: 0,
            track_namespace: name.namespace.clone(),
            track_name: name.name.clone(),
            parameters: Parameters::default(),
        };
        self.metrics.upstream_subscribe_total.inc();
        match publisher.session.subscribe(subscribe).await {
            Ok(s) => Ok(s),
            Err(SessionError::Refused { code, reason, .. }) if !live => {
                Err(TrackState::Failed { code, reason })
            }
            Err(e) if !live => Err(TrackState::Failed {
                code: RequestErrorCode::InternalError,
                reason: format!("upstream: {e}"),
            }),
            Err(e) => {
                tracing::info!(track = %name, error = %e, "the new publisher does not serve this track; ending it");
                Err(TrackState::Ended {
                    code: PublishDoneCode::TrackEnded,
                    reason: format!("the new publisher of the namespace does not serve the track: {e}"),
                })
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
        first: Option<(Subscription, Parent)>,
    ) -> Option<TrackState> {
        // The subgroups a parent going away still had on their way finish here (each within
        // SUBGROUP_DRAIN) while the next parent feeds the track.
        let mut draining = JoinSet::new();
        let end = self
            .follow_parents(track, parents, path, first, &mut draining)
            .await;
        while draining.join_next().await.is_some() {}
        end
    }

    /// [`Tracks::feed_from_parents`], handing the ingest of a parent going away to `draining`.
    async fn follow_parents(
        &self,
        track: &Arc<Track>,
        parents: &Parents,
        path: &HopPath,
        mut first: Option<(Subscription, Parent)>,
        draining: &mut JoinSet<()>,
    ) -> Option<TrackState> {
        let name = &track.name;
        let mut live = false;
        let mut failover = Failover::new();
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
                    let nobody = *subscribers.borrow() == 0;
                    match failover
                        .retry(name, &e, self.config.failover_window, nobody)
                        .await
                    {
                        Some(end) => return Some(end),
                        None => continue,
                    }
                }
            };
            self.metrics.upstream_subscribe_total.inc();
            if let Some(since) = failover.found() {
                self.metrics.upstream_failovers.inc();
                tracing::info!(track = %name, parent = %parent.url, after = ?since.elapsed(), "failed over to parent");
            }
            *track.parent.lock() = Some(ParentRef {
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
                    draining.spawn(async move { ingest.finish(&track).await });
                }
                IngestEnd::Lost(ref reason) | IngestEnd::Done { ref reason, .. } => {
                    tracing::info!(track = %name, parent = %parent.url, %reason, "lost the parent; failing over");
                }
            }
            parents.failed(&parent);
            failover.lost();
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
}

/// How often a track waiting for a publisher asks its parents again.
const PARENT_POLL: Duration = Duration::from_millis(200);

/// The first pause between failover attempts; doubled up to [`FAILOVER_BACKOFF_MAX`].
const FAILOVER_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest pause between failover attempts.
const FAILOVER_BACKOFF_MAX: Duration = Duration::from_millis(500);

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

/// A live track between parents: since when it has had none, and the pause before the next
/// attempt.
struct Failover {
    lost_since: Option<Instant>,
    backoff: Duration,
}

impl Failover {
    fn new() -> Self {
        Self {
            lost_since: None,
            backoff: FAILOVER_BACKOFF_MIN,
        }
    }

    /// The parent was lost.
    fn lost(&mut self) {
        self.lost_since = Some(Instant::now());
    }

    /// A parent feeds the track (again): since when it had none, after a failover.
    fn found(&mut self) -> Option<Instant> {
        self.backoff = FAILOVER_BACKOFF_MIN;
        self.lost_since.take()
    }

    /// Attempt `e` found no parent: the state to end the track with once the failover window
    /// has passed (or `nobody` is left to serve), else `None` after the backoff.
    async fn retry(
        &mut self,
        name: &FullTrackName,
        e: &UpstreamError,
        window: Duration,
        nobody: bool,
    ) -> Option<TrackState> {
        let since = *self.lost_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= window || nobody {
            tracing::info!(track = %name, error = %e, "no parent to fail over to; ending the track");
            return Some(TrackState::Ended {
                code: PublishDoneCode::InternalError,
                reason: format!("lost the upstream relay: {}", e.reason()),
            });
        }
        tracing::debug!(track = %name, error = %e, retry_in = ?self.backoff, "failover attempt failed");
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(FAILOVER_BACKOFF_MAX);
        None
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
pub(super) fn live_info(subscription: &Subscription) -> LiveInfo {
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
