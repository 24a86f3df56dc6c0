//! The relay's interaction state per broadcast, wired to sessions and tracks.
//!
//! At the broadcast's origin (its namespace is published here, or this relay has no
//! parents) accepted likes are summed and written once per window to the local `likes`
//! track, comments to `chat/<room>` and gifts, once recorded in the ledger, to `events`:
//! tracks that flow down the tree like video. Elsewhere the relay publishes its own
//! `interact` track to a parent: its sum as a LIKE datagram every window, and accepted
//! comments and gifts in order on one stream.
//!
//! A broadcast's state lives while it is used (an `interact` publication is being served,
//! or, at the origin, the publisher is here) and for [`InteractConfig::idle`] after; then a
//! sweep frees it: the origin ends its down tracks, a relay sends its final like total to
//! its parent reliably and ends its publication. A broadcast used again later starts afresh,
//! under a new like source id towards the parent so its new count never hides behind the old.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use banyan_moq::coding::{
    FullTrackName, PublishDoneCode, RequestErrorCode, StreamResetCode, TrackName, TrackNamespace,
};
use banyan_moq::data::{ObjectDatagram, ObjectProperties, ObjectStatus};
use banyan_moq::message::{HopPath, Message, Parameters, Publish, RequestOk};
use banyan_moq::session::{Error as SessionError, PublishRequest, SubgroupReader, TrackEvent, TrackWriter};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

use super::ledger::{Ledger, LedgerError};
use super::likes::LikeSum;
use super::payload::{encode_total, ChatObject, GiftEvent, Up};
use super::viewer::{parse_room, Admitted, Publisher};
use super::{InteractConfig, Refusal};
use crate::metrics::Metrics;
use crate::namespaces::Namespaces;
use crate::track::{Track, Tracks};

/// The up track's name.
pub const INTERACT: &[u8] = b"interact";
/// The origin's like total track.
pub const LIKES: &[u8] = b"likes";
/// The origin's recorded-gifts track.
pub const EVENTS: &[u8] = b"events";
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
    /// The gift ledger, at an origin configured with one.
    ledger: Option<Arc<Ledger>>,
    broadcasts: Mutex<HashMap<TrackNamespace, Arc<Broadcast>>>,
}

#[derive(Debug)]
struct Broadcast {
    namespace: TrackNamespace,
    likes: Mutex<LikeSum>,
    role: Role,
    /// This state's like source id towards the parent (not at the origin).
    source: u64,
    /// `interact` publications being served for it now.
    publications: AtomicUsize,
    /// When it was last seen in use.
    last_used: Mutex<Instant>,
    /// Turns true when the sweep frees it; its tasks then end.
    freed: watch::Sender<bool>,
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
    open: Option<Arc<crate::track::cache::Subgroup>>,
}

#[derive(Debug)]
enum Role {
    /// This relay publishes the broadcast's down tracks.
    Origin {
        likes: Arc<Track>,
        likes_group: AtomicU64,
        events: Arc<Track>,
        events_group: AtomicU64,
        /// Room → its track and where the next comment goes.
        rooms: Mutex<HashMap<u64, Room>>,
    },
    /// This relay forwards to a parent.
    Edge { comments: mpsc::Sender<Bytes> },
}

impl Hub {
    /// A hub with no broadcasts yet; `ledger` records gifts when this relay is an origin.
    /// Nothing runs until the caller runs [`Hub::sweeper`].
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
            ledger,
            broadcasts: Mutex::new(HashMap::new()),
        })
    }

    /// The sweeper for the caller to run: frees unused broadcasts every quarter of
    /// [`InteractConfig::idle`] ; it ends once the hub is dropped.
    pub fn sweeper(self: &Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        sweep_every(Arc::downgrade(self), self.config.idle / 4)
    }

    /// Free the state of every broadcast unused for [`InteractConfig::idle`] at `now`
    /// (run every quarter of it by [`sweep_every`]).
    fn sweep(&self, now: Instant) {
        let mut freed = Vec::new();
        let mut broadcasts = self.broadcasts.lock();
        broadcasts.retain(|namespace, broadcast| {
            let in_use = broadcast.publications.load(Ordering::SeqCst) > 0
                || (matches!(broadcast.role, Role::Origin { .. })
                    && self.namespaces.route(namespace).is_some());
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
                likes, events, rooms, ..
            } = &broadcast.role
            {
                const REASON: &str = "broadcast over";
                self.tracks.end_local(likes, REASON);
                self.tracks.end_local(events, REASON);
                for room in rooms.lock().values() {
                    self.tracks.end_local(&room.track, REASON);
                }
            }
        }
    }

    /// Whether `name` is an interaction track (`interact`, `likes`, `chat/<room>`).
    pub fn is_down_track(name: &TrackName) -> bool {
        let bytes = name.as_bytes();
        bytes.as_ref() == LIKES || bytes.as_ref() == EVENTS || bytes.starts_with(CHAT_PREFIX)
    }

    /// Before a SUBSCRIBE or FETCH for `name`: at the broadcast's origin, make sure the local
    /// interaction track exists so the request finds it rather than asking the publisher.
    pub fn prepare(self: &Arc<Self>, name: &FullTrackName) {
        if !Self::is_down_track(&name.name) || !self.is_origin(&name.namespace) {
            return;
        }
        let Some(broadcast) = self.broadcast(&name.namespace) else {
            return;
        };
        if let Some(room) = chat_room(&name.name, self.config.rooms) {
            self.room(&broadcast, room);
        }
    }

    /// Serve a viewer's (or child relay's) PUBLISH of an `interact` track until it ends;
    /// a viewer's comments are held to `room` when its token names one.
    pub async fn serve(
        self: Arc<Self>,
        request: PublishRequest,
        from_relay: bool,
        room: Option<u64>,
    ) -> Result<(), SessionError> {
        let namespace = request.message.track_namespace.clone();
        let Some(broadcast) = self.broadcast(&namespace) else {
            return request
                .reject(
                    RequestErrorCode::ExcessiveLoad,
                    "too many broadcasts with interactions",
                )
                .await;
        };
        let _serving = Serving::new(broadcast.clone());
        let mut subscription = request.accept(RequestOk::default()).await?;
        let mut publisher = if from_relay {
            Publisher::relay(&self.config)
        } else {
            Publisher::viewer(&self.config).in_room(room)
        };
        let (objects, mut received) =
            mpsc::channel::<(Bytes, Option<tokio::sync::oneshot::Sender<Refusal>>)>(64);
        let mut attached = None;
        let result = loop {
            tokio::select! {
                event = subscription.next() => match event {
                    Ok(Some(TrackEvent::Datagram(datagram))) => {
                        // A refused like datagram is dropped; `apply` counts it.
                        let _ = self.apply(&broadcast, &mut publisher, &mut attached, datagram.payload).await;
                    }
                    Ok(Some(TrackEvent::Subgroup(reader))) => {
                        tokio::spawn(read_subgroup(reader, objects.clone()));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                },
                Some((payload, reply)) = received.recv() => {
                    self.apply_replying(&broadcast, &mut publisher, &mut attached, payload, reply).await;
                }
            }
        };
        // The publication ended: objects still being read from its last streams (a final
        // like total, the last comments) are applied before the source is detached.
        drop(objects);
        let _ = tokio::time::timeout(PUBLICATION_DRAIN, async {
            while let Some((payload, reply)) = received.recv().await {
                self.apply_replying(&broadcast, &mut publisher, &mut attached, payload, reply)
                    .await;
            }
        })
        .await;
        if let Some(source) = attached {
            broadcast.likes.lock().detach(source, Instant::now());
        }
        result
    }

    /// [`Hub::apply`] an object read from a stream, telling its reader of a refusal (the
    /// reader then stops the stream with the refusal's code).
    async fn apply_replying(
        &self,
        broadcast: &Arc<Broadcast>,
        publisher: &mut Publisher,
        attached: &mut Option<u64>,
        payload: Bytes,
        reply: Option<tokio::sync::oneshot::Sender<Refusal>>,
    ) {
        if let Err(refusal) = self.apply(broadcast, publisher, attached, payload).await {
            if let Some(reply) = reply {
                let _ = reply.send(refusal);
            }
        }
    }

    async fn apply(
        &self,
        broadcast: &Arc<Broadcast>,
        publisher: &mut Publisher,
        attached: &mut Option<u64>,
        payload: Bytes,
    ) -> Result<(), Refusal> {
        let admitted = publisher.admit(payload).inspect_err(|refusal| {
            self.metrics.interact_refuse(*refusal);
        })?;
        match admitted {
            Admitted::Like {
                source,
                total,
                refused,
            } => {
                if refused > 0 {
                    self.metrics.interact_refuse(Refusal::RateLimited);
                }
                let mut likes = broadcast.likes.lock();
                if attached.is_none() {
                    likes.attach(source);
                    *attached = Some(source);
                }
                let before = likes.total();
                likes.update(source, total);
                self.metrics.likes_in.inc_by(likes.total().saturating_sub(before));
                Ok(())
            }
            Admitted::Comment { room, text } => {
                self.metrics.comments_in.inc();
                match &broadcast.role {
                    Role::Origin { .. } => {
                        let accepted_ms = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64);
                        self.post(broadcast, room, ChatObject { accepted_ms, text });
                        Ok(())
                    }
                    Role::Edge { comments } => {
                        let up = Up::Comment {
                            room: Bytes::from(room.to_string()),
                            text: Bytes::from(text),
                        };
                        comments.try_send(up.encode()).map_err(|_| {
                            self.metrics.interact_refuse(Refusal::RateLimited);
                            Refusal::RateLimited
                        })
                    }
                }
            }
            Admitted::Gift {
                client_id,
                kind,
                amount,
            } => match &broadcast.role {
                Role::Origin {
                    events, events_group, ..
                } => {
                    self.record_gift(broadcast, events, events_group, client_id, kind, amount)
                        .await
                }
                Role::Edge { comments } => {
                    let up = Up::Gift {
                        client_id,
                        kind,
                        amount,
                    };
                    comments.try_send(up.encode()).map_err(|_| {
                        self.metrics.interact_refuse(Refusal::RateLimited);
                        Refusal::RateLimited
                    })
                }
            },
        }
    }

    /// Record a gift at the origin in the ledger and announce it on the `events` track.
    async fn record_gift(
        &self,
        broadcast: &Broadcast,
        events: &Track,
        events_group: &AtomicU64,
        client_id: Bytes,
        kind: u64,
        amount: u64,
    ) -> Result<(), Refusal> {
        // SQLite waits for the disk (`synchronous = FULL`): off the runtime's
        // threads. This publication's later objects wait, which keeps their order.
        let recorded = match &self.ledger {
            Some(ledger) => {
                let (ledger, namespace, id) =
                    (ledger.clone(), broadcast.namespace.to_string(), client_id.clone());
                let write = tokio::task::spawn_blocking(move || ledger.record(&namespace, &id, kind, amount));
                Some(
                    write
                        .await
                        .unwrap_or_else(|e| Err(LedgerError::Interrupted(e.to_string()))),
                )
            }
            None => None,
        };
        match recorded {
            Some(Ok(recorded)) => {
                if recorded.new {
                    self.metrics.gifts_in.inc();
                }
                // Announced on every receipt, so a retry learns it was recorded.
                let event = GiftEvent {
                    seq: recorded.seq,
                    client_id,
                    kind: recorded.kind,
                    amount: recorded.amount,
                };
                events.append_group(events_group.fetch_add(1, Ordering::Relaxed), event.encode());
                Ok(())
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "gift not recorded");
                self.metrics.interact_refuse(Refusal::Unavailable);
                Err(Refusal::Unavailable)
            }
            None => {
                self.metrics.interact_refuse(Refusal::Unavailable);
                Err(Refusal::Unavailable)
            }
        }
    }

    fn post(&self, broadcast: &Broadcast, room: u64, comment: ChatObject) {
        let Role::Origin { rooms, .. } = &broadcast.role else {
            return;
        };
        let mut rooms = rooms.lock();
        let room = rooms
            .entry(room)
            .or_insert_with(|| self.new_room(&broadcast.namespace, room));
        let (group, object) = (room.next / CHAT_GROUP, room.next % CHAT_GROUP);
        if object == 0 {
            if let Some(done) = room.open.take() {
                room.track.finish_local(&done);
            }
            room.open = room.track.open_local(group);
        }
        if let Some(open) = &room.open {
            room.track.append(open, object, comment.encode());
            room.next += 1;
        }
    }

    fn room(&self, broadcast: &Broadcast, room: u64) {
        if let Role::Origin { rooms, .. } = &broadcast.role {
            rooms
                .lock()
                .entry(room)
                .or_insert_with(|| self.new_room(&broadcast.namespace, room));
        }
    }

    fn new_room(&self, namespace: &TrackNamespace, room: u64) -> Room {
        let mut name = CHAT_PREFIX.to_vec();
        name.extend_from_slice(room.to_string().as_bytes());
        let track = self.tracks.local(FullTrackName {
            namespace: namespace.clone(),
            name: TrackName::new(name),
        });
        Room {
            track,
            next: 0,
            open: None,
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
            let events = self.tracks.local(FullTrackName {
                namespace: namespace.clone(),
                name: TrackName::new(EVENTS.to_vec()),
            });
            Role::Origin {
                likes,
                likes_group: AtomicU64::new(0),
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
            role,
            source,
            publications: AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
            freed: watch::channel(false).0,
        });
        broadcasts.insert(namespace.clone(), broadcast.clone());
        self.metrics.interact_broadcasts.set(broadcasts.len() as i64);
        match queued {
            None => tokio::spawn(self.clone().publish_likes(broadcast.clone())),
            Some(queued) => tokio::spawn(self.clone().upstream(broadcast.clone(), queued)),
        };
        Some(broadcast)
    }

    /// At the origin: once per window, a new `likes` group when the total changed.
    async fn publish_likes(self: Arc<Self>, broadcast: Arc<Broadcast>) {
        let Role::Origin {
            likes, likes_group, ..
        } = &broadcast.role
        else {
            return;
        };
        let mut tick = tokio::time::interval(self.config.window);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = broadcast.freed() => return,
            }
            let total = {
                let mut sum = broadcast.likes.lock();
                sum.expire(Instant::now(), self.config.source_retention);
                sum.flush()
            };
            if let Some(total) = total {
                let group = likes_group.fetch_add(1, Ordering::Relaxed);
                likes.append_group(group, encode_total(total));
            }
        }
    }

    /// Off the origin: keep an `interact` publication open to a parent; send the subtree's
    /// like sum every window (a lost datagram is repaired by the next) and each comment on
    /// its own stream. Ends when the broadcast is freed, after its final total went out.
    async fn upstream(self: Arc<Self>, broadcast: Arc<Broadcast>, mut comments: mpsc::Receiver<Bytes>) {
        let Some(parents) = self.tracks.parents().cloned() else {
            return;
        };
        let namespace = broadcast.namespace.clone();
        let mut pending: Option<Bytes> = None;
        let mut group = 0u64;
        let path = HopPath::default();
        loop {
            let publish = Publish {
                request_id: 0,
                track_namespace: namespace.clone(),
                track_name: TrackName::new(INTERACT.to_vec()),
                track_alias: 0,
                parameters: Parameters::default(),
                track_properties: Default::default(),
            };
            let opening = parents.request(&namespace, &path, |session, _| {
                let publish = publish.clone();
                async move {
                    let mut writer = session.publish(publish).await?;
                    match writer.next_request().await? {
                        Some(Message::RequestOk(_)) => Ok(writer),
                        other => Err(SessionError::InvalidArgument(format!(
                            "parent refused interact: {other:?}"
                        ))),
                    }
                }
            });
            let opened = tokio::select! {
                opened = opening => opened,
                () = broadcast.freed() => return,
            };
            let writer = match opened {
                Ok((writer, _parent)) => writer,
                Err(e) => {
                    tracing::debug!(error = %e, "interact: no parent yet");
                    tokio::select! {
                        () = tokio::time::sleep(self.config.window * 10) => continue,
                        () = broadcast.freed() => return,
                    }
                }
            };
            match self
                .feed(&broadcast, writer, &mut comments, &mut pending, &mut group)
                .await
            {
                Ok(Fed::Freed) => return,
                Ok(Fed::Ended) => tracing::info!("interact: parent ended the publication"),
                Err(e) => tracing::info!(error = %e, "interact: parent publication ended"),
            }
        }
    }

    async fn feed(
        &self,
        broadcast: &Broadcast,
        mut writer: TrackWriter,
        comments: &mut mpsc::Receiver<Bytes>,
        pending: &mut Option<Bytes>,
        group: &mut u64,
    ) -> Result<Fed, SessionError> {
        let sender = writer.sender();
        let mut tick = tokio::time::interval(self.config.window);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Comments go on one stream per publication, so the parent reads them in order.
        let mut stream = None;
        let mut object = 0u64;
        let comment_group = *group;
        *group += 1;
        loop {
            // A comment taken but not yet delivered goes first (again, after a reconnect).
            if let Some(payload) = pending.clone() {
                let out = match &mut stream {
                    Some(out) => out,
                    None => stream.insert(sender.open_subgroup(comment_group, 0, None, false).await?),
                };
                out.write_payload(object, payload).await?;
                object += 1;
                *pending = None;
            }
            tokio::select! {
                _ = tick.tick() => {
                    let total = broadcast.likes.lock().total();
                    if total > 0 {
                        let datagram = ObjectDatagram {
                            track_alias: 0,
                            group_id: *group,
                            object_id: 0,
                            publisher_priority: None,
                            properties: ObjectProperties::default(),
                            end_of_group: false,
                            status: ObjectStatus::Normal,
                            payload: Up::Like { source: broadcast.source, total }.encode(),
                        };
                        *group += 1;
                        sender.send_datagram(datagram)?;
                    }
                }
                comment = comments.recv() => match comment {
                    Some(payload) => *pending = Some(payload),
                    None => return Ok(Fed::Ended),
                },
                request = writer.next_request() => {
                    if request?.is_none() {
                        return Ok(Fed::Ended);
                    }
                }
                () = broadcast.freed() => {
                    // The final total on the reliable stream (datagrams may all be lost),
                    // after any comment still queued, then the end of the publication.
                    let total = broadcast.likes.lock().total();
                    let mut out = match stream {
                        Some(out) => out,
                        None => sender.open_subgroup(comment_group, 0, None, false).await?,
                    };
                    while let Ok(payload) = comments.try_recv() {
                        out.write_payload(object, payload).await?;
                        object += 1;
                    }
                    if total > 0 {
                        let like = Up::Like { source: broadcast.source, total }.encode();
                        out.write_payload(object, like).await?;
                    }
                    out.finish();
                    writer.finish(PublishDoneCode::TrackEnded, "broadcast idle").await?;
                    return Ok(Fed::Freed);
                }
            }
        }
    }
}

/// How a publication to the parent ended without an error.
enum Fed {
    /// The parent (or its session) ended it; open another.
    Ended,
    /// The broadcast was freed; its final total went out.
    Freed,
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

/// Read one subgroup stream of an `interact` publication, handing each object to the
/// session's loop; a refused object stops the stream with the refusal's code.
async fn read_subgroup(
    mut reader: SubgroupReader,
    objects: mpsc::Sender<(Bytes, Option<tokio::sync::oneshot::Sender<Refusal>>)>,
) {
    loop {
        let object = match reader.next().await {
            Ok(Some(object)) => object,
            Ok(None) | Err(_) => return,
        };
        let (reply, refused) = tokio::sync::oneshot::channel();
        if objects.send((object.payload, Some(reply))).await.is_err() {
            return;
        }
        if let Ok(refusal) = refused.await {
            reader.stop(StreamResetCode::from_code(refusal.code()));
            return;
        }
    }
}
