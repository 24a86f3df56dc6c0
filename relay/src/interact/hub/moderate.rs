//! Moderation on the tree. At the origin: each action recorded in the store (the gift
//! ledger's file), applied to the broadcast's state and published on its `mod` track as an
//! [`Update`] (the action and the whole state); on starting a broadcast the store's actions
//! are replayed and the state published first. At every other relay: the `mod` track
//! followed from the parent, each update's state taken as the broadcast's, so comments are
//! judged at the viewer's own edge, FETCHed history leaves deleted comments out, and banned
//! viewers' sessions are told (see [`Hub::ban_notices`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use banyan_moq::coding::{FullTrackName, TrackName, TrackNamespace};
use banyan_moq::message::HopPath;
use banyan_moq::track::Start;
use tokio::sync::watch;

use super::super::moderation::{Action, Identity, LastComments, State, Update};
use super::super::Refusal;
use super::{chat_room, Broadcast, Hub, Role, MOD};
use crate::track::TrackState;

/// Actions replayed from the store when the origin starts a broadcast's state.
const REPLAYED: usize = 100_000;
/// How long a comment waits for a relay to learn the broadcast's moderation state.
const SYNC_WAIT: Duration = Duration::from_secs(2);

/// A broadcast's moderation at this relay.
#[derive(Debug, Default)]
pub(super) struct Moderation {
    /// The state (at the origin its own; elsewhere the latest `mod` update's).
    pub(super) state: State,
    /// When each viewer last commented here (slow mode).
    pub(super) last: LastComments,
    /// The sequence number of the latest action applied.
    pub(super) seq: u64,
}

/// Milliseconds since the Unix epoch.
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Hub {
    /// Bumped whenever a broadcast's bans may have changed here: sessions watch it and
    /// ask [`Hub::banned`] about their viewer.
    pub fn ban_notices(&self) -> watch::Receiver<u64> {
        self.bans.subscribe()
    }

    /// Whether `sub` is banned from the broadcast `namespace`, as far as this relay knows.
    pub fn banned(&self, namespace: &TrackNamespace, sub: &str) -> bool {
        self.broadcasts
            .lock()
            .get(namespace)
            .is_some_and(|b| b.moderation.lock().state.is_banned(sub))
    }

    /// Every broadcast (namespace) that bans `sub` here.
    pub fn bans_of(&self, sub: &str) -> Vec<TrackNamespace> {
        self.broadcasts
            .lock()
            .values()
            .filter(|b| b.moderation.lock().state.is_banned(sub))
            .map(|b| b.namespace.clone())
            .collect()
    }

    /// Whether object `object` of group `group` of `name` is a deleted comment (only
    /// `chat/<room>` tracks have any).
    pub fn is_deleted(&self, name: &FullTrackName, group: u64, object: u64) -> bool {
        let Some(room) = chat_room(&name.name, self.config.rooms) else {
            return false;
        };
        let seq = group.saturating_mul(super::CHAT_GROUP).saturating_add(object);
        self.broadcasts
            .lock()
            .get(&name.namespace)
            .is_some_and(|b| b.moderation.lock().state.is_deleted(room, seq))
    }

    /// Judge a viewer's comment against the broadcast's moderation state, waiting (up to
    /// [`SYNC_WAIT`]) for a relay to learn it from the origin; notes an accepted comment for
    /// slow mode.
    pub(super) async fn judge_comment(&self, broadcast: &Broadcast, who: &Identity) -> Result<(), Refusal> {
        let mut synced = broadcast.synced.subscribe();
        if !*synced.borrow_and_update()
            && tokio::time::timeout(SYNC_WAIT, synced.wait_for(|s| *s))
                .await
                .map_or(true, |r| r.is_err())
        {
            return Err(Refusal::Pending);
        }
        let now = now_ms();
        let mut moderation = broadcast.moderation.lock();
        let key = who.sub.as_deref().unwrap_or("");
        let last = who.sub.as_ref().and_then(|sub| moderation.last.get(sub));
        moderation.state.check_comment(who, now, last)?;
        if who.sub.is_some() {
            let keep = moderation.state.slow_secs.saturating_mul(1000);
            moderation.last.note(key, now, keep);
        }
        Ok(())
    }

    /// At the origin: record `action` by `by`, apply it and publish the new state.
    pub(super) async fn moderate(
        &self,
        broadcast: &Broadcast,
        by: String,
        action: Action,
    ) -> Result<(), Refusal> {
        let Role::Origin {
            moderation: track, ..
        } = &broadcast.role
        else {
            return Err(Refusal::Malformed);
        };
        let at_ms = now_ms();
        // Checked before it is recorded, so a refused action leaves no record.
        broadcast.moderation.lock().state.clone().apply(&action, at_ms)?;
        let seq = match &self.ledger {
            Some(ledger) => {
                let (ledger, namespace, moderator, bytes) = (
                    ledger.clone(),
                    broadcast.namespace.to_string(),
                    by.clone(),
                    action.to_bytes(),
                );
                let write = tokio::task::spawn_blocking(move || {
                    ledger.record_action(&namespace, &moderator, &bytes, at_ms)
                });
                match write.await {
                    Ok(Ok(seq)) => seq,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "moderation action not recorded");
                        return Err(Refusal::Unavailable);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "moderation action not recorded");
                        return Err(Refusal::Unavailable);
                    }
                }
            }
            // Without a store the action holds until the origin restarts.
            None => broadcast.moderation.lock().seq + 1,
        };
        let update = {
            let mut moderation = broadcast.moderation.lock();
            moderation.state.apply(&action, at_ms)?;
            moderation.seq = moderation.seq.max(seq);
            Update {
                seq,
                at_ms,
                by,
                action: Some(action.clone()),
                state: moderation.state.clone(),
            }
        };
        tracing::info!(broadcast = %broadcast.namespace, moderator = %update.by, action = %action.describe(), seq, "moderation");
        self.metrics.moderation_actions.inc();
        track.producer.append_group(seq, update.encode());
        self.bans.send_modify(|n| *n += 1);
        Ok(())
    }

    /// At the origin, once per broadcast state: replay the store's actions into the state
    /// and publish it as the `mod` track's first object.
    pub(super) async fn start_moderation(&self, broadcast: &Broadcast) {
        let Role::Origin {
            moderation: track, ..
        } = &broadcast.role
        else {
            return;
        };
        let logged = match &self.ledger {
            Some(ledger) => {
                let (ledger, namespace) = (ledger.clone(), broadcast.namespace.to_string());
                match tokio::task::spawn_blocking(move || ledger.actions(&namespace, REPLAYED)).await {
                    Ok(Ok(logged)) => logged,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "moderation log not read");
                        Vec::new()
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "moderation log not read");
                        Vec::new()
                    }
                }
            }
            None => Vec::new(),
        };
        let update = {
            let mut moderation = broadcast.moderation.lock();
            for entry in &logged {
                let mut bytes = bytes::Bytes::from(entry.action.clone());
                if let Ok(action) = Action::decode(&mut bytes) {
                    let _ = moderation.state.apply(&action, entry.at_ms);
                }
                moderation.seq = moderation.seq.max(entry.seq);
            }
            // Timeouts that ended while the origin was down go now.
            moderation.state.expire(now_ms());
            Update {
                seq: moderation.seq,
                at_ms: now_ms(),
                by: String::new(),
                action: None,
                state: moderation.state.clone(),
            }
        };
        if !logged.is_empty() {
            tracing::info!(broadcast = %broadcast.namespace, actions = logged.len(), "moderation state restored from the store");
        }
        track.producer.append_group(update.seq, update.encode());
        broadcast.synced.send_replace(true);
        self.bans.send_modify(|n| *n += 1);
    }

    /// Below the origin, once per broadcast state: start following its `mod` track.
    pub(super) fn follow(self: &Arc<Self>, broadcast: &Arc<Broadcast>) {
        if matches!(broadcast.role, Role::Edge { .. })
            && !broadcast
                .following
                .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            self.tasks
                .spawn(self.clone().follow_moderation(broadcast.clone()));
        }
    }

    /// Below the origin: follow the broadcast's `mod` track from the parent until the
    /// broadcast is freed, taking each update's state as this relay's.
    pub(super) async fn follow_moderation(self: Arc<Self>, broadcast: Arc<Broadcast>) {
        let name = FullTrackName {
            namespace: broadcast.namespace.clone(),
            name: TrackName::new(MOD.to_vec()),
        };
        loop {
            let (guard, upstream) = self.tracks.subscribe(name.clone(), &HopPath::default(), None);
            if let Some(upstream) = upstream {
                self.tasks.spawn(upstream);
            }
            let track = guard.track().clone();
            let followed = async {
                if !matches!(track.ready(Duration::from_secs(2)).await, TrackState::Live(_)) {
                    return;
                }
                let consumer = track.producer.consume();
                let mut next = Start::CurrentGroup;
                loop {
                    let Some((group, _)) = consumer.first_group(next).await else {
                        return;
                    };
                    next = Start::At {
                        group: group.id + 1,
                        object: 0,
                    };
                    let Some(subgroup) = group.subgroups_from(0).await.into_iter().next() else {
                        continue;
                    };
                    let Some(object) = subgroup.read_from(0).await.into_iter().next() else {
                        continue;
                    };
                    match Update::decode(object.payload) {
                        Ok(update) => self.take_update(&broadcast, update),
                        Err(e) => tracing::warn!(error = %e, "malformed moderation update from the parent"),
                    }
                }
            };
            tokio::select! {
                () = followed => {}
                () = broadcast.freed() => return,
            }
            drop(guard);
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = broadcast.freed() => return,
            }
        }
    }

    fn take_update(&self, broadcast: &Broadcast, update: Update) {
        {
            let mut moderation = broadcast.moderation.lock();
            // Updates arrive in order on one track; an older one (a restarted parent's
            // replay) still carries the whole state, so it is taken as it is.
            moderation.state = update.state;
            moderation.seq = update.seq;
        }
        if let Some(action) = &update.action {
            tracing::debug!(broadcast = %broadcast.namespace, action = %action.describe(), seq = update.seq, "moderation update");
        }
        broadcast.synced.send_replace(true);
        self.bans.send_modify(|n| *n += 1);
    }

    /// A moderation action admitted from a moderator here (or a child relay): applied at the
    /// origin, else queued for the parent with the moderator's name.
    pub(super) async fn forward_action(
        &self,
        broadcast: &Broadcast,
        by: String,
        action: Action,
    ) -> Result<(), Refusal> {
        match &broadcast.role {
            Role::Origin { .. } => self.moderate(broadcast, by, action).await,
            Role::Edge { comments } => {
                let up = super::super::payload::Up::Moderated {
                    by: bytes::Bytes::from(by),
                    action,
                };
                comments.try_send(up.encode()).map_err(|_| Refusal::RateLimited)
            }
        }
    }
}
