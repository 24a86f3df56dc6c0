//! Proves publisher takeover as a viewer sees it, with real processes: a `banyan-publish`
//! killed with SIGKILL and restarted at once for the same broadcast is accepted by the relay
//! and on air in under 2 s, while a `banyan-watch` watching throughout keeps its one session
//! and its subscriptions, loses at most the one group the dead publisher was in the middle
//! of, and carries on with the new publisher's groups; and, with the relay's JWT auth on, a
//! publisher whose token does not cover the broadcast is refused (non-zero exit, a clear
//! message) while the first keeps its broadcast.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::{
    announced, kill, publisher, runs, stop_watcher, token, unix_ms, until, watcher, TestRelay, GROUP_MS,
};

/// From the restart to the new publisher's first group at the viewer, at most.
const ON_AIR_WITHIN_MS: u64 = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_publisher_takes_its_broadcast_over_and_the_viewer_stays() {
    let relay = TestRelay::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let summary_path = dir.path().join("summary.json");
    let broadcast = "takeover/restart";

    let (mut first, first_log) = publisher(&relay, broadcast, None);
    announced(&mut first, &first_log, Duration::from_secs(20))
        .await
        .expect("the first publisher is accepted");
    let (watch, watch_log) = watcher(&relay, broadcast, &summary_path, None, &[]);
    until(
        Duration::from_secs(20),
        "the watcher receives 3 groups",
        &watch_log,
        || watch_log.groups() >= 3,
    )
    .await;

    // The encoder dies without a word (no PUBLISH_DONE, no CONNECTION_CLOSE) and is started
    // again at once for the same broadcast.
    let killed_at = unix_ms();
    kill(&mut first).await;
    let restarted_at = unix_ms();
    let groups_at_restart = watch_log.groups();
    let (mut second, second_log) = publisher(&relay, broadcast, None);
    let accepted_at = match announced(&mut second, &second_log, Duration::from_secs(10)).await {
        Ok(at) => at,
        Err((status, stderr)) => panic!(
            "the relay refused the restarted publisher's PUBLISH_NAMESPACE (no takeover); it exited \
             with {status}:\n{stderr}"
        ),
    };
    // The new publisher's media keeps coming: at least 4 more groups (2 s of media).
    until(
        Duration::from_secs(15),
        "the watcher receives the new publisher's groups",
        &watch_log,
        || watch_log.groups() >= groups_at_restart + 4,
    )
    .await;
    let summary = stop_watcher(watch, &watch_log, &summary_path).await;
    assert!(
        second.try_wait().unwrap().is_none(),
        "the new publisher is still on air:\n{}",
        second_log.text()
    );

    let runs = runs(&summary);
    let video = &summary["tracks"]["video"];
    let incomplete = video["incomplete_groups"].as_u64().unwrap();
    let stall_ms = video["longest_stall_ms"].as_f64().unwrap();
    eprintln!(
        "takeover: PUBLISH_NAMESPACE accepted {} ms after the restart; group runs {runs:?}; \
         incomplete groups {incomplete}; longest stall {stall_ms} ms",
        accepted_at.saturating_sub(restarted_at)
    );
    // One run per publisher: no group lost inside either (a lost group would split a run).
    assert_eq!(
        runs.len(),
        2,
        "the old publisher's groups, then the new one's, each without a hole: {summary}"
    );
    let (old_first, old_last, _) = runs[0];
    let (new_first, new_last, new_first_received) = runs[1];
    assert!(old_last >= old_first + 2, "{summary}");
    // The new run is the restarted publisher's: it numbers groups from its start (unix ms).
    assert!(
        new_first >= restarted_at,
        "group {new_first} is not from a publisher started at {restarted_at}: {summary}"
    );
    let on_air_ms = new_first_received.saturating_sub(restarted_at);
    eprintln!(
        "takeover: kill → first new group at the viewer {} ms; restart → first new group {on_air_ms} ms; \
         groups lost at the switch: {incomplete} incomplete, 0 missing inside either publisher's run",
        new_first_received.saturating_sub(killed_at)
    );
    assert!(
        on_air_ms < ON_AIR_WITHIN_MS,
        "the new publisher reached the viewer {on_air_ms} ms after its restart: {summary}"
    );
    // At most the group the old publisher died in arrived in part.
    assert!(incomplete <= 1, "{summary}");
    // And at most that group was skipped: the jump in group IDs between the two publishers is
    // no lost group.
    assert!(video["groups_skipped"].as_u64().unwrap() <= 1, "{summary}");
    // The viewer never noticed beyond the pause: same session, same subscriptions.
    assert_eq!(summary["sessions"], 1, "{summary}");
    assert_eq!(summary["reconnects"], 0, "{summary}");
    assert_eq!(summary["resubscribes"], 0, "{summary}");
    assert_eq!(video["subscriptions"], 1, "{summary}");
    assert!(!watch_log.contains("reconnecting"), "{}", watch_log.text());
    // And kept receiving: at least 4 of the new publisher's groups, so over 2 s of media.
    assert!(new_last >= new_first + 3, "{summary}");
    // The pause is the switch: less than the on-air bound plus a group.
    assert!(
        stall_ms < (ON_AIR_WITHIN_MS + GROUP_MS) as f64,
        "longest stall {stall_ms} ms: {summary}"
    );

    kill(&mut second).await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_without_rights_to_the_broadcast_cannot_take_it_over() {
    let relay = TestRelay::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let summary_path = dir.path().join("summary.json");
    let broadcast = "takeover/auth";

    let owner = token(broadcast, true, false);
    let (mut first, first_log) = publisher(&relay, broadcast, Some(&owner));
    announced(&mut first, &first_log, Duration::from_secs(20))
        .await
        .expect("the first publisher is accepted");
    let viewer = token(broadcast, false, true);
    let (watch, watch_log) = watcher(&relay, broadcast, &summary_path, Some(&viewer), &[]);
    until(
        Duration::from_secs(20),
        "the watcher receives 3 groups",
        &watch_log,
        || watch_log.groups() >= 3,
    )
    .await;

    // A token to publish another broadcast, and one to watch this one: neither may publish it.
    for (what, intruder) in [
        (
            "publish rights on another namespace",
            token("takeover/other", true, true),
        ),
        (
            "subscribe-only rights on this namespace",
            token(broadcast, false, true),
        ),
    ] {
        let (mut second, second_log) = publisher(&relay, broadcast, Some(&intruder));
        let refused = announced(&mut second, &second_log, Duration::from_secs(20)).await;
        let Err((status, stderr)) = refused else {
            kill(&mut second).await;
            panic!("a publisher with {what} was accepted:\n{}", second_log.text());
        };
        assert!(!status.success(), "{what}: exit {status}: {stderr}");
        assert!(
            stderr.contains("error: PUBLISH_NAMESPACE takeover/auth") && stderr.contains("Unauthorized"),
            "{what}: the refusal says what and why: {stderr}"
        );
        eprintln!(
            "takeover: a publisher with {what}: refused, {status}: {}",
            stderr.trim()
        );
    }
    // The owner is still on air and the viewer still receives it, untouched.
    let groups = watch_log.groups();
    until(
        Duration::from_secs(10),
        "the watcher keeps receiving the first publisher",
        &watch_log,
        || watch_log.groups() >= groups + 2,
    )
    .await;
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first publisher still runs:\n{}",
        first_log.text()
    );
    let summary = stop_watcher(watch, &watch_log, &summary_path).await;
    assert_eq!(runs(&summary).len(), 1, "one publisher throughout: {summary}");
    assert_eq!(
        (summary["sessions"].as_u64(), summary["resubscribes"].as_u64()),
        (Some(1), Some(0)),
        "{summary}"
    );
    kill(&mut first).await;
    relay.shutdown().await;
}
