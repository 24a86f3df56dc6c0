#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use super::*;
use crate::coding::Location;

fn object(id: u64, len: usize) -> Object {
    Object::new(id, ObjectProperties::new(), Bytes::from(vec![0u8; len]))
}

fn track(groups: usize, bytes: usize) -> TrackProducer {
    TrackProducer::new(Limits {
        max_groups: groups,
        budget: Budget::new(bytes),
        observer: Arc::new(Unobserved),
    })
}

#[tokio::test]
async fn keeps_the_newest_groups_by_count() {
    let track = track(2, usize::MAX);
    for g in 0..5 {
        track
            .open_subgroup(g, 0, None, false)
            .unwrap()
            .write(object(0, 10));
    }
    let reader = track.consume();
    assert_eq!(reader.kept_groups(), vec![3, 4]);
    assert!(
        track.open_subgroup(1, 0, None, false).is_none(),
        "too old to keep"
    );
    assert_eq!(reader.largest(), Some(Location::new(4, 0)));
}

#[tokio::test]
async fn byte_budget_evicts_old_groups_but_keeps_the_newest() {
    let budget = Budget::new(1000);
    let track = TrackProducer::new(Limits {
        max_groups: 100,
        budget: budget.clone(),
        observer: Arc::new(Unobserved),
    });
    for g in 0..10 {
        track
            .open_subgroup(g, 0, None, false)
            .unwrap()
            .write(object(0, 400));
    }
    assert!(budget.used() <= 1000 + 432, "used {}", budget.used());
    let reader = track.consume();
    assert_eq!(reader.newest_group(), Some(9));
    assert!(reader.kept_groups().first() >= Some(&7));
}

#[tokio::test]
async fn a_late_joiner_gets_the_current_group_from_its_first_object() {
    let track = track(4, usize::MAX);
    let subgroup = track.open_subgroup(7, 0, None, false).unwrap();
    for id in 0..3 {
        subgroup.write(object(id, 10));
    }
    let (group, first) = track.consume().first_group(Start::CurrentGroup).await.unwrap();
    assert_eq!((group.id, first), (7, 0));
    let subgroups = group.subgroups_from(0).await;
    let objects = subgroups[0].read_from(0).await;
    assert_eq!(objects.iter().map(|o| o.id).collect::<Vec<_>>(), vec![0, 1, 2]);
}

#[tokio::test]
async fn readers_wake_for_new_objects_and_finish_when_the_writer_drops() {
    let track = track(4, usize::MAX);
    let writer = track.open_subgroup(1, 0, None, false).unwrap();
    let (group, _) = track.consume().first_group(Start::CurrentGroup).await.unwrap();
    let subgroup = group.subgroups_from(0).await.remove(0);
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            let more = subgroup.read_from(seen.len()).await;
            if more.is_empty() {
                return seen;
            }
            seen.extend(more.into_iter().map(|o| o.id));
        }
    });
    for id in 0..4 {
        writer.write(object(id, 1));
        tokio::task::yield_now().await;
    }
    drop(writer);
    assert_eq!(reader.await.unwrap(), vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn next_group_waits_for_a_newer_group() {
    let track = track(4, usize::MAX);
    let _three = track.open_subgroup(3, 0, None, false).unwrap();
    let reader = track.consume();
    let waiter = tokio::spawn(async move { reader.first_group(Start::NextGroup).await.map(|g| g.0.id) });
    tokio::task::yield_now().await;
    let _four = track.open_subgroup(4, 0, None, false).unwrap();
    assert_eq!(waiter.await.unwrap(), Some(4));
}

#[tokio::test]
async fn a_newer_group_closes_the_older_ones() {
    let track = track(4, usize::MAX);
    let _first = track.open_subgroup(1, 0, None, false).unwrap();
    let (one, _) = track.consume().first_group(Start::CurrentGroup).await.unwrap();
    assert_eq!(one.subgroups_from(0).await.len(), 1);
    let _second = track.open_subgroup(2, 0, None, false).unwrap();
    assert!(one.subgroups_from(1).await.is_empty(), "group 1 is closed");
}

#[tokio::test]
async fn an_ended_track_owes_what_it_kept_and_then_nothing() {
    let track = track(4, usize::MAX);
    track.append_group(5, Bytes::from_static(b"a"));
    track.append_group(6, Bytes::from_static(b"b"));
    let reader = track.consume();
    let waiter = {
        let reader = reader.clone();
        tokio::spawn(async move { reader.next_unsent_group(7, &BTreeSet::new()).await.is_none() })
    };
    tokio::task::yield_now().await;
    track.end();
    assert!(waiter.await.unwrap(), "a waiting reader learns the track ended");
    assert!(reader.is_ended());
    let sent = BTreeSet::from([5]);
    assert_eq!(reader.next_unsent_group(5, &sent).await.map(|g| g.id), Some(6));
    let sent = BTreeSet::from([5, 6]);
    assert!(reader.next_unsent_group(5, &sent).await.is_none());
}

#[tokio::test]
async fn range_returns_normal_objects_in_location_order() {
    let track = track(4, usize::MAX);
    let a = track.open_subgroup(1, 1, Some(3), false).unwrap();
    let b = track.open_subgroup(1, 0, None, false).unwrap();
    a.write(object(1, 1));
    b.write(object(0, 1));
    let mut end = object(2, 0);
    end.status = ObjectStatus::EndOfGroup;
    a.write(end);
    let got: Vec<_> = track
        .consume()
        .range(Location::new(0, 0), Location::new(2, 0))
        .into_iter()
        .map(|(g, s, p, o)| (g, s, p, o.id))
        .collect();
    assert_eq!(got, vec![(1, 0, None, 0), (1, 1, Some(3), 1)]);
    assert_eq!(track.consume().oldest(), Some(Location::new(1, 0)));
}

#[derive(Debug, Default)]
struct Counting {
    evicted: std::sync::atomic::AtomicUsize,
    hits: std::sync::atomic::AtomicUsize,
    misses: std::sync::atomic::AtomicUsize,
}

impl Observer for Counting {
    fn evicted(&self) {
        self.evicted.fetch_add(1, Ordering::Relaxed);
    }
    fn lookup(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn the_observer_hears_evictions_and_lookups() {
    let counting = Arc::new(Counting::default());
    let track = TrackProducer::new(Limits {
        max_groups: 1,
        budget: Budget::unlimited(),
        observer: counting.clone(),
    });
    track.append_group(1, Bytes::new());
    track.append_group(2, Bytes::new());
    let reader = track.consume();
    reader.first_group(Start::CurrentGroup).await.unwrap();
    let waiter = tokio::spawn(async move { reader.first_group(Start::NextGroup).await.map(|g| g.0.id) });
    tokio::task::yield_now().await;
    track.append_group(3, Bytes::new());
    assert_eq!(waiter.await.unwrap(), Some(3));
    assert_eq!(counting.evicted.load(Ordering::Relaxed), 2);
    assert_eq!(counting.hits.load(Ordering::Relaxed), 1);
    assert_eq!(counting.misses.load(Ordering::Relaxed), 1);
}
