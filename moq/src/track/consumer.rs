//! The reading side: a track's kept groups, and the waits a consumer makes on them.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Limits, Object, Start};
use crate::coding::Location;

/// A subgroup's objects, in order, as they arrive.
#[derive(Debug)]
pub struct Subgroup {
    /// The Group ID.
    pub group_id: u64,
    /// The Subgroup ID.
    pub subgroup_id: u64,
    /// The publisher priority of its stream (`None`: the track's default).
    pub publisher_priority: Option<u8>,
    /// Whether its objects carry properties (the stream type's PROPERTIES bit).
    pub properties: bool,
    pub(super) objects: Mutex<Vec<Object>>,
    /// (objects available, finished)
    pub(super) progress: watch::Sender<(usize, bool)>,
    pub(super) bytes: AtomicUsize,
}

impl Subgroup {
    pub(super) fn new(group_id: u64, subgroup_id: u64, priority: Option<u8>, properties: bool) -> Self {
        Self {
            group_id,
            subgroup_id,
            publisher_priority: priority,
            properties,
            objects: Mutex::new(Vec::new()),
            progress: watch::Sender::new((0, false)),
            bytes: AtomicUsize::new(0),
        }
    }

    /// The objects from index `from` on, waiting until at least one is available or the
    /// subgroup is finished. An empty result means finished.
    pub async fn read_from(&self, from: usize) -> Vec<Object> {
        items_from(&self.objects, &self.progress, from).await
    }

    pub(super) fn finish(&self) {
        self.progress
            .send_if_modified(|p| !std::mem::replace(&mut p.1, true));
    }
}

/// The items of a growing list from index `from` on, waiting until at least one is there or
/// `progress` (items available, no more coming) says the list is complete: then empty.
async fn items_from<T: Clone>(
    items: &Mutex<Vec<T>>,
    progress: &watch::Sender<(usize, bool)>,
    from: usize,
) -> Vec<T> {
    let mut rx = progress.subscribe();
    loop {
        let (len, complete) = *rx.borrow_and_update();
        if len > from {
            return items.lock().get(from..).map(<[_]>::to_vec).unwrap_or_default();
        }
        if complete || rx.changed().await.is_err() {
            return Vec::new();
        }
    }
}

/// A group: its subgroups, as they appear.
#[derive(Debug)]
pub struct Group {
    /// The Group ID.
    pub id: u64,
    /// When it was opened here: its first object's arrival (the live edge moved to it then).
    pub started: Instant,
    pub(super) subgroups: Mutex<Vec<Arc<Subgroup>>>,
    /// (subgroups available, closed: no further subgroup will be added)
    pub(super) progress: watch::Sender<(usize, bool)>,
}

impl Group {
    pub(super) fn new(id: u64) -> Self {
        Self {
            id,
            started: Instant::now(),
            subgroups: Mutex::new(Vec::new()),
            progress: watch::Sender::new((0, false)),
        }
    }

    /// Subgroups from index `from` on, waiting for one; empty when the group is closed.
    pub async fn subgroups_from(&self, from: usize) -> Vec<Arc<Subgroup>> {
        items_from(&self.subgroups, &self.progress, from).await
    }

    /// No more subgroups will come (a newer group started, or the track ended).
    pub(super) fn close(&self) {
        self.progress
            .send_if_modified(|p| !std::mem::replace(&mut p.1, true));
    }

    /// Kept bytes in this group.
    pub fn bytes(&self) -> usize {
        self.subgroups
            .lock()
            .iter()
            .map(|s| s.bytes.load(Ordering::Relaxed))
            .sum()
    }
}

/// What producers and consumers of one track share.
#[derive(Debug)]
pub(super) struct State {
    pub(super) groups: Mutex<VecDeque<Arc<Group>>>,
    /// The newest Group ID, and a tick for every new group (readers wait on it).
    pub(super) newest: watch::Sender<Option<u64>>,
    /// The largest Location ever written; FETCHes waiting for objects in flight watch it.
    pub(super) written: watch::Sender<Option<Location>>,
    /// Set when the track has ended: no group will be added.
    pub(super) ended: watch::Sender<bool>,
    pub(super) limits: Limits,
}

impl State {
    /// Drop an evicted group: no more subgroups for it, its bytes back to the budget.
    pub(super) fn evicted(&self, group: &Group) {
        group.close();
        let limits = &self.limits;
        limits.budget.sub(group.bytes());
        limits.observer.evicted();
        limits.observer.kept(limits.budget.used());
    }

    /// Evict the oldest groups while over budget, keeping the newest.
    pub(super) fn shrink(&self) {
        let mut groups = self.groups.lock();
        while self.limits.budget.over() && groups.len() > 1 {
            if let Some(group) = groups.pop_front() {
                self.evicted(&group);
            }
        }
    }
}

/// A reader of a track: where to start, and what comes next. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TrackConsumer {
    pub(super) state: Arc<State>,
}

impl TrackConsumer {
    /// The newest Group ID, if any group has arrived.
    pub fn newest_group(&self) -> Option<u64> {
        *self.state.newest.borrow()
    }

    /// The largest Location kept: the newest group's last object (the newest group is always
    /// kept, so this is the largest Location ever written).
    pub fn largest(&self) -> Option<Location> {
        *self.state.written.borrow()
    }

    /// Whether the track has ended (no group will be added).
    pub fn is_ended(&self) -> bool {
        *self.state.ended.borrow()
    }

    /// The group a consumer starting at `start` reads first, waiting for it to exist, and
    /// the first Object ID wanted in it; `None` when the track ends first.
    pub async fn first_group(&self, start: Start) -> Option<(Arc<Group>, u64)> {
        let (target, object) = match start {
            Start::CurrentGroup => (self.newest_group().unwrap_or(0), 0),
            Start::NextGroup => (self.newest_group().map_or(0, |g| g + 1), 0),
            Start::At { group, object } => (group, object),
        };
        let hit = self.group_at_or_after(target);
        self.state.limits.observer.lookup(hit.is_some());
        let group = match hit {
            Some(group) => group,
            None => self.wait_group(|g| g.id >= target).await?,
        };
        let object = if group.id == target { object } else { 0 };
        Some((group, object))
    }

    /// The first kept group with an ID of at least `id`.
    pub(super) fn group_at_or_after(&self, id: u64) -> Option<Arc<Group>> {
        self.state.groups.lock().iter().find(|g| g.id >= id).cloned()
    }

    /// Wait for a kept group with an ID of at least `from` that is not in `sent`, lowest ID
    /// first; `None` once the track has ended and every such group was sent. Groups can
    /// start out of order (upstream streams race), so a group older than one already sent
    /// may still appear, and is still owed.
    pub async fn next_unsent_group(&self, from: u64, sent: &BTreeSet<u64>) -> Option<Arc<Group>> {
        self.wait_group(|g| g.id >= from && !sent.contains(&g.id)).await
    }

    /// Wait for the lowest kept group that `wanted` accepts; `None` if the track ends first.
    async fn wait_group(&self, wanted: impl Fn(&Group) -> bool) -> Option<Arc<Group>> {
        let mut newest = self.state.newest.subscribe();
        let mut ended = self.state.ended.subscribe();
        loop {
            newest.borrow_and_update();
            let done = *ended.borrow_and_update();
            let found = self.state.groups.lock().iter().find(|g| wanted(g)).cloned();
            if found.is_some() || done {
                return found;
            }
            tokio::select! {
                changed = newest.changed() => if changed.is_err() { return None },
                changed = ended.changed() => if changed.is_err() { return None },
            }
        }
    }

    /// Wait until an object at or after `at` has been written (the caller bounds the wait).
    pub async fn reached(&self, at: Location) {
        let mut rx = self.state.written.subscribe();
        let _ = rx.wait_for(|largest| largest.is_some_and(|l| l >= at)).await;
    }

    /// Every kept normal object in `[start, end)` as (group, subgroup, its priority, object),
    /// in Location order, for FETCH.
    pub fn range(&self, start: Location, end: Location) -> Vec<(u64, u64, Option<u8>, Object)> {
        let mut out = Vec::new();
        for group in self.state.groups.lock().iter() {
            for subgroup in group.subgroups.lock().iter() {
                for object in subgroup.objects.lock().iter() {
                    let at = Location::new(group.id, object.id);
                    if at >= start && at < end && object.status.is_normal() {
                        out.push((
                            group.id,
                            subgroup.subgroup_id,
                            subgroup.publisher_priority,
                            object.clone(),
                        ));
                    }
                }
            }
        }
        out.sort_by_key(|(g, _, _, o)| (*g, o.id));
        out
    }

    /// The oldest kept Location.
    pub fn oldest(&self) -> Option<Location> {
        let groups = self.state.groups.lock();
        let group = groups.front()?;
        let first = group
            .subgroups
            .lock()
            .iter()
            .filter_map(|s| s.objects.lock().first().map(|o| o.id))
            .min()?;
        Some(Location::new(group.id, first))
    }

    /// The Group IDs kept, oldest first.
    pub fn kept_groups(&self) -> Vec<u64> {
        self.state.groups.lock().iter().map(|g| g.id).collect()
    }
}
