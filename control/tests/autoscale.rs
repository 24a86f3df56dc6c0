//! The flash-crowd autoscaler on a virtual clock: join velocity is smoothed, broadcasts are
//! replicated and relays spawned before the fleet reaches high-water, spawning is bounded,
//! relays that never register are written off, and idle spawned relays are drained and
//! stopped only after the cool-down.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use banyan_control::autoscale::{Action, AutoscalePolicy, Autoscaler, FleetView, RelayView};

const TICK: Duration = Duration::from_millis(250);

fn relay(id: &str, capacity: u32, occupancy: u32, broadcasts: &[&str]) -> RelayView {
    RelayView {
        id: id.into(),
        capacity,
        occupancy,
        draining: false,
        origin: false,
        broadcasts: broadcasts.iter().map(|b| b.to_string()).collect(),
    }
}

fn joins(b: &str, n: u64) -> HashMap<String, u64> {
    HashMap::from([(b.to_owned(), n)])
}

#[test]
fn join_rate_is_smoothed_with_the_configured_half_life() {
    let policy = AutoscalePolicy {
        join_rate_halflife: Duration::from_secs(1),
        max_spawned: 0,
        ..AutoscalePolicy::default()
    };
    let mut a = Autoscaler::new(policy);
    let fleet = FleetView::default();
    let mut now = Instant::now();
    a.tick(now, &HashMap::new(), &fleet);
    // 20 joins/s steady for 5 half-lives: within 5 % of 20.
    for _ in 0..20 {
        now += TICK;
        a.tick(now, &joins("b", 5), &fleet);
    }
    let rate = a.join_rates()["b"];
    assert!((rate - 20.0).abs() < 1.0, "{rate}");
    // Nobody joins for one half-life: the rate halves.
    for _ in 0..4 {
        now += TICK;
        a.tick(now, &HashMap::new(), &fleet);
    }
    let half = a.join_rates()["b"];
    assert!((half - rate / 2.0).abs() < 0.5, "{rate} -> {half}");
    // One burst does not look like a trend: 50 joins in one tick is far less than 200/s.
    now += TICK;
    a.tick(now, &joins("b", 50), &fleet);
    assert!(a.join_rates()["b"] < 40.0, "{}", a.join_rates()["b"]);
}

/// A crowd arriving at `rate` viewers/s on one edge of capacity 100, with assignment
/// simulated (least-loaded usable carrier below capacity) and spawned relays registering
/// `boot` after they are spawned. Returns (time of first replicate, time of first spawn,
/// occupancy of e1 at the first spawn, spawn count, max occupancy ever seen / capacity).
fn flash_crowd(
    rate: u64,
    boot: Duration,
    seconds: u64,
) -> (Option<Duration>, Option<Duration>, u32, u32, f64) {
    let policy = AutoscalePolicy::default();
    let mut a = Autoscaler::new(policy.clone());
    let t0 = Instant::now();
    let mut now = t0;
    let mut fleet = FleetView {
        relays: vec![relay("e1", 100, 0, &["live/crowd"]), relay("e2", 100, 0, &[])],
    };
    let mut booting: Vec<(Instant, String)> = Vec::new();
    let (mut first_replicate, mut first_spawn, mut e1_at_spawn, mut spawns) = (None, None, 0, 0u32);
    let mut worst: f64 = 0.0;
    let per_tick = rate / 4;
    let mut n = 0;
    while now < t0 + Duration::from_secs(seconds) {
        now += TICK;
        // Assign this tick's joins.
        let mut assigned = 0;
        for _ in 0..per_tick {
            let best = fleet
                .relays
                .iter_mut()
                .filter(|r| r.occupancy < r.capacity && r.broadcasts.iter().any(|b| b == "live/crowd"))
                .min_by_key(|r| r.occupancy * 1000 / r.capacity);
            if let Some(r) = best {
                r.occupancy += 1;
                assigned += 1;
            }
        }
        for r in &fleet.relays {
            worst = worst.max(f64::from(r.occupancy) / f64::from(r.capacity));
        }
        // Register relays that finished booting.
        booting.retain(|(at, id)| {
            if *at <= now {
                fleet.relays.push(relay(id, policy.spawn_capacity, 0, &[]));
                false
            } else {
                true
            }
        });
        for action in a.tick(now, &joins("live/crowd", assigned), &fleet) {
            match action {
                Action::Replicate { broadcast, relay } => {
                    first_replicate.get_or_insert(now - t0);
                    let r = fleet.relays.iter_mut().find(|r| r.id == relay).unwrap();
                    r.broadcasts.push(broadcast);
                }
                Action::Spawn { count } => {
                    if first_spawn.is_none() {
                        first_spawn = Some(now - t0);
                        e1_at_spawn = fleet.relays[0].occupancy;
                    }
                    for _ in 0..count {
                        n += 1;
                        let id = format!("s{n}");
                        a.spawned(&id, now);
                        booting.push((now + boot, id));
                        spawns += 1;
                    }
                }
                other => panic!("unexpected during the crowd: {other:?}"),
            }
        }
    }
    (first_replicate, first_spawn, e1_at_spawn, spawns, worst)
}

#[test]
fn a_flash_crowd_is_replicated_and_spawned_for_before_high_water() {
    // 40 viewers/s onto an edge of 100: high-water (80) would be reached after 2 s.
    let (replicate, spawn, e1_at_spawn, spawns, _) = flash_crowd(40, Duration::from_secs(3), 12);
    let replicate = replicate.expect("replicated");
    let spawn = spawn.expect("spawned");
    assert!(
        replicate < Duration::from_secs(2),
        "replicated at {replicate:?}, after e1 hit high-water"
    );
    assert!(spawn < Duration::from_secs(2), "first spawn at {spawn:?}");
    assert!(
        e1_at_spawn < 80,
        "spawned only when e1 was already at {e1_at_spawn}"
    );
    // 12 s at 40/s is 480 viewers; with 15 s of lead the fleet spawns for ~600 more: bounded.
    assert!((3..=16).contains(&spawns), "{spawns} spawns");
}

#[test]
fn spawning_is_bounded_per_tick_and_in_total() {
    let policy = AutoscalePolicy {
        max_spawned: 5,
        max_spawn_per_tick: 2,
        ..AutoscalePolicy::default()
    };
    let mut a = Autoscaler::new(policy);
    let fleet = FleetView {
        relays: vec![relay("e1", 100, 79, &["b"])],
    };
    let mut now = Instant::now();
    a.tick(now, &HashMap::new(), &fleet);
    let mut total = 0;
    for i in 0..20 {
        now += TICK;
        for action in a.tick(now, &joins("b", 250), &fleet) {
            if let Action::Spawn { count } = action {
                assert!(count <= 2, "tick {i}: {count}");
                for _ in 0..count {
                    total += 1;
                    a.spawned(&format!("s{total}"), now);
                }
            }
        }
    }
    assert_eq!(total, 5, "stops at max-spawned");
}

#[test]
fn a_spawned_relay_that_never_registers_is_stopped_after_the_timeout() {
    let policy = AutoscalePolicy {
        spawn_timeout: Duration::from_secs(5),
        max_spawned: 1,
        ..AutoscalePolicy::default()
    };
    let mut a = Autoscaler::new(policy);
    let fleet = FleetView::default();
    let t0 = Instant::now();
    a.spawned("s1", t0);
    assert!(a
        .tick(t0 + Duration::from_secs(4), &HashMap::new(), &fleet)
        .is_empty());
    let actions = a.tick(t0 + Duration::from_secs(6), &HashMap::new(), &fleet);
    assert_eq!(actions, vec![Action::Stop { relay: "s1".into() }]);
    // Not stopped twice.
    assert!(a
        .tick(t0 + Duration::from_secs(7), &HashMap::new(), &fleet)
        .is_empty());
}

#[test]
fn idle_spawned_relays_drain_after_the_cool_down_then_stop_when_empty() {
    let policy = AutoscalePolicy {
        idle_cooldown: Duration::from_secs(30),
        drain_timeout: Duration::from_secs(20),
        ..AutoscalePolicy::default()
    };
    let mut a = Autoscaler::new(policy);
    let t0 = Instant::now();
    a.spawned("s1", t0);
    a.spawned("s2", t0);
    // s1 idle, s2 still has a viewer; e1 is a relay we did not spawn, idle.
    let mut fleet = FleetView {
        relays: vec![
            relay("e1", 100, 0, &[]),
            relay("s1", 100, 0, &[]),
            relay("s2", 100, 1, &["b"]),
        ],
    };
    let mut now = t0;
    let (mut drained_at, mut stopped_at) = (None, None);
    while now < t0 + Duration::from_secs(40) {
        now += Duration::from_secs(1);
        for action in a.tick(now, &HashMap::new(), &fleet) {
            match action {
                Action::Drain { relay } => {
                    assert_eq!(relay, "s1", "only the idle spawned relay");
                    drained_at.get_or_insert(now - t0);
                    fleet.relays[1].draining = true;
                }
                Action::Stop { relay } => {
                    assert_eq!(relay, "s1");
                    assert!(drained_at.is_some(), "stopped before draining");
                    stopped_at.get_or_insert(now - t0);
                    a.stopped("s1");
                    fleet.relays.retain(|r| r.id != "s1");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let drained_at = drained_at.expect("s1 drained");
    assert!(
        drained_at >= Duration::from_secs(30),
        "drained after only {drained_at:?}"
    );
    assert!(
        drained_at <= Duration::from_secs(32),
        "drained late: {drained_at:?}"
    );
    // Drained and empty: stopped at the next tick.
    assert_eq!(stopped_at, Some(drained_at + Duration::from_secs(1)));
    // s2 loses its viewer: drained after its own cool-down, not before.
    fleet.relays[1].occupancy = 0;
    let mut s2 = None;
    for i in 1..40 {
        for action in a.tick(now + Duration::from_secs(i), &HashMap::new(), &fleet) {
            if action == (Action::Drain { relay: "s2".into() }) {
                s2.get_or_insert(i);
            }
        }
    }
    assert!(s2.is_some_and(|i| i >= 31), "s2 drained at {s2:?}");
}

#[test]
fn no_drain_while_the_crowd_still_needs_the_capacity() {
    let policy = AutoscalePolicy {
        idle_cooldown: Duration::from_secs(5),
        ..AutoscalePolicy::default()
    };
    let mut a = Autoscaler::new(policy);
    let t0 = Instant::now();
    a.spawned("s1", t0);
    // e1 carries the crowd at 10 joins/s, with 15 s lead that needs 150 seats of headroom:
    // e1 has 80 - 40 = 40 and idle s1 has 80, so s1 must stay.
    let fleet = FleetView {
        relays: vec![relay("e1", 100, 40, &["b"]), relay("s1", 100, 0, &[])],
    };
    let mut now = t0;
    a.tick(now, &HashMap::new(), &fleet);
    for _ in 0..80 {
        now += TICK;
        for action in a.tick(now, &joins("b", 2), &fleet) {
            assert!(
                !matches!(action, Action::Drain { .. } | Action::Stop { .. }),
                "{action:?}"
            );
        }
    }
}
