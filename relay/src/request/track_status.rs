//! TRACK_STATUS: answered from the track table when this relay has the track, else asked
//! upstream.

use std::sync::Arc;

use banyan_moq::coding::FullTrackName;
use banyan_moq::message::{HopPath, Parameters, RequestOk};
use banyan_moq::session::TrackStatusRequest;

use super::SessionHandler;

impl SessionHandler {
    pub(super) async fn track_status(
        self: Arc<Self>,
        request: TrackStatusRequest,
        path: HopPath,
    ) -> Result<(), banyan_moq::session::Error> {
        let message = request.message.clone();
        let name = FullTrackName {
            namespace: message.track_namespace.clone(),
            name: message.track_name.clone(),
        };
        if let Some(track) = self.shared.tracks.get(&name) {
            if let Some(largest) = track.largest() {
                let mut ok = RequestOk::default();
                ok.parameters.largest_object = Some(largest);
                return request.respond(ok).await;
            }
        }
        let mut upstream = message.clone();
        upstream.parameters = Parameters::default();
        let result = self
            .ask_upstream(&message.track_namespace, &path, |session, hop_path| {
                let mut upstream = upstream.clone();
                upstream.parameters.hop_path = hop_path;
                async move { session.track_status(upstream).await }
            })
            .await;
        match result {
            Ok(ok) => request.respond(ok).await,
            Err((code, reason)) => request.reject(code, &reason).await,
        }
    }
}
