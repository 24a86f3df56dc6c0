//! Banyan's client for the MoQ interop runner: its fourteen test cases, run with Banyan's own
//! MoQT stack (`banyan-moq`) against any draft-18 relay, over raw QUIC (`moqt://`) or
//! WebTransport (`https://`), reported as TAP version 14.
//!
//! Module map:
//! - this file: [`Config`], the [`Case`] list, [`run`] / [`run_case`] and their [`Outcome`]s,
//!   and [`Failure`], why a case failed;
//! - `cases`: one function per case, in the runner's order;
//! - `roles`: the publisher and subscriber behaviour the cases share (a live clock track that
//!   answers SUBSCRIBE, PUBLISH and FETCH; the request loops of each session);
//! - [`tap`]: rendering and parsing TAP 14.
//!
//! The cases mean what the runner's reference client (aiomoqt 0.13's `moq-interop-client`)
//! means by them, read strictly against draft-18: e.g. `subscribe-error` wants
//! `REQUEST_ERROR DOES_NOT_EXIST` at once (a SUBSCRIBE without RENDEZVOUS_TIMEOUT must not
//! wait, §10.2.6), not any error eventually. Each case's doc comment says what it sends and
//! what it asserts; [`Case::describe`] says it in one line.
//!
//! Every step is bounded by a timeout and every failure is a [`Failure`] with the step and the
//! reason; nothing received from the relay can panic the client.

mod cases;
mod roles;
pub mod tap;

use std::fmt;
use std::time::{Duration, Instant};

use banyan_certs::{client_config, ServerVerification};
use banyan_moq::coding::{SessionErrorCode, TrackNamespace};
use banyan_moq::session::{Client, ClientOptions, Session, SessionConfig, TransportConfig, TransportKind};
use url::Url;

/// The namespace the runner's contract names; each run and case adds fields after it.
pub const NAMESPACE: &str = "moq-test/interop";
/// The track the runner's contract names.
pub const TRACK: &str = "test-track";

/// What to run against.
#[derive(Clone, Debug)]
pub struct Config {
    /// The relay: `moqt://host:port/path` (raw QUIC) or `https://host:port/path` (WebTransport).
    pub relay: Url,
    /// Accept any server certificate (the runner's `TLS_DISABLE_VERIFY`).
    pub tls_disable_verify: bool,
    /// The namespace the cases publish under, before the run id (default [`NAMESPACE`]).
    pub namespace: String,
    /// The track name the cases publish (default [`TRACK`]).
    pub track: String,
    /// A namespace field unique to this run, so reruns against a long-lived relay never meet
    /// the state an earlier run left there. [`Config::new`] makes one up.
    pub run_id: String,
    /// How long QUIC, WebTransport CONNECT and SETUP may take together.
    pub setup_timeout: Duration,
}

impl Config {
    /// Defaults for `relay`: verification on, the contract's names, a fresh run id.
    pub fn new(relay: Url) -> Self {
        Self {
            relay,
            tls_disable_verify: false,
            namespace: NAMESPACE.to_string(),
            track: TRACK.to_string(),
            run_id: run_id(),
            setup_timeout: Duration::from_secs(5),
        }
    }

    /// The transport the URL's scheme selects, or why it selects none.
    pub fn transport(&self) -> Result<TransportKind, Failure> {
        match self.relay.scheme() {
            "moqt" => Ok(TransportKind::Quic),
            "https" => Ok(TransportKind::WebTransport),
            other => Err(Failure::Config(format!(
                "relay URL {} has scheme {other:?}: use moqt:// (raw QUIC) or https:// (WebTransport)",
                self.relay
            ))),
        }
    }

    /// `<namespace>/<run id>/<case>`: the namespace a case publishes under.
    fn case_namespace(&self, case: Case) -> Result<TrackNamespace, Failure> {
        namespace(&format!("{}/{}/{}", self.namespace, self.run_id, case.name()))
    }
}

/// A run id: eight hex digits, from the clock and the process id.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 32) ^ rand::random::<u64>();
    format!("{:08x}", mixed as u32)
}

/// A namespace from `/`-separated text, as a [`Failure`] when it breaks the spec's limits.
fn namespace(path: &str) -> Result<TrackNamespace, Failure> {
    TrackNamespace::from_path(path).map_err(|e| Failure::Config(format!("namespace {path:?}: {e}")))
}

/// The runner's cases, in its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Case {
    /// Connect, exchange SETUP, close.
    SetupOnly,
    /// PUBLISH_NAMESPACE, then its REQUEST_OK.
    AnnounceOnly,
    /// PUBLISH_NAMESPACE, REQUEST_OK, then withdraw it (draft-18 cancels the request stream).
    PublishNamespaceDone,
    /// SUBSCRIBE to a track nobody publishes: REQUEST_ERROR DOES_NOT_EXIST at once.
    SubscribeError,
    /// The same with RENDEZVOUS_TIMEOUT 500 ms: REQUEST_ERROR TIMEOUT within 2 s.
    RendezvousTimeout,
    /// A publisher announces, a second session subscribes: SUBSCRIBE_OK.
    AnnounceSubscribe,
    /// SUBSCRIBE before the publisher announces: SUBSCRIBE_OK or a deliberate refusal.
    SubscribeBeforeAnnounce,
    /// Three groups of five objects through the relay, checked object by object.
    DataSubgroupBasic,
    /// SUBSCRIBE_NAMESPACE, NAMESPACE, SUBSCRIBE_TRACKS, PUBLISH: the track is discovered.
    NamespaceDiscovery,
    /// A standalone FETCH of a group the relay has forwarded.
    Fetch,
    /// SUBSCRIBE plus a relative joining FETCH one group back.
    Join,
    /// SUBSCRIBE_NAMESPACE hears NAMESPACE, then NAMESPACE_DONE when the namespace is withdrawn.
    SubscribeNamespaceLifecycle,
    /// PUBLISH a track nobody subscribes to: PUBLISH_OK, then PUBLISH_DONE.
    PublishTrackOnly,
    /// PUBLISH a track, then a second session SUBSCRIBEs and receives its objects.
    PublishTrackSubscribe,
}

impl Case {
    /// Every case, in the runner's order.
    pub const ALL: [Case; 14] = [
        Case::SetupOnly,
        Case::AnnounceOnly,
        Case::PublishNamespaceDone,
        Case::SubscribeError,
        Case::RendezvousTimeout,
        Case::AnnounceSubscribe,
        Case::SubscribeBeforeAnnounce,
        Case::DataSubgroupBasic,
        Case::NamespaceDiscovery,
        Case::Fetch,
        Case::Join,
        Case::SubscribeNamespaceLifecycle,
        Case::PublishTrackOnly,
        Case::PublishTrackSubscribe,
    ];

    /// The runner's name for the case (`TESTCASE`).
    pub const fn name(self) -> &'static str {
        match self {
            Case::SetupOnly => "setup-only",
            Case::AnnounceOnly => "announce-only",
            Case::PublishNamespaceDone => "publish-namespace-done",
            Case::SubscribeError => "subscribe-error",
            Case::RendezvousTimeout => "rendezvous-timeout",
            Case::AnnounceSubscribe => "announce-subscribe",
            Case::SubscribeBeforeAnnounce => "subscribe-before-announce",
            Case::DataSubgroupBasic => "data-subgroup-basic",
            Case::NamespaceDiscovery => "namespace-discovery",
            Case::Fetch => "fetch",
            Case::Join => "join",
            Case::SubscribeNamespaceLifecycle => "subscribe-namespace-lifecycle",
            Case::PublishTrackOnly => "publish-track-only",
            Case::PublishTrackSubscribe => "publish-track-subscribe",
        }
    }

    /// The case called `name`.
    pub fn from_name(name: &str) -> Option<Case> {
        Case::ALL.into_iter().find(|c| c.name() == name)
    }

    /// What the case sends and what it asserts, in one line.
    pub const fn describe(self) -> &'static str {
        match self {
            Case::SetupOnly => "connect and exchange SETUP (draft-18), then close",
            Case::AnnounceOnly => "PUBLISH_NAMESPACE answered by REQUEST_OK",
            Case::PublishNamespaceDone => {
                "PUBLISH_NAMESPACE, REQUEST_OK, withdraw it; the session keeps working"
            }
            Case::SubscribeError => {
                "SUBSCRIBE for an unpublished track: REQUEST_ERROR DOES_NOT_EXIST within 2 s"
            }
            Case::RendezvousTimeout => {
                "the same with RENDEZVOUS_TIMEOUT=500 ms: REQUEST_ERROR TIMEOUT within 2 s"
            }
            Case::AnnounceSubscribe => "publisher announces, second session subscribes: SUBSCRIBE_OK",
            Case::SubscribeBeforeAnnounce => {
                "SUBSCRIBE, publisher announces 500 ms later: SUBSCRIBE_OK or a deliberate REQUEST_ERROR"
            }
            Case::DataSubgroupBasic => {
                "3 groups x 5 objects relayed, checked object by object, then PUBLISH_DONE"
            }
            Case::NamespaceDiscovery => {
                "SUBSCRIBE_NAMESPACE, NAMESPACE, SUBSCRIBE_TRACKS: PUBLISH names the track"
            }
            Case::Fetch => "standalone FETCH of a group the relay forwarded: the whole group",
            Case::Join => "SUBSCRIBE + relative joining FETCH (1 group): the objects before the live edge",
            Case::SubscribeNamespaceLifecycle => {
                "SUBSCRIBE_NAMESPACE hears NAMESPACE, then NAMESPACE_DONE on withdrawal"
            }
            Case::PublishTrackOnly => "PUBLISH answered by PUBLISH_OK, then PUBLISH_DONE",
            Case::PublishTrackSubscribe => "PUBLISH, then a subscriber receives 5 of its objects",
        }
    }

    /// The most a case may take in all (each step has its own, shorter bound).
    pub const fn deadline(self) -> Duration {
        match self {
            Case::SetupOnly
            | Case::AnnounceOnly
            | Case::PublishNamespaceDone
            | Case::SubscribeError
            | Case::RendezvousTimeout
            | Case::PublishTrackOnly => Duration::from_secs(10),
            _ => Duration::from_secs(20),
        }
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a case failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// The configuration cannot work (bad URL, TLS setup).
    #[error("{0}")]
    Config(String),
    /// A session call failed: connecting, a request refused, the session closed.
    #[error("{step}: {source}")]
    Session {
        /// What the case was doing.
        step: String,
        /// What went wrong.
        source: banyan_moq::session::Error,
    },
    /// A step did not complete in time.
    #[error("{step}: nothing within {within:?}")]
    TimedOut {
        /// What the case was waiting for.
        step: String,
        /// How long it waited.
        within: Duration,
    },
    /// The relay answered, but not as draft-18 says it should.
    #[error("{0}")]
    Check(String),
}

/// One case's result.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The case.
    pub case: Case,
    /// The transport it ran over.
    pub transport: Option<TransportKind>,
    /// Whether it passed.
    pub passed: bool,
    /// How long it took.
    pub duration: Duration,
    /// What happened: on a pass what was observed, on a failure why.
    pub message: String,
}

/// Run `cases` one after another against `config.relay`.
pub async fn run(config: &Config, cases: &[Case]) -> Vec<Outcome> {
    let client = build_client(config);
    let mut outcomes = Vec::with_capacity(cases.len());
    for &case in cases {
        outcomes.push(run_with(config, client.as_ref(), case).await);
    }
    if let Ok(client) = client {
        client.close();
    }
    outcomes
}

/// Run one case against `config.relay`.
pub async fn run_case(config: &Config, case: Case) -> Outcome {
    run(config, &[case]).await.remove(0)
}

/// The TAP 14 report of `outcomes`.
pub fn report(outcomes: &[Outcome]) -> String {
    tap::render(
        outcomes
            .iter()
            .map(|o| (o.case.name(), o.passed, o.duration, o.message.as_str())),
    )
}

async fn run_with(config: &Config, client: Result<&Client, &Failure>, case: Case) -> Outcome {
    let started = Instant::now();
    let transport = config.transport().ok();
    let result = match client {
        Ok(client) => {
            let ctx = cases::Ctx {
                config,
                client,
                namespace: config.case_namespace(case),
            };
            match tokio::time::timeout(case.deadline(), cases::run(&ctx, case)).await {
                Ok(result) => result,
                Err(_) => Err(Failure::TimedOut {
                    step: format!("the whole of {case}"),
                    within: case.deadline(),
                }),
            }
        }
        Err(failure) => Err(failure.clone()),
    };
    let (passed, message) = match result {
        Ok(observed) => (true, observed),
        Err(failure) => (false, failure.to_string()),
    };
    Outcome {
        case,
        transport,
        passed,
        duration: started.elapsed(),
        message,
    }
}

/// The MoQT client endpoint every session of a run shares.
fn build_client(config: &Config) -> Result<Client, Failure> {
    config.transport()?;
    let verification = if config.tls_disable_verify {
        ServerVerification::InsecureSkipVerify
    } else {
        ServerVerification::SystemRoots
    };
    let tls = client_config(&verification, &[])
        .map_err(|e| Failure::Config(format!("building the TLS client configuration: {e}")))?;
    let session = SessionConfig {
        setup_timeout: config.setup_timeout,
        request_timeout: Duration::from_secs(10),
        implementation: Some(format!("banyan-interop/{}", env!("CARGO_PKG_VERSION"))),
        ..Default::default()
    };
    Client::new(tls, &TransportConfig::default(), session)
        .map_err(|e| Failure::Config(format!("opening the client socket: {e}")))
}

/// One session of a case; closed (NO_ERROR) when dropped.
#[derive(Debug)]
pub(crate) struct Conn {
    pub session: Session,
    driver: tokio::task::JoinHandle<()>,
}

impl Conn {
    /// Connect to the relay and complete SETUP (bounded by the setup timeout, in the client).
    pub async fn open(ctx: &cases::Ctx<'_>, role: &str) -> Result<Conn, Failure> {
        let connect = ctx.client.connect(&ctx.config.relay, ClientOptions::default());
        let bound = ctx.config.setup_timeout + Duration::from_secs(1);
        let (session, driver) = match tokio::time::timeout(bound, connect).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(source)) => {
                return Err(Failure::Session {
                    step: format!("{role} SETUP with {}", ctx.config.relay),
                    source,
                })
            }
            Err(_) => {
                return Err(Failure::TimedOut {
                    step: format!("{role} SETUP with {}", ctx.config.relay),
                    within: bound,
                })
            }
        };
        let driver = tokio::spawn(async move {
            let _ = driver.run().await;
        });
        Ok(Conn { session, driver })
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.session.close(SessionErrorCode::NoError, "interop case done");
        self.driver.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_are_the_runners_and_round_trip() {
        let names: Vec<_> = Case::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), 14);
        for case in Case::ALL {
            assert_eq!(Case::from_name(case.name()), Some(case));
        }
        assert_eq!(Case::from_name("no-such-case"), None);
        assert!(names.contains(&"rendezvous-timeout") && names.contains(&"publish-track-subscribe"));
    }

    #[test]
    fn transport_follows_the_scheme() {
        let config = |url: &str| Config::new(url.parse().unwrap());
        assert_eq!(config("moqt://h:1/").transport().unwrap(), TransportKind::Quic);
        assert_eq!(
            config("https://h:1/").transport().unwrap(),
            TransportKind::WebTransport
        );
        let err = config("http://h:1/").transport().unwrap_err().to_string();
        assert!(err.contains("moqt://") && err.contains("http"), "{err}");
    }

    #[tokio::test]
    async fn a_bad_scheme_fails_every_case_with_the_reason() {
        let config = Config::new("quic://127.0.0.1:1/".parse().unwrap());
        let outcomes = run(&config, &[Case::SetupOnly, Case::Fetch]).await;
        assert_eq!(outcomes.len(), 2);
        for o in &outcomes {
            assert!(!o.passed);
            assert!(o.message.contains("scheme \"quic\""), "{}", o.message);
        }
    }

    #[tokio::test]
    async fn an_unreachable_relay_fails_the_case_with_the_reason() {
        // A UDP port nobody answers on: bind one, note it, drop it.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut config = Config::new(format!("moqt://127.0.0.1:{port}/").parse().unwrap());
        config.tls_disable_verify = true;
        config.setup_timeout = Duration::from_millis(500);
        let outcome = run_case(&config, Case::SetupOnly).await;
        assert!(!outcome.passed);
        assert!(
            outcome.message.starts_with("client SETUP with moqt://127.0.0.1:"),
            "{}",
            outcome.message
        );
        let tap = report(&[outcome]);
        assert!(tap.contains("not ok 1 - setup-only"), "{tap}");
    }
}
