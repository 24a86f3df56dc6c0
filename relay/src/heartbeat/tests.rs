//! Rates, broadcast summaries, URLs, warning limits and the endpoint.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use banyan_control::api::{BroadcastLoad, MAX_HEARTBEAT_ITEMS};

use super::*;

#[test]
fn egress_and_cpu_are_rates_over_the_interval() {
    let t0 = Instant::now();
    let mut sampler = LoadSampler::default();
    assert_eq!(sampler.sample(t0, 1_000, Some(50)), (0, 0.0), "first sample");
    // 125 000 bytes and 50 ticks (0.5 s of CPU) over 2 s: 500 kbit/s, a quarter core.
    let (egress, cpu) = sampler.sample(t0 + Duration::from_secs(2), 126_000, Some(100));
    assert_eq!(egress, 500_000);
    assert!((cpu - 0.25).abs() < 1e-9, "{cpu}");
    // Without /proc the CPU figure is 0, the egress still counts.
    let (egress, cpu) = sampler.sample(t0 + Duration::from_secs(3), 127_000, None);
    assert_eq!((egress, cpu), (8_000, 0.0));
    // A counter that went backwards, or no time passing, gives 0 rather than a panic.
    let (egress, cpu) = sampler.sample(t0 + Duration::from_secs(3), 0, Some(10));
    assert_eq!((egress, cpu), (0, 0.0));
}

#[test]
fn rate_helpers_handle_edges() {
    assert_eq!(bits_per_second(1, Duration::ZERO), 0);
    assert_eq!(bits_per_second(u64::MAX, Duration::from_nanos(1)), u64::MAX);
    assert_eq!(bits_per_second(1_000, Duration::from_millis(500)), 16_000);
    assert_eq!(cores(100, 0, Duration::from_secs(1)), 0.0);
    assert!((cores(300, 100, Duration::from_secs(2)) - 1.5).abs() < 1e-9);
}

#[test]
fn proc_stat_ticks_are_utime_plus_stime() {
    let stat = "4242 (banyan relay) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                731 29 0 0 20 0 9 0 100 123456789 2048 18446744073709551615";
    assert_eq!(parse_cpu_ticks(stat), Some(760));
    // A command name with a ')' in it.
    let stat = "7 (a) b) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1";
    assert_eq!(parse_cpu_ticks(stat), Some(11));
    assert_eq!(parse_cpu_ticks("7 (x) R 1 2"), None);
    assert_eq!(parse_cpu_ticks(""), None);
    // This process's own figure parses where /proc exists.
    if std::path::Path::new("/proc/self/stat").exists() {
        assert!(process_cpu_ticks().is_some());
    }
}

fn track(namespace: &str, subscribers: usize, parent: Option<&str>, live: bool) -> TrackSummary {
    TrackSummary {
        namespace: namespace.into(),
        subscribers,
        parent: parent.map(Into::into),
        live,
        viewers: subscribers,
        viewer_sessions: (0..subscribers as u64).collect(),
        chat_room: None,
    }
}

fn chat(namespace: &str, room: u64, subscribers: usize, relays: usize) -> TrackSummary {
    TrackSummary {
        chat_room: Some(room),
        viewers: subscribers - relays,
        viewer_sessions: (0..(subscribers - relays) as u64).collect(),
        ..track(namespace, subscribers, None, true)
    }
}

#[test]
fn a_child_relay_is_not_a_viewer() {
    // origin ← edge, one browser on the edge: the origin's track has one subscriber, the
    // edge relay; the edge's has the browser. The fleet counts one viewer, not two.
    let (origin, _) = broadcasts(
        [TrackSummary {
            viewers: 0,
            viewer_sessions: Vec::new(),
            ..track("live/demo", 1, None, true)
        }],
        ["live/demo".to_string()],
    );
    let (edge, _) = broadcasts([track("live/demo", 1, Some("moqt://origin:1"), true)], []);
    assert_eq!(origin[0].viewers, 0);
    assert_eq!(edge[0].viewers, 1);
}

#[test]
fn viewers_are_distinct_sessions_across_renditions() {
    let on = |name_sessions: &[u64]| TrackSummary {
        viewers: name_sessions.len(),
        viewer_sessions: name_sessions.to_vec(),
        ..track("live/abr", name_sessions.len(), None, true)
    };
    // Viewers 1 and 2 on different renditions (each with the audio): two viewers, where the
    // most of any one track would read... also two, but 10 on one and 5 on another read 15.
    let (two, _) = broadcasts([on(&[1]), on(&[2]), on(&[1, 2])], []);
    assert_eq!(two[0].viewers, 2);
    let (fifteen, _) = broadcasts(
        [
            on(&(0..10).collect::<Vec<_>>()),
            on(&(10..15).collect::<Vec<_>>()),
        ],
        [],
    );
    assert_eq!(fifteen[0].viewers, 15, "not the 10 of the busiest rendition");
    // Viewer 3 in the middle of a switch reads both renditions: still one.
    let (one, _) = broadcasts([on(&[3]), on(&[3])], []);
    assert_eq!(one[0].viewers, 1);
}

#[test]
fn broadcasts_group_tracks_by_namespace() {
    let (broadcasts, parents) = broadcasts(
        [
            track("live/a", 3, None, true),
            track("live/a", 5, None, true),
            track("live/b", 2, Some("moqt://p1:1"), true),
            track("live/b", 4, Some("moqt://p2:1"), true),
            track("live/b", 1, Some("moqt://p2:1"), true),
            track("live/pending", 9, None, false),
            track("", 1, None, true),
            track("bad\nname", 1, None, true),
        ],
        ["live/c".to_string(), "live/a".to_string(), String::new()],
    );
    assert_eq!(
        broadcasts,
        vec![
            BroadcastLoad {
                namespace: "live/a".into(),
                viewers: 5,
                local: true,
                rooms: BTreeMap::new(),
            },
            BroadcastLoad {
                namespace: "live/b".into(),
                viewers: 4,
                local: false,
                rooms: BTreeMap::new(),
            },
            BroadcastLoad {
                namespace: "live/c".into(),
                viewers: 0,
                local: true,
                rooms: BTreeMap::new(),
            },
        ]
    );
    let links: Vec<(&str, &str)> = parents
        .iter()
        .map(|p| (p.namespace.as_str(), p.upstream.as_str()))
        .collect();
    assert_eq!(links, [("live/b", "moqt://p1:1"), ("live/b", "moqt://p2:1")]);
}

#[test]
fn chat_room_tracks_report_their_subscribers_per_room() {
    let (carried, _) = broadcasts(
        [
            track("live/a", 9, None, true),
            chat("live/a", 0, 4, 0),
            // Child relays carrying a room are not its viewers.
            chat("live/a", 3, 3, 2),
            chat("live/a", 5, 2, 2),
            TrackSummary {
                live: false,
                ..chat("live/a", 6, 2, 0)
            },
            chat("live/b", 0, 7, 0),
        ],
        [],
    );
    let rooms: Vec<_> = carried.iter().map(|b| (b.namespace.as_str(), &b.rooms)).collect();
    assert_eq!(
        rooms,
        [
            ("live/a", &BTreeMap::from([(0, 4), (3, 1)])),
            ("live/b", &BTreeMap::from([(0, 7)])),
        ]
    );
    assert_eq!(
        carried[0].viewers, 9,
        "viewers is still the busiest track's subscribers"
    );
    let many = (0..MAX_HEARTBEAT_ITEMS as u64 + 3).map(|r| chat("live/a", r, 1, 0));
    let (bounded, _) = broadcasts(many, []);
    assert_eq!(bounded[0].rooms.len(), MAX_HEARTBEAT_ITEMS);
}

#[test]
fn broadcasts_are_bounded() {
    let many = (0..MAX_HEARTBEAT_ITEMS + 5).map(|i| format!("ns/{i:06}"));
    let (broadcasts, _) = broadcasts([], many);
    assert_eq!(broadcasts.len(), MAX_HEARTBEAT_ITEMS);
}

#[test]
fn urls_use_the_public_host_and_bound_ports() {
    let urls = relay_urls(
        "relay.example",
        "[::]:4443".parse().unwrap(),
        Some(("wss", "[::]:8443".parse().unwrap())),
        "127.0.0.1:9090".parse().unwrap(),
    );
    assert_eq!(urls.moqt.as_deref(), Some("moqt://relay.example:4443"));
    assert_eq!(urls.webtransport.as_deref(), Some("https://relay.example:4443/"));
    assert_eq!(urls.websocket.as_deref(), Some("wss://relay.example:8443/"));
    assert_eq!(urls.http.as_deref(), Some("http://127.0.0.1:9090"));
    let urls = relay_urls(
        "[2001:db8::7]",
        "[::]:1".parse().unwrap(),
        None,
        "[::]:2".parse().unwrap(),
    );
    assert_eq!(urls.moqt.as_deref(), Some("moqt://[2001:db8::7]:1"));
    assert_eq!(urls.websocket, None);
    assert_eq!(urls.http.as_deref(), Some("http://[2001:db8::7]:2"));
    let urls = relay_urls("h", "[::]:1".parse().unwrap(), None, "[::1]:2".parse().unwrap());
    assert_eq!(urls.http.as_deref(), Some("http://[::1]:2"));
}

#[test]
fn failures_warn_at_most_every_interval() {
    let t0 = Instant::now();
    let mut w = WarnLimiter::default();
    assert_eq!(w.failed(t0), Some(0));
    assert_eq!(w.failed(t0 + Duration::from_secs(1)), None);
    assert_eq!(w.failed(t0 + Duration::from_secs(2)), None);
    assert_eq!(w.failed(t0 + WARN_EVERY), Some(2));
    assert!(w.succeeded());
    assert!(!w.succeeded());
    assert_eq!(w.failed(t0 + WARN_EVERY + Duration::from_secs(1)), Some(0));
}

#[test]
fn endpoint_joins_the_base_url() {
    let config = |control: &str| HeartbeatConfig {
        control: Url::parse(control).unwrap(),
        relay_id: "r".into(),
        urls: RelayUrls::default(),
        cert_sha256: None,
        region: String::new(),
        capacity: Capacity::default(),
        timeout: Duration::from_secs(1),
    };
    let r = Reporter::new(config("http://control:8080")).unwrap();
    assert_eq!(r.endpoint().as_str(), "http://control:8080/v1/relays/heartbeat");
    let r = Reporter::new(config("http://control:8080/base/")).unwrap();
    assert_eq!(
        r.endpoint().as_str(),
        "http://control:8080/base/v1/relays/heartbeat"
    );
}
