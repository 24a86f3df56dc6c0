//! At the broadcast's origin: its down tracks, written by the relay itself. The like total
//! on `likes` and the viewer count on `viewers` (each checked once per window, written when it
//! changed), each comment on its room's `chat/<room>` track, and each gift, once recorded in
//! the ledger, on `events`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::time::Instant;

use banyan_moq::coding::{FullTrackName, TrackName, TrackNamespace};
use banyan_moq::data::ObjectProperties;
use banyan_moq::track::Object;
use bytes::Bytes;

use super::super::ledger::LedgerError;
use super::super::payload::{encode_total, ChatObject, GiftEvent};
use super::super::Refusal;
use super::{Broadcast, Hub, Role, Room, CHAT_GROUP, CHAT_PREFIX};
use crate::track::Track;

impl Hub {
    /// Record a gift at the origin in the ledger and announce it on the `events` track.
    pub(super) async fn record_gift(
        &self,
        broadcast: &Broadcast,
        events: &Track,
        events_group: &AtomicU64,
        client_id: Bytes,
        kind: u64,
        amount: u64,
    ) -> Result<(), Refusal> {
        // SQLite waits for the disk (`synchronous = FULL`): off the runtime's
        // threads. This publication's later objects wait, which keeps their order.
        let recorded = match &self.ledger {
            Some(ledger) => {
                let (ledger, namespace, id) =
                    (ledger.clone(), broadcast.namespace.to_string(), client_id.clone());
                let write = tokio::task::spawn_blocking(move || ledger.record(&namespace, &id, kind, amount));
                Some(
                    write
                        .await
                        .unwrap_or_else(|e| Err(LedgerError::Interrupted(e.to_string()))),
                )
            }
            None => None,
        };
        match recorded {
            Some(Ok(recorded)) => {
                if recorded.new {
                    self.metrics.gifts_in.inc();
                }
                // Announced on every receipt, so a retry learns it was recorded.
                let event = GiftEvent {
                    seq: recorded.seq,
                    client_id,
                    kind: recorded.kind,
                    amount: recorded.amount,
                };
                events
                    .producer
                    .append_group(events_group.fetch_add(1, Ordering::Relaxed), event.encode());
                Ok(())
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "gift not recorded");
                self.metrics.interact_refuse(Refusal::Unavailable);
                Err(Refusal::Unavailable)
            }
            None => {
                self.metrics.interact_refuse(Refusal::Unavailable);
                Err(Refusal::Unavailable)
            }
        }
    }

    pub(super) fn post(&self, broadcast: &Broadcast, room: u64, comment: ChatObject) {
        let Role::Origin { rooms, .. } = &broadcast.role else {
            return;
        };
        let mut rooms = rooms.lock();
        let room = rooms
            .entry(room)
            .or_insert_with(|| self.new_room(&broadcast.namespace, room));
        let (group, object) = (room.next / CHAT_GROUP, room.next % CHAT_GROUP);
        if object == 0 {
            // Dropping the previous group's writer finishes it.
            room.open = room.track.producer.open_subgroup(group, 0, None, false);
        }
        if let Some(open) = &room.open {
            open.write(Object::new(object, ObjectProperties::default(), comment.encode()));
            room.next += 1;
        }
    }

    pub(super) fn room(&self, broadcast: &Broadcast, room: u64) {
        if let Role::Origin { rooms, .. } = &broadcast.role {
            rooms
                .lock()
                .entry(room)
                .or_insert_with(|| self.new_room(&broadcast.namespace, room));
        }
    }

    fn new_room(&self, namespace: &TrackNamespace, room: u64) -> Room {
        let mut name = CHAT_PREFIX.to_vec();
        name.extend_from_slice(room.to_string().as_bytes());
        let track = self.tracks.local(FullTrackName {
            namespace: namespace.clone(),
            name: TrackName::new(name),
        });
        Room {
            track,
            next: 0,
            open: None,
        }
    }

    /// At the origin: once per window, a new `likes` group when the total changed and a new
    /// `viewers` group when the viewer count changed (the first count, even 0, at once).
    pub(super) async fn publish_likes(self: Arc<Self>, broadcast: Arc<Broadcast>) {
        let Role::Origin {
            likes,
            likes_group,
            viewers,
            viewers_group,
            ..
        } = &broadcast.role
        else {
            return;
        };
        let mut published: Option<u64> = None;
        let mut tick = tokio::time::interval(self.config.window);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = broadcast.freed() => return,
            }
            let total = {
                let mut sum = broadcast.likes.lock();
                sum.expire(Instant::now(), self.config.source_retention);
                sum.flush()
            };
            if let Some(total) = total {
                let group = likes_group.fetch_add(1, Ordering::Relaxed);
                likes.producer.append_group(group, encode_total(total));
            }
            let count = self.subtree_count(&broadcast, Instant::now());
            if published != Some(count) {
                published = Some(count);
                let group = viewers_group.fetch_add(1, Ordering::Relaxed);
                viewers.producer.append_group(group, encode_total(count));
            }
        }
    }
}
