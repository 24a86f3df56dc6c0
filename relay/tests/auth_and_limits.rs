//! Proves the relay's access control and its defences: the JWT auth matrix (HS256 and ES256;
//! tokens in SETUP, per request and in the WebTransport or WebSocket `?jwt=` query, over every
//! transport; missing, malformed,
//! expired, wrong-namespace and subscribe-only-used-to-publish tokens refused with the
//! draft-18 codes and counted; a child relay admitted by an authenticating parent only with its
//! `--upstream-token`), every configured limit (sessions, subscriptions and namespaces
//! per session, request rate, message size, a second publisher refused or replacing the
//! first) answered with the spec's code, and hostile raw-QUIC peers (garbage on the control,
//! request and data streams, unknown stream types, half-open sessions, request floods) closed
//! or refused alone while a publisher→subscriber pair through the same relay keeps receiving.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use banyan_certs::{client_config, parse_sha256_hex, ServerVerification};
use banyan_moq::coding::{
    encode_varint, PublishDoneCode, RequestErrorCode, SessionErrorCode, TrackName, TrackNamespace,
};
use banyan_moq::message::{
    Message, Parameters, PublishNamespace, Setup, Subscribe, SubscribeNamespace, Token, TrackStatus,
};
use banyan_moq::session::{
    ClientOptions, Error, NamespacePublication, Request, Session, Subscription, TrackEvent, TransportKind,
};
use banyan_moq::Version;
use banyan_relay::auth::{mint_es256, mint_hs256, Claims};
use banyan_relay::metrics::RefuseReason;
use bytes::{BufMut, Bytes, BytesMut};
use common::{publish, relay, within, Pattern, TestRelay};

const V: Version = Version::Draft18;
const SECRET: &str = "banyan-test-secret-0123456789abcdef0123456789";

// ---------------------------------------------------------------------------------------------
// Helpers: tokens, messages, a tagged publisher, a receiving pair, raw QUIC peers.
// ---------------------------------------------------------------------------------------------

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn claims(ns: &str, publish: bool, subscribe: bool) -> Claims {
    Claims {
        sub: Some("auth_and_limits".into()),
        ns: ns.into(),
        publish,
        subscribe,
        exp: now() + 3600,
        room: None,
        ..Default::default()
    }
}

fn hs256(claims: &Claims) -> String {
    mint_hs256(claims, SECRET.as_bytes()).unwrap()
}

fn token(jwt: &str) -> Token {
    Token::UseValue {
        token_type: 0,
        token_value: Bytes::from(jwt.to_owned()),
    }
}

fn with_token(jwt: Option<&str>) -> Parameters {
    Parameters {
        authorization_tokens: jwt.map(token).into_iter().collect(),
        ..Default::default()
    }
}

fn setup_token(jwt: &str) -> ClientOptions {
    ClientOptions {
        tokens: vec![token(jwt)],
    }
}

fn subscribe_msg(namespace: &str, track: &str, jwt: Option<&str>) -> Subscribe {
    Subscribe {
        request_id: 0,
        track_namespace: TrackNamespace::from_path(namespace).unwrap(),
        track_name: TrackName::from(track),
        // Subscribers here often start before their publisher: wait for it (capped by the relay).
        parameters: Parameters {
            rendezvous_timeout: Some(10_000),
            ..with_token(jwt)
        },
    }
}

fn publish_namespace_msg(namespace: &str, jwt: Option<&str>) -> PublishNamespace {
    PublishNamespace {
        request_id: 0,
        track_namespace: TrackNamespace::from_path(namespace).unwrap(),
        parameters: with_token(jwt),
    }
}

fn subscribe_namespace_msg(prefix: &str) -> SubscribeNamespace {
    SubscribeNamespace {
        request_id: 0,
        track_namespace_prefix: TrackNamespace::from_path(prefix).unwrap(),
        parameters: Parameters::default(),
    }
}

/// The REQUEST_ERROR code of a refused request (panics on any other outcome).
fn refused<T: std::fmt::Debug>(result: Result<T, Error>) -> RequestErrorCode {
    match result {
        Err(Error::Refused { code, .. }) => code,
        other => panic!("expected REQUEST_ERROR, got {other:?}"),
    }
}

/// The termination code of a session the relay closed (or refused at setup).
fn closed_code<T: std::fmt::Debug>(result: Result<T, Error>) -> SessionErrorCode {
    match result {
        Err(Error::Closed { code, .. }) => code,
        other => panic!("expected the session to be closed with a code, got {other:?}"),
    }
}

/// A relay that verifies HS256 tokens with [`SECRET`] (the key file lives in `dir`).
async fn auth_relay(extra: &[&str]) -> (TestRelay, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("jwt.key");
    std::fs::write(&key, format!("{SECRET}\n")).unwrap();
    let mut args = vec!["--auth-key", key.to_str().unwrap()];
    args.extend_from_slice(extra);
    (relay(&args).await, dir)
}

/// The payload a tagged publisher writes: who wrote it, and where.
fn tagged(tag: &str, group: u64, object: u64) -> Bytes {
    Bytes::from(format!("{tag}:{group}:{object}"))
}

/// Publish `request` through `session` and answer every SUBSCRIBE with an endless live
/// stream of tagged objects (groups of 5, one object every 10 ms). Keep the publication alive.
async fn serve_tagged(
    session: Session,
    request: PublishNamespace,
    tag: &'static str,
) -> Result<(NamespacePublication, tokio::task::JoinHandle<()>), Error> {
    serve_tagged_from(session, request, tag, 0).await
}

/// [`serve_tagged`] with group IDs counting from `first_group`.
async fn serve_tagged_from(
    session: Session,
    request: PublishNamespace,
    tag: &'static str,
    first_group: u64,
) -> Result<(NamespacePublication, tokio::task::JoinHandle<()>), Error> {
    let publication = session.publish_namespace(request).await?;
    let serving = tokio::spawn(async move {
        while let Some(request) = session.accept().await {
            let Request::Subscribe(request) = request else {
                let _ = request
                    .reject(RequestErrorCode::NotSupported, "test publisher")
                    .await;
                continue;
            };
            tokio::spawn(async move {
                let Ok(writer) = request.accept(Default::default()).await else {
                    return;
                };
                for group in first_group..first_group + 100_000 {
                    let Ok(mut subgroup) = writer.open_subgroup(group, 0, Some(10), false).await else {
                        return;
                    };
                    for object in 0..5 {
                        if subgroup
                            .write_payload(object, tagged(tag, group, object))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    subgroup.finish();
                }
            });
        }
    });
    Ok((publication, serving))
}

/// Objects received by a subscription, read in the background.
struct Received {
    count: Arc<AtomicU64>,
    last: Arc<Mutex<Option<Bytes>>>,
    done: tokio::sync::watch::Receiver<Option<PublishDoneCode>>,
    task: tokio::task::JoinHandle<()>,
}

impl Received {
    fn start(mut subscription: Subscription) -> Self {
        let count = Arc::new(AtomicU64::new(0));
        let last = Arc::new(Mutex::new(None));
        let (done_tx, done) = tokio::sync::watch::channel(None);
        let (c, l) = (count.clone(), last.clone());
        let task = tokio::spawn(async move {
            loop {
                match subscription.next().await {
                    Ok(Some(TrackEvent::Subgroup(mut subgroup))) => {
                        let (c, l) = (c.clone(), l.clone());
                        tokio::spawn(async move {
                            while let Ok(Some(object)) = subgroup.next().await {
                                *l.lock().unwrap() = Some(object.payload);
                                c.fetch_add(1, Ordering::SeqCst);
                            }
                        });
                    }
                    Ok(Some(TrackEvent::Done(d))) => {
                        done_tx.send_replace(Some(d.status_code));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        done_tx.send_if_modified(|d| {
                            let first = d.is_none();
                            d.get_or_insert(PublishDoneCode::InternalError);
                            first
                        });
                        return;
                    }
                }
            }
        });
        Self {
            count,
            last,
            done,
            task,
        }
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    fn last(&self) -> Option<Bytes> {
        self.last.lock().unwrap().clone()
    }

    /// Wait (bounded) until `more` further objects have arrived.
    async fn grows(&self, what: &str, more: u64) {
        let target = self.count() + more;
        within(what, 15, async {
            while self.count() < target {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    /// Wait (bounded) until the last object received was written by `tag`.
    async fn wait_for_tag(&self, tag: &str) {
        let prefix = format!("{tag}:");
        within(&format!("objects from {tag}"), 15, async {
            while !self.last().is_some_and(|p| p.starts_with(prefix.as_bytes())) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    /// Wait (bounded) for the subscription to end; the PUBLISH_DONE status.
    async fn ended(&mut self) -> PublishDoneCode {
        within("subscription ends", 15, async {
            loop {
                if let Some(code) = *self.done.borrow_and_update() {
                    return code;
                }
                self.done.changed().await.unwrap();
            }
        })
        .await
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A publisher and a subscriber through the relay, with objects flowing.
struct Pair {
    _sessions: (Session, Session),
    _publication: NamespacePublication,
    serving: tokio::task::JoinHandle<usize>,
    received: Received,
}

impl Pair {
    async fn start(relay: &TestRelay, namespace: &str) -> Self {
        let client = relay.client();
        let publisher = relay.connect(&client, TransportKind::Quic).await;
        let pattern = Pattern {
            groups: 100_000,
            objects: 10,
            interval: Duration::from_millis(10),
        };
        let (publication, serving) = publish(publisher.clone(), namespace, pattern).await;
        let subscriber = relay.connect(&client, TransportKind::WebTransport).await;
        let subscription = subscriber
            .subscribe(subscribe_msg(namespace, "video", None))
            .await
            .unwrap();
        let received = Received::start(subscription);
        received.grows("the pair starts receiving", 5).await;
        Self {
            _sessions: (publisher, subscriber),
            _publication: publication,
            serving,
            received,
        }
    }

    /// Objects are still arriving.
    async fn still_receiving(&self, after: &str) {
        self.received
            .grows(&format!("the pair keeps receiving after {after}"), 5)
            .await;
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

/// A raw QUIC (ALPN moqt-18) connection to the relay that sends whatever the test writes.
async fn raw_connection(relay: &TestRelay) -> quinn::Connection {
    let hash = parse_sha256_hex(&relay.hash).unwrap();
    let mut tls = client_config(&ServerVerification::PinnedSha256(vec![hash]), &[]).unwrap();
    tls.alpn_protocols = vec![b"moqt-18".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    within(
        "raw QUIC connects",
        10,
        endpoint.connect(relay.addr, "localhost").unwrap(),
    )
    .await
    .unwrap()
}

fn frame(message: impl Into<Message>) -> Bytes {
    message.into().to_frame(V).unwrap()
}

/// Open our control stream with a valid SETUP; the stream is returned for more bytes.
async fn send_setup(conn: &quinn::Connection) -> quinn::SendStream {
    let mut control = conn.open_uni().await.unwrap();
    control.write_all(&frame(Setup::default())).await.unwrap();
    control
}

/// The application error code the relay closed a raw connection with.
async fn raw_close_code(conn: &quinn::Connection, secs: u64) -> SessionErrorCode {
    match within("the relay closes the connection", secs, conn.closed()).await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            SessionErrorCode::from_code(close.error_code.into_inner())
        }
        other => panic!("expected an application close, got {other:?}"),
    }
}

/// Send `request` on a new request stream of a raw connection and read the relay's first
/// answer.
async fn raw_request(conn: &quinn::Connection, request: impl Into<Message>) -> Message {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&frame(request)).await.unwrap();
    let mut buf = BytesMut::new();
    within("the relay answers the request", 15, async {
        loop {
            let mut chunk = [0u8; 1024];
            match recv.read(&mut chunk).await.unwrap() {
                Some(n) => buf.put_slice(&chunk[..n]),
                None => panic!("request stream ended without an answer"),
            }
            match Message::decode_frame(&mut buf.clone().freeze(), V, 65535) {
                Ok(message) => return message,
                Err(banyan_moq::coding::DecodeError::Incomplete) => continue,
                Err(e) => panic!("undecodable answer: {e}"),
            }
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Auth matrix.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_tokens_let_objects_flow() {
    let (relay, _dir) = auth_relay(&[]).await;
    let client = relay.client();
    let publisher = relay
        .connect_with(
            &client,
            TransportKind::Quic,
            "/",
            setup_token(&hs256(&claims("live/a", true, false))),
        )
        .await
        .unwrap();
    let (_publication, _serving) = serve_tagged(publisher, publish_namespace_msg("live/a", None), "A")
        .await
        .unwrap();
    for kind in [
        TransportKind::Quic,
        TransportKind::WebTransport,
        TransportKind::WebSocket,
    ] {
        let subscriber = relay
            .connect_with(
                &client,
                kind,
                "/",
                setup_token(&hs256(&claims("live", false, true))),
            )
            .await
            .unwrap();
        let subscription = subscriber
            .subscribe(subscribe_msg("live/a", "video", None))
            .await
            .unwrap();
        let received = Received::start(subscription);
        received.grows("objects flow with SETUP tokens", 5).await;
        received.wait_for_tag("A").await;
    }
    assert_eq!(relay.metrics.auth_failures.get(), 0);
}

/// A child relay reaches a parent that requires tokens with its `--upstream-token` (a relay
/// token: publish and subscribe on the namespace); without one, or with one for another
/// namespace, the parent refuses and the child passes the refusal to its viewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_relay_reaches_an_authenticating_parent_with_its_upstream_token() {
    let (parent, _dir) = auth_relay(&["--relay-id", "parent"]).await;
    let publisher = parent
        .connect_with(
            &parent.client(),
            TransportKind::Quic,
            "/",
            setup_token(&hs256(&claims("live/up", true, false))),
        )
        .await
        .unwrap();
    let (_publication, _serving) = serve_tagged(publisher, publish_namespace_msg("live/up", None), "P")
        .await
        .unwrap();
    let upstream = format!("moqt://localhost:{}", parent.addr.port());
    async fn child(upstream: &str, id: &str, token: Option<String>) -> TestRelay {
        let mut args = vec!["--relay-id", id, "--upstream", upstream, "--upstream-insecure"];
        if let Some(token) = &token {
            args.extend(["--upstream-token", token]);
        }
        relay(&args).await
    }
    async fn viewer_subscribe(relay: &TestRelay) -> (Session, Result<Subscription, Error>) {
        let viewer = relay.connect(&relay.client(), TransportKind::WebTransport).await;
        let result = viewer.subscribe(subscribe_msg("live/up", "video", None)).await;
        (viewer, result)
    }

    // With a relay token for `live`: objects from the parent's publisher reach the child's viewer.
    let trusted = child(&upstream, "trusted", Some(hs256(&claims("live", true, true)))).await;
    let (_viewer, subscription) = viewer_subscribe(&trusted).await;
    let received = Received::start(subscription.expect("SUBSCRIBE through the trusted child"));
    received.grows("objects through the child relay", 5).await;
    received.wait_for_tag("P").await;
    assert_eq!(parent.metrics.auth_failures.get(), 0);

    // Without a token, and with a token for another namespace, the parent refuses the child.
    let anonymous = child(&upstream, "anonymous", None).await;
    let (_viewer, result) = viewer_subscribe(&anonymous).await;
    assert_eq!(
        refused(result),
        RequestErrorCode::Unauthorized,
        "child without a token"
    );
    assert_eq!(parent.metrics.auth_failures.get(), 1);
    let elsewhere = child(&upstream, "elsewhere", Some(hs256(&claims("other", true, true)))).await;
    let (_viewer, result) = viewer_subscribe(&elsewhere).await;
    assert_eq!(
        refused(result),
        RequestErrorCode::Unauthorized,
        "child with another namespace's token"
    );
    assert_eq!(parent.metrics.auth_failures.get(), 2);
    // The trusted child still receives.
    received.grows("the trusted child keeps receiving", 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_request_tokens_and_the_jwt_query_let_objects_flow() {
    let (relay, _dir) = auth_relay(&[]).await;
    let client = relay.client();
    // No SETUP token: the PUBLISH_NAMESPACE carries its own.
    let publisher = relay.connect(&client, TransportKind::Quic).await;
    let pub_jwt = hs256(&claims("live/b", true, false));
    let (_publication, _serving) =
        serve_tagged(publisher, publish_namespace_msg("live/b", Some(&pub_jwt)), "B")
            .await
            .unwrap();

    // A subscriber whose SUBSCRIBE carries the token.
    let sub_jwt = hs256(&claims("live/b", false, true));
    let per_request = relay.connect(&client, TransportKind::Quic).await;
    let subscription = per_request
        .subscribe(subscribe_msg("live/b", "video", Some(&sub_jwt)))
        .await
        .unwrap();
    Received::start(subscription)
        .grows("objects flow with a per-request token", 5)
        .await;

    // Browser-style subscribers, over WebTransport and over WebSocket, with the token in the URL.
    for kind in [TransportKind::WebTransport, TransportKind::WebSocket] {
        let browser = relay
            .connect_with(
                &client,
                kind,
                &format!("/moq?jwt={sub_jwt}"),
                ClientOptions::default(),
            )
            .await
            .unwrap();
        let subscription = browser
            .subscribe(subscribe_msg("live/b", "video", None))
            .await
            .unwrap();
        Received::start(subscription)
            .grows("objects flow with ?jwt=", 5)
            .await;
    }
    assert_eq!(relay.metrics.auth_failures.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_tokens_verified_with_a_public_key() {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let private = pem::encode(&pem::Pem::new("PRIVATE KEY", pair.to_pkcs8v1().unwrap().as_ref()));
    let public = pem::encode(&pem::Pem::new(
        "PUBLIC KEY",
        pair.public_key().as_der().unwrap().as_ref(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let key: PathBuf = dir.path().join("jwt-public.pem");
    std::fs::write(&key, public).unwrap();
    let relay = relay(&["--auth-key", key.to_str().unwrap()]).await;
    let client = relay.client();

    let pub_jwt = mint_es256(&claims("live/es", true, false), private.as_bytes()).unwrap();
    let sub_jwt = mint_es256(&claims("live/es", false, true), private.as_bytes()).unwrap();
    let publisher = relay
        .connect_with(&client, TransportKind::Quic, "/", setup_token(&pub_jwt))
        .await
        .unwrap();
    let (_publication, _serving) = serve_tagged(publisher, publish_namespace_msg("live/es", None), "E")
        .await
        .unwrap();
    let subscriber = relay.connect(&client, TransportKind::WebTransport).await;
    let subscription = subscriber
        .subscribe(subscribe_msg("live/es", "video", Some(&sub_jwt)))
        .await
        .unwrap();
    Received::start(subscription)
        .grows("objects flow with ES256 tokens", 5)
        .await;

    // An HS256 token (any secret) is not accepted by an ES256 relay.
    let forged = hs256(&claims("live/es", false, true));
    let code = refused(
        subscriber
            .subscribe(subscribe_msg("live/es", "video", Some(&forged)))
            .await,
    );
    assert_eq!(code, RequestErrorCode::Unauthorized);
    assert_eq!(relay.metrics.auth_failures.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_the_drafts_codes_and_counted() {
    let (relay, _dir) = auth_relay(&[]).await;
    let client = relay.client();
    let publisher = relay
        .connect_with(
            &client,
            TransportKind::Quic,
            "/",
            setup_token(&hs256(&claims("live/c", true, false))),
        )
        .await
        .unwrap();
    let (_publication, _serving) = serve_tagged(publisher, publish_namespace_msg("live/c", None), "C")
        .await
        .unwrap();
    let mut failures = 0;

    // Requests on a session without a session token.
    let session = relay.connect(&client, TransportKind::Quic).await;
    let expired = hs256(&Claims {
        exp: now() - 3600,
        ..claims("live/c", true, true)
    });
    let cases: Vec<(&str, Option<String>, RequestErrorCode)> = vec![
        ("missing", None, RequestErrorCode::Unauthorized),
        (
            "malformed",
            Some("not.a.jwt".into()),
            RequestErrorCode::MalformedAuthToken,
        ),
        (
            "malformed claims",
            Some(hs256(&claims("a//b", true, true))),
            RequestErrorCode::MalformedAuthToken,
        ),
        (
            "expired",
            Some(expired.clone()),
            RequestErrorCode::ExpiredAuthToken,
        ),
        (
            "wrong namespace",
            Some(hs256(&claims("live/other", true, true))),
            RequestErrorCode::Unauthorized,
        ),
        (
            "prefix by string only",
            Some(hs256(&claims("live/cc", true, true))),
            RequestErrorCode::Unauthorized,
        ),
        (
            "publish-only used to subscribe",
            Some(hs256(&claims("live/c", true, false))),
            RequestErrorCode::Unauthorized,
        ),
        (
            "bad signature",
            Some(
                mint_hs256(
                    &claims("live/c", true, true),
                    b"another-secret-another-secret-0123",
                )
                .unwrap(),
            ),
            RequestErrorCode::Unauthorized,
        ),
    ];
    for (what, jwt, expected) in &cases {
        let code = refused(
            session
                .subscribe(subscribe_msg("live/c", "video", jwt.as_deref()))
                .await,
        );
        assert_eq!(code, *expected, "SUBSCRIBE with a {what} token");
        failures += 1;
    }

    // A subscribe-only token cannot publish, per request or from SETUP.
    let sub_only = hs256(&claims("live", false, true));
    let code = refused(
        session
            .publish_namespace(publish_namespace_msg("live/d", Some(&sub_only)))
            .await,
    );
    assert_eq!(
        code,
        RequestErrorCode::Unauthorized,
        "PUBLISH_NAMESPACE with a subscribe-only token"
    );
    failures += 1;
    let viewer = relay
        .connect_with(&client, TransportKind::WebTransport, "/", setup_token(&sub_only))
        .await
        .unwrap();
    let code = refused(
        viewer
            .publish_namespace(publish_namespace_msg("live/d", None))
            .await,
    );
    assert_eq!(
        code,
        RequestErrorCode::Unauthorized,
        "publishing on a subscribe-only session"
    );
    failures += 1;
    // ... while the same session may subscribe, and outside its prefix may not.
    let subscription = viewer
        .subscribe(subscribe_msg("live/c", "video", None))
        .await
        .unwrap();
    Received::start(subscription)
        .grows("the viewer's session token works", 3)
        .await;
    let code = refused(viewer.subscribe(subscribe_msg("other/c", "video", None)).await);
    assert_eq!(
        code,
        RequestErrorCode::Unauthorized,
        "outside the session token's prefix"
    );
    failures += 1;
    // A missing token on PUBLISH_NAMESPACE and TRACK_STATUS.
    let code = refused(
        session
            .publish_namespace(publish_namespace_msg("live/e", None))
            .await,
    );
    assert_eq!(
        code,
        RequestErrorCode::Unauthorized,
        "PUBLISH_NAMESPACE without a token"
    );
    failures += 1;
    let status = TrackStatus {
        request_id: 0,
        track_namespace: TrackNamespace::from_path("live/c").unwrap(),
        track_name: TrackName::from("video"),
        parameters: Parameters::default(),
    };
    let code = refused(session.track_status(status).await);
    assert_eq!(
        code,
        RequestErrorCode::Unauthorized,
        "TRACK_STATUS without a token"
    );
    failures += 1;

    // Refused requests leave the session usable: a valid per-request token still works.
    let good = hs256(&claims("live/c", false, true));
    let subscription = session
        .subscribe(subscribe_msg("live/c", "video", Some(&good)))
        .await
        .unwrap();
    Received::start(subscription)
        .grows("the session survives refusals", 3)
        .await;

    // Bad SETUP tokens end the session before it starts, with the session codes.
    let session_cases = [
        (
            "malformed",
            "garbage".to_string(),
            SessionErrorCode::MalformedAuthToken,
        ),
        ("expired", expired.clone(), SessionErrorCode::ExpiredAuthToken),
        (
            "bad signature",
            mint_hs256(&claims("live", true, true), b"another-secret-another-secret-0123").unwrap(),
            SessionErrorCode::Unauthorized,
        ),
    ];
    let requests_refused = failures;
    for (what, jwt, expected) in &session_cases {
        for kind in [
            TransportKind::Quic,
            TransportKind::WebTransport,
            TransportKind::WebSocket,
        ] {
            let result = relay.connect_with(&client, kind, "/", setup_token(jwt)).await;
            assert_eq!(closed_code(result), *expected, "{what} SETUP token over {kind:?}");
            failures += 1;
        }
    }
    // The browser fallback: a malformed `?jwt=` ends the WebTransport or WebSocket session the
    // same way.
    for kind in [TransportKind::WebTransport, TransportKind::WebSocket] {
        let result = relay
            .connect_with(&client, kind, "/moq?jwt=garbage", ClientOptions::default())
            .await;
        assert_eq!(
            closed_code(result),
            SessionErrorCode::MalformedAuthToken,
            "?jwt=garbage over {kind:?}"
        );
        failures += 1;
    }
    let refused_sessions = failures - requests_refused;

    assert_eq!(
        relay.metrics.auth_failures.get(),
        failures,
        "every refusal is counted"
    );
    assert_eq!(
        relay.metrics.refused(RefuseReason::Unauthorized),
        failures - refused_sessions,
        "refused requests (not the {refused_sessions} refused sessions) are labelled unauthorized"
    );
}

// ---------------------------------------------------------------------------------------------
// Limits.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_sessions_refuses_the_fourth_connection() {
    let relay = relay(&["--max-sessions", "3"]).await;
    let client = relay.client();
    let publisher = relay.connect(&client, TransportKind::Quic).await;
    let (_publication, _serving) = serve_tagged(publisher, publish_namespace_msg("live/m", None), "M")
        .await
        .unwrap();
    let a = relay.connect(&client, TransportKind::WebTransport).await;
    let b = relay.connect(&client, TransportKind::Quic).await;

    let fourth = relay
        .connect_with(&client, TransportKind::Quic, "/", ClientOptions::default())
        .await;
    assert!(fourth.is_err(), "the fourth session is refused: {fourth:?}");
    let fourth_wt = relay
        .connect_with(
            &client,
            TransportKind::WebTransport,
            "/",
            ClientOptions::default(),
        )
        .await;
    assert!(fourth_wt.is_err(), "whatever the transport: {fourth_wt:?}");
    assert_eq!(relay.metrics.sessions_rejected.get(), 2);

    // The three admitted sessions work.
    let mut receivers = Vec::new();
    for session in [&a, &b] {
        let subscription = session
            .subscribe(subscribe_msg("live/m", "video", None))
            .await
            .unwrap();
        receivers.push(Received::start(subscription));
    }
    for received in &receivers {
        received.grows("admitted sessions receive", 5).await;
    }

    // A slot frees when a session leaves.
    b.close(SessionErrorCode::NoError, "leaving");
    drop(receivers);
    let replacement = within("a new session is admitted once one leaves", 15, async {
        loop {
            if let Ok(session) = relay
                .connect_with(&client, TransportKind::Quic, "/", ClientOptions::default())
                .await
            {
                return session;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let subscription = replacement
        .subscribe(subscribe_msg("live/m", "video", None))
        .await
        .unwrap();
    Received::start(subscription)
        .grows("the newcomer receives", 3)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_subscription_gets_excessive_load_and_the_session_stays_usable() {
    let relay = relay(&["--max-subscriptions-per-session", "2"]).await;
    let client = relay.client();
    let publisher = relay.connect(&client, TransportKind::Quic).await;
    let (_publication, _serving) = serve_tagged(publisher, publish_namespace_msg("live/s", None), "S")
        .await
        .unwrap();
    let session = relay.connect(&client, TransportKind::Quic).await;
    let video = Received::start(
        session
            .subscribe(subscribe_msg("live/s", "video", None))
            .await
            .unwrap(),
    );
    let audio = Received::start(
        session
            .subscribe(subscribe_msg("live/s", "audio", None))
            .await
            .unwrap(),
    );
    let code = refused(session.subscribe(subscribe_msg("live/s", "captions", None)).await);
    assert_eq!(code, RequestErrorCode::ExcessiveLoad);
    assert_eq!(relay.metrics.refused(RefuseReason::Limit), 1);

    // Both admitted subscriptions keep receiving.
    video.grows("first subscription", 5).await;
    audio.grows("second subscription", 5).await;
    // Another session is not affected by this one's limit.
    let other = relay.connect(&client, TransportKind::WebTransport).await;
    Received::start(
        other
            .subscribe(subscribe_msg("live/s", "captions", None))
            .await
            .unwrap(),
    )
    .grows("another session subscribes", 3)
    .await;

    // Ending one subscription frees its slot.
    drop(audio);
    let captions = within("a slot frees after unsubscribing", 15, async {
        loop {
            match session.subscribe(subscribe_msg("live/s", "captions", None)).await {
                Ok(subscription) => return subscription,
                Err(Error::Refused {
                    code: RequestErrorCode::ExcessiveLoad,
                    ..
                }) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
    })
    .await;
    Received::start(captions).grows("the new subscription", 3).await;
    video.grows("first subscription, still", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_namespaces_counts_publish_and_subscribe_namespace() {
    let relay = relay(&["--max-namespaces-per-session", "1"]).await;
    let client = relay.client();

    let publisher = relay.connect(&client, TransportKind::Quic).await;
    let first = publisher
        .publish_namespace(publish_namespace_msg("live/n1", None))
        .await
        .unwrap();
    let code = refused(
        publisher
            .publish_namespace(publish_namespace_msg("live/n2", None))
            .await,
    );
    assert_eq!(code, RequestErrorCode::ExcessiveLoad, "second PUBLISH_NAMESPACE");
    let code = refused(
        publisher
            .subscribe_namespace(subscribe_namespace_msg("live"))
            .await,
    );
    assert_eq!(
        code,
        RequestErrorCode::ExcessiveLoad,
        "SUBSCRIBE_NAMESPACE beyond the limit"
    );

    // Another session has its own allowance.
    let watcher = relay.connect(&client, TransportKind::WebTransport).await;
    let mut watch = watcher
        .subscribe_namespace(subscribe_namespace_msg("live"))
        .await
        .unwrap();
    let event = within("NAMESPACE for live/n1", 10, watch.next()).await.unwrap();
    assert!(
        matches!(&event, Some(banyan_moq::session::NamespaceEvent::Published(ns)) if *ns == TrackNamespace::from_path("live/n1").unwrap()),
        "got {event:?}"
    );
    let code = refused(
        watcher
            .subscribe_namespace(subscribe_namespace_msg("other"))
            .await,
    );
    assert_eq!(
        code,
        RequestErrorCode::ExcessiveLoad,
        "second SUBSCRIBE_NAMESPACE"
    );
    assert_eq!(relay.metrics.refused(RefuseReason::Limit), 3);

    // Withdrawing frees the slot.
    first.withdraw();
    within("the slot frees after withdrawing", 15, async {
        loop {
            match publisher
                .publish_namespace(publish_namespace_msg("live/n2", None))
                .await
            {
                Ok(publication) => return publication,
                Err(Error::Refused {
                    code: RequestErrorCode::ExcessiveLoad,
                    ..
                }) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_floods_are_rate_limited_without_hurting_anyone() {
    let relay = relay(&["--request-rate", "5", "--request-burst", "10"]).await;
    let pair = Pair::start(&relay, "live/pair").await;
    let client = relay.client();
    let flooder = relay.connect(&client, TransportKind::Quic).await;

    let status = || TrackStatus {
        request_id: 0,
        track_namespace: TrackNamespace::from_path("live/pair").unwrap(),
        track_name: TrackName::from("video"),
        parameters: Parameters::default(),
    };
    let results = within(
        "the flood is answered",
        30,
        futures::future::join_all((0..60).map(|_| flooder.track_status(status()))),
    )
    .await;
    let limited = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(Error::Refused {
                    code: RequestErrorCode::ExcessiveLoad,
                    ..
                })
            )
        })
        .count() as u64;
    let answered = results.iter().filter(|r| r.is_ok()).count() as u64;
    // Burst 10 + 5/s: even if the flood took 3 s to arrive, 35 or more are refused.
    assert!(limited >= 30, "most of the flood is refused: {limited} of 60");
    assert!(answered >= 1, "the burst is served: {answered}");
    assert_eq!(limited + answered, 60, "every request got one of the two answers");
    assert_eq!(relay.metrics.refused(RefuseReason::RateLimited), limited);

    // Everyone else carries on, and the flooder itself recovers as the bucket refills.
    pair.still_receiving("a request flood").await;
    assert!(!flooder.is_closed());
    within("the flooder is served again", 15, async {
        loop {
            match flooder.track_status(status()).await {
                Ok(_) => return,
                Err(Error::Refused {
                    code: RequestErrorCode::ExcessiveLoad,
                    ..
                }) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
    })
    .await;
    let other = relay.connect(&client, TransportKind::Quic).await;
    other.track_status(status()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_closes_only_its_session() {
    let relay = relay(&["--max-message-size", "1024"]).await;
    let pair = Pair::start(&relay, "live/pair").await;
    let client = relay.client();
    let offender = relay.connect(&client, TransportKind::Quic).await;
    let long_name = "x".repeat(2000);
    let result = offender
        .subscribe(subscribe_msg("live/pair", &long_name, None))
        .await;
    assert!(
        result.is_err(),
        "an oversized SUBSCRIBE is not served: {result:?}"
    );
    let closed = within("the offender is closed", 15, offender.closed()).await;
    assert!(
        matches!(
            closed,
            Error::Closed {
                code: SessionErrorCode::ProtocolViolation,
                ..
            }
        ),
        "got {closed:?}"
    );
    pair.still_receiving("an oversized message").await;
    // A message just under the limit is fine.
    let ok = relay.connect(&client, TransportKind::Quic).await;
    Received::start(
        ok.subscribe(subscribe_msg("live/pair", "video", None))
            .await
            .unwrap(),
    )
    .grows("a normal session", 3)
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_publisher_of_a_live_namespace_is_refused_without_takeover() {
    let relay = relay(&["--publisher-takeover=false"]).await;
    let client = relay.client();
    let first = relay.connect(&client, TransportKind::Quic).await;
    let (_publication, _serving) = serve_tagged(first, publish_namespace_msg("live/dup", None), "first")
        .await
        .unwrap();
    let second = relay.connect(&client, TransportKind::WebTransport).await;
    let result = serve_tagged(second.clone(), publish_namespace_msg("live/dup", None), "second").await;
    assert_eq!(refused(result), RequestErrorCode::Uninterested);

    let viewer = relay.connect(&client, TransportKind::Quic).await;
    let received = Received::start(
        viewer
            .subscribe(subscribe_msg("live/dup", "video", None))
            .await
            .unwrap(),
    );
    received.grows("the first publisher's objects", 5).await;
    received.wait_for_tag("first").await;
    assert!(!second.is_closed(), "the refused publisher keeps its session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_takeover_moves_subscribers_without_a_new_subscribe() {
    // The default: a new session allowed to publish takes the namespace over.
    let relay = relay(&[]).await;
    let client = relay.client();
    let first = relay.connect(&client, TransportKind::Quic).await;
    let (mut first_publication, _first_serving) =
        serve_tagged(first.clone(), publish_namespace_msg("live/take", None), "first")
            .await
            .unwrap();
    let viewers = [
        relay.connect(&client, TransportKind::WebTransport).await,
        relay.connect(&client, TransportKind::Quic).await,
    ];
    let mut received = Vec::new();
    for viewer in &viewers {
        let r = Received::start(
            viewer
                .subscribe(subscribe_msg("live/take", "video", None))
                .await
                .unwrap(),
        );
        r.wait_for_tag("first").await;
        received.push(r);
    }

    // The first publisher is still connected (as a crashed encoder's session would be until
    // it times out); the second numbers its groups above the first's, as banyan-publish does.
    let second = relay.connect(&client, TransportKind::Quic).await;
    let (_second_publication, _second_serving) = serve_tagged_from(
        second,
        publish_namespace_msg("live/take", None),
        "second",
        1_000_000,
    )
    .await
    .expect("a publisher allowed to publish takes the namespace over");
    within(
        "the first publication is ended",
        15,
        first_publication.withdrawn(),
    )
    .await
    .unwrap();

    // The same subscriptions carry on with the new publisher's objects.
    for r in &received {
        r.wait_for_tag("second").await;
        r.grows("objects after the takeover", 5).await;
        assert!(r.last().unwrap().starts_with(b"second:"), "never mixed back");
        assert!(r.done.borrow().is_none(), "the subscription did not end");
    }
    assert!(
        !first.is_closed(),
        "the displaced publisher's session is left open"
    );
    assert_eq!(relay.metrics.publisher_takeovers.get(), 1, "one track moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_takeover_with_restarted_group_numbers_ends_the_old_subscriptions() {
    let relay = relay(&[]).await;
    let client = relay.client();
    let first = relay.connect(&client, TransportKind::Quic).await;
    let (mut first_publication, _first_serving) =
        serve_tagged(first, publish_namespace_msg("live/rep", None), "first")
            .await
            .unwrap();
    let viewer = relay.connect(&client, TransportKind::WebTransport).await;
    let mut before = Received::start(
        viewer
            .subscribe(subscribe_msg("live/rep", "video", None))
            .await
            .unwrap(),
    );
    before.wait_for_tag("first").await;

    let second = relay.connect(&client, TransportKind::Quic).await;
    let (_second_publication, _second_serving) =
        serve_tagged(second, publish_namespace_msg("live/rep", None), "second")
            .await
            .unwrap();

    // The displaced publisher learns its publication ended; subscriptions fed by it end.
    within(
        "the first publication is ended",
        15,
        first_publication.withdrawn(),
    )
    .await
    .unwrap();
    let code = before.ended().await;
    assert_eq!(
        code,
        PublishDoneCode::GoingAway,
        "PUBLISH_DONE for the old publisher's track"
    );

    // Subscribing again (same viewer, and a new one) gets the new publisher's objects.
    for session in [viewer.clone(), relay.connect(&client, TransportKind::Quic).await] {
        let received = Received::start(
            session
                .subscribe(subscribe_msg("live/rep", "video", None))
                .await
                .unwrap(),
        );
        received.grows("objects after the replacement", 5).await;
        received.wait_for_tag("second").await;
        assert!(
            received.last().unwrap().starts_with(b"second:"),
            "never mixed with the old publisher"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile raw-QUIC peers, while a normal pair keeps receiving.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_are_closed_alone_while_the_pair_keeps_receiving() {
    let relay = relay(&["--request-rate", "10", "--request-burst", "10"]).await;
    let pair = Pair::start(&relay, "live/pair").await;

    // Half-open: QUIC connects but SETUP never comes. Checked at the end (the relay's setup
    // timeout is 10 s), while the other abuse goes on.
    let half_open = raw_connection(&relay).await;
    let half_open_started = std::time::Instant::now();

    // Garbage on the control stream after SETUP: a message type draft-18 does not define.
    let conn = raw_connection(&relay).await;
    let mut control = send_setup(&conn).await;
    control.write_all(&[0x3f, 0x00, 0x00]).await.unwrap();
    assert_eq!(
        raw_close_code(&conn, 15).await,
        SessionErrorCode::ProtocolViolation
    );
    pair.still_receiving("garbage on the control stream").await;

    // A malformed SETUP: its declared length (2) leaves half a Key-Value-Pair dangling.
    let conn = raw_connection(&relay).await;
    let mut control = conn.open_uni().await.unwrap();
    let mut bytes = BytesMut::new();
    encode_varint(Setup::TYPE, &mut bytes);
    bytes.put_u16(2);
    bytes.put_slice(&[0x01, 0x05]);
    control.write_all(&bytes).await.unwrap();
    let code = raw_close_code(&conn, 15).await;
    assert!(
        code == SessionErrorCode::ProtocolViolation || code == SessionErrorCode::KeyValueFormattingError,
        "malformed SETUP closed with {code:?}"
    );
    pair.still_receiving("a malformed SETUP").await;

    // Garbage on a request stream.
    let conn = raw_connection(&relay).await;
    let _control = send_setup(&conn).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(b"\x3f\x00\x04junk").await.unwrap();
    assert_eq!(
        raw_close_code(&conn, 15).await,
        SessionErrorCode::ProtocolViolation
    );
    pair.still_receiving("garbage on a request stream").await;

    // A well-formed message that cannot open a request stream.
    let conn = raw_connection(&relay).await;
    let _control = send_setup(&conn).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&frame(Setup::default())).await.unwrap();
    assert_eq!(
        raw_close_code(&conn, 15).await,
        SessionErrorCode::ProtocolViolation
    );
    pair.still_receiving("SETUP on a request stream").await;

    // Garbage on a data stream: a subgroup type with the reserved Subgroup ID mode, then junk.
    let conn = raw_connection(&relay).await;
    let _control = send_setup(&conn).await;
    let mut stream = conn.open_uni().await.unwrap();
    stream.write_all(&[0x16, 0xff, 0xfe, 0x01, 0x02]).await.unwrap();
    assert_eq!(
        raw_close_code(&conn, 15).await,
        SessionErrorCode::ProtocolViolation
    );
    pair.still_receiving("garbage on a data stream").await;

    // An unknown stream type.
    let conn = raw_connection(&relay).await;
    let _control = send_setup(&conn).await;
    let mut stream = conn.open_uni().await.unwrap();
    stream.write_all(&[0x02, 0xaa, 0xbb]).await.unwrap();
    assert_eq!(
        raw_close_code(&conn, 15).await,
        SessionErrorCode::ProtocolViolation
    );
    pair.still_receiving("an unknown stream type").await;

    // The same Request ID twice.
    let conn = raw_connection(&relay).await;
    let _control = send_setup(&conn).await;
    let (mut again, _recv2) = conn.open_bi().await.unwrap();
    let mut dup = subscribe_msg("x", "y", None);
    dup.request_id = 8;
    again.write_all(&frame(dup.clone())).await.unwrap();
    let (mut third, _recv3) = conn.open_bi().await.unwrap();
    third.write_all(&frame(dup)).await.unwrap();
    assert_eq!(
        raw_close_code(&conn, 15).await,
        SessionErrorCode::InvalidRequestId
    );
    pair.still_receiving("a duplicate Request ID").await;

    // A flood of request streams: refused with EXCESSIVE_LOAD, the flooder stays connected.
    let conn = raw_connection(&relay).await;
    let _control = send_setup(&conn).await;
    let refused_before = relay.metrics.refused(RefuseReason::RateLimited);
    let mut floods = Vec::new();
    for i in 0..100u64 {
        let conn = conn.clone();
        floods.push(tokio::spawn(async move {
            let mut request = subscribe_msg("flood/none", "video", None);
            request.request_id = i * 2;
            raw_request(&conn, request).await
        }));
    }
    let mut limited = 0;
    for flood in floods {
        if let Message::RequestError(e) = flood.await.unwrap() {
            if e.error_code == RequestErrorCode::ExcessiveLoad {
                limited += 1;
            }
        }
    }
    assert!(
        limited >= 60,
        "the flood is refused with EXCESSIVE_LOAD: {limited} of 100"
    );
    assert_eq!(
        relay.metrics.refused(RefuseReason::RateLimited) - refused_before,
        limited,
        "and counted"
    );
    assert!(conn.close_reason().is_none(), "a flooder is refused, not closed");
    pair.still_receiving("a request flood").await;

    // The half-open session was closed after the setup timeout with CONTROL_MESSAGE_TIMEOUT.
    assert_eq!(
        raw_close_code(&half_open, 30).await,
        SessionErrorCode::ControlMessageTimeout
    );
    assert!(
        half_open_started.elapsed() >= Duration::from_secs(5),
        "closed by the timeout, not at once"
    );
    pair.still_receiving("a half-open session").await;
    // Only the pair and the flooder are left as sessions.
    within("the offenders' sessions are gone", 15, async {
        while relay.metrics.sessions_total() != 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}
