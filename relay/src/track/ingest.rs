//! Ingest: one upstream subscription read into a track's cache, each subgroup stream copied
//! by its own task, datagrams fanned out as they come.

use std::sync::Arc;
use std::time::Duration;

use banyan_moq::coding::PublishDoneCode;
use banyan_moq::session::{SubgroupReader, Subscription, TrackEvent};
use tokio::sync::watch;

use super::{Track, TrackState};
use crate::metrics::Metrics;
use banyan_moq::track::{Object, SubgroupProducer};

/// How long, after upstream ends a track, its open subgroup streams may take to finish.
const SUBGROUP_DRAIN: Duration = Duration::from_secs(2);

/// How an [`Ingest`] stopped.
#[derive(Debug)]
pub(super) enum IngestEnd {
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
    pub(super) fn into_state(self) -> TrackState {
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

/// One upstream subscription being read into a track's cache, with the subgroup streams it
/// has opened (each copied by its own task).
pub(super) struct Ingest {
    pub(super) subscription: Subscription,
    pub(super) subgroups: tokio::task::JoinSet<()>,
    /// Groups at or below this are refused ([`IngestEnd::Restarted`]): set after a takeover.
    pub(super) floor: Option<u64>,
}

impl Ingest {
    pub(super) fn new(subscription: Subscription) -> Self {
        Self {
            subscription,
            subgroups: tokio::task::JoinSet::new(),
            floor: None,
        }
    }

    /// Read the subscription into the track's cache until it ends, `stop` resolves, or (with
    /// `linger`) the track has had no subscribers for that long.
    pub(super) async fn run(
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
                        metrics.bytes_in.inc_by(datagram.payload.len() as u64);
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
    pub(super) async fn finish(mut self, track: &Track) {
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
fn open_cached(track: &Track, reader: &mut SubgroupReader) -> Option<Option<SubgroupProducer>> {
    let Some(subgroup_id) = reader.subgroup_id() else {
        return Some(None);
    };
    let header = reader.header();
    match track.producer.open_subgroup(
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
    mut cached: Option<SubgroupProducer>,
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
            match track.producer.open_subgroup(
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
        metrics.bytes_in.inc_by(object.payload.len() as u64);
        if let Some(subgroup) = &cached {
            subgroup.write(Object::from(object));
        }
    }
    // Dropping `cached` finishes the subgroup.
}
