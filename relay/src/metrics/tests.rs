//! The exposition: every series present under its name, values after updates, valid
//! OpenMetrics text, histogram edges, guards and concurrent updates.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::*;

/// Parse OpenMetrics text: every sample belongs to a family announced by HELP and TYPE
/// lines, counters end `_total`, every value is a number and the text ends `# EOF`.
/// Returns `name{labels}` → value.
fn parse(text: &str) -> HashMap<String, f64> {
    let body = text.strip_suffix("# EOF\n").expect("ends with # EOF");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helped: HashSet<String> = HashSet::new();
    let mut samples = HashMap::new();
    for line in body.lines() {
        assert!(!line.is_empty(), "blank line");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(!help.is_empty());
            assert!(helped.insert(name.to_owned()), "duplicate HELP {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(types.insert(name.to_owned(), kind.to_owned()).is_none());
            continue;
        }
        assert!(!line.starts_with('#'), "{line}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        let name = series.split('{').next().unwrap();
        assert!(name.starts_with(PREFIX), "{name}");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{name}"
        );
        let family = [("_total", "counter"), ("_bucket", "histogram")]
            .into_iter()
            .chain([("_sum", "histogram"), ("_count", "histogram")])
            .find_map(|(suffix, kind)| {
                name.strip_suffix(suffix)
                    .filter(|f| types.get(*f).map(String::as_str) == Some(kind))
            })
            .unwrap_or(name);
        let kind = types
            .get(family)
            .unwrap_or_else(|| panic!("sample before TYPE: {line}"));
        assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            }
        }
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "duplicate {series}"
        );
    }
    samples
}

#[test]
fn render_contains_values_and_parses() {
    let m = Metrics::new();
    let quic = m.session_guard(TransportKind::Quic);
    let _wt1 = m.session_guard(TransportKind::WebTransport);
    let _wt2 = m.session_guard(TransportKind::WebTransport);
    m.sessions_accepted.inc_by(3);
    m.sessions_rejected.inc();
    let _sub = m.subscription_guard();
    m.objects_in.inc_by(10);
    m.objects_out.inc_by(200);
    m.bytes_in.inc_by(12_345);
    m.bytes_out.inc_by(246_900);
    let _up = m.upstream_guard();
    m.cache_hits.inc_by(7);
    m.cache_misses.inc_by(2);
    m.cache_evictions.inc_by(4);
    m.cache_bytes.set(1 << 20);
    for _ in 0..5 {
        m.skip(SkipReason::Late);
    }
    m.skip(SkipReason::Lag);
    m.auth_failures.inc_by(6);
    m.refuse(RefuseReason::RateLimited);
    m.refuse(RefuseReason::RateLimited);
    m.refuse(RefuseReason::Unauthorized);
    m.interact_refuse(Refusal::RateLimited);
    m.forward_delay.observe(Duration::from_micros(300).as_secs_f64());
    m.forward_delay.observe(Duration::from_millis(3).as_secs_f64());
    m.forward_delay.observe(Duration::from_secs(2).as_secs_f64());
    drop(quic);

    let text = m.render();
    let s = parse(&text);
    let get = |k: &str| {
        *s.get(&format!("{PREFIX}{k}"))
            .unwrap_or_else(|| panic!("{k} missing:\n{text}"))
    };
    assert_eq!(get("sessions{transport=\"quic\"}"), 0.0);
    assert_eq!(get("sessions{transport=\"webtransport\"}"), 2.0);
    assert_eq!(m.sessions_total(), 2);
    assert_eq!(get("sessions_accepted_total"), 3.0);
    assert_eq!(get("sessions_rejected_total"), 1.0);
    assert_eq!(get("subscriptions"), 1.0);
    assert_eq!(get("objects_in_total"), 10.0);
    assert_eq!(get("objects_out_total"), 200.0);
    assert_eq!(get("bytes_in_total"), 12_345.0);
    assert_eq!(get("bytes_out_total"), 246_900.0);
    assert_eq!(get("upstream_subscriptions"), 1.0);
    assert_eq!(get("upstream_subscribe_total"), 1.0);
    assert_eq!(get("cache_hits_total"), 7.0);
    assert_eq!(get("cache_misses_total"), 2.0);
    assert_eq!(get("cache_evictions_total"), 4.0);
    assert_eq!(get("cache_bytes"), 1_048_576.0);
    assert_eq!(get("groups_skipped_total{reason=\"late\"}"), 5.0);
    assert_eq!(get("groups_skipped_total{reason=\"lag\"}"), 1.0);
    assert_eq!(m.groups_skipped(), 6);
    assert_eq!(m.groups_skipped_for(SkipReason::Late), 5);
    assert_eq!(get("auth_failures_total"), 6.0);
    assert_eq!(get("requests_refused_total{reason=\"rate_limited\"}"), 2.0);
    assert_eq!(get("requests_refused_total{reason=\"unauthorized\"}"), 1.0);
    assert_eq!(get("requests_refused_total{reason=\"not_found\"}"), 0.0);
    assert_eq!(m.refused(RefuseReason::RateLimited), 2);
    assert_eq!(get("interactions_refused_total{reason=\"rate_limited\"}"), 1.0);
    assert_eq!(m.interact_refused(Refusal::RateLimited), 1);
    assert_eq!(get("forward_delay_seconds_bucket{le=\"0.0005\"}"), 1.0);
    assert_eq!(get("forward_delay_seconds_bucket{le=\"0.0025\"}"), 1.0);
    assert_eq!(get("forward_delay_seconds_bucket{le=\"0.005\"}"), 2.0);
    assert_eq!(get("forward_delay_seconds_bucket{le=\"1.0\"}"), 2.0);
    assert_eq!(get("forward_delay_seconds_bucket{le=\"+Inf\"}"), 3.0);
    assert_eq!(get("forward_delay_seconds_count"), 3.0);
    assert!((get("forward_delay_seconds_sum") - 2.0033).abs() < 1e-9);
}

/// The series dashboards, tests and the bench read: every one is present (at zero) in a
/// fresh set, and nothing else is.
#[test]
fn every_series_is_exported_under_its_name() {
    let text = Metrics::default().render();
    let mut got: Vec<String> = parse(&text).into_keys().collect();
    got.sort();
    let mut want: Vec<String> = [
        "sessions_accepted_total",
        "sessions_rejected_total",
        "subscriptions",
        "objects_in_total",
        "objects_out_total",
        "bytes_in_total",
        "bytes_out_total",
        "upstream_subscriptions",
        "tracks_awaiting_publisher",
        "upstream_subscribe_total",
        "parent_connects_total",
        "parent_connect_failures_total",
        "upstream_failovers_total",
        "publisher_takeovers_total",
        "cache_hits_total",
        "cache_misses_total",
        "cache_evictions_total",
        "cache_bytes",
        "auth_failures_total",
        "sessions_expired_total",
        "tokens_refreshed_total",
        "likes_in_total",
        "comments_in_total",
        "interaction_broadcasts",
        "gifts_recorded_total",
        "moderation_actions_total",
        "forward_delay_seconds_sum",
        "forward_delay_seconds_count",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(
        [
            TransportKind::Quic,
            TransportKind::WebTransport,
            TransportKind::WebSocket,
        ]
        .map(|t| format!("sessions{{transport=\"{}\"}}", t.as_str())),
    )
    .chain(SKIP_REASONS.map(|r| format!("groups_skipped_total{{reason=\"{}\"}}", r.as_str())))
    .chain(RefuseReason::ALL.map(|r| format!("requests_refused_total{{reason=\"{}\"}}", r.label())))
    .chain(Refusal::ALL.map(|r| format!("interactions_refused_total{{reason=\"{}\"}}", r.label())))
    .chain(
        FORWARD_DELAY_BUCKETS
            .map(|b| format!("{b:?}"))
            .into_iter()
            .chain(["+Inf".to_owned()])
            .map(|le| format!("forward_delay_seconds_bucket{{le=\"{le}\"}}")),
    )
    .map(|s| format!("{PREFIX}{s}"))
    .collect();
    want.sort();
    assert_eq!(got, want, "{text}");
}

#[test]
fn guards_restore_gauges() {
    let m = Metrics::new();
    {
        let _a = m.session_guard(TransportKind::Quic);
        let _b = m.subscription_guard();
        let _c = m.upstream_guard();
        assert_eq!(
            (
                m.sessions(TransportKind::Quic).get(),
                m.subscriptions.get(),
                m.upstream_subscriptions.get()
            ),
            (1, 1, 1)
        );
    }
    assert_eq!(
        (
            m.sessions(TransportKind::Quic).get(),
            m.subscriptions.get(),
            m.upstream_subscriptions.get()
        ),
        (0, 0, 0)
    );
    assert_eq!(m.upstream_subscribe_total.get(), 1);
    assert_eq!(m.sessions(TransportKind::WebTransport).get(), 0);
}

#[test]
fn histogram_edges() {
    let m = Metrics::default();
    m.forward_delay.observe(0.0);
    m.forward_delay.observe(0.0005); // exactly on a bound: counted in it
    m.forward_delay.observe(Duration::MAX.as_secs_f64());
    let s = parse(&m.render());
    let bucket = |le: &str| s[&format!("{PREFIX}forward_delay_seconds_bucket{{le=\"{le}\"}}")];
    assert_eq!(bucket("0.0005"), 2.0);
    assert_eq!(bucket("1.0"), 2.0);
    assert_eq!(bucket("+Inf"), 3.0);
    assert_eq!(s[&format!("{PREFIX}forward_delay_seconds_count")], 3.0);
}

#[test]
fn concurrent_updates_are_counted() {
    let m = Metrics::new();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    m.objects_out.inc();
                    m.forward_delay.observe(0.001);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(m.objects_out.get(), 40_000);
    let s = parse(&m.render());
    assert_eq!(s[&format!("{PREFIX}forward_delay_seconds_count")], 40_000.0);
}
