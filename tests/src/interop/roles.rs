//! What the cases' publishers and subscribers do, shared between cases:
//!
//! - [`Clock`]: a live track's timeline, one object every [`OBJECT_INTERVAL`], groups of
//!   [`OBJECTS_PER_GROUP`], whose payloads ([`payload`]) say where they belong;
//! - [`serve`]: a publisher session's request loop: SUBSCRIBE and FETCH for its track are
//!   answered from the clock, anything else is refused;
//! - [`feed`]: one subscription's objects (SUBSCRIBE or PUBLISH), one subgroup stream per group,
//!   following the subscriber's Forward State;
//! - [`watch`]: a subscriber's view of a [`Subscription`]: every object with its stream, every
//!   stream end and the PUBLISH_DONE, as one ordered channel.

use std::time::Duration;

use banyan_moq::coding::{Location, RequestErrorCode, TrackName, TrackNamespace};
use banyan_moq::data::{FetchItem, FetchObject, ObjectStatus};
use banyan_moq::message::{FetchOk, FetchType, Message, PublishDone, RequestOk, SubscribeOk};
use banyan_moq::session::{
    Error, FetchRequest, Request, Session, SubgroupWriter, Subscription, TrackEvent, TrackSender, TrackWriter,
};
use bytes::Bytes;
use tokio::sync::{mpsc, watch as state};
use tokio::task::{JoinHandle, JoinSet};

/// Objects per group on a live track.
pub(crate) const OBJECTS_PER_GROUP: u64 = 5;
/// Time between objects on a live track (50 objects a second).
pub(crate) const OBJECT_INTERVAL: Duration = Duration::from_millis(20);
/// The Publisher Priority every object is sent with.
pub(crate) const PRIORITY: u8 = 128;
/// Payload bytes of a live object.
const PAYLOAD_LEN: usize = 64;

/// The payload of live object `{group, object}`: its location, padded to 64 bytes.
pub(crate) fn payload(group: u64, object: u64) -> Bytes {
    let mut text = format!("banyan-interop g{group} o{object} ").into_bytes();
    text.resize(PAYLOAD_LEN, b'.');
    Bytes::from(text)
}

/// A task aborted when its handle is dropped.
#[derive(Debug)]
pub(crate) struct Task(JoinHandle<()>);

impl Task {
    pub fn spawn(work: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        Self(tokio::spawn(work))
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A live track's timeline: the Location of the newest object published.
#[derive(Debug)]
pub(crate) struct Clock {
    largest: state::Receiver<Option<Location>>,
    _task: Task,
}

impl Clock {
    /// Start publishing at `{0, 0}`.
    pub fn start() -> Self {
        let (tx, largest) = state::channel(None);
        let task = Task::spawn(async move {
            let mut tick = tokio::time::interval(OBJECT_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for group in 0.. {
                for object in 0..OBJECTS_PER_GROUP {
                    tick.tick().await;
                    if tx.send(Some(Location::new(group, object))).is_err() {
                        return;
                    }
                }
            }
        });
        Self { largest, _task: task }
    }

    /// Follow the clock.
    pub fn watch(&self) -> state::Receiver<Option<Location>> {
        self.largest.clone()
    }
}

/// A track a publisher session serves from a [`Clock`].
#[derive(Clone, Debug)]
pub(crate) struct Track {
    pub namespace: TrackNamespace,
    pub name: TrackName,
}

/// Answer `session`'s incoming requests until it ends: SUBSCRIBE and FETCH for `track` from
/// `clock`, the same for other tracks with DOES_NOT_EXIST, everything else NOT_SUPPORTED.
pub(crate) fn serve(session: &Session, track: Track, clock: &Clock) -> Task {
    let session = session.clone();
    let largest = clock.watch();
    Task::spawn(async move {
        // Dropped (aborting every subscription's task) when the loop's task is aborted.
        let mut work = JoinSet::new();
        while let Some(request) = session.accept().await {
            match request {
                Request::Subscribe(r)
                    if r.message.track_namespace == track.namespace && r.message.track_name == track.name =>
                {
                    let forward = r.message.parameters.forward;
                    let ok = SubscribeOk {
                        parameters: banyan_moq::message::Parameters {
                            largest_object: *largest.borrow(),
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    if let Ok(writer) = r.accept(ok).await {
                        work.spawn(run_writer(writer, largest.clone(), forward.unwrap_or(true)));
                    }
                }
                Request::Fetch(r) => {
                    work.spawn(answer_fetch(r, track.clone(), *largest.borrow()));
                }
                Request::Subscribe(r) => {
                    let _ = r.reject(RequestErrorCode::DoesNotExist, "no such track").await;
                }
                other => {
                    let _ = other
                        .reject(
                            RequestErrorCode::NotSupported,
                            "this interop publisher only serves its track",
                        )
                        .await;
                }
            }
        }
        drop(work);
    })
}

/// Refuse every request `session` receives (for sessions that only subscribe).
pub(crate) fn refuse_requests(session: &Session) -> Task {
    let session = session.clone();
    Task::spawn(async move {
        while let Some(request) = session.accept().await {
            let _ = request
                .reject(
                    RequestErrorCode::NotSupported,
                    "this interop session takes no requests",
                )
                .await;
        }
    })
}

/// Publish `clock` on a subscription we hold the writer of (from SUBSCRIBE or our PUBLISH)
/// until the subscriber cancels: objects per [`feed`], REQUEST_UPDATE answered, FORWARD
/// followed (initially `forward`).
pub(crate) async fn run_writer(
    mut writer: TrackWriter,
    largest: state::Receiver<Option<Location>>,
    forward: bool,
) {
    let (forward_tx, forward_rx) = state::channel(forward);
    let feeding = feed(writer.sender(), largest, forward_rx);
    tokio::pin!(feeding);
    loop {
        tokio::select! {
            _ = &mut feeding => return,
            message = writer.next_request() => match message {
                Ok(Some(Message::RequestUpdate(update))) => {
                    if let Some(f) = update.parameters.forward {
                        let _ = forward_tx.send(f);
                    }
                    if writer.respond(RequestOk::default().into()).await.is_err() {
                        return;
                    }
                }
                // PUBLISH_OK (REQUEST_OK, or the legacy 0x1E form) may set FORWARD.
                Ok(Some(Message::RequestOk(ok))) => {
                    if let Some(f) = ok.parameters.forward {
                        let _ = forward_tx.send(f);
                    }
                }
                Ok(Some(Message::PublishOk(ok))) => {
                    if let Some(f) = ok.parameters.forward {
                        let _ = forward_tx.send(f);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            },
        }
    }
}

/// Write the clock's objects to a subscription from the start of the next group on (or group
/// 0 if nothing is published yet), one subgroup stream per group, while Forward State is 1.
/// After a pause it resumes at the next group. Ends on the first write error.
async fn feed(
    sender: TrackSender,
    mut largest: state::Receiver<Option<Location>>,
    mut forward: state::Receiver<bool>,
) -> Result<(), Error> {
    let next_group = |largest: &Option<Location>| largest.map_or(0, |l| l.group + 1);
    let mut next = Location::new(next_group(&largest.borrow()), 0);
    let mut stream: Option<SubgroupWriter> = None;
    loop {
        if !*forward.borrow() {
            if let Some(open) = stream.take() {
                open.finish();
            }
            if forward.wait_for(|f| *f).await.is_err() {
                return Ok(());
            }
            next = Location::new(next_group(&largest.borrow()), 0);
        }
        let published = tokio::select! {
            published = largest.wait_for(|l| l.is_some_and(|l| l >= next)) => published.is_ok(),
            _ = forward.changed() => continue,
        };
        if !published {
            return Ok(());
        }
        if next.object == 0 {
            if let Some(open) = stream.take() {
                open.finish();
            }
            stream = Some(sender.open_subgroup(next.group, 0, Some(PRIORITY), false).await?);
        }
        if let Some(open) = stream.as_mut() {
            open.write_payload(next.object, payload(next.group, next.object))
                .await?;
        }
        next = if next.object + 1 == OBJECTS_PER_GROUP {
            if let Some(open) = stream.take() {
                open.finish();
            }
            Location::new(next.group + 1, 0)
        } else {
            Location::new(next.group, next.object + 1)
        };
    }
}

/// Answer a standalone FETCH of `track` from the clock's history (everything up to
/// `largest`); other tracks get DOES_NOT_EXIST, an empty range INVALID_RANGE, joining fetches
/// NOT_SUPPORTED (a relay serves those itself).
async fn answer_fetch(request: FetchRequest, track: Track, largest: Option<Location>) {
    let range = match &request.message.fetch_type {
        FetchType::Standalone(f) if f.track_namespace == track.namespace && f.track_name == track.name => {
            f.clone()
        }
        FetchType::Standalone(_) => {
            let _ = request
                .reject(RequestErrorCode::DoesNotExist, "no such track")
                .await;
            return;
        }
        _ => {
            let _ = request
                .reject(RequestErrorCode::NotSupported, "joining FETCH is not served here")
                .await;
            return;
        }
    };
    let Some(largest) = largest else {
        let _ = request
            .reject(RequestErrorCode::InvalidRange, "nothing published yet")
            .await;
        return;
    };
    let last = range.last_object().map_or(
        Location::new(range.end_location.group, OBJECTS_PER_GROUP - 1),
        |l| l,
    );
    let last = last.min(largest);
    let objects: Vec<Location> = (range.start_location.group..=last.group)
        .flat_map(|g| (0..OBJECTS_PER_GROUP).map(move |o| Location::new(g, o)))
        .filter(|l| *l >= range.start_location && *l <= last)
        .collect();
    let Some(&end) = objects.last() else {
        let _ = request
            .reject(RequestErrorCode::InvalidRange, "nothing in that range")
            .await;
        return;
    };
    let ok = FetchOk {
        end_location: Location::new(end.group, end.object + 1),
        ..Default::default()
    };
    let Ok(mut writer) = request.accept(ok).await else {
        return;
    };
    for l in objects {
        let object = FetchObject {
            group_id: l.group,
            subgroup_id: Some(0),
            object_id: l.object,
            publisher_priority: PRIORITY,
            properties: Default::default(),
            payload: payload(l.group, l.object),
        };
        if writer.write(&FetchItem::Object(object)).await.is_err() {
            return;
        }
    }
    writer.finish();
}

/// One object a subscriber received.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub group: u64,
    /// `None` for a datagram.
    pub subgroup: Option<u64>,
    /// The stream's (or datagram's) Publisher Priority; `None` when it inherits the track's.
    pub priority: Option<u8>,
    pub object: u64,
    pub status: ObjectStatus,
    pub payload: Bytes,
}

/// What a watched subscription reports, in arrival order.
#[derive(Debug)]
pub(crate) enum Seen {
    Object(Received),
    /// A subgroup stream ended: cleanly (FIN), or not (reset, error) with why.
    StreamEnded(Result<(), String>),
    Done(PublishDone),
    /// The subscription ended (after PUBLISH_DONE and its streams, or without), with the error
    /// that ended it, if one did.
    End(Option<String>),
}

/// Read `subscription` on a task: its objects, stream ends and PUBLISH_DONE arrive on the
/// returned channel. Dropping the returned task unsubscribes.
pub(crate) fn watch(mut subscription: Subscription) -> (mpsc::UnboundedReceiver<Seen>, Task) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = Task::spawn(async move {
        let mut streams = JoinSet::new();
        let end = loop {
            match subscription.next().await {
                Ok(Some(TrackEvent::Subgroup(mut reader))) => {
                    let tx = tx.clone();
                    let (group, subgroup, priority) = (
                        reader.group_id(),
                        reader.subgroup_id(),
                        reader.header().publisher_priority,
                    );
                    streams.spawn(async move {
                        let ended = loop {
                            match reader.next().await {
                                Ok(Some(o)) => {
                                    let _ = tx.send(Seen::Object(Received {
                                        group,
                                        subgroup: subgroup.or_else(|| reader.subgroup_id()),
                                        priority,
                                        object: o.object_id,
                                        status: o.status,
                                        payload: o.payload,
                                    }));
                                }
                                Ok(None) => break Ok(()),
                                Err(e) => break Err(e.to_string()),
                            }
                        };
                        let _ = tx.send(Seen::StreamEnded(ended));
                    });
                }
                Ok(Some(TrackEvent::Datagram(d))) => {
                    let _ = tx.send(Seen::Object(Received {
                        group: d.group_id,
                        subgroup: None,
                        priority: d.publisher_priority,
                        object: d.object_id,
                        status: d.status,
                        payload: d.payload,
                    }));
                }
                Ok(Some(TrackEvent::Done(done))) => {
                    let _ = tx.send(Seen::Done(done));
                }
                Ok(Some(_)) => {}
                Ok(None) => break None,
                Err(e) => break Some(e.to_string()),
            }
        };
        // Streams already opened may still be delivering; let them finish first.
        while streams.join_next().await.is_some() {}
        let _ = tx.send(Seen::End(end));
        // Keep the subscription (and so the request stream) until the watcher is dropped.
        std::future::pending::<()>().await;
        drop(subscription);
    });
    (rx, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_their_location_and_have_one_length() {
        let p = payload(12, 3);
        assert_eq!(p.len(), PAYLOAD_LEN);
        assert!(p.starts_with(b"banyan-interop g12 o3 ."));
        assert_ne!(payload(1, 23), payload(12, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_advances_one_object_per_interval_in_groups() {
        let clock = Clock::start();
        let mut watch = clock.watch();
        let mut seen = Vec::new();
        while seen.len() < 7 {
            watch.changed().await.unwrap();
            seen.extend(*watch.borrow_and_update());
        }
        let expected: Vec<_> = (0..7)
            .map(|i| Location::new(i / OBJECTS_PER_GROUP, i % OBJECTS_PER_GROUP))
            .collect();
        assert_eq!(seen, expected);
        assert_eq!(*clock.watch().borrow(), Some(Location::new(1, 1)));
    }
}
