//! Sending a track to one subscriber: the consumer's groups, a stream per subgroup, several
//! groups in flight at once, in the order the subscription's priority says (for live media,
//! newest first). A subscriber that cannot keep up never slows anyone else (its streams back up
//! in its own flow control), and its older groups are abandoned (their streams reset, the
//! subscriber skips them) for one of two reasons ([`SkipReason`]):
//!
//! - **Lag**: more than `max_lag` groups behind the newest are still being written (the
//!   subscriber's flow control holds them back).
//! - **Late**: the path is slower than the track. A group stays in flight until the subscriber
//!   has acknowledged every byte of it, so what the transport's send buffers and congestion
//!   window still hold counts, not only what was handed over. Once a newer group has begun,
//!   an older group still not delivered `budget + RTT` later ([`LatencyBudget`]) is abandoned:
//!   the viewer would see it later than the budget allows, and the bandwidth goes to the newest
//!   group instead. RESET_STREAM drops what is still queued; the objects already received stay
//!   valid (draft-18 §10.4; quinn has no RESET_STREAM_AT, so the object being written when the
//!   reset comes is lost with the rest).
//!
//! **Overload.** When the relay itself cannot keep up (its CPU cannot packetize what it has
//! accepted), nothing blocks: QUIC's send buffers take every write, and the backlog waits in
//! them, oldest group first when the subscription's group order is ascending. Two rules keep
//! that backlog from turning into seconds of latency:
//!
//! - **Yield**: an overtaken group still not delivered half its budget (plus the round trip)
//!   later goes after every newer group of the track (its streams' send order drops to the
//!   track's lowest), so what bandwidth there is serves the newest group while the old one
//!   waits for its deadline. Only a subscriber already behind sees this: on a path that keeps
//!   up, a group is delivered long before.
//! - The round trip added to the budget is the lowest this subscriber has shown, not the
//!   smoothed one: a relay that falls behind reads acknowledgments late, which inflates the
//!   smoothed RTT and would otherwise stretch every deadline by the relay's own backlog.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Group, Observer, Start, Subgroup, TrackConsumer};
use crate::coding::StreamResetCode;
use crate::data::SubgroupObject;
use crate::session::{SubgroupWriter, TrackSender};

/// What one [`Fanout::step`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Started sending a group.
    Started {
        /// The Group ID.
        group: u64,
    },
    /// Abandoned a group in flight: its streams are reset and the subscriber skips it.
    Skipped {
        /// The Group ID.
        group: u64,
        /// Why.
        reason: SkipReason,
    },
    /// A group left flight: delivered (every stream acknowledged), or abandoned, or its
    /// streams failed.
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

/// Why a group was abandoned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// More than `max_lag` older groups were still being written.
    Lag,
    /// Not delivered within the [`LatencyBudget`] after a newer group began.
    Late,
}

impl SkipReason {
    /// A short label for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            SkipReason::Lag => "lag",
            SkipReason::Late => "late",
        }
    }
}

/// How long after a newer group began an older group may still be undelivered. The
/// subscriber's round-trip time is added (acknowledgments take that long to come back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatencyBudget {
    /// Never abandon a group for lateness (tracks whose every object matters, e.g. chat).
    Off,
    /// This long.
    Fixed(Duration),
    /// One GOP: the track's measured time between the starts of consecutive groups, at least
    /// [`LatencyBudget::MIN_AUTO`]. Until two consecutive groups have been seen,
    /// [`LatencyBudget::FIRST_AUTO`].
    Auto,
}

impl LatencyBudget {
    /// The least an automatic budget allows (tracks with tiny groups).
    pub const MIN_AUTO: Duration = Duration::from_millis(200);
    /// An automatic budget before the group length is known.
    pub const FIRST_AUTO: Duration = Duration::from_secs(1);

    /// The budget for a track whose groups are `gop` apart, if measured.
    pub fn resolve(self, gop: Option<Duration>) -> Option<Duration> {
        match self {
            LatencyBudget::Off => None,
            LatencyBudget::Fixed(budget) => Some(budget),
            LatencyBudget::Auto => Some(gop.map_or(Self::FIRST_AUTO, |gop| gop.max(Self::MIN_AUTO))),
        }
    }
}

/// What a group in flight is told to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Keep sending at the subscription's send order.
    Send,
    /// Go after every newer group (lowest send order of the track).
    Yield,
    /// Reset its streams.
    Abandon,
}

/// One group in flight.
#[derive(Debug)]
struct Flight {
    id: u64,
    /// Yields or abandons it.
    fate: watch::Sender<Fate>,
    /// Still being written (not every subgroup has had its FIN yet).
    writing: Arc<AtomicBool>,
    /// When a newer group began, which starts its delivery deadline.
    overtaken: Option<Instant>,
}

impl Flight {
    /// When it yields to newer groups and when it is abandoned, if overtaken, for `budget`.
    fn deadlines(&self, budget: Duration) -> Option<(Instant, Instant)> {
        let at = self.overtaken?;
        Some((at + budget / 2, at + budget))
    }

    fn yielded(&self) -> bool {
        *self.fate.borrow() != Fate::Send
    }
}

/// One subscriber's sending of a track.
pub struct Fanout {
    consumer: TrackConsumer,
    sender: TrackSender,
    start: Start,
    max_lag: usize,
    budget: LatencyBudget,
    /// The track's measured time between consecutive groups' starts (smoothed).
    gop: Option<Duration>,
    /// The newest group begun and when it started here (for `gop`).
    newest: Option<(u64, Instant)>,
    /// The lowest round-trip time the subscriber has shown (its path without queues).
    min_rtt: Option<Duration>,
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
    /// Groups in flight, oldest first.
    in_flight: VecDeque<Flight>,
    /// Steps decided but not yet returned (a group started and others skipped at once).
    pending: VecDeque<Step>,
    observer: Arc<dyn Observer>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("start", &self.start)
            .field("max_lag", &self.max_lag)
            .field("budget", &self.budget)
            .field("gop", &self.gop)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl Fanout {
    /// Send `consumer`'s track to `sender`'s subscriber from `start`, at most `max_lag`
    /// groups behind the newest, with no latency budget (see [`Fanout::budget`]). Nothing is
    /// sent until [`Fanout::step`] is polled.
    pub fn new(consumer: TrackConsumer, sender: TrackSender, start: Start, max_lag: usize) -> Self {
        let observer = consumer.state.limits.observer.clone();
        Self {
            consumer,
            sender,
            start,
            max_lag,
            budget: LatencyBudget::Off,
            gop: None,
            newest: None,
            min_rtt: None,
            end: None,
            from: None,
            sent: BTreeSet::new(),
            ended: false,
            active: FuturesUnordered::new(),
            in_flight: VecDeque::new(),
            pending: VecDeque::new(),
            observer,
        }
    }

    /// Send groups up to `end` only (a subscription's End Group).
    pub fn until(mut self, end: Option<u64>) -> Self {
        self.end = end;
        self
    }

    /// Abandon groups not delivered within `budget` (plus the round trip) after a newer
    /// group began.
    pub fn budget(mut self, budget: LatencyBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Groups in flight (being written, or written and not yet acknowledged).
    pub fn in_flight(&self) -> usize {
        self.active.len()
    }

    /// The track's measured group length, once two consecutive groups have begun.
    pub fn gop(&self) -> Option<Duration> {
        self.gop
    }

    /// Wait for the next thing to happen: a group starts, is skipped or finishes, or the track
    /// has ended with nothing in flight. Cancel-safe (nothing changes until it returns).
    pub async fn step(&mut self) -> Step {
        loop {
            if let Some(step) = self.pending.pop_front() {
                return step;
            }
            if self.ended && self.active.is_empty() {
                return Step::Ended;
            }
            let deadline = self.next_deadline();
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
            let late = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let active = &mut self.active;
            let event = tokio::select! {
                // Groups first: when the track ends right after its last group arrived, that
                // group must still go out.
                biased;
                upcoming = upcoming => Event::Upcoming(upcoming),
                () = late => Event::Late,
                Some(finished) = active.next(), if !active.is_empty() => Event::Finished(finished),
            };
            match event {
                Event::Upcoming(Some((group, _))) if self.end.is_some_and(|end| group.id > end) => {
                    return Step::ReachedEnd
                }
                Event::Upcoming(Some((group, first_object))) => self.begin(group, first_object),
                Event::Upcoming(None) => self.ended = true,
                Event::Late => self.overdue(Instant::now()),
                Event::Finished(finished) => {
                    self.in_flight.retain(|f| f.id != finished);
                    if self.end.is_some_and(|end| finished >= end) && self.active.is_empty() {
                        return Step::ReachedEnd;
                    }
                    return Step::Finished { group: finished };
                }
            }
        }
    }

    fn begin(&mut self, group: Arc<Group>, first_object: u64) {
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
        self.measure_gop(&group);
        let (fate, told) = watch::channel(Fate::Send);
        let writing = Arc::new(AtomicBool::new(true));
        let send = send_group(
            self.sender.clone(),
            group,
            first_object,
            told,
            writing.clone(),
            self.observer.clone(),
        );
        self.active.push(send.boxed());
        let now = Instant::now();
        // Every older group in flight is overtaken now; a group starting behind a newer one
        // is overtaken from the start.
        let mut overtaken = None;
        for flight in &mut self.in_flight {
            if flight.id < id {
                flight.overtaken.get_or_insert(now);
            } else {
                overtaken = Some(now);
            }
        }
        let at = self.in_flight.partition_point(|f| f.id < id);
        let flight = Flight {
            id,
            fate,
            writing,
            overtaken,
        };
        self.in_flight.insert(at, flight);
        self.pending.push_back(Step::Started { group: id });
        self.abandon_lagging();
    }

    /// Learn the track's group length from consecutive groups' starts.
    fn measure_gop(&mut self, group: &Group) {
        match self.newest {
            Some((newest, at)) if group.id == newest + 1 => {
                let sample = group.started.saturating_duration_since(at);
                self.gop = Some(self.gop.map_or(sample, |gop| (gop * 3 + sample) / 4));
            }
            Some((newest, _)) if group.id <= newest => return,
            _ => {}
        }
        self.newest = Some((group.id, group.started));
    }

    /// Skip the oldest groups still being written while more than `max_lag + 1` are.
    fn abandon_lagging(&mut self) {
        let mut writing = self
            .in_flight
            .iter()
            .filter(|f| f.writing.load(Ordering::Relaxed))
            .count();
        while writing > self.max_lag + 1 {
            let Some(at) = self
                .in_flight
                .iter()
                .position(|f| f.writing.load(Ordering::Relaxed))
            else {
                break;
            };
            if let Some(flight) = self.in_flight.remove(at) {
                self.skip(flight, SkipReason::Lag);
            }
            writing -= 1;
        }
    }

    /// The latency budget plus the subscriber's lowest round trip (acknowledgments take that
    /// long to come back; anything above it is queueing, which the viewer sees as latency).
    fn limit(&mut self) -> Option<Duration> {
        let budget = self.budget.resolve(self.gop)?;
        let rtt = self.sender.rtt();
        let min_rtt = self.min_rtt.map_or(rtt, |min| min.min(rtt));
        self.min_rtt = Some(min_rtt);
        Some(budget + min_rtt)
    }

    /// When the next overtaken group yields or runs out of time, if any.
    fn next_deadline(&mut self) -> Option<Instant> {
        let limit = self.limit()?;
        self.in_flight
            .iter()
            .filter_map(|f| {
                let (yields, late) = f.deadlines(limit)?;
                Some(if f.yielded() { late } else { yields })
            })
            .min()
    }

    /// Let every overtaken group half its budget old yield to newer ones, and skip every one
    /// whose time is up, at `now`.
    fn overdue(&mut self, now: Instant) {
        let Some(limit) = self.limit() else {
            return;
        };
        let (late, keep): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|f| f.deadlines(limit).is_some_and(|(_, late)| now >= late));
        self.in_flight = keep;
        for flight in &self.in_flight {
            if flight.deadlines(limit).is_some_and(|(yields, _)| now >= yields) && !flight.yielded() {
                let _ = flight.fate.send(Fate::Yield);
            }
        }
        for flight in late {
            self.skip(flight, SkipReason::Late);
        }
    }

    fn skip(&mut self, flight: Flight, reason: SkipReason) {
        let _ = flight.fate.send(Fate::Abandon);
        self.pending.push_back(Step::Skipped {
            group: flight.id,
            reason,
        });
    }

    /// Let the groups in flight finish (for at most `limit`), then abandon what is left.
    pub async fn drain(mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async { while self.active.next().await.is_some() {} }).await;
        self.abandon().await;
    }

    /// Reset every stream in flight now (the subscriber is gone or unsubscribed).
    pub async fn abandon(mut self) {
        for flight in self.in_flight.drain(..) {
            let _ = flight.fate.send(Fate::Abandon);
        }
        // The group futures reset their own streams; drive them to do so.
        while self.active.next().await.is_some() {}
    }
}

/// What woke [`Fanout::step`].
enum Event {
    Upcoming(Option<(Arc<Group>, u64)>),
    Late,
    Finished(u64),
}

/// Send one group: a stream per subgroup, opened as subgroups appear. `writing` turns false
/// once every subgroup has been written and ended; the group's future returns (with its ID)
/// once every stream is delivered, or abandoned.
async fn send_group(
    sender: TrackSender,
    group: Arc<Group>,
    first_object: u64,
    told: watch::Receiver<Fate>,
    writing: Arc<AtomicBool>,
    observer: Arc<dyn Observer>,
) -> u64 {
    let mut subgroups = FuturesUnordered::new();
    let mut deliveries = FuturesUnordered::new();
    let mut seen = 0;
    let mut group_closed = false;
    let mut fate = told.clone();
    loop {
        tokio::select! {
            more = group.subgroups_from(seen), if !group_closed => {
                if more.is_empty() {
                    group_closed = true;
                }
                for subgroup in more {
                    seen += 1;
                    subgroups.push(send_subgroup(sender.clone(), subgroup, first_object, told.clone(), observer.clone()));
                }
            }
            Some(written) = subgroups.next(), if !subgroups.is_empty() => {
                if let Some((stream, yielded_order)) = written {
                    deliveries.push(delivered(stream, yielded_order, told.clone()));
                }
            }
            Some(()) = deliveries.next(), if !deliveries.is_empty() => {}
            () = abandoned(&mut fate) => break,
            else => break,
        }
        if group_closed && subgroups.is_empty() {
            writing.store(false, Ordering::Relaxed);
            if deliveries.is_empty() {
                break;
            }
        }
    }
    writing.store(false, Ordering::Relaxed);
    // On abandon the subgroup futures reset their own streams; drive them to do so.
    while let Some(written) = subgroups.next().await {
        if let Some((stream, _)) = written {
            stream.reset(StreamResetCode::Cancelled);
        }
    }
    while deliveries.next().await.is_some() {}
    group.id
}

/// Resolves once the group is abandoned (or its [`Fanout`] is gone); yields do not count.
async fn abandoned(told: &mut watch::Receiver<Fate>) {
    let _ = told.wait_for(|fate| *fate == Fate::Abandon).await;
}

/// Wait for a finished stream to be acknowledged, moving it behind newer groups if its group
/// yields, or reset it when its group is abandoned first.
async fn delivered(stream: SubgroupWriter, yielded_order: i32, mut told: watch::Receiver<Fate>) {
    loop {
        match *told.borrow_and_update() {
            Fate::Abandon => break,
            Fate::Yield => stream.set_send_order(yielded_order),
            Fate::Send => {}
        }
        tokio::select! {
            _ = stream.delivered() => return,
            changed = told.changed() => if changed.is_err() {
                break;
            },
        }
    }
    stream.reset(StreamResetCode::Cancelled);
}

/// Send one subgroup's objects on one stream, from `first_object` on, and end it: the stream
/// (awaiting acknowledgment) and the send order it takes if its group yields, once written;
/// `None` when abandoned or failed (reset already).
async fn send_subgroup(
    sender: TrackSender,
    subgroup: Arc<Subgroup>,
    first_object: u64,
    mut told: watch::Receiver<Fate>,
    observer: Arc<dyn Observer>,
) -> Option<(SubgroupWriter, i32)> {
    let yielded_order = sender.yielded_send_order(subgroup.publisher_priority);
    let mut stream: Option<SubgroupWriter> = None;
    let mut yielded = false;
    let mut next = 0;
    loop {
        match *told.borrow_and_update() {
            Fate::Abandon => break,
            Fate::Yield if !yielded => {
                if let Some(stream) = &stream {
                    stream.set_send_order(yielded_order);
                    yielded = true;
                }
            }
            Fate::Yield | Fate::Send => {}
        }
        let objects = tokio::select! {
            objects = subgroup.read_from(next) => objects,
            changed = told.changed() => match changed {
                // Yield or abandon: the top of the loop acts on it.
                Ok(()) => continue,
                Err(_) => break,
            },
        };
        if objects.is_empty() {
            let mut stream = stream?;
            stream.send_fin();
            return Some((stream, yielded_order));
        }
        for object in objects {
            next += 1;
            if object.id < first_object {
                continue;
            }
            if stream.is_none() {
                let opened = tokio::select! {
                    opened = sender.open_subgroup(subgroup.group_id, subgroup.subgroup_id, subgroup.publisher_priority, subgroup.properties) => opened,
                    () = abandoned(&mut told) => return None,
                };
                stream = Some(opened.ok()?);
            }
            let writer = stream.as_mut()?;
            if !yielded && *told.borrow() == Fate::Yield {
                writer.set_send_order(yielded_order);
                yielded = true;
            }
            let (len, received) = (object.payload.len(), object.received);
            let out = SubgroupObject::from(object);
            let written = tokio::select! {
                written = writer.write(&out) => Some(written.is_ok()),
                () = abandoned(&mut told) => None,
            };
            match written {
                Some(true) => observer.sent(len, received),
                Some(false) => return None,
                None => break,
            }
        }
    }
    // Abandoned: the subscriber skips this group.
    if let Some(stream) = stream {
        stream.reset(StreamResetCode::Cancelled);
    }
    None
}
