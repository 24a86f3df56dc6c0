//! Driving a [`Fanout`] in tests on tokio's paused clock.

use std::time::Duration;

use banyan_moq::data::ObjectProperties;
use banyan_moq::track::{Fanout, Object, SkipReason, Step, TrackProducer};
use bytes::Bytes;
use tokio::time::Instant;

/// Write `group` with `objects` objects of `size` bytes, each byte the group id.
pub fn write_group(track: &TrackProducer, group: u64, objects: u64, size: usize) {
    let subgroup = track.open_subgroup(group, 0, None, false).unwrap();
    for id in 0..objects {
        subgroup.write(Object::new(
            id,
            ObjectProperties::default(),
            Bytes::from(vec![group as u8; size]),
        ));
    }
}

/// The fanout's next step, failing the test if none comes within five (paused) seconds.
pub async fn next_step(fanout: &mut Fanout) -> Step {
    tokio::time::timeout(Duration::from_secs(5), fanout.step())
        .await
        .expect("a step within 5 s")
}

/// The next step skips `group` as late, 1 s (one GOP) plus the 40 ms round trip of the test
/// link after `overtaken` (when a newer group began), give or take the timer's resolution;
/// `why` says what the wait proves. Returns the wait.
pub async fn assert_skipped_late(fanout: &mut Fanout, group: u64, overtaken: Instant, why: &str) -> Duration {
    assert_eq!(
        next_step(fanout).await,
        Step::Skipped {
            group,
            reason: SkipReason::Late
        }
    );
    let waited = overtaken.elapsed();
    assert!(
        waited >= Duration::from_millis(1040) && waited < Duration::from_millis(1100),
        "group {group} skipped {waited:?} after it was overtaken: {why}"
    );
    waited
}
