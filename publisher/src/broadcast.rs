//! The broadcast being published: sources write frames into media tracks; every SUBSCRIBE
//! (normally the relay's single upstream subscription per track) reads them from there.
//!
//! Each [`MediaTrack`] writes into one [`banyan_moq::track::TrackProducer`], a subgroup per
//! group, keeping its newest [`KEPT_GROUPS`] groups (what a subscription reads is shared, never
//! copied, and bounded). Group numbering follows MSF: IDs start at the wall-clock
//! milliseconds when the publisher started (so a restarted publisher never reuses an ID) and
//! go up by one per group. A subscription starts at the next group (a keyframe for video).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use banyan_media::catalog::Catalog;
use banyan_media::{LocFrame, MediaKind};
use banyan_moq::track::{Limits, Object, Start, SubgroupProducer, TrackConsumer, TrackProducer};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

/// Groups a track keeps. Subscriptions start at the next group, so this is only what a
/// subscription still sending an older group can find; the groups it has in flight stay
/// alive while it sends them.
pub const KEPT_GROUPS: usize = 2;

/// One media track: its catalog identity, its group numbering and the track it writes.
#[derive(Debug)]
pub struct MediaTrack {
    /// The track name (as in the catalog).
    pub name: String,
    /// Video or audio.
    pub kind: MediaKind,
    /// The codec configuration sent on each group's first object.
    pub config: Option<Bytes>,
    /// Publisher priority of its subgroup streams.
    pub priority: u8,
    track: TrackProducer,
    next_group: AtomicU64,
    /// The group being written: its ID, its last Object ID and its subgroup.
    current: Mutex<Option<(u64, u64, SubgroupProducer)>>,
    /// Set when a new subscription wants a group start as soon as possible.
    keyframe_wanted: AtomicBool,
    subscribed: AtomicBool,
    subscribed_notify: Notify,
    /// Frames written.
    pub frames: AtomicU64,
    /// Payload bytes written.
    pub bytes: AtomicU64,
}

impl MediaTrack {
    /// A track whose first group ID is `first_group`.
    pub fn new(name: &str, kind: MediaKind, config: Option<Bytes>, priority: u8, first_group: u64) -> Self {
        Self {
            name: name.to_string(),
            kind,
            config,
            priority,
            track: TrackProducer::new(Limits::groups(KEPT_GROUPS)),
            next_group: AtomicU64::new(first_group),
            current: Mutex::new(None),
            keyframe_wanted: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            subscribed_notify: Notify::new(),
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Write one frame; `new_group` starts a group with it (a keyframe, for video). Frames
    /// before the first group start are dropped. Returns the (group, object) it became.
    pub fn write(&self, frame: LocFrame, new_group: bool) -> Option<(u64, u64)> {
        let group = new_group.then(|| self.next_group.load(Ordering::Relaxed));
        self.write_in(frame, group)
    }

    /// Write one frame, starting group `group` with it when given: IDs chosen by the caller
    /// (a ladder numbers its renditions' groups by keyframe time, so they match across
    /// renditions). A group older than the next this track expects is refused (`None`, the
    /// frame dropped); IDs may skip. Returns the (group, object) it became.
    pub fn write_in(&self, mut frame: LocFrame, group: Option<u64>) -> Option<(u64, u64)> {
        let mut current = self.current.lock();
        if let Some(group) = group {
            if group < self.next_group.load(Ordering::Relaxed) {
                return None;
            }
            self.next_group.store(group + 1, Ordering::Relaxed);
            // Opening a newer group closes the older ones; dropping the old subgroup
            // finishes it. Group IDs only grow, so the track always takes the new group.
            let subgroup = self.track.open_subgroup(group, 0, Some(self.priority), true)?;
            self.keyframe_wanted.store(false, Ordering::Relaxed);
            frame.config = self.config.clone();
            *current = Some((group, 0, subgroup));
        } else {
            let (_, object, _) = current.as_mut()?;
            *object += 1;
        }
        let (group, object, subgroup) = current.as_ref()?;
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.bytes
            .fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
        subgroup.write(Object::from(frame.to_object(self.kind, *object)));
        Some((*group, *object))
    }

    /// End the track for every subscription (each ends once it has sent what it has).
    pub fn end(&self) {
        self.current.lock().take();
        self.track.end();
    }

    /// A new subscription's reader and where it starts: the next group this track writes
    /// (fixed now, so a group that starts before the subscription's first read is not
    /// missed). Asks the source for a group start.
    pub fn subscribe(&self) -> (TrackConsumer, Start) {
        let start = Start::At {
            group: self.next_group.load(Ordering::Relaxed),
            object: 0,
        };
        self.keyframe_wanted.store(true, Ordering::Relaxed);
        self.subscribed.store(true, Ordering::Relaxed);
        self.subscribed_notify.notify_waiters();
        (self.track.consume(), start)
    }

    /// Whether a subscriber is waiting for a group start (sources that can make keyframes on
    /// demand, like the synthetic one, start a group at once).
    pub fn keyframe_wanted(&self) -> bool {
        self.keyframe_wanted.load(Ordering::Relaxed)
    }

    /// Resolves once the track has had at least one subscription.
    pub async fn first_subscription(&self) {
        loop {
            let notified = self.subscribed_notify.notified();
            if self.subscribed.load(Ordering::Relaxed) {
                return;
            }
            notified.await;
        }
    }

    /// The group being produced, if any.
    pub fn current_group(&self) -> Option<u64> {
        self.current.lock().as_ref().map(|(g, _, _)| *g)
    }
}

/// What is being published: the catalog and its tracks.
#[derive(Debug)]
pub struct Published {
    /// The catalog object's payload.
    pub catalog: Catalog,
    /// The tracks, in catalog order.
    pub tracks: Vec<Arc<MediaTrack>>,
}

/// The broadcast shared by the source and every session.
#[derive(Debug)]
pub struct Broadcast {
    /// Set once the source knows its tracks; updated (e.g. to the complete catalog) at the end.
    published: watch::Sender<Option<Arc<Published>>>,
    /// Catalog group IDs (one group per catalog version).
    catalog_group: AtomicU64,
    /// The first group ID of every track.
    pub first_group: u64,
    ended: watch::Sender<bool>,
}

impl Default for Broadcast {
    fn default() -> Self {
        Self::new()
    }
}

impl Broadcast {
    /// A broadcast with group IDs starting at the current wall-clock milliseconds.
    pub fn new() -> Self {
        let first_group = banyan_media::loc::unix_micros() / 1000;
        Self {
            published: watch::Sender::new(None),
            catalog_group: AtomicU64::new(first_group),
            first_group,
            ended: watch::Sender::new(false),
        }
    }

    /// Publish (or replace) the catalog and tracks.
    pub fn publish(&self, published: Published) {
        self.catalog_group.fetch_add(1, Ordering::Relaxed);
        self.published.send_replace(Some(Arc::new(published)));
    }

    /// The current catalog and tracks, if known yet.
    pub fn published(&self) -> Option<Arc<Published>> {
        self.published.borrow().clone()
    }

    /// A receiver that changes whenever the catalog does.
    pub fn watch_published(&self) -> watch::Receiver<Option<Arc<Published>>> {
        self.published.subscribe()
    }

    /// The group ID of the current catalog version.
    pub fn catalog_group(&self) -> u64 {
        self.catalog_group.load(Ordering::Relaxed)
    }

    /// The source has finished: every track ends, and the catalog says the broadcast is complete.
    pub fn end(&self) {
        if let Some(p) = self.published() {
            for t in &p.tracks {
                t.end();
            }
            self.publish(Published {
                catalog: Catalog::complete(),
                tracks: p.tracks.clone(),
            });
        }
        self.ended.send_replace(true);
    }

    /// Whether the source has finished.
    pub fn is_ended(&self) -> bool {
        *self.ended.borrow()
    }

    /// Resolves when the source has finished.
    pub async fn ended(&self) {
        let mut rx = self.ended.subscribe();
        let _ = rx.wait_for(|e| *e).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use banyan_moq::data::SubgroupObject;

    use super::*;

    #[tokio::test]
    async fn groups_start_at_new_group_frames_and_count_up() {
        let track = MediaTrack::new(
            "video",
            MediaKind::Video,
            Some(Bytes::from_static(b"cfg")),
            1,
            100,
        );
        let (consumer, start) = track.subscribe();
        assert_eq!(
            start,
            Start::At {
                group: 100,
                object: 0
            }
        );
        assert!(track.keyframe_wanted());
        assert_eq!(
            track.write(LocFrame::new(1, Bytes::new()), false),
            None,
            "no group yet"
        );
        assert_eq!(track.write(LocFrame::new(2, Bytes::new()), true), Some((100, 0)));
        assert!(!track.keyframe_wanted());
        assert_eq!(track.write(LocFrame::new(3, Bytes::new()), false), Some((100, 1)));
        assert_eq!(track.write(LocFrame::new(4, Bytes::new()), true), Some((101, 0)));
        assert_eq!(track.current_group(), Some(101));

        let (group, first_object) = consumer.first_group(start).await.unwrap();
        assert_eq!((group.id, first_object), (100, 0));
        let subgroups = group.subgroups_from(0).await;
        assert_eq!(subgroups.len(), 1, "one subgroup per group");
        assert_eq!(subgroups[0].publisher_priority, Some(1));
        let objects = subgroups[0].read_from(0).await;
        assert_eq!(objects.len(), 2);
        assert!(
            subgroups[0].read_from(2).await.is_empty(),
            "a new group finishes the previous one"
        );
        // The group's first object carries the codec configuration.
        let frame = |i: usize| {
            LocFrame::from_object(MediaKind::Video, &SubgroupObject::from(objects[i].clone())).unwrap()
        };
        assert_eq!(frame(0).config.as_deref(), Some(&b"cfg"[..]));
        assert_eq!(frame(0).timestamp_us, 2);
        assert_eq!(frame(1).config, None);

        track.end();
        assert!(consumer.is_ended());
        assert_eq!(consumer.kept_groups(), vec![100, 101]);
    }
}
