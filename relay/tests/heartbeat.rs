//! A relay with `--control` sends the control plane valid heartbeats: its id, URLs on its bound
//! ports, certificate hash, region and capacity; it keeps sending after refusals; a broadcast
//! published on it is listed as local with its viewers (a child relay pulling it is not one), and
//! on a child relay as pulled from its parent, with the subscribers of each chat room; and a `drain: true` answer drains the relay process (GOAWAY, /health draining) and it
//! exits 0.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use banyan_control::api::{ErrorBody, Heartbeat, HeartbeatResponse, HEARTBEAT_PATH};
use banyan_moq::coding::SessionErrorCode;
use banyan_moq::session::TransportKind;
use common::live::{Live, LivePublisher};
use common::process::{relay_command, start, DEV};
use common::{relay, subscribe_msg, within};
use tokio::sync::watch;

/// An in-test control plane that records every heartbeat it is sent.
struct Control {
    url: String,
    heartbeats: watch::Receiver<Vec<Heartbeat>>,
    drain: Arc<AtomicBool>,
}

impl Control {
    /// Answer heartbeats with `interval_ms: 100`, refusing the first `refuse_first` with 503.
    async fn start(refuse_first: usize) -> Self {
        let (record, heartbeats) = watch::channel(Vec::new());
        let record = Arc::new(record);
        let drain = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicUsize::new(0));
        let ordered = drain.clone();
        let app = axum::Router::new().route(
            HEARTBEAT_PATH,
            axum::routing::post(move |Json(heartbeat): Json<Heartbeat>| {
                let record = record.clone();
                let ordered = ordered.clone();
                let seen = seen.clone();
                async move {
                    record.send_modify(|all| all.push(heartbeat));
                    if seen.fetch_add(1, Ordering::SeqCst) < refuse_first {
                        let body = ErrorBody {
                            error: "no_relays".into(),
                            message: "refused by the test".into(),
                        };
                        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
                    }
                    Json(HeartbeatResponse {
                        interval_ms: 100,
                        expiry_ms: 1000,
                        drain: ordered.load(Ordering::SeqCst),
                    })
                    .into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            heartbeats,
            drain,
        }
    }

    /// Wait (bounded) until the heartbeats recorded so far satisfy `ready`, and return them;
    /// every one must pass `Heartbeat::validate`.
    async fn wait_all(&self, what: &str, ready: impl Fn(&[Heartbeat]) -> bool) -> Vec<Heartbeat> {
        let mut rx = self.heartbeats.clone();
        let all = within(what, 20, rx.wait_for(|all| ready(all)))
            .await
            .unwrap()
            .clone();
        for heartbeat in &all {
            heartbeat
                .validate()
                .unwrap_or_else(|e| panic!("invalid heartbeat {heartbeat:?}: {e}"));
        }
        all
    }

    /// Wait (bounded) for a heartbeat that satisfies `ready`.
    async fn wait_for(&self, what: &str, ready: impl Fn(&Heartbeat) -> bool) -> Heartbeat {
        let all = self.wait_all(what, |all| all.iter().any(&ready)).await;
        all.into_iter().find(|h| ready(h)).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_describe_the_relay_and_continue_after_refusals() {
    let control = Control::start(1).await;
    let edge = relay(&[
        "--control",
        &control.url,
        "--relay-id",
        "hb-edge",
        "--region",
        "eu-west",
        "--capacity-viewers",
        "123",
        "--capacity-egress",
        "1Gbps",
    ])
    .await;
    // The first heartbeat is refused (503); the relay keeps sending.
    let all = control
        .wait_all("a heartbeat after a refusal", |all| all.len() >= 2)
        .await;
    let heartbeat = all[1].clone();

    let port = edge.addr.port();
    assert_eq!(heartbeat.relay_id, "hb-edge");
    assert_eq!(
        heartbeat.urls.moqt.as_deref(),
        Some(format!("moqt://localhost:{port}").as_str())
    );
    assert_eq!(
        heartbeat.urls.webtransport.as_deref(),
        Some(format!("https://localhost:{port}/").as_str())
    );
    assert_eq!(
        heartbeat.urls.websocket.as_deref(),
        Some(format!("ws://localhost:{}/", edge.ws.port()).as_str()),
        "--ws-listen's bound port, plain ws:// on a development certificate"
    );
    assert_eq!(
        heartbeat.urls.http.as_deref(),
        Some(format!("http://{}", edge.http).as_str())
    );
    assert_eq!(heartbeat.cert_sha256.as_deref(), Some(edge.hash.as_str()));
    assert_eq!(heartbeat.region, "eu-west");
    assert_eq!(heartbeat.capacity.max_viewers, 123);
    assert_eq!(heartbeat.capacity.egress_bps, 1_000_000_000);
    assert!(!heartbeat.draining);
    assert!(heartbeat.broadcasts.is_empty() && heartbeat.parents.is_empty());
    assert_eq!(heartbeat.load.accepted, 0, "nobody has connected yet");

    // The URLs it reports are the ones clients use: a session over each works.
    let client = edge.client();
    edge.connect(&client, TransportKind::Quic).await;
    edge.connect(&client, TransportKind::WebTransport).await;
    control
        .wait_for("a heartbeat counting both sessions, open and accepted", |h| {
            h.load.sessions >= 2 && h.load.accepted == 2
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_are_listed_with_viewers_local_at_the_origin_and_with_the_parent_below() {
    let control = Control::start(0).await;
    let origin = relay(&["--control", &control.url, "--relay-id", "hb-origin"]).await;
    let parent_url = format!("moqt://localhost:{}", origin.addr.port());
    let edge = relay(&[
        "--control",
        &control.url,
        "--relay-id",
        "hb-child",
        "--upstream",
        &parent_url,
        "--upstream-insecure",
    ])
    .await;

    let client = origin.client();
    let _publisher = LivePublisher::start(
        origin.connect(&client, TransportKind::Quic).await,
        "hb/show",
        Live::endless(),
        false,
    )
    .await;
    let viewer = origin.connect(&client, TransportKind::Quic).await;
    let _video = within(
        "SUBSCRIBE_OK at the origin",
        20,
        viewer.subscribe(subscribe_msg("hb/show", "video")),
    )
    .await
    .unwrap();
    let heartbeat = control
        .wait_for("the origin listing hb/show with a viewer", |h| {
            h.relay_id == "hb-origin"
                && h.broadcasts
                    .iter()
                    .any(|b| b.namespace == "hb/show" && b.local && b.viewers >= 1)
        })
        .await;
    assert!(heartbeat.parents.is_empty(), "{heartbeat:?}");
    assert!(heartbeat.load.sessions >= 2, "{heartbeat:?}");

    let edge_client = edge.client();
    let edge_viewer = edge.connect(&edge_client, TransportKind::Quic).await;
    let _edge_video = within(
        "SUBSCRIBE_OK at the child through its parent",
        20,
        edge_viewer.subscribe(subscribe_msg("hb/show", "video")),
    )
    .await
    .unwrap();
    let heartbeat = control
        .wait_for("the child listing hb/show and its parent", |h| {
            h.relay_id == "hb-child"
                && h.broadcasts
                    .iter()
                    .any(|b| b.namespace == "hb/show" && b.viewers >= 1)
                && !h.parents.is_empty()
        })
        .await;
    let show = heartbeat
        .broadcasts
        .iter()
        .find(|b| b.namespace == "hb/show")
        .unwrap();
    assert!(
        !show.local,
        "pulled from a parent, not published here: {heartbeat:?}"
    );
    assert_eq!(heartbeat.parents.len(), 1, "{heartbeat:?}");
    assert_eq!(heartbeat.parents[0].namespace, "hb/show");
    assert_eq!(heartbeat.parents[0].upstream, parent_url);
    // The child relay pulling hb/show is not a viewer of the origin: the origin's next
    // heartbeat (the child's subscription is in place) still lists its one viewer, so the
    // fleet's sum over relays is the two viewers, not three.
    let seen = control.wait_all("heartbeats so far", |_| true).await.len();
    let all = control
        .wait_all("the origin's next heartbeat", |all| {
            all.iter().skip(seen).any(|h| h.relay_id == "hb-origin")
        })
        .await;
    let next = all.iter().skip(seen).find(|h| h.relay_id == "hb-origin").unwrap();
    let at_origin = next.broadcasts.iter().find(|b| b.namespace == "hb/show").unwrap();
    assert_eq!(
        at_origin.viewers, 1,
        "the child relay counted as a viewer: {next:?}"
    );
    assert_eq!(show.viewers, 1, "{heartbeat:?}");
    // Egress is measured while objects flow to the two subscribers.
    control
        .wait_for("the origin reporting egress", |h| {
            h.relay_id == "hb-origin" && h.load.egress_bps > 0
        })
        .await;

    // Chat rooms: two viewers of room 3 on the child; the origin (which produces the room's
    // track) has only the child relay as a subscriber of it, which is no viewer, so it reports
    // no rooms. Control sums these over the fleet to fill rooms.
    let mut chat = Vec::new();
    for _ in 0..2 {
        let session = edge.connect(&edge_client, TransportKind::Quic).await;
        let subscription = within(
            "SUBSCRIBE_OK for chat/3 at the child",
            20,
            session.subscribe(subscribe_msg("hb/show", "chat/3")),
        )
        .await
        .unwrap();
        chat.push((session, subscription));
    }
    let rooms_of = |h: &Heartbeat| {
        h.broadcasts
            .iter()
            .find(|b| b.namespace == "hb/show")
            .map(|b| b.rooms.clone())
            .unwrap_or_default()
    };
    control
        .wait_for("the child reporting room 3 with two viewers", |h| {
            h.relay_id == "hb-child" && rooms_of(h) == [(3, 2)].into()
        })
        .await;
    // The origin's next heartbeat (after the child's, so the child's subscription to room 3
    // is in place) lists no rooms.
    let seen = control.wait_all("heartbeats so far", |_| true).await.len();
    let all = control
        .wait_all("the origin's next heartbeat", |all| {
            all.iter().skip(seen).any(|h| h.relay_id == "hb-origin")
        })
        .await;
    let next = all.iter().skip(seen).find(|h| h.relay_id == "hb-origin").unwrap();
    assert!(
        rooms_of(next).is_empty(),
        "the child relay is not a viewer of room 3: {next:?}"
    );
    chat.pop();
    control
        .wait_for("the child reporting room 3 after a viewer left", |h| {
            h.relay_id == "hb-child" && rooms_of(h) == [(3, 1)].into()
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_order_drains_the_relay_process_and_it_exits_0() {
    let control = Control::start(0).await;
    let mut args = DEV.to_vec();
    args.extend([
        "--control",
        &control.url,
        "--relay-id",
        "hb-drained",
        "--drain-timeout",
        "20s",
    ]);
    let mut running = start(relay_command(&args)).await;
    control
        .wait_for("the first heartbeat", |h| h.relay_id == "hb-drained")
        .await;
    let session = running.connect(&running.client(), "moqt").await.unwrap();
    assert_eq!(running.health().await["status"], "ok");

    control.drain.store(true, Ordering::SeqCst);
    within("GOAWAY after the drain order", 20, session.goaway_received()).await;
    let (status, body) = running.get("/health").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    control
        .wait_for("a heartbeat saying draining", |h| h.draining)
        .await;

    // The relay waits for its last session, then exits cleanly.
    session.close(SessionErrorCode::NoError, "leaving");
    let status = running.exit(20).await;
    assert!(status.success(), "exit status {status:?}");
}
