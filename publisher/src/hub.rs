//! The publisher's broadcast hub: sources write frames into track producers; every SUBSCRIBE
//! (normally the relay's single upstream subscription per track) reads them from there.
//!
//! Group numbering follows MSF: IDs start at the wall-clock milliseconds when the publisher
//! started (so a restarted publisher never reuses an ID) and go up by one per group. A
//! subscription starts at the next group (a keyframe for video); a subscriber that falls
//! behind the channel skips to the next group.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use banyan_media::catalog::Catalog;
use banyan_media::{LocFrame, MediaKind};
use banyan_moq::data::SubgroupObject;
use bytes::Bytes;
use tokio::sync::{broadcast, watch, Notify};

/// Objects a subscription may fall behind before it skips to the next group.
const CHANNEL: usize = 512;

/// One object on its way to subscribers.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Group ID.
    pub group: u64,
    /// The object (ID, LOC properties, payload).
    pub object: SubgroupObject,
}

/// What a track's channel carries.
#[derive(Debug, Clone)]
pub enum TrackItem {
    /// An object.
    Object(Arc<Outgoing>),
    /// The track has ended (PUBLISH_DONE follows).
    End,
}

/// One media track's producer side.
#[derive(Debug)]
pub struct TrackProducer {
    /// The track name (as in the catalog).
    pub name: String,
    /// Video or audio.
    pub kind: MediaKind,
    /// The codec configuration sent on each group's first object.
    pub config: Option<Bytes>,
    /// Publisher priority of its subgroup streams.
    pub priority: u8,
    tx: broadcast::Sender<TrackItem>,
    next_group: AtomicU64,
    current: std::sync::Mutex<Option<(u64, u64)>>,
    /// Set when a new subscription wants a group start as soon as possible.
    keyframe_wanted: AtomicBool,
    subscribed: AtomicBool,
    subscribed_notify: Notify,
    /// Stats: frames, bytes, groups.
    pub frames: AtomicU64,
    /// Payload bytes written.
    pub bytes: AtomicU64,
}

impl TrackProducer {
    /// A producer whose first group ID is `first_group`.
    pub fn new(name: &str, kind: MediaKind, config: Option<Bytes>, priority: u8, first_group: u64) -> Self {
        Self {
            name: name.to_string(),
            kind,
            config,
            priority,
            tx: broadcast::channel(CHANNEL).0,
            next_group: AtomicU64::new(first_group),
            current: std::sync::Mutex::new(None),
            keyframe_wanted: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            subscribed_notify: Notify::new(),
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Write one frame; `new_group` starts a group with it (a keyframe, for video). Frames
    /// before the first group start are dropped. Returns the (group, object) it became.
    pub fn write(&self, mut frame: LocFrame, new_group: bool) -> Option<(u64, u64)> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let (group, object) = match (*current, new_group) {
            (_, true) => (self.next_group.fetch_add(1, Ordering::Relaxed), 0),
            (Some((g, o)), false) => (g, o + 1),
            (None, false) => return None,
        };
        *current = Some((group, object));
        drop(current);
        if object == 0 {
            self.keyframe_wanted.store(false, Ordering::Relaxed);
            frame.config = self.config.clone();
        }
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.bytes
            .fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
        let outgoing = Outgoing {
            group,
            object: frame.to_object(self.kind, object),
        };
        // No receiver just means nobody is subscribed right now.
        let _ = self.tx.send(TrackItem::Object(Arc::new(outgoing)));
        Some((group, object))
    }

    /// End the track for every subscription.
    pub fn end(&self) {
        let _ = self.tx.send(TrackItem::End);
    }

    /// A new subscription's receiver (and a request for a group start).
    pub fn subscribe(&self) -> broadcast::Receiver<TrackItem> {
        self.keyframe_wanted.store(true, Ordering::Relaxed);
        self.subscribed.store(true, Ordering::Relaxed);
        self.subscribed_notify.notify_waiters();
        self.tx.subscribe()
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
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|(g, _)| g)
    }
}

/// What is being published: the catalog and its tracks.
#[derive(Debug)]
pub struct Published {
    /// The catalog object's payload.
    pub catalog: Catalog,
    /// The tracks, in catalog order.
    pub tracks: Vec<Arc<TrackProducer>>,
}

/// The hub shared by the source and every session.
#[derive(Debug)]
pub struct Hub {
    /// Set once the source knows its tracks; updated (e.g. to the complete catalog) at the end.
    published: watch::Sender<Option<Arc<Published>>>,
    /// Catalog group IDs (one group per catalog version).
    catalog_group: AtomicU64,
    /// The first group ID of every track.
    pub first_group: u64,
    ended: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// A hub with group IDs starting at the current wall-clock milliseconds.
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
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn groups_start_at_new_group_frames_and_count_up() {
        let track = TrackProducer::new(
            "video",
            MediaKind::Video,
            Some(Bytes::from_static(b"cfg")),
            1,
            100,
        );
        let mut rx = track.subscribe();
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
        let TrackItem::Object(first) = rx.try_recv().unwrap() else {
            panic!("an object")
        };
        // The group's first object carries the codec configuration.
        let frame = LocFrame::from_object(MediaKind::Video, &first.object).unwrap();
        assert_eq!(frame.config.as_deref(), Some(&b"cfg"[..]));
        let TrackItem::Object(second) = rx.try_recv().unwrap() else {
            panic!("an object")
        };
        assert_eq!(
            LocFrame::from_object(MediaKind::Video, &second.object)
                .unwrap()
                .config,
            None
        );
    }
}
