//! Proves moderation works across a three-relay tree (origin with two edges, real QUIC on
//! loopback, tokens required): a viewer without the `mod` claim is refused and counted; a
//! moderator's delete reaches viewers on both edges and leaves a fresh joiner's FETCHed
//! history; slow mode refuses the second comment in the window; a timeout refuses the
//! viewer's comments on both edges within 1 s; a ban closes the viewer's sessions on both
//! edges within 1 s and refuses them again after reconnecting through the other edge; every
//! action is in the origin's store and is back, with its effects, after an origin restart.
//!
//! Action → effect times are printed (`cargo test -p banyan-relay --test moderation -- --nocapture`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use banyan_moq::coding::{Location, RequestErrorCode, TrackName, TrackNamespace};
use banyan_moq::data::FetchItem;
use banyan_moq::message::{Fetch, FetchType, Parameters, StandaloneFetch};
use banyan_moq::session::{Error, Session, Subscription, TrackEvent, TrackWriter, TransportKind};
use banyan_relay::auth::{mint_hs256, Claims};
use banyan_relay::interact::hub::CHAT_GROUP;
use banyan_relay::interact::ledger::Ledger;
use banyan_relay::interact::moderation::{Action, Update};
use banyan_relay::interact::payload::{ChatObject, Up};
use banyan_relay::interact::Refusal;
use bytes::Bytes;
use common::{interact, relay, subscribe_msg, within, TestRelay};
use tokio::sync::mpsc;

const BROADCAST: &str = "mod/show";
const SECRET: &str = "moderation-test-secret-0123456789abcdef0123456";
/// The bound the issue sets on an order's effect at every edge.
const EFFECT_BOUND: Duration = Duration::from_secs(1);

fn exp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600
}

fn token(claims: Claims) -> String {
    mint_hs256(&claims, SECRET.as_bytes()).unwrap()
}

/// A viewer token for `sub` (a moderator when `moderator`).
fn viewer(sub: &str, moderator: bool) -> String {
    token(Claims {
        sub: Some(sub.into()),
        ns: BROADCAST.into(),
        subscribe: true,
        exp: exp(),
        moderator,
        ..Claims::default()
    })
}

struct Tree {
    origin: TestRelay,
    edges: [TestRelay; 2],
    ledger: std::path::PathBuf,
    key: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn origin(key: &std::path::Path, ledger: &std::path::Path) -> TestRelay {
    relay(&[
        "--relay-id",
        "mod-origin",
        "--auth-key",
        key.to_str().unwrap(),
        "--gift-ledger",
        ledger.to_str().unwrap(),
        "--comment-rate",
        "1000",
    ])
    .await
}

/// origin ← edge 0, origin ← edge 1; every relay requires tokens; the origin keeps the ledger.
async fn tree() -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("jwt.key");
    std::fs::write(&key, SECRET).unwrap();
    let ledger = dir.path().join("ledger.sqlite3");
    let origin = origin(&key, &ledger).await;
    let upstream = format!("moqt://localhost:{}", origin.addr.port());
    let relay_token = token(Claims {
        sub: Some("relay".into()),
        ns: String::new(),
        publish: true,
        subscribe: true,
        exp: exp(),
        ..Claims::default()
    });
    let mut edges = Vec::new();
    for i in 0..2 {
        let id = format!("mod-edge-{i}");
        edges.push(
            relay(&[
                "--relay-id",
                &id,
                "--auth-key",
                key.to_str().unwrap(),
                "--upstream",
                &upstream,
                "--upstream-insecure",
                "--upstream-token",
                &relay_token,
                "--comment-rate",
                "1000",
            ])
            .await,
        );
    }
    let edges: [TestRelay; 2] = edges.try_into().ok().unwrap();
    Tree {
        origin,
        edges,
        ledger,
        key,
        _dir: dir,
    }
}

async fn connect(relay: &TestRelay, jwt: &str) -> Result<Session, Error> {
    relay
        .connect_with(
            &relay.client(),
            TransportKind::Quic,
            "/",
            banyan_moq::session::ClientOptions::with_token(Some(jwt)),
        )
        .await
}

async fn subscribed(session: &Session, track: &str) -> Subscription {
    within(
        &format!("SUBSCRIBE_OK for {track}"),
        20,
        session.subscribe(subscribe_msg(BROADCAST, track)),
    )
    .await
    .unwrap()
}

fn comment(text: &str) -> Bytes {
    Up::Comment {
        room: Bytes::from_static(b"0"),
        text: Bytes::copy_from_slice(text.as_bytes()),
    }
    .encode()
}

fn order(action: Action) -> Bytes {
    Up::Moderate(action).encode()
}

/// Send `payloads` on one new subgroup stream of `writer`.
async fn send(writer: &TrackWriter, group: u64, payloads: Vec<Bytes>) {
    let mut stream = writer
        .sender()
        .open_subgroup(group, 0, None, false)
        .await
        .unwrap();
    for (id, payload) in payloads.into_iter().enumerate() {
        stream.write_payload(id as u64, payload).await.unwrap();
    }
    stream.finish();
}

/// Keep writing `payload` on one stream, every 20 ms, until the relay stops the stream; returns
/// the code. Fails the test after `secs`.
async fn write_until_stopped(writer: &TrackWriter, group: u64, payload: Bytes, secs: u64) -> u64 {
    let mut stream = writer
        .sender()
        .open_subgroup(group, 0, None, false)
        .await
        .unwrap();
    within("the relay stops the stream", secs, async {
        for id in 0.. {
            match stream.write_payload(id, payload.clone()).await {
                Ok(()) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(Error::Cancelled(code)) => return code,
                Err(other) => panic!("writing object {id}: {other}"),
            }
        }
        unreachable!()
    })
    .await
}

/// The `mod` track's updates, as they arrive.
fn updates(mut subscription: Subscription) -> mpsc::UnboundedReceiver<Update> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(event)) = subscription.next().await {
            if let TrackEvent::Subgroup(mut reader) = event {
                while let Ok(Some(object)) = reader.next().await {
                    let _ = tx.send(Update::decode(object.payload).unwrap());
                }
            }
        }
    });
    rx
}

/// Wait until an update satisfies `done`; returns when it arrived.
async fn until(
    updates: &mut mpsc::UnboundedReceiver<Update>,
    what: &str,
    done: impl Fn(&Update) -> bool,
) -> Instant {
    within(what, 10, async {
        loop {
            let update = updates.recv().await.expect("mod track ended");
            if done(&update) {
                return Instant::now();
            }
        }
    })
    .await
}

/// The comments of `chat/0` as they arrive: (seq, text, author).
fn chat(mut subscription: Subscription) -> mpsc::UnboundedReceiver<(u64, String, String)> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(event)) = subscription.next().await {
            if let TrackEvent::Subgroup(mut reader) = event {
                let group = reader.group_id();
                while let Ok(Some(object)) = reader.next().await {
                    let chat = ChatObject::decode(object.payload).unwrap();
                    let _ = tx.send((group * CHAT_GROUP + object.object_id, chat.text, chat.author));
                }
            }
        }
    });
    rx
}

/// Wait for comment `text` by `author`; returns its sequence number.
async fn seen(chat: &mut mpsc::UnboundedReceiver<(u64, String, String)>, text: &str, author: &str) -> u64 {
    within(&format!("comment {text:?} reaches the chat"), 10, async {
        loop {
            let (seq, got, by) = chat.recv().await.expect("chat ended");
            if got == text {
                assert_eq!(by, author, "the comment names its author (the token's sub)");
                return seq;
            }
        }
    })
    .await
}

/// FETCH `chat/0` comments `[0, n)` through `session`.
async fn history(session: &Session, n: u64) -> Vec<(u64, String)> {
    let fetch = Fetch {
        request_id: 0,
        parameters: Parameters::default(),
        fetch_type: FetchType::Standalone(StandaloneFetch {
            track_namespace: TrackNamespace::from_path(BROADCAST).unwrap(),
            track_name: TrackName::from("chat/0"),
            start_location: Location::new(0, 0),
            end_location: Location::new(0, n),
        }),
    };
    let mut reader = within("FETCH history", 20, session.fetch(fetch)).await.unwrap();
    let mut out = Vec::new();
    while let Some(item) = within("history object", 20, reader.next()).await.unwrap() {
        if let FetchItem::Object(object) = item {
            let seq = object.group_id * CHAT_GROUP + object.object_id;
            out.push((seq, ChatObject::decode(object.payload).unwrap().text));
        }
    }
    out
}

/// Connect as `sub` to `relay` and SUBSCRIBE to the chat: the session is closed or the
/// request refused, either way with the reason "banned" (which comes first is a race).
async fn refused_as_banned(relay: &TestRelay, sub: &str) -> Error {
    let refused = match connect(relay, &viewer(sub, false)).await {
        Ok(session) => within(
            "a banned viewer's SUBSCRIBE is answered",
            10,
            session.subscribe(subscribe_msg(BROADCAST, "chat/0")),
        )
        .await
        .expect_err("a banned viewer's SUBSCRIBE is refused"),
        Err(e) => e,
    };
    assert!(
        matches!(&refused, Error::Refused { code: RequestErrorCode::Unauthorized, reason, .. } if reason == "banned")
            || matches!(&refused, Error::Closed { reason, .. } if reason == "banned"),
        "refused with {refused:?}"
    );
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_reaches_every_edge_within_a_second_and_survives_an_origin_restart() {
    let Tree {
        mut origin,
        edges,
        ledger,
        key,
        _dir,
    } = tree().await;

    // A moderator on edge 0; ann on edge 0 and bob on edge 1, each watching chat and `mod`.
    let mia = connect(&edges[0], &viewer("mia", true)).await.unwrap();
    let ann = connect(&edges[0], &viewer("ann", false)).await.unwrap();
    let bob = connect(&edges[1], &viewer("bob", false)).await.unwrap();
    let mut ann_chat = chat(subscribed(&ann, "chat/0").await);
    let mut bob_chat = chat(subscribed(&bob, "chat/0").await);
    let mut ann_mod = updates(subscribed(&ann, "mod").await);
    let mut bob_mod = updates(subscribed(&bob, "mod").await);
    let mia_writer = interact(&mia, BROADCAST).await;
    let ann_writer = interact(&ann, BROADCAST).await;
    let bob_writer = interact(&bob, BROADCAST).await;

    // Bob has no `mod` claim: his ban order is refused at his edge and counted.
    let code = write_until_stopped(&bob_writer, 0, order(Action::Ban { sub: "ann".into() }), 10).await;
    assert_eq!(code, Refusal::NotModerator.code());
    assert_eq!(edges[1].metrics.interact_refused(Refusal::NotModerator), 1);
    assert_eq!(
        edges[1].metrics.moderation_actions.get() + origin.metrics.moderation_actions.get(),
        0
    );

    // Delete: gone from both viewers' state and from a fresh joiner's history.
    send(&ann_writer, 0, vec![comment("hello")]).await;
    let hello = seen(&mut bob_chat, "hello", "ann").await;
    send(&bob_writer, 1, vec![comment("spam")]).await;
    let spam = seen(&mut ann_chat, "spam", "bob").await;
    assert_eq!(seen(&mut bob_chat, "spam", "bob").await, spam);
    let ordered = Instant::now();
    send(&mia_writer, 0, vec![order(Action::Delete { room: 0, seq: spam })]).await;
    let deleted = |u: &Update| u.state.is_deleted(0, spam);
    let at_ann = until(&mut ann_mod, "ann sees the delete", deleted).await - ordered;
    let at_bob = until(&mut bob_mod, "bob sees the delete", deleted).await - ordered;
    println!("moderation: delete → seen by viewers on edge 0 after {at_ann:?}, on edge 1 after {at_bob:?}");
    assert!(at_ann < EFFECT_BOUND && at_bob < EFFECT_BOUND);
    let joiner = connect(&edges[1], &viewer("joe", false)).await.unwrap();
    let fetched = history(&joiner, 2).await;
    assert_eq!(fetched, vec![(hello, "hello".to_owned())], "the joiner's history");

    // Slow mode: cat's first comment passes, the second inside the window is refused.
    send(&mia_writer, 1, vec![order(Action::Slow { secs: 30 })]).await;
    until(&mut bob_mod, "slow mode reaches edge 1", |u| {
        u.state.slow_secs == 30
    })
    .await;
    let cat = connect(&edges[1], &viewer("cat", false)).await.unwrap();
    let cat_writer = interact(&cat, BROADCAST).await;
    send(&cat_writer, 0, vec![comment("first")]).await;
    seen(&mut bob_chat, "first", "cat").await;
    let code = write_until_stopped(&cat_writer, 1, comment("second"), 10).await;
    assert_eq!(code, Refusal::SlowMode.code());
    send(&mia_writer, 2, vec![order(Action::Slow { secs: 0 })]).await;
    until(&mut bob_mod, "slow mode off", |u| u.state.slow_secs == 0).await;

    // Timeout: bob's comments are refused on his edge and on the other one within 1 s.
    let bob_elsewhere = connect(&edges[0], &viewer("bob", false)).await.unwrap();
    let bob_elsewhere_writer = interact(&bob_elsewhere, BROADCAST).await;
    let ordered = Instant::now();
    send(
        &mia_writer,
        3,
        vec![order(Action::Timeout {
            sub: "bob".into(),
            secs: 600,
        })],
    )
    .await;
    let (edge1, edge0) = tokio::join!(
        async {
            let code = write_until_stopped(&bob_writer, 2, comment("still here"), 5).await;
            (code, ordered.elapsed())
        },
        async {
            let code = write_until_stopped(&bob_elsewhere_writer, 0, comment("here too"), 5).await;
            (code, ordered.elapsed())
        },
    );
    println!(
        "moderation: timeout → bob's comments refused on edge 1 after {:?}, on edge 0 after {:?}",
        edge1.1, edge0.1
    );
    assert_eq!(
        (edge1.0, edge0.0),
        (Refusal::TimedOut.code(), Refusal::TimedOut.code())
    );
    assert!(edge1.1 < EFFECT_BOUND && edge0.1 < EFFECT_BOUND);

    // Ban: ann's sessions on both edges are closed within 1 s (their subscriptions end).
    let ann_elsewhere = connect(&edges[1], &viewer("ann", false)).await.unwrap();
    let _ann_video = subscribed(&ann_elsewhere, "chat/0").await;
    let ordered = Instant::now();
    send(&mia_writer, 4, vec![order(Action::Ban { sub: "ann".into() })]).await;
    let (closed0, closed1) = tokio::join!(
        async {
            within("ann's session on edge 0 closes", 5, ann.closed()).await;
            ordered.elapsed()
        },
        async {
            within("ann's session on edge 1 closes", 5, ann_elsewhere.closed()).await;
            ordered.elapsed()
        },
    );
    println!(
        "moderation: ban → ann's sessions closed on edge 0 after {closed0:?}, on edge 1 after {closed1:?}"
    );
    assert!(closed0 < EFFECT_BOUND && closed1 < EFFECT_BOUND);
    // She reconnects through the other edge: watching and commenting are refused.
    let refused = refused_as_banned(&edges[1], "ann").await;
    println!("moderation: ann reconnecting through edge 1 is refused: {refused}");

    // Every action is in the store; after an origin restart the state is restored from it.
    let expected = ["delete 0#1", "slow 30s", "slow 0s", "timeout bob 600s", "ban ann"];
    let url = format!("http://{}/v1/moderation/{BROADCAST}", origin.http);
    let log: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, expected.map(|a| a.replace("0#1", &format!("0#{spam}"))));
    assert!(log.as_array().unwrap().iter().all(|e| e["moderator"] == "mia"));
    drop((
        mia_writer,
        ann_writer,
        bob_writer,
        cat_writer,
        bob_elsewhere_writer,
    ));
    origin.stop();
    let _ = within("origin stops", 20, &mut origin.task).await;
    let namespace = TrackNamespace::from_path(BROADCAST).unwrap().to_string();
    let stored = Ledger::open(&ledger).unwrap().actions(&namespace, 100).unwrap();
    assert_eq!(stored.len(), expected.len(), "read back from the store");
    let origin = self::origin(&key, &ledger).await;
    let watcher = connect(&origin, &viewer("joe", false)).await.unwrap();
    let mut restored = updates(subscribed(&watcher, "mod").await);
    let state = within("the restarted origin's state", 10, restored.recv())
        .await
        .unwrap()
        .state;
    assert!(state.is_banned("ann") && state.timeouts.contains_key("bob") && state.is_deleted(0, spam));
    let refused = refused_as_banned(&origin, "ann").await;
    println!(
        "moderation: {} actions back from the store after an origin restart; ann still refused ({refused})",
        stored.len()
    );
    drop((edges, joiner, cat, bob, bob_elsewhere, mia));
}
