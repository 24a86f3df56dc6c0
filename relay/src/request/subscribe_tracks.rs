//! SUBSCRIBE_TRACKS: PUBLISH every track pushed to this relay under a prefix to the session.

use std::sync::Arc;

use banyan_moq::coding::RequestErrorCode;
use banyan_moq::message::{HopPath, Parameters, Publish, PublishBlocked};
use banyan_moq::session::SubscribeTracksRequest;

use super::limits::Slot;
use super::SessionHandler;
use crate::metrics::RefuseReason;
use crate::track::forward::forward;
use crate::track::{Subscriber, SubscriberGuard, Track};
use banyan_moq::track::Start;

impl SessionHandler {
    /// SUBSCRIBE_TRACKS: PUBLISH every track pushed to this relay under the prefix, those live
    /// now and each new one, until the request is cancelled (draft-18 §"Relays": "When a relay
    /// receives an incoming PUBLISH message, it MUST send a PUBLISH request to each subscriber
    /// that has sent SUBSCRIBE_TRACKS for the Track's namespace or a prefix thereof"). Tracks
    /// published before cancelling carry on until unsubscribed.
    pub(super) async fn subscribe_tracks(
        self: Arc<Self>,
        request: SubscribeTracksRequest,
        path: HopPath,
    ) -> Result<(), banyan_moq::session::Error> {
        let prefix = request.message.track_namespace_prefix.clone();
        if request.message.parameters.forward == Some(false) {
            self.shared.metrics.refuse(RefuseReason::Other);
            return request
                .reject(
                    RequestErrorCode::NotSupported,
                    "SUBSCRIBE_TRACKS with FORWARD 0 is not supported by this relay",
                )
                .await;
        }
        let _slot = match self.namespace_slot() {
            Ok(slot) => slot,
            Err((code, reason)) => return request.reject(code, reason).await,
        };
        let mut watch = self.shared.tracks.watch(prefix.clone());
        let mut stream = request.accept().await?;
        let relay = !path.is_empty();
        loop {
            tokio::select! {
                track = watch.next() => {
                    let Some(track) = track else { return Ok(()) };
                    match self.subscription_slot() {
                        Ok(slot) => {
                            self.tasks.spawn(self.clone().publish_to(track, relay, slot));
                        }
                        Err(_) => {
                            let blocked = PublishBlocked {
                                track_namespace_suffix: track.name.namespace.strip_prefix(&prefix).unwrap_or_default(),
                                track_name: track.name.name.clone(),
                            };
                            stream.send(&blocked.into()).await?;
                        }
                    }
                }
                message = stream.next() => match message {
                    Ok(Some(other)) => {
                        tracing::debug!(message = other.name(), "unexpected message on a SUBSCRIBE_TRACKS stream");
                        self.session.close(
                            banyan_moq::coding::SessionErrorCode::ProtocolViolation,
                            "unexpected message on a SUBSCRIBE_TRACKS stream",
                        );
                        return Ok(());
                    }
                    // Cancelled: no further PUBLISH for it.
                    Ok(None) | Err(_) => return Ok(()),
                },
            }
        }
    }

    /// PUBLISH one track this relay has to this session and forward it from the cache.
    async fn publish_to(self: Arc<Self>, track: Arc<Track>, relay: bool, _slot: Slot) {
        // A session that subscribed to the track (perhaps held waiting for this very PUBLISH)
        // has it already: no PUBLISH on top (draft-18 §"Relays").
        if self.joinable.subscribes_to(&track.name) {
            return;
        }
        let Some(info) = track.live_info() else { return };
        let subscriber = if relay {
            Subscriber::Relay
        } else {
            Subscriber::Viewer(self.id)
        };
        let guard = SubscriberGuard::join(&track, subscriber);
        if !relay {
            self.shared.interact.watched(&track.name);
        }
        let publish = Publish {
            track_namespace: track.name.namespace.clone(),
            track_name: track.name.name.clone(),
            parameters: Parameters {
                largest_object: info.largest,
                group_order: info.group_order,
                ..Default::default()
            },
            track_properties: info.track_properties,
            ..Default::default()
        };
        let writer = match self.session.publish(publish).await {
            Ok(writer) => writer,
            Err(e) => {
                tracing::debug!(track = %track.name, error = %e, "could not PUBLISH to a SUBSCRIBE_TRACKS subscriber");
                return;
            }
        };
        tracing::debug!(track = %track.name, "published to a SUBSCRIBE_TRACKS subscriber");
        let start = Start::At {
            group: info.largest.map_or(0, |l| l.group),
            object: 0,
        };
        forward(
            guard,
            writer,
            start,
            None,
            self.shared.forward.clone(),
            self.shared.metrics.clone(),
            &|tokens| self.refresh(tokens),
        )
        .await;
    }
}
