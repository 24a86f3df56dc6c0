//! Synthetic live publishers: each broadcast is one `video` track with one group per GOP and
//! one object per frame, paced at the profile's fps, every object carrying its capture time
//! as the LOC Timestamp property ([`banyan_media::loc::timestamp_properties`]).
//!
//! A broadcast is one [`banyan_moq::track::TrackProducer`], written by one pacing task that
//! its first SUBSCRIBE starts; every subscription is a [`Fanout`] of it, joining at the next
//! object written.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use banyan_media::loc;
use banyan_moq::coding::{RequestErrorCode, TrackName, TrackNamespace};
use banyan_moq::message::{Parameters, PublishNamespace, SubscribeOk};
use banyan_moq::session::{NamespacePublication, Request, Session, SubscribeRequest};
use banyan_moq::track::{Fanout, Limits, Object, Observer, Start, Step, SubgroupProducer, TrackProducer};
use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

/// The track every broadcast publishes.
pub const TRACK: &str = "video";

/// How far behind the newest group a subscription may fall (in time) before it skips its
/// oldest groups: see [`Stream::max_lag`]. The payload is shared, so the groups in flight
/// cost next to nothing; this only decides when a stalled relay loses groups.
pub const MAX_LAG: Duration = Duration::from_secs(2);

/// Groups each broadcast's track keeps (for subscriptions still sending older groups; a new
/// subscription starts at the next object).
const KEPT_GROUPS: usize = 2;

/// The `current_group` of a broadcast that has not produced anything yet.
pub const NOT_STARTED: u64 = u64::MAX;

/// One broadcast: its track, written by one pacing task, and what the run reads of it.
#[derive(Debug)]
pub struct Broadcast {
    /// `<prefix>/<index>`.
    pub namespace: TrackNamespace,
    /// The `video` track every subscription reads.
    track: TrackProducer,
    /// Set when the first SUBSCRIBE started the pacing task.
    started: AtomicBool,
    /// The group being produced ([`NOT_STARTED`] before the first).
    pub current_group: AtomicU64,
    /// The last object's (group, object), set just before it is written.
    pub last_object: watch::Sender<Option<(u64, u64)>>,
    /// Counts the objects sent to subscribers.
    sent: Arc<SentObjects>,
    /// SUBSCRIBEs answered.
    pub subscriptions: AtomicU64,
}

impl Broadcast {
    /// A broadcast that has not started.
    pub fn new(namespace: TrackNamespace) -> Self {
        let sent = Arc::new(SentObjects::default());
        let limits = Limits {
            observer: sent.clone(),
            ..Limits::groups(KEPT_GROUPS)
        };
        Self {
            namespace,
            track: TrackProducer::new(limits),
            started: AtomicBool::new(false),
            current_group: AtomicU64::new(NOT_STARTED),
            last_object: watch::Sender::new(None),
            sent,
            subscriptions: AtomicU64::new(0),
        }
    }

    /// The group in production, if any.
    pub fn current_group(&self) -> Option<u64> {
        Some(self.current_group.load(Ordering::Relaxed)).filter(|&g| g != NOT_STARTED)
    }

    /// Objects written to subscriptions (each object counted once per subscription it
    /// was sent on).
    pub fn objects_sent(&self) -> u64 {
        self.sent.0.load(Ordering::Relaxed)
    }

    /// Where a subscription made now joins: the object after the newest one written (the
    /// next frame due, as if it had joined the broadcast's clock), or the very first.
    fn join(&self) -> Start {
        match self.track.consume().largest() {
            Some(at) => Start::At {
                group: at.group,
                object: at.object + 1,
            },
            None => Start::At { group: 0, object: 0 },
        }
    }
}

/// Counts objects a [`Fanout`] wrote to a subscriber.
#[derive(Debug, Default)]
struct SentObjects(AtomicU64);

impl Observer for SentObjects {
    fn sent(&self, _bytes: usize, _received: Instant) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the publishers produce.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Time between objects.
    pub interval: Duration,
    /// Objects per group.
    pub gop: u64,
    /// The payload of every object (shared, never copied).
    pub payload: Bytes,
}

impl Stream {
    /// Groups a subscription may fall behind the newest before its oldest group is skipped:
    /// [`MAX_LAG`] worth of groups, at least two (so `--gop 1` does not skip on a hiccup
    /// of a few frames, and a long GOP still skips once a couple of keyframes are missed).
    pub fn max_lag(&self) -> usize {
        let group = self.interval.as_secs_f64() * self.gop.max(1) as f64;
        if group <= 0.0 {
            return usize::MAX;
        }
        ((MAX_LAG.as_secs_f64() / group).ceil() as usize).max(2)
    }
}

/// Advertise every broadcast on `session`. Keep the publications alive while serving.
pub async fn announce(
    session: &Session,
    broadcasts: &[Arc<Broadcast>],
) -> Result<Vec<NamespacePublication>, banyan_moq::session::Error> {
    let mut publications = Vec::with_capacity(broadcasts.len());
    for broadcast in broadcasts {
        let request = PublishNamespace {
            request_id: 0,
            track_namespace: broadcast.namespace.clone(),
            parameters: Parameters::default(),
        };
        publications.push(session.publish_namespace(request).await?);
    }
    Ok(publications)
}

/// Answer SUBSCRIBEs on `session` for `broadcasts` until the session ends. A broadcast's
/// first SUBSCRIBE starts its pacing task; every subscription joins it at the next object.
/// When `stop` turns true, each broadcast writes one last object (recorded in
/// [`Broadcast::last_object`]) and finishes its subgroup; the subscriptions stay open until
/// the session closes.
pub async fn serve(
    session: Session,
    broadcasts: Vec<Arc<Broadcast>>,
    stream: Stream,
    stop: watch::Receiver<bool>,
) {
    let max_lag = stream.max_lag();
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(request) = session.accept().await {
        while tasks.try_join_next().is_some() {}
        let Request::Subscribe(request) = request else {
            let _ = request
                .reject(RequestErrorCode::NotSupported, "bench publisher: SUBSCRIBE only")
                .await;
            continue;
        };
        let found = broadcasts.iter().find(|b| {
            b.namespace == request.message.track_namespace
                && request.message.track_name == TrackName::from(TRACK)
        });
        let Some(broadcast) = found.cloned() else {
            let _ = request
                .reject(RequestErrorCode::DoesNotExist, "no such track")
                .await;
            continue;
        };
        let start = broadcast.join();
        if !broadcast.started.swap(true, Ordering::Relaxed) {
            tasks.spawn(pace(broadcast.clone(), stream.clone(), stop.clone()));
        }
        tasks.spawn(serve_subscription(request, broadcast, start, max_lag));
    }
}

/// One subscription: send the broadcast's track from `start` until cancelled. After the last
/// object the subscription stays open (no PUBLISH_DONE) until the run closes the session, so
/// the last group is never racing the end of the track through the relay.
async fn serve_subscription(
    request: SubscribeRequest,
    broadcast: Arc<Broadcast>,
    start: Start,
    max_lag: usize,
) {
    // Like banyan-publish: newest group first, so an overloaded relay sheds old groups.
    let Ok(mut writer) = request.accept(SubscribeOk::newest_first()).await else {
        return;
    };
    broadcast.subscriptions.fetch_add(1, Ordering::Relaxed);
    let mut fanout = Fanout::new(broadcast.track.consume(), writer.sender(), start, max_lag);
    // The request stream is watched by its own task: reading it is not cancel-safe, so it
    // must not sit in a select! beside the fanout.
    let (cancelled_tx, mut cancelled) = watch::channel(false);
    let watcher = tokio::spawn(async move {
        while let Ok(Some(_)) = writer.next_request().await {}
        let _ = cancelled_tx.send(true);
        drop(writer);
    });
    loop {
        tokio::select! {
            step = fanout.step() => if step == Step::Ended { break },
            _ = cancelled.changed() => break,
        }
    }
    fanout.abandon().await;
    let _ = watcher.await;
}

/// Write the broadcast's frames on its clock (frame `n` due `n` intervals after the start),
/// `gop` objects per group, each stamped with its capture time, until `stop` (then one last
/// object).
async fn pace(broadcast: Arc<Broadcast>, stream: Stream, stop: watch::Receiver<bool>) {
    let start = Instant::now();
    let interval = stream.interval.as_secs_f64();
    let gop = stream.gop.max(1);
    let mut subgroup: Option<SubgroupProducer> = None;
    for frame in 0u64.. {
        tokio::time::sleep_until(start + Duration::from_secs_f64(frame as f64 * interval)).await;
        let (group, object) = (frame / gop, frame % gop);
        let last = *stop.borrow();
        if last {
            broadcast.last_object.send_replace(Some((group, object)));
        }
        if object == 0 {
            broadcast.current_group.store(group, Ordering::Relaxed);
            subgroup = broadcast.track.open_subgroup(group, 0, None, true);
        }
        if let Some(subgroup) = &subgroup {
            let properties = loc::timestamp_properties(loc::unix_micros());
            subgroup.write(Object::new(object, properties, stream.payload.clone()));
        }
        if object + 1 == gop || last {
            // Dropping the subgroup finishes it.
            subgroup = None;
        }
        if last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use banyan_moq::coding::Location;

    use super::*;

    fn stream(interval_ms: u64, gop: u64) -> Stream {
        Stream {
            interval: Duration::from_millis(interval_ms),
            gop,
            payload: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn max_lag_is_two_seconds_of_groups_and_at_least_two() {
        assert_eq!(stream(100, 10).max_lag(), 2, "1 s groups");
        assert_eq!(stream(10, 1).max_lag(), 200, "10 ms groups");
        assert_eq!(stream(1000, 10).max_lag(), 2, "10 s groups");
    }

    #[tokio::test(start_paused = true)]
    async fn one_pacing_task_writes_groups_then_one_last_object() {
        let broadcast = Arc::new(Broadcast::new(TrackNamespace::from_path("bench/0").unwrap()));
        assert_eq!(broadcast.join(), Start::At { group: 0, object: 0 });
        assert_eq!(broadcast.current_group(), None);
        let (stop_tx, stop) = watch::channel(false);
        let pacing = tokio::spawn(pace(broadcast.clone(), stream(10, 3), stop));
        let consumer = broadcast.track.consume();
        consumer.reached(Location::new(1, 1)).await;
        assert_eq!(broadcast.current_group(), Some(1));
        assert_eq!(
            broadcast.join(),
            Start::At { group: 1, object: 2 },
            "a subscription joins at the next object"
        );

        stop_tx.send(true).unwrap();
        pacing.await.unwrap();
        assert_eq!(*broadcast.last_object.borrow(), Some((1, 2)));
        let (group, _) = consumer
            .first_group(Start::At { group: 1, object: 0 })
            .await
            .unwrap();
        let subgroups = group.subgroups_from(0).await;
        let subgroup = subgroups.first().unwrap();
        let objects = subgroup.read_from(0).await;
        assert_eq!(objects.iter().map(|o| o.id).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(
            objects
                .iter()
                .all(|o| loc::capture_timestamp(&o.properties).is_some()),
            "every object carries its capture time"
        );
        assert!(
            subgroup.read_from(3).await.is_empty(),
            "the last object finishes its subgroup"
        );
        assert!(!consumer.is_ended(), "the track stays open (no PUBLISH_DONE)");
        assert_eq!(broadcast.objects_sent(), 0, "nothing sent without a subscriber");
    }
}
