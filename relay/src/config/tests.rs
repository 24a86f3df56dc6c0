//! How the layers merge: defaults, flags, `BANYAN_RELAY_*` variables and the TOML file, their
//! precedence, unknown keys and `--help`; and the fixtures the other config tests share.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::CommandFactory as _;
use url::Url;

use super::*;

/// A directory with an auth key and a TOML file, removed on drop.
pub(super) struct Fixture {
    pub(super) dir: PathBuf,
}

impl Fixture {
    pub(super) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("banyan-relay-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    pub(super) fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        path
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(super) fn load(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<RelayConfig> {
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    RelayConfig::load_from(std::iter::once("banyan-relay").chain(args.iter().copied()), |k| {
        env.get(k).cloned()
    })
}

pub(super) const MINIMAL: &[&str] = &["--dev-cert", "--insecure-no-auth"];

#[test]
fn defaults() {
    let c = load(MINIMAL, &[]).unwrap();
    assert_eq!(c.server.listen, "[::]:4443".parse().unwrap());
    assert_eq!(c.server.http_listen, "127.0.0.1:9090".parse().unwrap());
    assert!(c.server.dev_cert && c.auth.insecure_no_auth && c.publisher_takeover);
    assert_eq!(c.limits.max_sessions, 10_000);
    assert_eq!(c.limits.max_subscriptions_per_session, 1_000);
    assert_eq!(c.limits.max_namespaces_per_session, 64);
    assert_eq!(c.limits.max_message_size, 65535);
    assert_eq!(c.limits.max_object_size, 8 << 20);
    assert_eq!((c.limits.request_rate, c.limits.request_burst), (200, 400));
    assert_eq!((c.cache.cache_groups, c.cache.cache_bytes), (4, 256 << 20));
    assert_eq!(c.track.max_lag_groups, 2);
    assert_eq!(c.track.rendezvous_max, Duration::from_secs(5));
    assert_eq!(
        (
            c.interact.like_window,
            c.interact.like_rate,
            c.interact.comment_rate,
            c.interact.interact_idle
        ),
        (Duration::from_millis(100), 20, 1, Duration::from_secs(60))
    );
    assert_eq!(c.drain_timeout, Duration::from_secs(10));
    assert_eq!(c.log, "info");
    assert!(c.upstream.upstream.is_empty());
    assert!(c.relay_id.ends_with(":4443"), "{}", c.relay_id);
    assert_eq!(c.heartbeat.public_host, "localhost");
    assert_eq!(c.heartbeat.region, "");
    assert_eq!(c.heartbeat.capacity_viewers, None);
    assert_eq!(c.capacity_viewers(), 10_000, "follows --max-sessions");
    assert_eq!(c.heartbeat.capacity_egress, 0);
    let c = load(&["--dev-cert", "--insecure-no-auth", "--max-sessions", "50"], &[]).unwrap();
    assert_eq!(c.capacity_viewers(), 50);
}

#[test]
fn flags() {
    let c = load(
        &[
            "--listen",
            "127.0.0.1:5000",
            "--dev-cert",
            "--insecure-no-auth",
            "--upstream",
            "moqt://origin.example:4443/relay",
            "--upstream=https://other.example/moq",
            "--max-object-size",
            "1MiB",
            "--rendezvous-max=250ms",
            "--publisher-takeover=false",
            "--relay-id",
            "edge-1",
            "--public-host",
            "2001:db8::7",
            "--region=eu-west",
            "--capacity-viewers",
            "300",
            "--capacity-egress",
            "10Gbps",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.heartbeat.public_host, "[2001:db8::7]");
    assert_eq!(c.heartbeat.region, "eu-west");
    assert_eq!(c.capacity_viewers(), 300);
    assert_eq!(c.heartbeat.capacity_egress, 10_000_000_000);
    assert_eq!(c.server.listen.port(), 5000);
    assert_eq!(c.upstream.upstream.len(), 2);
    assert_eq!(c.upstream.upstream[0].scheme(), "moqt");
    assert_eq!(c.upstream.upstream[1].as_str(), "https://other.example/moq");
    assert_eq!(c.limits.max_object_size, 1 << 20);
    assert_eq!(c.track.rendezvous_max, Duration::from_millis(250));
    assert!(!c.publisher_takeover);
    assert_eq!(c.relay_id, "edge-1");
}

#[test]
fn toml_only() {
    let fx = Fixture::new("toml-only");
    let key = fx.file("hs.key", "0123456789abcdef0123456789abcdef");
    let toml = fx.file(
        "relay.toml",
        &format!(
            r#"
listen = "127.0.0.1:7000"
ws-listen = "127.0.0.1:7001"
dev-cert = true
auth-key = "{}"
upstream = ["moqt://parent:4443"]
max-sessions = 5
cache-bytes = "1GiB"
max-object-size = 1048576
rendezvous-max = "2s"
publisher-takeover = false
log = "debug"
public-host = "relay.example"
region = "us-east"
capacity-viewers = 250
capacity-egress = "2Gbps"
"#,
            key.display()
        ),
    );
    let c = load(&["--config", toml.to_str().unwrap()], &[]).unwrap();
    assert_eq!(c.server.listen.port(), 7000);
    assert_eq!(c.server.ws_listen, Some("127.0.0.1:7001".parse().unwrap()));
    assert!(c.server.dev_cert);
    assert_eq!(c.auth.auth_key.as_deref(), Some(key.as_path()));
    assert_eq!(c.upstream.upstream[0].as_str(), "moqt://parent:4443");
    assert_eq!(c.limits.max_sessions, 5);
    assert_eq!(c.cache.cache_bytes, 1 << 30);
    assert_eq!(c.limits.max_object_size, 1 << 20);
    assert_eq!(c.track.rendezvous_max, Duration::from_secs(2));
    assert!(!c.publisher_takeover);
    assert_eq!(c.log, "debug");
    assert_eq!(c.heartbeat.public_host, "relay.example");
    assert_eq!(c.heartbeat.region, "us-east");
    assert_eq!(c.capacity_viewers(), 250);
    assert_eq!(c.heartbeat.capacity_egress, 2_000_000_000);
    assert_eq!(c.config.as_deref(), Some(toml.as_path()));
    // Untouched keys keep their defaults.
    assert_eq!(c.track.max_lag_groups, 2);
    assert_eq!(c.server.http_listen.port(), 9090);
}

#[test]
fn websocket_is_off_unless_set_and_a_bad_address_is_an_error() {
    let base = ["--dev-cert", "--insecure-no-auth"];
    assert_eq!(load(&base, &[]).unwrap().server.ws_listen, None);
    let c = load(&base, &[("BANYAN_RELAY_WS_LISTEN", "[::]:8443")]).unwrap();
    assert_eq!(c.server.ws_listen, Some("[::]:8443".parse().unwrap()));
    let err = load(&[&base[..], &["--ws-listen", "localhost"]].concat(), &[]).unwrap_err();
    assert!(format!("{err:#}").contains("ws-listen"), "{err:#}");
}

#[test]
fn env_overrides_toml_and_flag_overrides_env() {
    let fx = Fixture::new("layers");
    let toml = fx.file(
        "relay.toml",
        r#"
dev-cert = true
insecure-no-auth = true
max-sessions = 5
max-lag-groups = 7
cache-groups = 9
upstream = ["moqt://from-file:1"]
publisher-takeover = true
region = "from-file"
capacity-viewers = 10
capacity-egress = 1000
"#,
    );
    let path = toml.to_str().unwrap();
    let env = [
        ("BANYAN_RELAY_CONFIG", path),
        ("BANYAN_RELAY_MAX_SESSIONS", "6"),
        ("BANYAN_RELAY_MAX_LAG_GROUPS", "8"),
        ("BANYAN_RELAY_UPSTREAM", "moqt://from-env:1, https://from-env:2/x"),
        ("BANYAN_RELAY_PUBLISHER_TAKEOVER", "false"),
        ("BANYAN_RELAY_LOG", ""), // empty = unset
        ("BANYAN_RELAY_REGION", "from-env"),
        ("BANYAN_RELAY_CAPACITY_EGRESS", "5Mbps"),
    ];
    let c = load(&[], &env).unwrap();
    assert_eq!(c.heartbeat.region, "from-env", "env over file");
    assert_eq!(c.heartbeat.capacity_egress, 5_000_000, "env over file");
    assert_eq!(c.capacity_viewers(), 10, "file over default");
    assert_eq!(c.limits.max_sessions, 6, "env over file");
    assert_eq!(c.track.max_lag_groups, 8, "env over file");
    assert_eq!(c.cache.cache_groups, 9, "file over default");
    assert!(!c.publisher_takeover, "env false over file true");
    assert_eq!(c.log, "info");
    let ups: Vec<&str> = c.upstream.upstream.iter().map(Url::as_str).collect();
    assert_eq!(
        ups,
        ["moqt://from-env:1", "https://from-env:2/x"],
        "env list replaces file list"
    );

    let c = load(
        &[
            "--max-sessions",
            "7",
            "--upstream",
            "moqt://from-flag:1",
            "--region",
            "from-flag",
        ],
        &env,
    )
    .unwrap();
    assert_eq!(c.limits.max_sessions, 7, "flag over env");
    assert_eq!(c.heartbeat.region, "from-flag", "flag over env");
    assert_eq!(c.track.max_lag_groups, 8);
    assert_eq!(c.cache.cache_groups, 9);
    assert_eq!(c.upstream.upstream.len(), 1);
    assert_eq!(c.upstream.upstream[0].as_str(), "moqt://from-flag:1");
}

#[test]
fn a_false_flag_overrides_a_true_file() {
    let fx = Fixture::new("false-flag");
    let toml = fx.file("relay.toml", "dev-cert = true\ninsecure-no-auth = true\n");
    let path = toml.to_str().unwrap();
    let c = load(
        &[
            "--config",
            path,
            "--dev-cert=false",
            "--tls-cert",
            path,
            "--tls-key",
            path,
        ],
        &[],
    )
    .unwrap();
    assert!(!c.server.dev_cert);
    assert!(c.server.tls_files().is_some());
}

#[test]
fn each_kind_of_setting_layers_flag_over_env_over_file_over_default() {
    use banyan_control::layered::{check_layering, Layering};
    let settings: &[Layering<RelayConfig>] = &[
        ("max-sessions", ["5", "6", "7"], ["10000", "5", "6", "7"], |c| {
            c.limits.max_sessions.to_string()
        }),
        (
            "rendezvous-max",
            ["\"2s\"", "3s", "4s"],
            ["5s", "2s", "3s", "4s"],
            |c| format!("{:?}", c.track.rendezvous_max),
        ),
        (
            "cache-bytes",
            ["\"1GiB\"", "2GiB", "3GiB"],
            ["268435456", "1073741824", "2147483648", "3221225472"],
            |c| c.cache.cache_bytes.to_string(),
        ),
        (
            "capacity-egress",
            ["\"1Gbps\"", "2Gbps", "3Gbps"],
            ["0", "1000000000", "2000000000", "3000000000"],
            |c| c.heartbeat.capacity_egress.to_string(),
        ),
        (
            "publisher-takeover",
            ["false", "yes", "false"],
            ["true", "false", "true", "false"],
            |c| c.publisher_takeover.to_string(),
        ),
        (
            "latency-budget",
            ["\"off\"", "1500ms", "2s"],
            ["Auto", "Off", "Fixed(1.5s)", "Fixed(2s)"],
            |c| format!("{:?}", c.track.latency_budget.0),
        ),
        ("region", ["\"f\"", "e", "g"], ["", "f", "e", "g"], |c| {
            c.heartbeat.region.clone()
        }),
        (
            "capacity-viewers",
            ["10", "11", "12"],
            ["None", "Some(10)", "Some(11)", "Some(12)"],
            |c| format!("{:?}", c.heartbeat.capacity_viewers),
        ),
        (
            "upstream",
            ["[\"moqt://f:1\"]", "moqt://e:1, moqt://e:2", "moqt://g:1"],
            ["", "moqt://f:1", "moqt://e:1 moqt://e:2", "moqt://g:1"],
            |c| {
                c.upstream
                    .upstream
                    .iter()
                    .map(Url::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            },
        ),
    ];
    let fx = Fixture::new("kinds");
    let file = fx.dir.join("relay.toml");
    check_layering(load, ENV_PREFIX, MINIMAL, &file, settings).unwrap();
}

#[test]
fn unknown_toml_key_is_an_error() {
    let fx = Fixture::new("unknown");
    let toml = fx.file("relay.toml", "dev-cert = true\nmax-sesions = 5\n");
    let err = load(&["--insecure-no-auth", "--config", toml.to_str().unwrap()], &[]).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("max-sesions"), "{text}");

    let toml = fx.file("relay2.toml", "config = \"other.toml\"\n");
    assert!(load(&["--config", toml.to_str().unwrap()], &[]).is_err());

    let toml = fx.file("relay3.toml", "max-sessions = \"many\"\n");
    let err = load(&["--config", toml.to_str().unwrap()], &[]).unwrap_err();
    assert!(format!("{err:#}").contains("key `max-sessions`"), "{err:#}");

    let toml = fx.file("relay4.toml", "public-host = \"h:1\"\n");
    let err = load(
        &[
            "--dev-cert",
            "--insecure-no-auth",
            "--config",
            toml.to_str().unwrap(),
        ],
        &[],
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("h:1"), "{err:#}");
}

#[test]
fn missing_config_file_is_an_error() {
    let err = load(
        &[
            "--dev-cert",
            "--insecure-no-auth",
            "--config",
            "/nonexistent/relay.toml",
        ],
        &[],
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("/nonexistent/relay.toml"));
}

#[test]
fn help_mentions_every_flag_and_env_rule() {
    let help = RelayConfig::command().render_long_help().to_string();
    for arg in RelayConfig::command().get_arguments() {
        if let Some(long) = arg.get_long() {
            assert!(help.contains(&format!("--{long}")), "{long}");
            assert!(arg.get_help().is_some(), "{long} has no help");
        }
    }
    assert!(help.contains("BANYAN_RELAY_"));
    let err = load(&["--help"], &[]).unwrap_err();
    assert_eq!(
        err.downcast_ref::<clap::Error>().map(clap::Error::kind),
        Some(clap::error::ErrorKind::DisplayHelp)
    );
}

#[test]
fn clap_definition_is_consistent() {
    RelayConfig::command().debug_assert();
    assert_eq!(env_var_name("max_lag_groups"), "BANYAN_RELAY_MAX_LAG_GROUPS");
}

#[test]
fn a_latency_budget_that_is_not_auto_off_or_a_duration_is_refused() {
    let err = RelayConfig::load_from(
        ["banyan-relay", "--insecure-no-auth", "--latency-budget", "soon"],
        |_| None,
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("expected `auto`, `off` or a duration"),
        "{err:#}"
    );
}
