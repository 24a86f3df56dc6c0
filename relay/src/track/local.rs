//! Tracks this relay produces itself (the interaction tracks an origin publishes): their
//! entries in the table. Their owner writes them through [`Track::producer`] like any
//! producer of a [`banyan_moq::track`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use banyan_moq::coding::{FullTrackName, PublishDoneCode};

use super::{LiveInfo, Track, TrackState, Tracks};

impl Tracks {
    /// A track this relay produces itself (the interaction tracks an origin publishes):
    /// the live entry for `name`, created if there is none. It has no upstream and never
    /// lingers out; its owner writes it through [`Track::producer`].
    pub fn local(self: &Arc<Self>, name: FullTrackName) -> Arc<Track> {
        let mut tracks = self.tracks.lock();
        if let Some(track) = tracks.get(&name) {
            if !track.closing.load(Ordering::SeqCst) {
                return track.clone();
            }
        }
        let track = Arc::new(Track::new(
            name.clone(),
            &self.config,
            self.budget.clone(),
            self.metrics.clone(),
        ));
        track.set_state(TrackState::Live(LiveInfo::default()));
        tracks.insert(name, track.clone());
        track
    }

    /// End a track from [`Tracks::local`]: its subscribers get PUBLISH_DONE (track ended)
    /// once they have what is cached, and the name is free for a new track.
    pub fn end_local(&self, track: &Arc<Track>, reason: &str) {
        self.retire(
            track,
            TrackState::Ended {
                code: PublishDoneCode::TrackEnded,
                reason: reason.to_owned(),
            },
        );
    }
}
