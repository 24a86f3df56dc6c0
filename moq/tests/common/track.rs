//! One track written and read the same way over any transport: numbered groups of numbered
//! objects, each with a payload its position determines.

use std::collections::BTreeMap;

use banyan_moq::coding::{PublishDoneCode, TrackName, TrackNamespace};
use banyan_moq::message::{Parameters, PublishDone, Subscribe};
use banyan_moq::session::{Subscription, TrackEvent, TrackWriter};
use bytes::Bytes;

use super::within;

/// The namespace `path` (`/`-separated).
pub fn ns(path: &str) -> TrackNamespace {
    TrackNamespace::from_path(path).unwrap()
}

/// A plain SUBSCRIBE for `namespace`/`name` (the session assigns the request id).
pub fn subscribe(namespace: &str, name: &str) -> Subscribe {
    Subscribe {
        request_id: 0,
        track_namespace: ns(namespace),
        track_name: TrackName::from(name),
        parameters: Parameters::default(),
    }
}

/// The payload of `object` in `group`: its position as text, repeated so sizes vary.
pub fn payload(group: u64, object: u64) -> Bytes {
    Bytes::from(format!("group {group} object {object} ").repeat((object as usize % 7) + 1))
}

/// Write `groups` groups of `objects` objects, one subgroup stream each, then end the track
/// with PUBLISH_DONE (TRACK_ENDED).
pub async fn publish_groups(writer: TrackWriter, groups: u64, objects: u64) {
    for group in 0..groups {
        let mut subgroup = writer.open_subgroup(group, 0, Some(1), false).await.unwrap();
        for object in 0..objects {
            subgroup
                .write_payload(object, payload(group, object))
                .await
                .unwrap();
        }
        subgroup.finish();
    }
    writer.finish(PublishDoneCode::TrackEnded, "done").await.unwrap();
}

/// Read `subscription` to its end: the object ids of each group in the order they came (each
/// payload checked against [`payload`]), and the PUBLISH_DONE.
pub async fn read_groups(mut subscription: Subscription) -> (BTreeMap<u64, Vec<u64>>, PublishDone) {
    let mut received = BTreeMap::new();
    let mut done = None;
    while let Some(event) = within("event", subscription.next()).await.unwrap() {
        match event {
            TrackEvent::Subgroup(mut subgroup) => {
                let group = subgroup.group_id();
                let mut ids = Vec::new();
                while let Some(object) = within("object", subgroup.next()).await.unwrap() {
                    assert_eq!(
                        object.payload,
                        payload(group, object.object_id),
                        "bytes of {group}/{}",
                        object.object_id
                    );
                    ids.push(object.object_id);
                }
                received.insert(group, ids);
            }
            TrackEvent::Done(d) => done = Some(d),
            other => panic!("unexpected {other:?}"),
        }
    }
    (received, done.expect("PUBLISH_DONE"))
}
