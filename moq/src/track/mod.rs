//! The track model every Banyan component shares: a producer writes a track as groups of
//! subgroups of objects, and any number of consumers read it, each with its own cursor.
//!
//! - [`TrackProducer`] opens subgroups ([`SubgroupProducer`]) and writes objects into them;
//!   writing never waits for a reader. A producer is cheap to clone (the relay's upstream
//!   ingest and a failover's next ingest write the same track).
//! - [`TrackConsumer`] finds where to start ([`Start`]) and waits for groups ([`Group`]),
//!   subgroups ([`Subgroup`]) and objects ([`Object`]) as they arrive.
//! - [`Fanout`] sends one consumer's groups to one subscriber over a session, a stream per
//!   subgroup, abandoning older groups when the subscriber falls too far behind or the path
//!   cannot deliver them within a [`LatencyBudget`] ([`SkipReason`]).
//!
//! Payloads are [`Bytes`], so a thousand consumers of one object hold one copy of it.
//! Buffering is bounded twice: a track keeps at most its newest `max_groups` groups, and all
//! tracks sharing a [`Budget`] keep at most its byte limit (the oldest groups go first; a
//! track's newest group is always kept, so a reader always has a place to start). An
//! [`Observer`] hears of evictions, cache lookups and objects sent (the relay's metrics).
//!
//! The relay's cache and local tracks (interactions), the publisher's media tracks and the
//! benchmark's synthetic broadcasts are all this one model.

mod consumer;
mod fanout;
mod producer;

pub use consumer::{Group, Subgroup, TrackConsumer};
pub use fanout::{Fanout, LatencyBudget, SkipReason, Step};
pub use producer::{SubgroupProducer, TrackProducer};

use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use crate::data::{ObjectProperties, ObjectStatus, SubgroupObject};

/// One object of a track.
#[derive(Clone, Debug)]
pub struct Object {
    /// The Object ID.
    pub id: u64,
    /// Normal, or the end-of-group / end-of-track marker.
    pub status: ObjectStatus,
    /// Object properties (for media: the LOC timestamp, codec configuration).
    pub properties: ObjectProperties,
    /// The payload, shared by every reader.
    pub payload: Bytes,
    /// When it entered the track (what a forwarding-delay measurement starts from).
    pub received: Instant,
}

impl Object {
    /// A normal object received now.
    pub fn new(id: u64, properties: ObjectProperties, payload: Bytes) -> Self {
        Self {
            id,
            status: ObjectStatus::Normal,
            properties,
            payload,
            received: Instant::now(),
        }
    }

    /// What it counts against a [`Budget`]: its payload and a fixed overhead.
    fn size(&self) -> usize {
        self.payload.len() + 32
    }
}

impl From<Object> for SubgroupObject {
    fn from(object: Object) -> Self {
        Self {
            object_id: object.id,
            properties: object.properties,
            status: object.status,
            payload: object.payload,
        }
    }
}

impl From<SubgroupObject> for Object {
    fn from(object: SubgroupObject) -> Self {
        Self {
            id: object.object_id,
            status: object.status,
            properties: object.properties,
            payload: object.payload,
            received: Instant::now(),
        }
    }
}

/// Where a consumer starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The first object of the newest group (a keyframe for media): join fast.
    CurrentGroup,
    /// The first group that starts after now.
    NextGroup,
    /// A specific group (and objects from `object` on), if still kept or yet to come.
    At {
        /// The Group ID.
        group: u64,
        /// The first Object ID wanted in that group.
        object: u64,
    },
}

/// Bytes kept across every track that shares it, against a limit.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    /// No limit (a track bounded by its group count alone).
    pub fn unlimited() -> Arc<Self> {
        Self::new(usize::MAX)
    }

    /// Bytes in use.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// True when the tracks hold more than the limit.
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

/// What a track tells whoever counts (every method does nothing unless implemented).
pub trait Observer: Debug + Send + Sync {
    /// The shared [`Budget`] now holds `bytes`.
    fn kept(&self, _bytes: usize) {}
    /// A group was dropped to stay within the bounds.
    fn evicted(&self) {}
    /// A consumer looked for its start: `hit` when it was already kept, false when it waits.
    fn lookup(&self, _hit: bool) {}
    /// A [`Fanout`] wrote an object of `bytes` payload that entered the track at `received`.
    fn sent(&self, _bytes: usize, _received: Instant) {}
}

/// An [`Observer`] that counts nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unobserved;

impl Observer for Unobserved {}

/// How many groups a track keeps and what it reports to.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The newest groups kept (at least 1).
    pub max_groups: usize,
    /// The byte budget shared with other tracks.
    pub budget: Arc<Budget>,
    /// Who counts evictions, lookups and objects sent.
    pub observer: Arc<dyn Observer>,
}

impl Limits {
    /// Keep `max_groups` groups, with no byte limit and nobody counting.
    pub fn groups(max_groups: usize) -> Self {
        Self {
            max_groups,
            budget: Budget::unlimited(),
            observer: Arc::new(Unobserved),
        }
    }
}

#[cfg(test)]
mod tests;
