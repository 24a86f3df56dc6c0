//! Synthetic live publishers: each broadcast is one `video` track with one group per GOP and
//! one object per frame, paced at the profile's fps, every object carrying its capture time
//! as the LOC Timestamp property ([`banyan_media::loc::timestamp_properties`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use banyan_media::loc;
use banyan_moq::coding::{RequestErrorCode, TrackName, TrackNamespace};
use banyan_moq::data::SubgroupObject;
use banyan_moq::message::{Parameters, PublishNamespace, SubscribeOk};
use banyan_moq::session::{
    NamespacePublication, Request, Session, SubgroupWriter, SubscribeRequest, TrackSender,
};
use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

/// The track every broadcast publishes.
pub const TRACK: &str = "video";

/// The `current_group` of a broadcast that has not produced anything yet.
pub const NOT_STARTED: u64 = u64::MAX;

/// One broadcast's shared state: its clock, its progress and its last object.
#[derive(Debug)]
pub struct Broadcast {
    /// `<prefix>/<index>`.
    pub namespace: TrackNamespace,
    /// When frame 0 is due; set by the first SUBSCRIBE.
    start: OnceLock<Instant>,
    /// The group being produced ([`NOT_STARTED`] before the first).
    pub current_group: AtomicU64,
    /// The last object's (group, object), set just before it is written.
    pub last_object: watch::Sender<Option<(u64, u64)>>,
    /// Objects written (all subscriptions).
    pub objects_sent: AtomicU64,
    /// SUBSCRIBEs answered.
    pub subscriptions: AtomicU64,
}

impl Broadcast {
    /// A broadcast that has not started.
    pub fn new(namespace: TrackNamespace) -> Self {
        Self {
            namespace,
            start: OnceLock::new(),
            current_group: AtomicU64::new(NOT_STARTED),
            last_object: watch::Sender::new(None),
            objects_sent: AtomicU64::new(0),
            subscriptions: AtomicU64::new(0),
        }
    }

    /// The group in production, if any.
    pub fn current_group(&self) -> Option<u64> {
        Some(self.current_group.load(Ordering::Relaxed)).filter(|&g| g != NOT_STARTED)
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

/// Answer SUBSCRIBEs on `session` for `broadcasts` until the session ends. When `stop`
/// turns true, each stream writes one last object (recorded in [`Broadcast::last_object`])
/// and finishes its subgroup; the subscription stays open until the session closes.
pub async fn serve(
    session: Session,
    broadcasts: Vec<Arc<Broadcast>>,
    stream: Stream,
    stop: watch::Receiver<bool>,
) {
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
        tasks.spawn(serve_subscription(
            request,
            broadcast,
            stream.clone(),
            stop.clone(),
        ));
    }
}

/// One subscription: write frames live until stopped or cancelled.
async fn serve_subscription(
    request: SubscribeRequest,
    broadcast: Arc<Broadcast>,
    stream: Stream,
    stop: watch::Receiver<bool>,
) {
    let Ok(mut writer) = request.accept(SubscribeOk::default()).await else {
        return;
    };
    broadcast.subscriptions.fetch_add(1, Ordering::Relaxed);
    let sender = writer.sender();
    // The request stream is watched by its own task: reading it is not cancel-safe, so it
    // must not sit in a select! that loses every frame tick. After the last object the
    // subscription stays open (no PUBLISH_DONE) until the run closes the session, so the
    // last group is never racing the end of the track through the relay.
    let (cancelled_tx, mut cancelled) = watch::channel(false);
    let watcher = tokio::spawn(async move {
        while let Ok(Some(_)) = writer.next_request().await {}
        let _ = cancelled_tx.send(true);
        drop(writer);
    });
    let start = *broadcast.start.get_or_init(Instant::now);
    produce(&sender, &broadcast, &stream, start, stop, &mut cancelled).await;
    let _ = watcher.await;
}

async fn produce(
    sender: &TrackSender,
    broadcast: &Broadcast,
    stream: &Stream,
    start: Instant,
    stop: watch::Receiver<bool>,
    cancelled: &mut watch::Receiver<bool>,
) {
    let interval = stream.interval.as_secs_f64();
    let gop = stream.gop.max(1);
    // Join the broadcast's clock at the next frame due.
    let mut frame = (start.elapsed().as_secs_f64() / interval).ceil() as u64;
    let mut subgroup: Option<(u64, SubgroupWriter)> = None;
    loop {
        let due = start + Duration::from_secs_f64(frame as f64 * interval);
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = cancelled.changed() => return,
        }
        let (group, object) = (frame / gop, frame % gop);
        let last = *stop.borrow();
        if last {
            broadcast.last_object.send_if_modified(|l| {
                let unset = l.is_none();
                if unset {
                    *l = Some((group, object));
                }
                unset
            });
        }
        if subgroup.as_ref().map(|(g, _)| *g) != Some(group) {
            if let Some((_, old)) = subgroup.take() {
                old.finish();
            }
            broadcast.current_group.store(group, Ordering::Relaxed);
            match sender.open_subgroup(group, 0, None, true).await {
                Ok(s) => subgroup = Some((group, s)),
                Err(_) if sender.session().is_closed() => return,
                Err(_) => {}
            }
        }
        if let Some((_, writer)) = subgroup.as_mut() {
            let object = SubgroupObject {
                object_id: object,
                properties: loc::timestamp_properties(loc::unix_micros()),
                payload: stream.payload.clone(),
                ..Default::default()
            };
            if writer.write(&object).await.is_err() {
                // The relay stopped this group's stream (e.g. skipped it); carry on with the next.
                subgroup = None;
                if sender.session().is_closed() {
                    return;
                }
            } else {
                broadcast.objects_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        if object + 1 == gop || last {
            if let Some((_, s)) = subgroup.take() {
                s.finish();
            }
        }
        if last {
            return;
        }
        frame += 1;
    }
}
