//! PUBLISH: a track pushed to this relay (or a viewer's `interact` track, handed to the
//! interaction hub).

use std::sync::Arc;

use banyan_moq::coding::RequestErrorCode;
use banyan_moq::message::RequestOk;
use banyan_moq::session::PublishRequest;

use super::{track_name, SessionHandler};
use crate::auth::{Action, ClaimsExt as _};
use crate::interact::hub::INTERACT;
use crate::interact::moderation::Identity;
use crate::metrics::RefuseReason;

impl SessionHandler {
    pub(super) async fn publish(
        self: Arc<Self>,
        request: PublishRequest,
    ) -> Result<(), banyan_moq::session::Error> {
        let message = request.message.clone();
        if message.track_name.as_bytes().as_ref() == INTERACT {
            // The request was authorized a moment ago with these claims; should they fail now
            // (the token just expired), the publication is a viewer's, allowed no room.
            let claims = self.claims_for(&message.parameters.authorization_tokens);
            // Relays declare a Hop ID and their publications carry already-limited sums; a
            // declared Hop ID alone is not enough to skip the per-viewer limits: the session
            // must also be allowed to publish the broadcast (any session, without auth).
            let from_relay = self.session.peer_setup().hop_id.is_some()
                && match &claims {
                    Ok(Some(claims)) => claims.check(Action::Publish, &message.track_namespace).is_ok(),
                    Ok(None) => true,
                    Err(_) => false,
                };
            // A viewer token's `room` claim holds its comments to that room; a claim that is
            // not a room number allows none (`u64::MAX` is above every room count).
            let room = match &claims {
                Ok(Some(claims)) => claims.room.as_ref().map(|room| room.parse().unwrap_or(u64::MAX)),
                Ok(None) => None,
                Err(_) => Some(u64::MAX),
            };
            // Who comments, for moderation: the token's `sub`, and whether its `mod` claim
            // covers the broadcast.
            let who = match &claims {
                Ok(Some(claims)) => Identity {
                    sub: claims.sub.clone(),
                    moderator: claims.moderator
                        && claims.check(Action::Subscribe, &message.track_namespace).is_ok(),
                    follower: claims.follower,
                    subscriber: claims.subscriber,
                },
                _ => Identity::default(),
            };
            return self
                .shared
                .interact
                .clone()
                .serve(request, from_relay, room, who)
                .await;
        }
        let name = match track_name(&message.track_namespace, &message.track_name) {
            Ok(name) => name,
            Err((code, reason)) => return request.reject(code, &reason).await,
        };
        if !self.shared.publisher_takeover && self.shared.tracks.pushed_and_live(&name) {
            self.shared.metrics.refuse(RefuseReason::Other);
            return request
                .reject(
                    RequestErrorCode::Uninterested,
                    &format!("track {name} is already published by another session"),
                )
                .await;
        }
        let subscription = request.accept(RequestOk::default()).await?;
        if let (_, Some(feed)) = self.shared.tracks.insert_pushed(name, subscription) {
            self.shared.tasks.spawn(feed);
        }
        Ok(())
    }
}
