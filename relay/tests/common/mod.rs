//! Harness for relay tests: an in-process relay on ephemeral ports (UDP for QUIC and
//! WebTransport, TCP for WebSocket) with a development certificate, clients pinned to it, and a
//! publisher that serves generated groups.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod live;
pub mod process;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use banyan_certs::{client_config, parse_sha256_hex, ServerVerification};
use banyan_moq::coding::{PublishDoneCode, TrackName, TrackNamespace};
use banyan_moq::data::{ObjectDatagram, ObjectProperties, ObjectStatus};
use banyan_moq::message::{Message, Parameters, Publish, PublishNamespace};
use banyan_moq::session::{
    Client, ClientOptions, NamespacePublication, Request, Session, SessionConfig, TrackWriter,
    TransportConfig, TransportKind,
};
use banyan_relay::config::RelayConfig;
use banyan_relay::interact::payload::Up;
use banyan_relay::metrics::Metrics;
use banyan_relay::Relay;
use bytes::Bytes;
use tokio::sync::oneshot;
use url::Url;

pub struct TestRelay {
    pub addr: SocketAddr,
    /// The WebSocket listener (plain `ws://`).
    pub ws: SocketAddr,
    pub http: SocketAddr,
    pub hash: String,
    pub metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Start a relay with `--insecure-no-auth` plus `extra` flags.
pub async fn relay(extra: &[&str]) -> TestRelay {
    init_tracing();
    let mut args = vec![
        "banyan-relay",
        "--listen",
        "[::]:0",
        "--http-listen",
        "127.0.0.1:0",
        "--dev-cert",
        "--ws-listen",
        "[::]:0",
    ];
    if !extra.contains(&"--rendezvous-max") {
        args.extend(["--rendezvous-max", "2s"]);
    }
    if !extra.contains(&"--auth-key") {
        args.push("--insecure-no-auth");
    }
    args.extend_from_slice(extra);
    let config = RelayConfig::load_from(args, |_| None).expect("config");
    let relay = Relay::bind(&config).await.expect("bind relay");
    let addr = SocketAddr::from(([127, 0, 0, 1], relay.local_addr().unwrap().port()));
    let http = relay.http_addr().unwrap();
    let (_, ws) = relay.ws_addr().expect("websocket listener");
    let ws = SocketAddr::from(([127, 0, 0, 1], ws.port()));
    let hash = relay.cert_hash().expect("dev cert").to_string();
    let metrics = relay.metrics();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(relay.run(async move {
        let _ = stopped.await;
    }));
    TestRelay {
        addr,
        ws,
        http,
        hash,
        metrics,
        stop: Some(stop),
        task,
    }
}

impl TestRelay {
    pub fn url(&self, kind: TransportKind, path: &str) -> Url {
        let (scheme, port) = match kind {
            TransportKind::Quic => ("moqt", self.addr.port()),
            TransportKind::WebTransport => ("https", self.addr.port()),
            TransportKind::WebSocket => ("ws", self.ws.port()),
        };
        Url::parse(&format!("{scheme}://localhost:{port}{path}")).unwrap()
    }

    pub fn client(&self) -> Client {
        let hash = parse_sha256_hex(&self.hash).unwrap();
        let tls = client_config(&ServerVerification::PinnedSha256(vec![hash]), &[]).unwrap();
        let config = SessionConfig {
            setup_timeout: Duration::from_secs(10),
            ..Default::default()
        };
        Client::new(tls, &TransportConfig::default(), config).unwrap()
    }

    /// Connect a session (driver spawned).
    pub async fn connect(&self, client: &Client, kind: TransportKind) -> Session {
        self.connect_with(client, kind, "/", ClientOptions::default())
            .await
            .unwrap()
    }

    pub async fn connect_with(
        &self,
        client: &Client,
        kind: TransportKind,
        path: &str,
        options: ClientOptions,
    ) -> Result<Session, banyan_moq::session::Error> {
        let (session, driver) = client.connect(&self.url(kind, path), options).await?;
        tokio::spawn(async move {
            let _ = driver.run().await;
        });
        Ok(session)
    }

    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The payload of object `object` in group `group`: distinct and checkable.
pub fn payload(group: u64, object: u64) -> Bytes {
    let mut bytes = format!("g{group}o{object}:").into_bytes();
    bytes.resize(200 + (object as usize * 37) % 300, (group as u8) ^ (object as u8));
    Bytes::from(bytes)
}

/// What a test publisher serves: `groups` groups of `objects` objects, one every `interval`.
#[derive(Clone, Copy, Debug)]
pub struct Pattern {
    pub groups: u64,
    pub objects: u64,
    pub interval: Duration,
}

/// Publish `namespace` through `session` and answer every SUBSCRIBE with `pattern`, live:
/// each subscriber (i.e. the relay's one upstream subscription) gets the groups as they are
/// produced. Returns the publication handle (keep it alive) and a task counting SUBSCRIBEs.
pub async fn publish(
    session: Session,
    namespace: &str,
    pattern: Pattern,
) -> (NamespacePublication, tokio::task::JoinHandle<usize>) {
    publish_gated(session, namespace, pattern, None).await
}

/// [`publish`], with each accepted SUBSCRIBE holding its first object until `gate` turns
/// true (a test opens it once everything it orders has happened).
pub async fn publish_gated(
    session: Session,
    namespace: &str,
    pattern: Pattern,
    gate: Option<tokio::sync::watch::Receiver<bool>>,
) -> (NamespacePublication, tokio::task::JoinHandle<usize>) {
    let request = PublishNamespace {
        request_id: 0,
        track_namespace: TrackNamespace::from_path(namespace).unwrap(),
        parameters: Parameters::default(),
    };
    let publication = session
        .publish_namespace(request)
        .await
        .expect("publish namespace");
    let serving = tokio::spawn(async move {
        let mut subscribes = 0;
        while let Some(request) = session.accept().await {
            let Request::Subscribe(request) = request else {
                let _ = request
                    .reject(
                        banyan_moq::coding::RequestErrorCode::NotSupported,
                        "test publisher",
                    )
                    .await;
                continue;
            };
            subscribes += 1;
            let gate = gate.clone();
            tokio::spawn(async move {
                let writer = request.accept(Default::default()).await.unwrap();
                if let Some(mut gate) = gate {
                    if gate.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                }
                for group in 0..pattern.groups {
                    let mut subgroup = writer.open_subgroup(group, 0, Some(10), false).await.unwrap();
                    for object in 0..pattern.objects {
                        if subgroup
                            .write_payload(object, payload(group, object))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        tokio::time::sleep(pattern.interval).await;
                    }
                    subgroup.finish();
                }
                let _ = writer
                    .finish(PublishDoneCode::TrackEnded, "pattern complete")
                    .await;
            });
        }
        subscribes
    });
    (publication, serving)
}

/// How long the tests' SUBSCRIBEs ask the relay to wait for a publisher (RENDEZVOUS_TIMEOUT,
/// milliseconds): subscribers often start before their publisher. The test relay caps it at
/// its `--rendezvous-max` (2 s unless a test sets it).
pub const RENDEZVOUS_MS: u64 = 10_000;

/// A SUBSCRIBE for `namespace` (a `/`-separated path) and `track` that waits for a publisher
/// ([`RENDEZVOUS_MS`]), other parameters default.
pub fn subscribe_msg(namespace: &str, track: &str) -> banyan_moq::message::Subscribe {
    banyan_moq::message::Subscribe {
        request_id: 0,
        track_namespace: TrackNamespace::from_path(namespace).unwrap(),
        track_name: banyan_moq::coding::TrackName::from(track),
        parameters: Parameters {
            rendezvous_timeout: Some(RENDEZVOUS_MS),
            ..Default::default()
        },
    }
}

/// Poll `ready` every few milliseconds (bound it with [`within`]).
pub async fn poll_until(mut ready: impl FnMut() -> bool) {
    while !ready() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Bound a future so a hang fails the test.
pub async fn within<F: std::future::Future>(what: &str, secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A UDP impairment proxy in front of `relay`, impairing both directions alike.
pub async fn impaired(
    relay: &TestRelay,
    impairment: banyan_tests::impair::Impairment,
    seed: u64,
) -> banyan_tests::impair::Proxy {
    let config = banyan_tests::impair::ProxyConfig {
        client_to_server: impairment.clone(),
        server_to_client: impairment,
        seed,
        ..banyan_tests::impair::ProxyConfig::new(relay.addr)
    };
    banyan_tests::impair::Proxy::start(config).await.unwrap()
}

/// A raw QUIC session to `relay` through `proxy` (driver spawned).
pub async fn connect_via(relay: &TestRelay, proxy: &banyan_tests::impair::Proxy) -> Session {
    let url = Url::parse(&format!("moqt://localhost:{}/", proxy.local_addr().port())).unwrap();
    let (session, driver) = relay
        .client()
        .connect(&url, ClientOptions::default())
        .await
        .expect("connect through the proxy");
    tokio::spawn(driver.run());
    session
}

/// A like from a viewer's `interact` track as a datagram: `total` is `source`'s running count.
pub fn like_datagram(group: u64, source: u64, total: u64) -> ObjectDatagram {
    ObjectDatagram {
        track_alias: 0,
        group_id: group,
        object_id: 0,
        publisher_priority: None,
        properties: ObjectProperties::default(),
        end_of_group: false,
        status: ObjectStatus::Normal,
        payload: Up::Like { source, total }.encode(),
    }
}

/// PUBLISH the `interact` track of `broadcast` and wait for PUBLISH_OK.
pub async fn interact(session: &Session, broadcast: &str) -> TrackWriter {
    let mut writer = session
        .publish(Publish {
            request_id: 0,
            track_namespace: TrackNamespace::from_path(broadcast).unwrap(),
            track_name: TrackName::from("interact"),
            track_alias: 0,
            parameters: Parameters::default(),
            track_properties: Default::default(),
        })
        .await
        .unwrap();
    let answer = within("PUBLISH_OK for interact", 10, writer.next_request())
        .await
        .unwrap();
    assert!(matches!(answer, Some(Message::RequestOk(_))), "got {answer:?}");
    writer
}
