//! Sending a track to one subscriber: the consumer's groups, oldest first, a stream per
//! subgroup, several groups in flight at once. A subscriber that cannot keep up never slows
//! anyone else (its streams back up in its own flow control), and once more than `max_lag`
//! groups behind the newest, its oldest group streams are reset and it carries on with the
//! newer groups.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use tokio::sync::watch;

use super::{Group, Observer, Start, Subgroup, TrackConsumer};
use crate::coding::StreamResetCode;
use crate::data::SubgroupObject;
use crate::session::{SubgroupWriter, TrackSender};

/// What one [`Fanout::step`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Started sending a group; `skipped` are the older groups abandoned to make room (the
    /// subscriber was more than `max_lag` groups behind).
    Started {
        /// The Group ID started.
        group: u64,
        /// Group IDs whose streams were reset.
        skipped: Vec<u64>,
    },
    /// A group was sent completely (or its streams failed).
    Finished {
        /// The Group ID.
        group: u64,
    },
    /// The requested range is complete (see [`Fanout::until`]): a group after its end
    /// appeared (and was not started), or its last group finished with nothing else in
    /// flight. Groups still in flight keep going until drained.
    ReachedEnd,
    /// The track has ended and every group in flight is done. Later steps return this again.
    Ended,
}

/// One subscriber's sending of a track.
pub struct Fanout {
    consumer: TrackConsumer,
    sender: TrackSender,
    start: Start,
    max_lag: usize,
    /// The last group wanted, if the subscription asked for a range.
    end: Option<u64>,
    /// The first group sent, once known.
    from: Option<u64>,
    /// Every group sent since `from` (pruned to what the track still keeps): groups can start
    /// out of order upstream, so "newer than the last one sent" would lose an older group
    /// that starts late.
    sent: BTreeSet<u64>,
    ended: bool,
    active: FuturesUnordered<BoxFuture<'static, u64>>,
    /// Groups in flight, oldest first, with the switch that abandons each.
    in_flight: VecDeque<(u64, watch::Sender<bool>)>,
    observer: Arc<dyn Observer>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("start", &self.start)
            .field("max_lag", &self.max_lag)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl Fanout {
    /// Send `consumer`'s track to `sender`'s subscriber from `start`, at most `max_lag`
    /// groups behind the newest. Nothing is sent until [`Fanout::step`] is polled.
    pub fn new(consumer: TrackConsumer, sender: TrackSender, start: Start, max_lag: usize) -> Self {
        let observer = consumer.state.limits.observer.clone();
        Self {
            consumer,
            sender,
            start,
            max_lag,
            end: None,
            from: None,
            sent: BTreeSet::new(),
            ended: false,
            active: FuturesUnordered::new(),
            in_flight: VecDeque::new(),
            observer,
        }
    }

    /// Send groups up to `end` only (a subscription's End Group).
    pub fn until(mut self, end: Option<u64>) -> Self {
        self.end = end;
        self
    }

    /// Groups in flight.
    pub fn in_flight(&self) -> usize {
        self.active.len()
    }

    /// Wait for the next thing to happen: a group starts, a group finishes, or the track has
    /// ended with nothing in flight. Cancel-safe (nothing changes until it returns).
    pub async fn step(&mut self) -> Step {
        loop {
            if self.ended && self.active.is_empty() {
                return Step::Ended;
            }
            let (consumer, sent, from, start, ended) =
                (&self.consumer, &self.sent, self.from, self.start, self.ended);
            let upcoming = async move {
                if ended {
                    return std::future::pending().await;
                }
                match from {
                    None => consumer.first_group(start).await,
                    Some(from) => consumer.next_unsent_group(from, sent).await.map(|g| (g, 0)),
                }
            };
            let active = &mut self.active;
            let event = tokio::select! {
                // Groups first: when the track ends right after its last group arrived, that
                // group must still go out.
                biased;
                upcoming = upcoming => Ok(upcoming),
                Some(finished) = active.next(), if !active.is_empty() => Err(finished),
            };
            match event {
                Ok(Some((group, _))) if self.end.is_some_and(|end| group.id > end) => {
                    return Step::ReachedEnd
                }
                Ok(Some((group, first_object))) => return self.begin(group, first_object),
                Ok(None) => self.ended = true,
                Err(finished) => {
                    self.in_flight.retain(|(id, _)| *id != finished);
                    if self.end.is_some_and(|end| finished >= end) && self.active.is_empty() {
                        return Step::ReachedEnd;
                    }
                    return Step::Finished { group: finished };
                }
            }
        }
    }

    fn begin(&mut self, group: Arc<Group>, first_object: u64) -> Step {
        let id = group.id;
        // From the start group even if a later group was found first.
        self.from.get_or_insert(match self.start {
            Start::At { group: target, .. } => target.min(id),
            _ => id,
        });
        self.sent.insert(id);
        if let Some(oldest) = self.consumer.oldest() {
            self.sent = self.sent.split_off(&oldest.group);
        }
        let (cancel, cancelled) = watch::channel(false);
        let send = send_group(
            self.sender.clone(),
            group,
            first_object,
            cancelled,
            self.observer.clone(),
        );
        self.active.push(send.boxed());
        let at = self.in_flight.partition_point(|(g, _)| *g < id);
        self.in_flight.insert(at, (id, cancel));
        let mut skipped = Vec::new();
        while self.in_flight.len() > self.max_lag + 1 {
            if let Some((old, cancel)) = self.in_flight.pop_front() {
                let _ = cancel.send(true);
                skipped.push(old);
            }
        }
        Step::Started { group: id, skipped }
    }

    /// Let the groups in flight finish (for at most `limit`), then abandon what is left.
    pub async fn drain(mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async { while self.active.next().await.is_some() {} }).await;
        self.abandon().await;
    }

    /// Reset every stream in flight now (the subscriber is gone or unsubscribed).
    pub async fn abandon(mut self) {
        for (_, cancel) in self.in_flight.drain(..) {
            let _ = cancel.send(true);
        }
        // The group futures reset their own streams; drive them to do so.
        while self.active.next().await.is_some() {}
    }
}

/// Send one group: a stream per subgroup, opened as subgroups appear. Returns its ID.
async fn send_group(
    sender: TrackSender,
    group: Arc<Group>,
    first_object: u64,
    cancelled: watch::Receiver<bool>,
    observer: Arc<dyn Observer>,
) -> u64 {
    let mut subgroups = FuturesUnordered::new();
    let mut seen = 0;
    let mut group_closed = false;
    let mut cancel = cancelled.clone();
    loop {
        tokio::select! {
            more = group.subgroups_from(seen), if !group_closed => {
                if more.is_empty() {
                    group_closed = true;
                }
                for subgroup in more {
                    seen += 1;
                    subgroups.push(send_subgroup(sender.clone(), subgroup, first_object, cancelled.clone(), observer.clone()));
                }
            }
            Some(()) = subgroups.next(), if !subgroups.is_empty() => {}
            _ = cancel.changed() => break,
            else => break,
        }
        if group_closed && subgroups.is_empty() {
            break;
        }
    }
    // On cancel the subgroup futures reset their own streams; drive them to do so.
    while subgroups.next().await.is_some() {}
    group.id
}

/// Send one subgroup's objects on one stream, from `first_object` on.
async fn send_subgroup(
    sender: TrackSender,
    subgroup: Arc<Subgroup>,
    first_object: u64,
    mut cancelled: watch::Receiver<bool>,
    observer: Arc<dyn Observer>,
) {
    let mut stream: Option<SubgroupWriter> = None;
    let mut next = 0;
    loop {
        if *cancelled.borrow() {
            break;
        }
        let objects = tokio::select! {
            objects = subgroup.read_from(next) => objects,
            _ = cancelled.changed() => break,
        };
        if objects.is_empty() {
            if let Some(stream) = stream.take() {
                stream.finish();
            }
            return;
        }
        for object in objects {
            next += 1;
            if object.id < first_object {
                continue;
            }
            if stream.is_none() {
                let opened = tokio::select! {
                    opened = sender.open_subgroup(subgroup.group_id, subgroup.subgroup_id, subgroup.publisher_priority, subgroup.properties) => opened,
                    _ = cancelled.changed() => return,
                };
                match opened {
                    Ok(s) => stream = Some(s),
                    Err(_) => return,
                }
            }
            let Some(writer) = stream.as_mut() else { return };
            let (len, received) = (object.payload.len(), object.received);
            let out = SubgroupObject::from(object);
            let written = tokio::select! {
                written = writer.write(&out) => Some(written.is_ok()),
                _ = cancelled.changed() => None,
            };
            match written {
                Some(true) => observer.sent(len, received),
                Some(false) => return,
                None => break,
            }
        }
    }
    // Abandoned: the subscriber skips this group.
    if let Some(stream) = stream {
        stream.reset(StreamResetCode::Cancelled);
    }
}
