//! Proves that access ends when the token does: a session whose token expires is closed with
//! EXPIRED_AUTH_TOKEN at `exp` plus the 5 s allowance (the measured exp → close time is
//! printed); a subscriber that presents a fresh token for the same subject (REQUEST_UPDATE
//! with AUTHORIZATION TOKEN, or a new request carrying one) keeps receiving past the first
//! token's end with no gap; a refresh for another subject, with a bad signature or with a
//! narrower scope is refused with UNAUTHORIZED, ends only that subscription (UPDATE_FAILED)
//! and extends nothing; a publisher refreshes on its PUBLISH_NAMESPACE; and
//! `Node::end_sessions_of` ends one subject's sessions the same way, no one else's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use banyan_moq::coding::{PublishDoneCode, RequestErrorCode, SessionErrorCode, TrackNamespace};
use banyan_moq::message::{Parameters, RequestUpdate, Token, TrackStatus};
use banyan_moq::session::{ClientOptions, Error, Session, Subscription, TrackEvent, TransportKind};
use banyan_relay::auth::{mint_hs256, Claims, EXP_LEEWAY_SECS};
use bytes::Bytes;
use common::{publish, relay, subscribe_msg, within, Pattern, TestRelay};
use tokio::sync::{mpsc, oneshot};

const SECRET: &str = "banyan-test-secret-0123456789abcdef0123456789";
const OTHER_SECRET: &str = "not-the-relays-secret-0123456789abcdef012345";

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A viewer token for `sub` on `ns` ending at `exp` (seconds since the epoch).
fn viewer(sub: &str, ns: &str, exp: u64) -> Claims {
    Claims {
        sub: Some(sub.into()),
        ns: ns.into(),
        publish: false,
        subscribe: true,
        exp,
        room: None,
        ..Claims::default()
    }
}

fn jwt(claims: &Claims) -> String {
    mint_hs256(claims, SECRET.as_bytes()).unwrap()
}

fn token(jwt: &str) -> Token {
    Token::UseValue {
        token_type: 0,
        token_value: Bytes::from(jwt.to_owned()),
    }
}

/// The `exp` of a token whose allowance runs out about `secs_left` seconds from now: the
/// leeway is counted from `exp`, so that is `now + secs_left - leeway`, in whole seconds.
fn exp_in(secs_left: u64) -> u64 {
    (now_ms() / 1000 + secs_left).saturating_sub(EXP_LEEWAY_SECS)
}

async fn auth_relay() -> (TestRelay, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("jwt.key");
    std::fs::write(&key, SECRET).unwrap();
    (relay(&["--auth-key", key.to_str().unwrap()]).await, dir)
}

/// A publisher on `live/a` (with a long token) serving objects every 10 ms, kept alive.
struct Source {
    _session: Session,
    _publication: banyan_moq::session::NamespacePublication,
    serving: tokio::task::JoinHandle<usize>,
}

impl Drop for Source {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

async fn source(relay: &TestRelay) -> Source {
    let claims = Claims {
        publish: true,
        subscribe: false,
        ..viewer("publisher", "live/a", now_ms() / 1000 + 3600)
    };
    let session = relay
        .connect_with(
            &relay.client(),
            TransportKind::Quic,
            "/",
            ClientOptions {
                tokens: vec![token(&jwt(&claims))],
            },
        )
        .await
        .unwrap();
    let pattern = Pattern {
        groups: 100_000,
        objects: 10,
        interval: Duration::from_millis(10),
    };
    let (publication, serving) = publish(session.clone(), "live/a", pattern).await;
    Source {
        _session: session,
        _publication: publication,
        serving,
    }
}

/// A viewer session with `claims` in SETUP over `kind`.
async fn viewer_session(relay: &TestRelay, kind: TransportKind, claims: &Claims) -> Session {
    relay
        .connect_with(
            &relay.client(),
            kind,
            "/",
            ClientOptions {
                tokens: vec![token(&jwt(claims))],
            },
        )
        .await
        .unwrap()
}

/// A subscription read in the background: arrival times of its objects, answers to its
/// REQUEST_UPDATEs, and how it ended.
struct Reader {
    arrivals: Arc<Mutex<Vec<Instant>>>,
    updates: mpsc::Sender<(RequestUpdate, oneshot::Sender<Result<(), RequestErrorCode>>)>,
    done: tokio::sync::watch::Receiver<Option<PublishDoneCode>>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    fn start(mut subscription: Subscription) -> Self {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let (updates, mut update_rx) =
            mpsc::channel::<(RequestUpdate, oneshot::Sender<Result<(), RequestErrorCode>>)>(4);
        let (done_tx, done) = tokio::sync::watch::channel(None);
        let seen = arrivals.clone();
        let task = tokio::spawn(async move {
            let mut waiting: Option<oneshot::Sender<Result<(), RequestErrorCode>>> = None;
            loop {
                tokio::select! {
                    Some((update, answer)) = update_rx.recv(), if waiting.is_none() => {
                        subscription.update(update).await.unwrap();
                        waiting = Some(answer);
                    }
                    event = subscription.next() => match event {
                        Ok(Some(TrackEvent::Subgroup(mut subgroup))) => {
                            let seen = seen.clone();
                            tokio::spawn(async move {
                                while let Ok(Some(_)) = subgroup.next().await {
                                    seen.lock().unwrap().push(Instant::now());
                                }
                            });
                        }
                        Ok(Some(TrackEvent::UpdateOk(_))) => {
                            if let Some(answer) = waiting.take() {
                                let _ = answer.send(Ok(()));
                            }
                        }
                        Ok(Some(TrackEvent::UpdateError(e))) => {
                            if let Some(answer) = waiting.take() {
                                let _ = answer.send(Err(e.error_code));
                            }
                        }
                        Ok(Some(TrackEvent::Done(d))) => {
                            done_tx.send_replace(Some(d.status_code));
                        }
                        Ok(Some(TrackEvent::Datagram(_))) => {}
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
            }
        });
        Self {
            arrivals,
            updates,
            done,
            task,
        }
    }

    fn count(&self) -> usize {
        self.arrivals.lock().unwrap().len()
    }

    async fn grows(&self, what: &str, more: usize) {
        let target = self.count() + more;
        within(what, 15, async {
            while self.count() < target {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    /// Send REQUEST_UPDATE carrying `jwt` as its AUTHORIZATION TOKEN; the relay's answer.
    async fn refresh(&self, session: &Session, jwt: &str) -> Result<(), RequestErrorCode> {
        let update = RequestUpdate {
            request_id: session.next_request_id(),
            parameters: Parameters {
                authorization_tokens: vec![token(jwt)],
                ..Default::default()
            },
        };
        let (tx, rx) = oneshot::channel();
        self.updates.send((update, tx)).await.unwrap();
        within("the relay answers REQUEST_UPDATE", 10, rx).await.unwrap()
    }

    async fn ended(&mut self) -> PublishDoneCode {
        within("the subscription ends", 10, async {
            loop {
                if let Some(code) = *self.done.borrow_and_update() {
                    return code;
                }
                self.done.changed().await.unwrap();
            }
        })
        .await
    }

    /// The longest time between two objects that arrived between `from` and `to`.
    fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let arrivals = self.arrivals.lock().unwrap();
        let window: Vec<Instant> = arrivals
            .iter()
            .copied()
            .filter(|t| *t >= from && *t <= to)
            .collect();
        window
            .windows(2)
            .map(|w| w[1].duration_since(w[0]))
            .max()
            .unwrap_or(Duration::MAX)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How the relay ended `session`: its termination code and when (ms since the epoch).
async fn closed(session: &Session, secs: u64) -> (SessionErrorCode, u64) {
    let error = within("the relay closes the session", secs, session.closed()).await;
    let at = now_ms();
    match error {
        Error::Closed { code, .. } => (code, at),
        other => panic!("expected the session to be closed with a code, got {other:?}"),
    }
}

/// A token that runs out mid-session closes the session with EXPIRED_AUTH_TOKEN (0x18) at
/// `exp` + the allowance: measured from `exp`, no earlier than the allowance and at most one
/// second after it. Objects flow until then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_closes_the_session_after_the_allowance() {
    let (relay, _dir) = auth_relay().await;
    let _source = source(&relay).await;
    for kind in [
        TransportKind::Quic,
        TransportKind::WebTransport,
        TransportKind::WebSocket,
    ] {
        let claims = viewer("viewer-1", "live", exp_in(2));
        let session = viewer_session(&relay, kind, &claims).await;
        let subscription = session.subscribe(subscribe_msg("live/a", "video")).await.unwrap();
        let reader = Reader::start(subscription);
        reader.grows("objects flow before expiry", 10).await;
        let (code, at) = closed(&session, 15).await;
        assert_eq!(code, SessionErrorCode::ExpiredAuthToken, "{kind:?}");
        let after_exp = Duration::from_millis(at.saturating_sub(claims.exp * 1000));
        println!(
            "{kind:?}: token exp -> session closed with EXPIRED_AUTH_TOKEN: {:.3} s (allowance {EXP_LEEWAY_SECS} s)",
            after_exp.as_secs_f64()
        );
        assert!(
            after_exp >= Duration::from_millis(EXP_LEEWAY_SECS * 1000 - 50),
            "{kind:?}: closed {after_exp:?} after exp, before the {EXP_LEEWAY_SECS} s allowance"
        );
        assert!(
            after_exp <= Duration::from_secs(EXP_LEEWAY_SECS + 1),
            "{kind:?}: closed {after_exp:?} after exp; bound is the allowance + 1 s"
        );
        // Nothing arrives once the session is closed.
        let count = reader.count();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(reader.count(), count, "{kind:?}: objects after the close");
    }
    assert_eq!(relay.metrics.sessions_expired.get(), 3);
    assert_eq!(relay.metrics.tokens_refreshed.get(), 0);
}

/// A subscriber that sends a fresh token for the same subject before its first one runs out
/// keeps receiving, with no gap, well past the first token's end; so does one that refreshes
/// with a new request carrying the token (TRACK_STATUS). The session is then closed at the
/// fresh token's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshed_token_keeps_the_subscription_without_a_gap() {
    let (relay, _dir) = auth_relay().await;
    let _source = source(&relay).await;
    let first = viewer("viewer-2", "live", exp_in(2));
    let session = viewer_session(&relay, TransportKind::WebTransport, &first).await;
    let subscription = session.subscribe(subscribe_msg("live/a", "video")).await.unwrap();
    let reader = Reader::start(subscription);
    reader.grows("objects flow", 10).await;
    let start = Instant::now();
    // The same subject, a wider scope (all namespaces): a valid refresh.
    let fresh = viewer("viewer-2", "", now_ms() / 1000 + 3600);
    let lead = Duration::from_millis((first.exp + EXP_LEEWAY_SECS) * 1000 - now_ms());
    reader
        .refresh(&session, &jwt(&fresh))
        .await
        .expect("refresh accepted");
    println!(
        "refreshed {:.3} s before the first token's end",
        lead.as_secs_f64()
    );
    assert_eq!(relay.metrics.tokens_refreshed.get(), 1);

    // Past the first token's end (exp + allowance) by 2 s: still open, still receiving.
    let first_end = (first.exp + EXP_LEEWAY_SECS) * 1000;
    tokio::time::sleep(Duration::from_millis(first_end + 2000 - now_ms())).await;
    assert!(!session.is_closed(), "the session was closed despite the refresh");
    let gap = reader.longest_gap(start, Instant::now());
    println!(
        "longest gap between objects across the first token's end: {} ms (objects every 10 ms)",
        gap.as_millis()
    );
    assert!(
        gap < Duration::from_millis(500),
        "a {gap:?} gap across the refresh"
    );
    reader.grows("objects keep flowing", 10).await;

    // A new request carrying a fresh token for the same subject refreshes too.
    let second = viewer("viewer-3", "live", exp_in(2));
    let other = viewer_session(&relay, TransportKind::Quic, &second).await;
    let fresh = viewer("viewer-3", "live", now_ms() / 1000 + 3600);
    let status = TrackStatus {
        request_id: 0,
        track_namespace: TrackNamespace::from_path("live/a").unwrap(),
        track_name: "video".into(),
        parameters: Parameters {
            authorization_tokens: vec![token(&jwt(&fresh))],
            ..Default::default()
        },
    };
    other
        .track_status(status)
        .await
        .expect("TRACK_STATUS with a fresh token");
    assert_eq!(relay.metrics.tokens_refreshed.get(), 2);
    tokio::time::sleep(Duration::from_millis(
        (second.exp + EXP_LEEWAY_SECS) * 1000 + 1000 - now_ms(),
    ))
    .await;
    assert!(
        !other.is_closed(),
        "the TRACK_STATUS refresh did not extend the session"
    );
    assert_eq!(relay.metrics.sessions_expired.get(), 0);
}

/// Refreshes that must not extend anything: another subject, a token not signed with the
/// relay's key, a narrower namespace and fewer actions. Each REQUEST_UPDATE is refused with
/// UNAUTHORIZED and its subscription ends with UPDATE_FAILED; a new request carrying another
/// subject's token is refused too; the session still closes at the first token's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_for_another_subject_or_badly_signed_are_refused_and_extend_nothing() {
    let (relay, _dir) = auth_relay().await;
    let _source = source(&relay).await;
    let claims = viewer("viewer-4", "live", exp_in(3));
    let session = viewer_session(&relay, TransportKind::Quic, &claims).await;
    let later = now_ms() / 1000 + 3600;
    let refusals = [
        ("another subject", jwt(&viewer("someone-else", "live", later))),
        (
            "a bad signature",
            mint_hs256(&viewer("viewer-4", "live", later), OTHER_SECRET.as_bytes()).unwrap(),
        ),
        ("a narrower namespace", jwt(&viewer("viewer-4", "live/a", later))),
        (
            "fewer actions",
            jwt(&Claims {
                subscribe: false,
                publish: true,
                ..viewer("viewer-4", "live", later)
            }),
        ),
    ];
    for (i, (what, bad)) in refusals.iter().enumerate() {
        let track = format!("t{i}");
        let subscription = session.subscribe(subscribe_msg("live/a", &track)).await.unwrap();
        let mut reader = Reader::start(subscription);
        reader.grows("objects flow", 5).await;
        let answer = reader.refresh(&session, bad).await;
        assert_eq!(answer, Err(RequestErrorCode::Unauthorized), "refresh with {what}");
        assert_eq!(
            reader.ended().await,
            PublishDoneCode::UpdateFailed,
            "refresh with {what}"
        );
    }
    let status = TrackStatus {
        request_id: 0,
        track_namespace: TrackNamespace::from_path("live/a").unwrap(),
        track_name: "video".into(),
        parameters: Parameters {
            authorization_tokens: vec![token(&jwt(&viewer("someone-else", "live", later)))],
            ..Default::default()
        },
    };
    match session.track_status(status).await {
        Err(Error::Refused { code, .. }) => assert_eq!(code, RequestErrorCode::Unauthorized),
        other => panic!("TRACK_STATUS with another subject's token: {other:?}"),
    }
    assert_eq!(relay.metrics.tokens_refreshed.get(), 0);
    let (code, at) = closed(&session, 15).await;
    assert_eq!(code, SessionErrorCode::ExpiredAuthToken);
    let after_exp = at.saturating_sub(claims.exp * 1000);
    println!("after four refused refreshes, closed {after_exp} ms after exp");
    assert!(
        after_exp <= (EXP_LEEWAY_SECS + 1) * 1000,
        "closed {after_exp} ms after exp"
    );
}

/// A publisher refreshes with REQUEST_UPDATE on its PUBLISH_NAMESPACE (it has no
/// subscription to update): its session outlives the first token, and a viewer of its track
/// sees no gap across the first token's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_refreshes_on_its_publish_namespace() {
    let (relay, _dir) = auth_relay().await;
    let first = Claims {
        publish: true,
        subscribe: false,
        ..viewer("publisher-1", "live/a", exp_in(2))
    };
    let session = viewer_session(&relay, TransportKind::Quic, &first).await;
    let pattern = Pattern {
        groups: 100_000,
        objects: 10,
        interval: Duration::from_millis(10),
    };
    let (mut publication, serving) = publish(session.clone(), "live/a", pattern).await;
    let watcher = viewer_session(
        &relay,
        TransportKind::WebTransport,
        &viewer("viewer-5", "live", now_ms() / 1000 + 3600),
    )
    .await;
    let reader = Reader::start(watcher.subscribe(subscribe_msg("live/a", "video")).await.unwrap());
    reader.grows("objects flow", 10).await;
    let start = Instant::now();
    let fresh = Claims {
        exp: now_ms() / 1000 + 3600,
        ..first.clone()
    };
    publication
        .update(RequestUpdate {
            request_id: session.next_request_id(),
            parameters: Parameters {
                authorization_tokens: vec![token(&jwt(&fresh))],
                ..Default::default()
            },
        })
        .await
        .expect("the relay accepts the publisher's fresh token");
    assert_eq!(relay.metrics.tokens_refreshed.get(), 1);
    let first_end = (first.exp + EXP_LEEWAY_SECS) * 1000;
    tokio::time::sleep(Duration::from_millis(first_end + 1500 - now_ms())).await;
    assert!(
        !session.is_closed(),
        "the publisher's session was closed despite the refresh"
    );
    let gap = reader.longest_gap(start, Instant::now());
    println!(
        "publisher refresh: longest gap at the viewer across the first token's end: {} ms",
        gap.as_millis()
    );
    assert!(
        gap < Duration::from_millis(500),
        "a {gap:?} gap across the publisher's refresh"
    );
    assert_eq!(relay.metrics.sessions_expired.get(), 0);
    serving.abort();
}

/// `Node::end_sessions_of` ends every live session of one subject through the same path as
/// expiry (the moderation hook: a ban ends the banned viewer's subscriptions), with the code
/// given, and leaves other subjects' sessions open. Relay and clients over in-memory pairs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_sessions_of_ends_one_subjects_sessions_only() {
    use banyan_moq::session::{PendingSession, SessionConfig};
    use banyan_moq::Version;
    use banyan_relay::config::RelayConfig;
    use banyan_relay::relay::Node;
    use banyan_tests::mem;

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("jwt.key");
    std::fs::write(&key, SECRET).unwrap();
    let config = RelayConfig::load_from(
        ["banyan-relay", "--dev-cert", "--auth-key", key.to_str().unwrap()],
        |_| None,
    )
    .unwrap();
    let node = Node::new(&config, None).unwrap();
    let link = mem::Config::symmetric(Duration::from_millis(1), 0.0);
    let url = url::Url::parse("moqt://relay.test/").unwrap();
    let mut sessions = Vec::new();
    for sub in ["viewer-6", "viewer-6", "viewer-7"] {
        let (client, server) = mem::pair(&link);
        let accepting = PendingSession::accept_transport(
            server,
            link.kind,
            Version::default(),
            None,
            node.session_config().clone(),
        );
        let relay = node.clone();
        tokio::spawn(async move {
            if let Ok(pending) = accepting.await {
                relay.serve(pending).await;
            }
        });
        let options = ClientOptions {
            tokens: vec![token(&jwt(&viewer(sub, "live", now_ms() / 1000 + 3600)))],
        };
        let (session, driver) = Session::connect_transport(
            client,
            link.kind,
            Version::default(),
            &url,
            options,
            SessionConfig::default(),
        )
        .await
        .unwrap();
        tokio::spawn(driver.run());
        sessions.push(session);
    }
    // The relay registers a session once it has accepted it.
    let ended = within("the sessions are live at the relay", 5, async {
        loop {
            let n = node.end_sessions_of("nobody", SessionErrorCode::Unauthorized, "test");
            assert_eq!(n, 0);
            if node.metrics().sessions_accepted.get() == 3 {
                // Counted just before it is registered (same task, no await between).
                tokio::time::sleep(Duration::from_millis(20)).await;
                break node.end_sessions_of("viewer-6", SessionErrorCode::Unauthorized, "banned");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(ended, 2);
    for session in &sessions[..2] {
        let (code, _) = closed(session, 5).await;
        assert_eq!(code, SessionErrorCode::Unauthorized);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!sessions[2].is_closed(), "another subject's session stays open");
}
