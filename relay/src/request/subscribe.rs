//! SUBSCRIBE: join (or create) the track's one upstream subscription, hold it for a
//! publisher when asked (RENDEZVOUS_TIMEOUT), answer with SUBSCRIBE_OK and forward from the
//! cache.

use std::sync::Arc;
use std::time::Duration;

use banyan_moq::coding::{Location, RequestErrorCode, TrackNamespace};
use banyan_moq::message::{HopPath, Parameters, SubscribeOk, SubscriptionFilter};
use banyan_moq::session::SubscribeRequest;

use super::{track_name, SessionHandler};
use crate::metrics::RefuseReason;
use crate::track::forward::forward;
use crate::track::{LiveInfo, Track, TrackState};
use banyan_moq::track::Start;

impl SessionHandler {
    pub(super) async fn subscribe(
        self: Arc<Self>,
        request: SubscribeRequest,
        path: HopPath,
    ) -> Result<(), banyan_moq::session::Error> {
        let message = request.message.clone();
        let _slot = match self.subscription_slot() {
            Ok(slot) => slot,
            Err((code, reason)) => return request.reject(code, reason).await,
        };
        let name = match track_name(&message.track_namespace, &message.track_name) {
            Ok(name) => name,
            Err((code, reason)) => return request.reject(code, &reason).await,
        };
        self.shared.interact.prepare(&name);
        // Held for a publisher as long as asked (RENDEZVOUS_TIMEOUT, capped); without the
        // parameter not at all (draft-18 §"RENDEZVOUS TIMEOUT Parameter").
        let rendezvous = self
            .shared
            .tracks
            .rendezvous(message.parameters.rendezvous_timeout);
        let (guard, upstream) = self.shared.tracks.subscribe(name, &path, Some(self.id));
        if let Some(upstream) = upstream {
            self.shared.tasks.spawn(upstream);
        }
        let track = guard.track().clone();
        if let Some(reason) = self.loop_through_parent(&track, &path) {
            self.shared.metrics.refuse(RefuseReason::Loop);
            return request.reject(RequestErrorCode::DoesNotExist, &reason).await;
        }
        let info = match self.live_or_refusal(
            track.ready(rendezvous).await,
            &message.track_namespace,
            rendezvous,
        ) {
            Ok(info) => info,
            Err((code, reason)) => return request.reject(code, &reason).await,
        };
        if path.is_empty() {
            // A viewer of the broadcast's media: counted from now.
            self.shared.interact.watched(&track.name);
        }
        // The Largest Object that SUBSCRIBE_OK reports is the one the filters are relative to
        // (draft-18 §Subscription Filters; {0, 0} when nothing has arrived yet), so the start
        // is fixed here, not when the forwarder first looks at the cache: objects arriving in
        // between belong to this subscriber.
        let largest = track.largest();
        let (start, end_group) = filter_start(message.parameters.subscription_filter, largest);
        let ok = SubscribeOk {
            track_alias: 0,
            parameters: Parameters {
                largest_object: largest,
                group_order: info.group_order,
                ..Default::default()
            },
            track_properties: info.track_properties,
        };
        let request_id = message.request_id;
        let writer = request.accept(ok).await?;
        self.joinable.established(request_id, (track.clone(), largest));
        forward(
            guard,
            writer,
            start,
            end_group,
            self.shared.forward.clone(),
            self.shared.metrics.clone(),
            &|tokens| self.refresh(tokens),
        )
        .await;
        Ok(())
    }

    /// A relay asking for a track this relay gets from that very relay (or from one on the
    /// request's path) would close a loop that coalescing hides from the path check: the
    /// reason to refuse it.
    fn loop_through_parent(&self, track: &Track, path: &HopPath) -> Option<String> {
        let parent = track.parent_hop()?;
        (path.contains(parent) || self.session.peer_setup().hop_id == Some(parent)).then(|| {
            format!("relay loop: this relay receives the track from relay {parent:x}, which asks for it")
        })
    }

    /// What SUBSCRIBE_OK repeats of a live track, or the REQUEST_ERROR for a subscriber to a
    /// track that is not live once [`Track::ready`] returns.
    fn live_or_refusal(
        &self,
        state: TrackState,
        namespace: &TrackNamespace,
        rendezvous: Duration,
    ) -> Result<LiveInfo, (RequestErrorCode, String)> {
        let refusal = match state {
            TrackState::Live(info) => return Ok(info),
            TrackState::Pending => return Err((RequestErrorCode::Timeout, "upstream did not answer".into())),
            TrackState::Waiting if rendezvous.is_zero() => (
                RequestErrorCode::DoesNotExist,
                format!("no publisher for namespace {namespace}"),
            ),
            TrackState::Waiting => (
                RequestErrorCode::Timeout,
                format!("no publisher for namespace {namespace} within {rendezvous:?}"),
            ),
            TrackState::Failed { code, reason } => (code, reason),
            TrackState::Ended { reason, .. } => {
                (RequestErrorCode::DoesNotExist, format!("track ended: {reason}"))
            }
        };
        self.shared.metrics.refuse(RefuseReason::NotFound);
        Err(refusal)
    }
}

/// Where a subscription with `filter` starts, and the group it ends after (AbsoluteRange),
/// given the Largest Object its SUBSCRIBE_OK reports.
fn filter_start(filter: Option<SubscriptionFilter>, largest: Option<Location>) -> (Start, Option<u64>) {
    match filter {
        // Join fast: from the first object of the Largest Object's group.
        None | Some(SubscriptionFilter::LargestObject) => (
            Start::At {
                group: largest.map_or(0, |l| l.group),
                object: 0,
            },
            None,
        ),
        Some(SubscriptionFilter::NextGroupStart) => (
            Start::At {
                group: largest.map_or(0, |l| l.group.saturating_add(1)),
                object: 0,
            },
            None,
        ),
        Some(SubscriptionFilter::AbsoluteStart { start_location }) => (
            Start::At {
                group: start_location.group,
                object: start_location.object,
            },
            None,
        ),
        Some(SubscriptionFilter::AbsoluteRange {
            start_location,
            end_group_delta,
        }) => (
            Start::At {
                group: start_location.group,
                object: start_location.object,
            },
            Some(start_location.group.saturating_add(end_group_delta)),
        ),
    }
}
