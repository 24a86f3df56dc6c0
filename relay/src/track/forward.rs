//! Fan-out: one forwarder per downstream subscription, reading the shared cache with its own
//! cursor. A subscriber that cannot keep up never slows anyone else: its streams back up in
//! its own QUIC flow control, and once it is more than `max_lag` groups behind the newest,
//! its oldest group streams are reset and it carries on with the newest group (counted).

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use banyan_moq::coding::{FullTrackName, PublishDoneCode, RequestErrorCode, StreamResetCode};
use banyan_moq::data::SubgroupObject;
use banyan_moq::message::{Message, RequestError, RequestOk};
use banyan_moq::session::{Error as SessionError, TrackSender, TrackWriter};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::track::cache::{Group, Start, Subgroup};
use crate::track::{SubscriberGuard, TrackState};

/// How a forwarder behaves.
#[derive(Clone, Debug)]
pub struct ForwardConfig {
    /// Groups a subscriber may have in flight behind the newest before the oldest is skipped.
    pub max_lag: usize,
    /// How long, after the track ends, in-flight groups may take before PUBLISH_DONE.
    pub drain: Duration,
}

/// Forward a track to one subscriber until it unsubscribes or the track ends.
pub async fn forward(
    guard: SubscriberGuard,
    mut writer: TrackWriter,
    start: Start,
    end_group: Option<u64>,
    config: ForwardConfig,
    metrics: Arc<Metrics>,
) {
    let track = guard.track().clone();
    let sender = writer.sender();
    let datagram_id = track.add_datagram_sender(sender.clone());
    let mut state = track.state();
    metrics.subscriptions.inc();

    let mut active = FuturesUnordered::new();
    let mut in_flight: VecDeque<(u64, watch::Sender<bool>)> = VecDeque::new();
    // The first group sent, and every group sent since (pruned to what the cache still holds):
    // groups can start out of order upstream, so "newer than the last one sent" would lose
    // an older group that starts late.
    let mut from: Option<u64> = None;
    let mut sent = BTreeSet::new();
    let outcome = loop {
        // The next group to send: the start point once, then each group not yet sent.
        let upcoming = async {
            match from {
                None => track.cache.first_group(start).await,
                Some(from) => (track.cache.next_unsent_group(from, &sent).await, 0),
            }
        };
        tokio::select! {
            // Groups first: when the track ends right after its last group entered the cache,
            // both are ready, and that group must still go out before PUBLISH_DONE.
            biased;
            (group, first_object) = upcoming => {
                // From the start group even if a later group was found first.
                from.get_or_insert(match start {
                    Start::At { group: target, .. } => target.min(group.id),
                    _ => group.id,
                });
                sent.insert(group.id);
                if let Some(oldest) = track.cache.oldest() {
                    sent = sent.split_off(&oldest.group);
                }
                if end_group.is_some_and(|end| group.id > end) {
                    break Outcome::Done(PublishDoneCode::SubscriptionEnded, "reached the end of the requested range".into());
                }
                let (cancel, cancelled) = watch::channel(false);
                active.push(send_group(sender.clone(), group.clone(), first_object, cancelled, metrics.clone()));
                // Oldest first, so a lagging subscriber skips its oldest groups.
                let at = in_flight.partition_point(|(id, _)| *id < group.id);
                in_flight.insert(at, (group.id, cancel));
                skip_lagging(&mut in_flight, config.max_lag, &track.name, &metrics);
            }
            Some(finished) = active.next(), if !active.is_empty() => {
                in_flight.retain(|(id, _)| *id != finished);
                if end_group.is_some_and(|end| finished >= end) && active.is_empty() {
                    break Outcome::Done(PublishDoneCode::SubscriptionEnded, "reached the end of the requested range".into());
                }
            }
            request = writer.next_request() => {
                if let Some(outcome) = answer(&mut writer, request).await {
                    break outcome;
                }
            }
            changed = state.changed() => {
                if let Some(outcome) = track_end(&mut state, changed.is_err()) {
                    break outcome;
                }
            }
        }
    };
    track.remove_datagram_sender(datagram_id);
    end(outcome, active, in_flight, writer, config.drain).await;
    metrics.subscriptions.dec();
    drop(guard);
}

/// End the subscription: with PUBLISH_DONE once the groups in flight finish (within
/// `drain`), or, when the subscriber is gone, at once.
async fn end<F: Future<Output = u64>>(
    outcome: Outcome,
    mut active: FuturesUnordered<F>,
    in_flight: VecDeque<(u64, watch::Sender<bool>)>,
    writer: TrackWriter,
    drain: Duration,
) {
    match outcome {
        Outcome::Done(code, reason) => {
            // Let in-flight groups finish (bounded), then PUBLISH_DONE.
            let _ = tokio::time::timeout(drain, async { while active.next().await.is_some() {} }).await;
            for (_, cancel) in in_flight {
                let _ = cancel.send(true);
            }
            drop(active);
            let _ = writer.finish(code, &reason).await;
        }
        Outcome::Gone => {
            for (_, cancel) in in_flight {
                let _ = cancel.send(true);
            }
        }
    }
}

/// Skip the oldest groups in flight beyond `max_lag` behind the newest.
fn skip_lagging(
    in_flight: &mut VecDeque<(u64, watch::Sender<bool>)>,
    max_lag: usize,
    name: &FullTrackName,
    metrics: &Metrics,
) {
    while in_flight.len() > max_lag + 1 {
        if let Some((skipped, cancel)) = in_flight.pop_front() {
            tracing::debug!(track = %name, group = skipped, "subscriber behind; skipping group");
            metrics.groups_skipped.inc();
            let _ = cancel.send(true);
        }
    }
}

/// Answer what the subscriber sent on its subscription's stream: `Some` when that ends the
/// subscription.
async fn answer(writer: &mut TrackWriter, request: Result<Option<Message>, SessionError>) -> Option<Outcome> {
    match request {
        Ok(Some(Message::RequestUpdate(update))) => {
            let reply: Message = if update.parameters.subscription_filter.is_some() {
                RequestError::new(
                    RequestErrorCode::NotSupported,
                    0,
                    "changing the filter is not supported",
                )
                .into()
            } else {
                let priority = update.parameters.subscriber_priority;
                let order = update.parameters.group_order;
                if priority.is_some() || order.is_some() {
                    let descending = order == Some(banyan_moq::message::GroupOrder::Descending);
                    writer.set_priority(priority.unwrap_or(128), descending);
                }
                RequestOk::default().into()
            };
            writer.respond(reply).await.is_err().then_some(Outcome::Gone)
        }
        // The answer to a PUBLISH this relay sent (SUBSCRIBE_TRACKS): objects already
        // flow; a refusal ends the subscription.
        Ok(Some(Message::PublishOk(_) | Message::RequestOk(_))) if writer.publish().is_some() => None,
        Ok(Some(Message::RequestError(error))) if writer.publish().is_some() => {
            tracing::debug!(code = ?error.error_code, reason = %error.error_reason, "subscriber refused our PUBLISH");
            Some(Outcome::Gone)
        }
        Ok(Some(other)) => {
            tracing::debug!(
                message = other.name(),
                "unexpected message on a subscription stream"
            );
            Some(Outcome::Gone)
        }
        Ok(None) | Err(_) => Some(Outcome::Gone),
    }
}

/// How the subscription ends, if the track's state change (or its end, `gone`) ends it.
fn track_end(state: &mut watch::Receiver<TrackState>, gone: bool) -> Option<Outcome> {
    let ended = match &*state.borrow_and_update() {
        TrackState::Ended { code, reason } => Some((*code, reason.clone())),
        TrackState::Failed { reason, .. } => Some((PublishDoneCode::InternalError, reason.clone())),
        _ => None,
    };
    if let Some((code, reason)) = ended {
        return Some(Outcome::Done(code, reason));
    }
    gone.then(|| Outcome::Done(PublishDoneCode::InternalError, "track gone".into()))
}

enum Outcome {
    /// End with PUBLISH_DONE.
    Done(PublishDoneCode, String),
    /// The subscriber went away (or its stream failed): nothing more to send.
    Gone,
}

/// Send one group: a stream per subgroup, opened as subgroups appear. Returns the group id.
async fn send_group(
    sender: TrackSender,
    group: Arc<Group>,
    first_object: u64,
    cancelled: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
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
                    subgroups.push(send_subgroup(sender.clone(), subgroup, first_object, cancelled.clone(), metrics.clone()));
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
    metrics: Arc<Metrics>,
) {
    let mut stream = None;
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
                banyan_moq::session::SubgroupWriter::finish(stream);
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
            let len = object.payload.len() as u64;
            let received = object.received;
            let out = SubgroupObject {
                object_id: object.id,
                properties: object.properties,
                status: object.status,
                payload: object.payload,
            };
            let written = tokio::select! {
                written = writer.write(&out) => Some(written.is_ok()),
                _ = cancelled.changed() => None,
            };
            match written {
                Some(true) => {
                    metrics.objects_out.inc();
                    metrics.bytes_out.inc_by(len);
                    metrics.forward_delay.observe(received.elapsed().as_secs_f64());
                }
                Some(false) => return,
                None => break,
            }
        }
    }
    // Cancelled: the subscriber skips this group.
    if let Some(stream) = stream {
        stream.reset(StreamResetCode::Cancelled);
    }
}
