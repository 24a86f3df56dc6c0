//! The writing side: opening subgroups, writing objects, ending groups and the track, and
//! keeping within the track's bounds.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::consumer::State;
use super::{Group, Limits, Object, Subgroup, TrackConsumer};
use crate::coding::Location;
use crate::data::ObjectProperties;

/// The writer of a track. Cheap to clone: clones write the same track.
#[derive(Clone, Debug)]
pub struct TrackProducer {
    state: Arc<State>,
}

impl TrackProducer {
    /// An empty track kept within `limits`.
    pub fn new(mut limits: Limits) -> Self {
        limits.max_groups = limits.max_groups.max(1);
        Self {
            state: Arc::new(State {
                groups: Mutex::new(VecDeque::new()),
                newest: watch::Sender::new(None),
                written: watch::Sender::new(None),
                ended: watch::Sender::new(false),
                limits,
            }),
        }
    }

    /// A reader of this track.
    pub fn consume(&self) -> TrackConsumer {
        TrackConsumer {
            state: self.state.clone(),
        }
    }

    /// Start (or add to) group `group_id` with subgroup `subgroup_id`. Starting a group newer
    /// than every other closes those (no more subgroups for them). `None` for a group too old
    /// to keep (older than every kept group while the track is full).
    pub fn open_subgroup(
        &self,
        group_id: u64,
        subgroup_id: u64,
        publisher_priority: Option<u8>,
        properties: bool,
    ) -> Option<SubgroupProducer> {
        let (group, created) = self.group(group_id)?;
        let subgroup = Arc::new(Subgroup::new(
            group_id,
            subgroup_id,
            publisher_priority,
            properties,
        ));
        {
            let mut subgroups = group.subgroups.lock();
            subgroups.push(subgroup.clone());
            let n = subgroups.len();
            group.progress.send_modify(|p| p.0 = n);
        }
        // Wake readers for every new group, not only a newer one: upstream streams race, so
        // an older group can start after a newer one, and forwarders still owe it.
        self.state.newest.send_if_modified(|newest| {
            if newest.is_none_or(|n| group_id > n) {
                *newest = Some(group_id);
            }
            created
        });
        Some(SubgroupProducer {
            state: self.state.clone(),
            subgroup,
        })
    }

    /// Write group `group_id` as one subgroup holding one object (an interaction track's
    /// whole group). False when the group is too old to keep.
    pub fn append_group(&self, group_id: u64, payload: Bytes) -> bool {
        match self.open_subgroup(group_id, 0, None, false) {
            Some(subgroup) => {
                subgroup.write(Object::new(0, ObjectProperties::default(), payload));
                true
            }
            None => false,
        }
    }

    /// The group `group_id`, made if new (and whether it was), or `None` if too old.
    fn group(&self, group_id: u64) -> Option<(Arc<Group>, bool)> {
        let mut groups = self.state.groups.lock();
        if let Some(group) = groups.iter().find(|g| g.id == group_id) {
            return Some((group.clone(), false));
        }
        let max = self.state.limits.max_groups;
        if groups.len() >= max && groups.front().is_some_and(|o| group_id < o.id) {
            return None;
        }
        let group = Arc::new(Group::new(group_id));
        let at = groups.partition_point(|g| g.id < group_id);
        groups.insert(at, group.clone());
        if at + 1 == groups.len() {
            for older in groups.iter().take(at) {
                older.close();
            }
        }
        while groups.len() > max {
            if let Some(evicted) = groups.pop_front() {
                self.state.evicted(&evicted);
            }
        }
        Some((group, true))
    }

    /// End every group and subgroup kept so far (their writer is gone, e.g. a publisher was
    /// replaced); newer groups may still be written.
    pub fn close_groups(&self) {
        for group in self.state.groups.lock().iter() {
            group.close();
            for subgroup in group.subgroups.lock().iter() {
                subgroup.finish();
            }
        }
    }

    /// End the track: every group closes, and consumers that have read everything are told
    /// there is no more ([`TrackConsumer::next_unsent_group`] returns `None`).
    pub fn end(&self) {
        self.close_groups();
        self.state.ended.send_replace(true);
    }
}

/// The writer of one subgroup. Dropping it finishes the subgroup.
#[derive(Debug)]
pub struct SubgroupProducer {
    state: Arc<State>,
    subgroup: Arc<Subgroup>,
}

impl SubgroupProducer {
    /// The Group ID.
    pub fn group_id(&self) -> u64 {
        self.subgroup.group_id
    }

    /// Append an object (IDs must grow) and wake its readers.
    pub fn write(&self, object: Object) {
        let size = object.size();
        let at = Location::new(self.subgroup.group_id, object.id);
        self.state.written.send_if_modified(|largest| {
            let newer = largest.is_none_or(|l| at > l);
            if newer {
                *largest = Some(at);
            }
            newer
        });
        {
            let mut objects = self.subgroup.objects.lock();
            objects.push(object);
            let n = objects.len();
            self.subgroup.progress.send_modify(|p| p.0 = n);
        }
        self.subgroup.bytes.fetch_add(size, Ordering::Relaxed);
        let limits = &self.state.limits;
        limits.budget.add(size);
        limits.observer.kept(limits.budget.used());
        if limits.budget.over() {
            self.state.shrink();
        }
    }

    /// The subgroup is complete.
    pub fn finish(self) {}
}

impl Drop for SubgroupProducer {
    fn drop(&mut self) {
        self.subgroup.finish();
    }
}
