//! FETCH: standalone (from the cache when it covers the range, else upstream) and joining
//! (relative to a SUBSCRIBE on the same session).

use std::sync::Arc;
use std::time::Duration;

use banyan_moq::coding::{FullTrackName, Location, RequestErrorCode};
use banyan_moq::data::{FetchItem, FetchObject};
use banyan_moq::message::{Fetch, FetchOk, FetchType, HopPath, Parameters};
use banyan_moq::session::FetchRequest;

use super::SessionHandler;

/// How long a FETCH answered from the cache waits for objects upstream reported but that
/// have not arrived yet (one upstream round trip is typical; the bound keeps a stalled
/// upstream from holding the FETCH).
const FETCH_CATCH_UP: Duration = Duration::from_secs(1);

/// The last Location in `[.., end)`: `end` excludes itself, and Object 0 excludes the whole
/// of its group. `None` for an empty range.
fn last_before(end: Location) -> Option<Location> {
    match (end.group, end.object) {
        (0, 0) => None,
        (group, 0) => Some(Location::new(group - 1, u64::MAX)),
        (group, object) => Some(Location::new(group, object - 1)),
    }
}

impl SessionHandler {
    pub(super) async fn fetch(
        self: Arc<Self>,
        request: FetchRequest,
        path: HopPath,
    ) -> Result<(), banyan_moq::session::Error> {
        let message = request.message.clone();
        let (track, start, end) = match &message.fetch_type {
            FetchType::Standalone(range) => {
                let name = FullTrackName {
                    namespace: range.track_namespace.clone(),
                    name: range.track_name.clone(),
                };
                match self.shared.tracks.get(&name) {
                    Some(track) if track.cache.oldest().is_some_and(|o| o <= range.start_location) => {
                        // End Location is the last Object plus one; Object 0 asks for the
                        // whole of that group (draft-18, "Standalone Fetch"). The cache
                        // wants `[start, end)`.
                        let end = if range.end_location.object == 0 {
                            Location::new(range.end_location.group.saturating_add(1), 0)
                        } else {
                            range.end_location
                        };
                        (track, range.start_location, end)
                    }
                    _ => return self.fetch_upstream(request, message, path).await,
                }
            }
            FetchType::RelativeJoining(join) | FetchType::AbsoluteJoining(join) => {
                let joined = self.joinable.join(join.joining_request_id).await;
                let Some((track, joining_location)) = joined else {
                    return request
                        .reject(
                            RequestErrorCode::InvalidJoiningRequestId,
                            "no such subscription on this session",
                        )
                        .await;
                };
                let joining_group = joining_location.map_or(0, |l| l.group);
                let start_group = match &message.fetch_type {
                    FetchType::RelativeJoining(_) => joining_group.saturating_sub(join.joining_start),
                    _ => join.joining_start,
                };
                let end =
                    joining_location.map_or(Location::new(0, 0), |l| Location::new(l.group, l.object + 1));
                (track, Location::new(start_group, 0), end)
            }
        };
        // Objects upstream reported (in its SUBSCRIBE_OK) may still be on their way into the
        // cache: a subscriber FETCHing up to the Largest Object it was just told about must get
        // them all, not the part that happened to arrive.
        if let Some(last) = last_before(end) {
            track.caught_up(last, FETCH_CATCH_UP).await;
        }
        self.shared.metrics.cache_hits.inc();
        let mut objects = track.cache.range(start, end);
        // Comments a moderator deleted are not history.
        objects
            .retain(|(group, _, _, object)| !self.shared.interact.is_deleted(&track.name, *group, object.id));
        // FETCH_OK's End Location uses the request's encoding: the last Object plus one.
        let end_location = objects
            .last()
            .map_or(start, |(g, _, _, o)| Location::new(*g, o.id.saturating_add(1)));
        let ok = FetchOk {
            end_of_track: false,
            end_location,
            ..Default::default()
        };
        let mut writer = request.accept(ok).await?;
        for (group, subgroup, priority, object) in objects {
            let item = FetchItem::Object(FetchObject {
                group_id: group,
                subgroup_id: Some(subgroup),
                object_id: object.id,
                publisher_priority: priority.unwrap_or(128),
                properties: object.properties,
                payload: object.payload,
            });
            writer.write(&item).await?;
        }
        writer.finish();
        Ok(())
    }

    /// Forward a FETCH the cache cannot answer to the publisher and relay its objects.
    async fn fetch_upstream(
        &self,
        request: FetchRequest,
        message: Fetch,
        path: HopPath,
    ) -> Result<(), banyan_moq::session::Error> {
        let FetchType::Standalone(range) = &message.fetch_type else {
            return request
                .reject(
                    RequestErrorCode::NotSupported,
                    "joining fetch needs a subscription",
                )
                .await;
        };
        self.shared.metrics.cache_misses.inc();
        let mut upstream = message.clone();
        upstream.parameters = Parameters::default();
        let result = self
            .ask_upstream(&range.track_namespace, &path, |session, hop_path| {
                let mut upstream = upstream.clone();
                upstream.parameters.hop_path = hop_path;
                async move { session.fetch(upstream).await }
            })
            .await;
        let mut reader = match result {
            Ok(reader) => reader,
            Err((code, reason)) => return request.reject(code, &reason).await,
        };
        let ok = reader.fetch_ok().cloned().unwrap_or_default();
        let mut writer = request
            .accept(FetchOk {
                parameters: Parameters::default(),
                ..ok
            })
            .await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(30), reader.next()).await {
                Ok(Ok(Some(item))) => writer.write(&item).await?,
                Ok(Ok(None)) => break,
                Ok(Err(_)) | Err(_) => {
                    drop(writer);
                    return Ok(());
                }
            }
        }
        writer.finish();
        Ok(())
    }
}
