//! Tracks this relay produces itself (the interaction tracks an origin publishes): their
//! entries in the table and the writes of their producer.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use banyan_moq::coding::{FullTrackName, PublishDoneCode};
use banyan_moq::data::{ObjectProperties, ObjectStatus};
use bytes::Bytes;

use super::cache::{CachedObject, Subgroup};
use super::{LiveInfo, Track, TrackState, Tracks};

impl Track {
    /// Append group `group_id` holding one object with `payload` (for a locally produced
    /// track; group ids must grow). Returns false if the cache refused it as too old.
    pub fn append_group(&self, group_id: u64, payload: Bytes) -> bool {
        let Some(subgroup) = self.open_local(group_id) else {
            return false;
        };
        self.append(&subgroup, 0, payload);
        self.cache.finish(&subgroup);
        true
    }

    /// Open subgroup 0 of group `group_id` on a locally produced track; `None` if the cache
    /// refused it as too old.
    pub fn open_local(&self, group_id: u64) -> Option<Arc<Subgroup>> {
        self.cache.open_subgroup(group_id, 0, None, false)
    }

    /// Append object `id` (ids must grow) to a subgroup from [`Track::open_local`].
    pub fn append(&self, subgroup: &Subgroup, id: u64, payload: Bytes) {
        self.metrics.objects_in.inc();
        let object = CachedObject {
            id,
            status: ObjectStatus::Normal,
            properties: ObjectProperties::default(),
            payload,
            received: Instant::now(),
        };
        self.cache.push(subgroup, object);
    }

    /// Mark a subgroup from [`Track::open_local`] complete.
    pub fn finish_local(&self, subgroup: &Subgroup) {
        self.cache.finish(subgroup);
    }
}

impl Tracks {
    /// A track this relay produces itself (the interaction tracks an origin publishes):
    /// the live entry for `name`, created if there is none. It has no upstream and never
    /// lingers out; its producer writes whole groups with [`Track::append_group`].
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
