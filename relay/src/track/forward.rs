//! Fan-out: one forwarder per downstream subscription (a viewer or a child relay), reading the
//! shared cache with its own cursor through a [`Fanout`]. A subscriber that cannot keep up
//! never slows anyone else: its streams back up in its own QUIC flow control and send
//! buffers, newest group first when the publisher asks for descending group order (live
//! media). Its older groups are reset, and it carries on with the newest, when more than
//! `max_lag` groups behind are still being written, or when one is not delivered within the
//! latency budget after a newer group began (a path slower than the track, or this relay's
//! CPU unable to send what it accepted); each skip is counted by reason. Half a budget after
//! being overtaken, an undelivered group already yields to the newest one (see [`Fanout`]).
//! Interaction tracks are never skipped for lateness. Around the fan-out: the subscription's requests (REQUEST_UPDATE), the
//! end of a requested range, and PUBLISH_DONE when the track ends.

use std::sync::Arc;
use std::time::Duration;

use banyan_moq::coding::{PublishDoneCode, RequestErrorCode};
use banyan_moq::message::{Message, RequestError, RequestOk, Token};
use banyan_moq::session::{Error as SessionError, TrackWriter};
use banyan_moq::track::{Fanout, LatencyBudget, Start, Step};
use tokio::sync::watch;

use crate::auth::AuthError;
use crate::interact::hub::Hub;
use crate::metrics::Metrics;
use crate::track::{SubscriberGuard, TrackState};

/// How a forwarder behaves.
#[derive(Clone, Debug)]
pub struct ForwardConfig {
    /// Groups a subscriber may have in flight behind the newest before the oldest is skipped.
    pub max_lag: usize,
    /// How long, after the track ends, in-flight groups may take before PUBLISH_DONE.
    pub drain: Duration,
    /// How late a media group may be delivered before it is skipped.
    pub latency_budget: LatencyBudget,
}

/// Forward a track to one subscriber until it unsubscribes or the track ends. A
/// REQUEST_UPDATE carrying AUTHORIZATION TOKEN is handed to `refresh` (the session's token
/// refresh); a refused token fails the update, which ends the subscription (draft-18).
pub async fn forward(
    guard: SubscriberGuard,
    mut writer: TrackWriter,
    start: Start,
    end_group: Option<u64>,
    config: ForwardConfig,
    metrics: Arc<Metrics>,
    refresh: &(dyn Fn(&[Token]) -> Result<(), AuthError> + Sync),
) {
    let track = guard.track().clone();
    let sender = writer.sender();
    let datagram_id = track.add_datagram_sender(sender.clone());
    let mut state = track.state();
    metrics.subscriptions.inc();

    // Every comment and like total matters; a late one is still worth delivering.
    let budget = if Hub::is_interaction_track(&track.name.name) {
        LatencyBudget::Off
    } else {
        config.latency_budget
    };
    let mut fanout = Fanout::new(track.cache.clone(), sender, start, config.max_lag)
        .until(end_group)
        .budget(budget);
    // Once the track's groups are all sent, the track's state says how it ended.
    let mut sent_all = false;
    let outcome = loop {
        tokio::select! {
            // Groups first: when the track ends right after its last group entered the cache,
            // both are ready, and that group must still go out before PUBLISH_DONE.
            biased;
            step = fanout.step(), if !sent_all => match step {
                Step::Skipped { group, reason } => {
                    tracing::debug!(track = %track.name, group, reason = reason.as_str(), "subscriber behind; skipping group");
                    metrics.skip(reason);
                }
                Step::Started { .. } | Step::Finished { .. } => {}
                Step::ReachedEnd => {
                    break Outcome::Done(PublishDoneCode::SubscriptionEnded, "reached the end of the requested range".into());
                }
                Step::Ended => sent_all = true,
            },
            request = writer.next_request() => {
                if let Some(outcome) = answer(&mut writer, request, refresh).await {
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
    match outcome {
        Outcome::Done(code, reason) => {
            // Let in-flight groups finish (bounded), then PUBLISH_DONE.
            fanout.drain(config.drain).await;
            let _ = writer.finish(code, &reason).await;
        }
        Outcome::Gone => fanout.abandon().await,
    }
    metrics.subscriptions.dec();
    drop(guard);
}

/// Answer what the subscriber sent on its subscription's stream: `Some` when that ends the
/// subscription.
async fn answer(
    writer: &mut TrackWriter,
    request: Result<Option<Message>, SessionError>,
    refresh: &(dyn Fn(&[Token]) -> Result<(), AuthError> + Sync),
) -> Option<Outcome> {
    match request {
        Ok(Some(Message::RequestUpdate(update))) => {
            if let Err(e) = refresh(&update.parameters.authorization_tokens) {
                let reason = format!("token refresh refused: {e}");
                let reply = RequestError::new(e.request_code(), 0, reason.as_str());
                if writer.respond(reply.into()).await.is_err() {
                    return Some(Outcome::Gone);
                }
                return Some(Outcome::Done(PublishDoneCode::UpdateFailed, reason));
            }
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
