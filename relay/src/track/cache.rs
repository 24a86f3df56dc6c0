//! The relay's memory of a track: its most recent groups, each made of subgroups of objects,
//! shared by every downstream subscriber. Payloads are `Bytes`, so a thousand subscribers
//! forwarding one object hold one copy of it.
//!
//! Writers (the upstream ingest) append objects; readers (one forwarder per subscriber) keep a
//! cursor and wait on a `watch` channel for more. Memory is bounded twice: by a group count per
//! track and by a byte budget shared by all tracks ([`CacheBudget`]).

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use banyan_moq::data::{ObjectProperties, ObjectStatus};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// How much the cache keeps (part of [`RelayConfig`](crate::config::RelayConfig)).
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CacheSettings {
    /// Most recent groups kept in memory per track, so new subscribers start at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub cache_groups: usize,

    /// Most bytes of cached objects across all tracks (suffixes KiB, MiB, GiB accepted).
    #[arg(long, value_name = "BYTES", default_value = "256MiB", value_parser = crate::config::parse_size)]
    #[serde(with = "crate::config::serde_size")]
    pub cache_bytes: usize,
}

/// One object as cached: what a forwarder needs to send it again.
#[derive(Clone, Debug)]
pub struct CachedObject {
    /// The Object ID.
    pub id: u64,
    /// Normal, or the end-of-group / end-of-track marker.
    pub status: ObjectStatus,
    /// Object properties, forwarded unchanged.
    pub properties: ObjectProperties,
    /// The payload, shared by every reader.
    pub payload: Bytes,
    /// When the relay received it (for the forwarding-delay histogram).
    pub received: Instant,
}

impl CachedObject {
    fn size(&self) -> usize {
        self.payload.len() + 32
    }
}

/// Bytes cached across all tracks, against a limit.
#[derive(Debug)]
pub struct CacheBudget {
    used: AtomicUsize,
    limit: usize,
}

impl CacheBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    /// Bytes in use.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// True when the cache holds more than its limit.
    pub fn over(&self) -> bool {
        self.used() > self.limit
    }

    fn add(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// A subgroup's objects, in order, as they arrive.
#[derive(Debug)]
pub struct Subgroup {
    /// The Group ID.
    pub group_id: u64,
    /// The Subgroup ID.
    pub subgroup_id: u64,
    /// The publisher priority from the upstream stream header (`None`: the track default).
    pub publisher_priority: Option<u8>,
    /// Whether objects carry properties (the upstream stream type's PROPERTIES bit).
    pub properties: bool,
    objects: Mutex<Vec<CachedObject>>,
    /// (objects available, finished)
    progress: watch::Sender<(usize, bool)>,
    bytes: AtomicUsize,
}

impl Subgroup {
    /// The objects from index `from` on, waiting until at least one is available or the
    /// subgroup is finished. An empty result means finished.
    pub async fn read_from(&self, from: usize) -> Vec<CachedObject> {
        let mut rx = self.progress.subscribe();
        loop {
            let (len, done) = *rx.borrow_and_update();
            if len > from {
                return self
                    .objects
                    .lock()
                    .get(from..)
                    .map(<[_]>::to_vec)
                    .unwrap_or_default();
            }
            if done || rx.changed().await.is_err() {
                return Vec::new();
            }
        }
    }
}

/// A group: its subgroups, as they appear.
#[derive(Debug)]
pub struct Group {
    /// The Group ID.
    pub id: u64,
    subgroups: Mutex<Vec<Arc<Subgroup>>>,
    /// (subgroups available, closed: no further subgroup will be added)
    progress: watch::Sender<(usize, bool)>,
}

impl Group {
    fn new(id: u64) -> Self {
        Self {
            id,
            subgroups: Mutex::new(Vec::new()),
            progress: watch::Sender::new((0, false)),
        }
    }

    /// Subgroups from index `from` on, waiting for one; empty when the group is closed.
    pub async fn subgroups_from(&self, from: usize) -> Vec<Arc<Subgroup>> {
        let mut rx = self.progress.subscribe();
        loop {
            let (len, closed) = *rx.borrow_and_update();
            if len > from {
                return self
                    .subgroups
                    .lock()
                    .get(from..)
                    .map(<[_]>::to_vec)
                    .unwrap_or_default();
            }
            if closed || rx.changed().await.is_err() {
                return Vec::new();
            }
        }
    }

    /// Mark that no more subgroups will come (a newer group started, or the track ended).
    pub fn close(&self) {
        self.progress.send_modify(|p| p.1 = true);
    }

    /// Cached bytes in this group.
    pub fn bytes(&self) -> usize {
        self.subgroups
            .lock()
            .iter()
            .map(|s| s.bytes.load(Ordering::Relaxed))
            .sum()
    }
}

/// Where a subscriber starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The first cached object of the newest group (a keyframe for media): join fast.
    CurrentGroup,
    /// The first group that starts after now.
    NextGroup,
    /// A specific group (and objects from `object` on), if still cached or yet to come.
    At {
        /// The Group ID.
        group: u64,
        /// The first Object ID wanted in that group.
        object: u64,
    },
}

/// The recent groups of one track.
#[derive(Debug)]
pub struct TrackCache {
    groups: Mutex<VecDeque<Arc<Group>>>,
    /// The newest Group ID seen, for readers waiting for the next group.
    newest: watch::Sender<Option<u64>>,
    /// The largest Location ever pushed ([`TrackCache::largest`]); FETCHes waiting for
    /// objects in flight watch it.
    pushed: watch::Sender<Option<banyan_moq::coding::Location>>,
    max_groups: usize,
    budget: Arc<CacheBudget>,
    metrics: Arc<Metrics>,
}

impl TrackCache {
    /// A cache keeping at most `max_groups` groups, within the shared `budget`.
    pub fn new(max_groups: usize, budget: Arc<CacheBudget>, metrics: Arc<Metrics>) -> Self {
        Self {
            groups: Mutex::new(VecDeque::new()),
            newest: watch::Sender::new(None),
            pushed: watch::Sender::new(None),
            max_groups: max_groups.max(1),
            budget,
            metrics,
        }
    }

    /// The newest Group ID, if any group has arrived.
    pub fn newest_group(&self) -> Option<u64> {
        *self.newest.borrow()
    }

    /// The largest Location cached: the newest group's last object (the cache always keeps
    /// its newest group, so this is the largest Location ever pushed).
    pub fn largest(&self) -> Option<banyan_moq::coding::Location> {
        *self.pushed.borrow()
    }

    /// Start (or continue) a subgroup from upstream. Returns `None` for a group too old to
    /// keep (older than every cached group while the cache is full).
    pub fn open_subgroup(
        &self,
        group_id: u64,
        subgroup_id: u64,
        publisher_priority: Option<u8>,
        properties: bool,
    ) -> Option<Arc<Subgroup>> {
        let mut created = false;
        let group = {
            let mut groups = self.groups.lock();
            let position = groups.iter().position(|g| g.id == group_id);
            match position {
                Some(i) => groups.get(i).cloned()?,
                None => {
                    let oldest = groups.front().map(|g| g.id);
                    if groups.len() >= self.max_groups && oldest.is_some_and(|o| group_id < o) {
                        return None;
                    }
                    let group = Arc::new(Group::new(group_id));
                    let at = groups.partition_point(|g| g.id < group_id);
                    groups.insert(at, group.clone());
                    // A newer group closes the ones before it: no more subgroups for them.
                    if at + 1 == groups.len() {
                        for older in groups.iter().take(at) {
                            older.close();
                        }
                    }
                    while groups.len() > self.max_groups {
                        if let Some(evicted) = groups.pop_front() {
                            self.evicted(&evicted);
                        }
                    }
                    created = true;
                    group
                }
            }
        };
        let subgroup = Arc::new(Subgroup {
            group_id,
            subgroup_id,
            publisher_priority,
            properties,
            objects: Mutex::new(Vec::new()),
            progress: watch::Sender::new((0, false)),
            bytes: AtomicUsize::new(0),
        });
        {
            let mut subgroups = group.subgroups.lock();
            subgroups.push(subgroup.clone());
            let n = subgroups.len();
            group.progress.send_modify(|p| p.0 = n);
        }
        // Wake readers for every new group, not only a newer one: upstream streams race, so
        // an older group can start after a newer one, and forwarders still owe it.
        self.newest.send_if_modified(|newest| {
            if newest.is_none_or(|n| group_id > n) {
                *newest = Some(group_id);
            }
            created
        });
        Some(subgroup)
    }

    /// Append an object to a subgroup and wake its readers.
    pub fn push(&self, subgroup: &Subgroup, object: CachedObject) {
        let size = object.size();
        let at = banyan_moq::coding::Location::new(subgroup.group_id, object.id);
        self.pushed.send_if_modified(|largest| {
            let newer = largest.is_none_or(|l| at > l);
            if newer {
                *largest = Some(at);
            }
            newer
        });
        {
            let mut objects = subgroup.objects.lock();
            objects.push(object);
            let n = objects.len();
            subgroup.progress.send_modify(|p| p.0 = n);
        }
        subgroup.bytes.fetch_add(size, Ordering::Relaxed);
        self.budget.add(size);
        self.metrics
            .cache_bytes
            .set(i64::try_from(self.budget.used()).unwrap_or(i64::MAX));
        if self.budget.over() {
            self.shrink();
        }
    }

    /// Mark a subgroup complete (its upstream stream ended).
    pub fn finish(&self, subgroup: &Subgroup) {
        subgroup.progress.send_modify(|p| p.1 = true);
    }

    /// Evict this track's oldest groups while over budget, keeping the newest.
    fn shrink(&self) {
        let mut groups = self.groups.lock();
        while self.budget.over() && groups.len() > 1 {
            if let Some(group) = groups.pop_front() {
                self.evicted(&group);
            }
        }
    }

    /// End of track: close every group so readers finish.
    pub fn close(&self) {
        for group in self.groups.lock().iter() {
            group.close();
            for subgroup in group.subgroups.lock().iter() {
                subgroup.progress.send_modify(|p| p.1 = true);
            }
        }
    }

    fn evicted(&self, group: &Group) {
        group.close();
        self.budget.sub(group.bytes());
        self.metrics.cache_evictions.inc();
        self.metrics
            .cache_bytes
            .set(i64::try_from(self.budget.used()).unwrap_or(i64::MAX));
    }

    /// The group a subscriber starting at `start` reads first, waiting for it to exist.
    /// Returns the group and the first Object ID wanted in it.
    pub async fn first_group(&self, start: Start) -> (Arc<Group>, u64) {
        let (target, object) = match start {
            Start::CurrentGroup => match self.newest_group() {
                Some(g) => (g, 0),
                None => (0, 0),
            },
            Start::NextGroup => (self.newest_group().map_or(0, |g| g + 1), 0),
            Start::At { group, object } => (group, object),
        };
        let hit = self.group_at_or_after(target);
        if hit.is_some() {
            self.metrics.cache_hits.inc();
        } else {
            self.metrics.cache_misses.inc();
        }
        let group = match hit {
            Some(group) => group,
            None => self.next_group_after(target.checked_sub(1)).await,
        };
        let object = if group.id == target { object } else { 0 };
        (group, object)
    }

    /// The first cached group with an ID of at least `id`.
    fn group_at_or_after(&self, id: u64) -> Option<Arc<Group>> {
        self.groups.lock().iter().find(|g| g.id >= id).cloned()
    }

    /// Wait for the first group newer than `after` (any group when `None`).
    async fn next_group_after(&self, after: Option<u64>) -> Arc<Group> {
        let mut rx = self.newest.subscribe();
        loop {
            let newest = *rx.borrow_and_update();
            if let Some(n) = newest {
                if after.is_none_or(|a| n > a) {
                    if let Some(group) = self
                        .groups
                        .lock()
                        .iter()
                        .find(|g| after.is_none_or(|a| g.id > a))
                        .cloned()
                    {
                        return group;
                    }
                }
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Wait for a cached group with an ID of at least `from` that is not in `sent`, lowest
    /// ID first. Groups can start out of order (their upstream streams race), so a group
    /// older than one already sent may still appear, and is still owed to the subscriber.
    pub async fn next_unsent_group(&self, from: u64, sent: &BTreeSet<u64>) -> Arc<Group> {
        let mut rx = self.newest.subscribe();
        loop {
            rx.borrow_and_update();
            let unsent = self
                .groups
                .lock()
                .iter()
                .find(|g| g.id >= from && !sent.contains(&g.id))
                .cloned();
            if let Some(group) = unsent {
                return group;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Wait until an object at or after `at` has been pushed (the caller bounds the wait).
    pub async fn reached(&self, at: banyan_moq::coding::Location) {
        let mut rx = self.pushed.subscribe();
        let _ = rx.wait_for(|largest| largest.is_some_and(|l| l >= at)).await;
    }

    /// Every cached object in `[start, end)` (end exclusive), for FETCH. Callers convert a
    /// FETCH's End Location (whose Object 0 means "all of that group") to this form.
    pub fn range(
        &self,
        start: banyan_moq::coding::Location,
        end: banyan_moq::coding::Location,
    ) -> Vec<(u64, u64, Option<u8>, CachedObject)> {
        let mut out = Vec::new();
        for group in self.groups.lock().iter() {
            for subgroup in group.subgroups.lock().iter() {
                for object in subgroup.objects.lock().iter() {
                    let at = banyan_moq::coding::Location::new(group.id, object.id);
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

    /// The oldest cached Location.
    pub fn oldest(&self) -> Option<banyan_moq::coding::Location> {
        let groups = self.groups.lock();
        let group = groups.front()?;
        let first = group
            .subgroups
            .lock()
            .iter()
            .filter_map(|s| s.objects.lock().first().map(|o| o.id))
            .min()?;
        Some(banyan_moq::coding::Location::new(group.id, first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(id: u64, len: usize) -> CachedObject {
        CachedObject {
            id,
            status: ObjectStatus::Normal,
            properties: ObjectProperties::new(),
            payload: Bytes::from(vec![0u8; len]),
            received: Instant::now(),
        }
    }

    fn cache(groups: usize, bytes: usize) -> TrackCache {
        TrackCache::new(groups, CacheBudget::new(bytes), Arc::new(Metrics::default()))
    }

    #[tokio::test]
    async fn keeps_the_newest_groups_by_count() {
        let cache = cache(2, usize::MAX);
        for g in 0..5 {
            let s = cache.open_subgroup(g, 0, None, false).unwrap();
            cache.push(&s, object(0, 10));
        }
        assert_eq!(
            cache.groups.lock().iter().map(|g| g.id).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert!(
            cache.open_subgroup(1, 0, None, false).is_none(),
            "too old to keep"
        );
        assert_eq!(cache.largest(), Some(banyan_moq::coding::Location::new(4, 0)));
    }

    #[tokio::test]
    async fn byte_budget_evicts_old_groups_but_keeps_the_newest() {
        let cache = cache(100, 1000);
        for g in 0..10 {
            let s = cache.open_subgroup(g, 0, None, false).unwrap();
            cache.push(&s, object(0, 400));
        }
        assert!(cache.budget.used() <= 1000 + 432, "used {}", cache.budget.used());
        assert_eq!(cache.newest_group(), Some(9));
        assert!(cache.group_at_or_after(9).is_some());
        assert!(cache.group_at_or_after(0).map(|g| g.id) >= Some(7));
    }

    #[tokio::test]
    async fn late_joiner_gets_the_current_group_from_its_first_object() {
        let cache = cache(4, usize::MAX);
        let s = cache.open_subgroup(7, 0, None, false).unwrap();
        for id in 0..3 {
            cache.push(&s, object(id, 10));
        }
        let (group, first) = cache.first_group(Start::CurrentGroup).await;
        assert_eq!((group.id, first), (7, 0));
        let subgroups = group.subgroups_from(0).await;
        let objects = subgroups[0].read_from(0).await;
        assert_eq!(objects.iter().map(|o| o.id).collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn readers_wake_for_new_objects_and_finish() {
        let cache = Arc::new(cache(4, usize::MAX));
        let s = cache.open_subgroup(1, 0, None, false).unwrap();
        let reader = {
            let s = s.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                loop {
                    let more = s.read_from(seen.len()).await;
                    if more.is_empty() {
                        return seen;
                    }
                    seen.extend(more.into_iter().map(|o| o.id));
                }
            })
        };
        for id in 0..4 {
            cache.push(&s, object(id, 1));
            tokio::task::yield_now().await;
        }
        cache.finish(&s);
        assert_eq!(reader.await.unwrap(), vec![0, 1, 2, 3]);
    }

    #[tokio::test]
    async fn next_group_waits_for_a_newer_group() {
        let cache = Arc::new(cache(4, usize::MAX));
        cache.open_subgroup(3, 0, None, false).unwrap();
        let waiter = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.first_group(Start::NextGroup).await.0.id })
        };
        tokio::task::yield_now().await;
        cache.open_subgroup(4, 0, None, false).unwrap();
        assert_eq!(waiter.await.unwrap(), 4);
    }
}
