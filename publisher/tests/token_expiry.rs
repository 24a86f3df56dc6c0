//! Proves what `banyan-watch` does with a static `--token` that runs out, with real
//! processes: it says at start when the token expires, plays until the relay closes the
//! session with EXPIRED_AUTH_TOKEN (at `exp` + 5 s), then writes its summary and exits
//! non-zero with a message naming the expiry, instead of reconnecting with a dead token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use banyan_relay::auth::{mint_hs256, Claims};
use common::{announced, kill, publisher, token, unix_ms, until, watcher, within, TestRelay, SECRET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_with_an_expiring_static_token_exits_with_a_clear_error() {
    let relay = TestRelay::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let broadcast = "expiry/show";
    let publish_token = token(broadcast, true, false);
    let (mut publisher, publisher_log) = publisher(&relay, broadcast, Some(&publish_token));
    announced(&mut publisher, &publisher_log, Duration::from_secs(15))
        .await
        .unwrap();

    // Runs out about 6 s from now: exp in 1 s, plus the relay's 5 s allowance.
    let exp = unix_ms() / 1000 + 1;
    let short = mint_hs256(
        &Claims {
            sub: Some("expiry test viewer".into()),
            ns: broadcast.into(),
            publish: false,
            subscribe: true,
            exp,
            room: None,
            ..Claims::default()
        },
        SECRET.as_bytes(),
    )
    .unwrap();
    let (mut watch, log) = watcher(&relay, broadcast, &summary, Some(&short), &[]);
    until(Duration::from_secs(10), "the watcher plays", &log, || {
        log.groups() >= 2
    })
    .await;
    assert!(log.contains("watch: --token expires in"), "{}", log.text());
    let status = within(Duration::from_secs(15), "the watcher exits", watch.wait())
        .await
        .unwrap();
    let closed_after_exp_ms = unix_ms() - exp * 1000;
    while !log.ended() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let text = log.text();
    println!("banyan-watch exited {closed_after_exp_ms} ms after its token's exp: {status}");
    assert!(!status.success(), "exits non-zero:\n{text}");
    assert!(text.contains("EXPIRED_AUTH_TOKEN"), "{text}");
    assert!(text.contains("cannot be refreshed"), "{text}");
    assert!(
        !text.contains("reconnecting"),
        "does not reconnect with a dead token:\n{text}"
    );
    assert!(
        (4_900..=8_000).contains(&closed_after_exp_ms),
        "exit {closed_after_exp_ms} ms after exp (allowance 5 s)"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(summary["sessions"], 1, "{summary}");
    assert_eq!(relay.metrics.sessions_expired.get(), 1);
    kill(&mut publisher).await;
    relay.shutdown().await;
}
