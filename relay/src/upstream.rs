//! Parents: where this relay gets the namespaces nobody publishes to it directly.
//!
//! A relay that lacks a namespace asks its parent, never the origin directly, and holds one
//! upstream copy for all its subscribers (the replication tree). This module answers "which
//! parent" and "over which session":
//!
//! - A [`Resolver`] names the parents of a namespace, in order of preference:
//!   [`StaticResolver`] (`--upstream`, repeatable), [`HttpResolver`] (`--control`: asks the
//!   control plane `GET {control}/v1/route/{namespace}?relay={relay_id}`), and [`Resolvers`],
//!   which asks several in turn (control first, static list as the fallback).
//! - [`Parents`] keeps one MoQT session per parent, shared by every track and request that goes
//!   there, and sends each request with the relay path ([`HopPath`]) so loops and over-deep trees
//!   are refused (see [`banyan_moq::message::hop_path`]). A parent whose session dies, whose
//!   connection fails, or which sends GOAWAY is skipped for [`ParentsConfig::retry_after`], so
//!   the next request (a failover) goes straight to the next parent instead of waiting on a
//!   dead one.
//!
//! - A [`Dial`] opens a session to a parent's URL: the QUIC [`Client`] for real relays, or
//!   anything else (an in-memory transport in tests).
//!
//! Parent sessions use a short QUIC idle timeout with frequent keep-alives (`--upstream-timeout`):
//! a parent that dies without a word is noticed within that time, which bounds failover.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use banyan_control::api::{route_path, RouteResponse};
use banyan_moq::coding::{RequestErrorCode, SessionErrorCode, TrackNamespace};
use banyan_moq::message::HopPath;
use banyan_moq::session::{Client, ClientOptions, Error as SessionError, Session, SessionDriver};
use parking_lot::Mutex;
use tracing::Instrument;
use url::Url;

use crate::metrics::Metrics;
use crate::tasks::Tasks;

/// The parents and how to reach them (part of [`RelayConfig`](crate::config::RelayConfig)).
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct UpstreamSettings {
    /// A parent relay to subscribe to for namespaces nobody publishes here (the replication
    /// tree): moqt://host[:port][/path] (raw QUIC) or https://host[:port]/path (WebTransport);
    /// the port defaults to 443. Repeatable, most preferred first; later ones are failovers.
    /// With --control, these are used when the control plane names no parent or cannot be reached.
    // Listed in --help before the control plane's flags, as it always was.
    #[arg(long, value_name = "URL", value_parser = crate::config::parse_upstream, display_order = 5)]
    #[serde(with = "crate::config::serde_urls", default)]
    pub upstream: Vec<Url>,

    /// Verify parent relays against the CA certificates in this PEM file (instead of the
    /// system roots).
    #[arg(long, value_name = "PEM")]
    pub upstream_ca: Option<std::path::PathBuf>,

    /// Accept any certificate from parent relays (still checking the handshake signature).
    /// For development and loopback tests with dev certificates only.
    #[arg(long, value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub upstream_insecure: bool,

    /// A JWT this relay presents to its parents in SETUP, when they require auth.
    #[arg(long, value_name = "JWT")]
    pub upstream_token: Option<String>,

    /// How long a parent may be silent (QUIC keep-alives included) before it is taken for dead
    /// and its tracks fail over to another parent. Also bounds connecting to a parent (3x).
    #[arg(long, value_name = "DURATION", default_value = "750ms", value_parser = humantime::parse_duration)]
    #[serde(with = "banyan_control::layered::serde_duration")]
    pub upstream_timeout: Duration,

    /// Most relays a request may pass through, this one included (edge = 1). A request relayed
    /// through more is refused, as is one whose path already contains this relay (a loop).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub max_depth: usize,
}

/// What [`Resolver::resolve`] returns.
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<Url>, ResolveError>> + Send + 'a>>;

/// Names the parents of a namespace, most preferred first. An empty list means "no parent":
/// the namespace can only be published here.
pub trait Resolver: Send + Sync + std::fmt::Debug {
    /// The parents to try for `namespace`.
    fn resolve<'a>(&'a self, namespace: &'a TrackNamespace) -> ResolveFuture<'a>;
}

/// Why no parent list could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The control plane could not be asked or gave an unusable answer.
    #[error("control plane {url}: {reason}")]
    Control {
        /// The route URL asked.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

/// The parents from `--upstream`, the same for every namespace.
#[derive(Debug, Clone)]
pub struct StaticResolver {
    parents: Vec<Url>,
}

impl StaticResolver {
    /// Parents in order of preference.
    pub fn new(parents: Vec<Url>) -> Self {
        Self { parents }
    }
}

impl Resolver for StaticResolver {
    fn resolve<'a>(&'a self, _namespace: &'a TrackNamespace) -> ResolveFuture<'a> {
        Box::pin(std::future::ready(Ok(self.parents.clone())))
    }
}

/// Asks the control plane: `GET {control}/v1/route/{namespace}?relay={relay_id}`, answered with
/// `{"upstream": [URL, ...]}` (the contract in [`banyan_control::api`]: the namespace is its
/// `/`-separated path, each field percent-encoded). A 404 means "no parent".
#[derive(Debug, Clone)]
pub struct HttpResolver {
    control: Url,
    relay_id: String,
    client: reqwest::Client,
}

impl HttpResolver {
    /// A resolver asking the control plane at `control` (an `http://` base URL) on behalf of
    /// `relay_id`, giving up on an answer after `timeout`.
    pub fn new(control: Url, relay_id: String, timeout: Duration) -> Result<Self, ResolveError> {
        let client =
            reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .map_err(|e| ResolveError::Control {
                    url: control.to_string(),
                    reason: format!("building the HTTP client: {e}"),
                })?;
        Ok(Self {
            control,
            relay_id,
            client,
        })
    }

    /// The route URL for `namespace`.
    pub fn route_url(&self, namespace: &TrackNamespace) -> Result<Url, ResolveError> {
        let base = self.control.as_str().trim_end_matches('/');
        let text = format!("{base}{}", route_path(&namespace.to_path(), &self.relay_id));
        Url::parse(&text).map_err(|e| ResolveError::Control {
            url: text.clone(),
            reason: format!("not a URL: {e}"),
        })
    }

    async fn ask(&self, namespace: &TrackNamespace) -> Result<Vec<Url>, ResolveError> {
        let url = self.route_url(namespace)?;
        let failed = |reason: String| ResolveError::Control {
            url: url.to_string(),
            reason,
        };
        let response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status())));
        }
        let route: RouteResponse = response
            .json()
            .await
            .map_err(|e| failed(format!("unreadable route: {e}")))?;
        route
            .upstream
            .iter()
            .map(|u| crate::config::parse_upstream(u).map_err(&failed))
            .collect()
    }
}

impl Resolver for HttpResolver {
    fn resolve<'a>(&'a self, namespace: &'a TrackNamespace) -> ResolveFuture<'a> {
        Box::pin(self.ask(namespace))
    }
}

/// Several resolvers asked in turn: the first non-empty answer wins. Errors fall through to the
/// next resolver; if none answers, the last error is returned.
#[derive(Debug, Clone)]
pub struct Resolvers(pub Vec<Arc<dyn Resolver>>);

impl Resolver for Resolvers {
    fn resolve<'a>(&'a self, namespace: &'a TrackNamespace) -> ResolveFuture<'a> {
        Box::pin(async move {
            let mut error = None;
            for resolver in &self.0 {
                match resolver.resolve(namespace).await {
                    Ok(parents) if !parents.is_empty() => return Ok(parents),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(%namespace, error = %e, "route lookup failed");
                        error = Some(e);
                    }
                }
            }
            error.map_or(Ok(Vec::new()), Err)
        })
    }
}

/// What [`Dial::dial`] returns: the session and its driver (which the caller runs).
pub type DialFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(Session, SessionDriver), SessionError>> + Send + 'a>>;

/// Opens a MoQT session to a parent relay's URL and completes SETUP.
pub trait Dial: Send + Sync + std::fmt::Debug {
    /// A session to `url`, presenting `options` (the relay's token) in SETUP.
    fn dial<'a>(&'a self, url: &'a Url, options: ClientOptions) -> DialFuture<'a>;
}

/// Dials over QUIC (`moqt://`) or WebTransport (`https://`).
impl Dial for Client {
    fn dial<'a>(&'a self, url: &'a Url, options: ClientOptions) -> DialFuture<'a> {
        Box::pin(self.connect(url, options))
    }
}

/// Tuning for parent links.
#[derive(Clone, Debug)]
pub struct ParentsConfig {
    /// This relay's Hop ID (see [`hop_id`]).
    pub hop_id: u64,
    /// A token presented to parents in SETUP (they may require auth like any client).
    pub token: Option<String>,
    /// How long a parent that failed (connect error, died, GOAWAY) is skipped.
    pub retry_after: Duration,
}

/// Why a request could not be sent upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No parent is configured or the control plane knows none for this namespace.
    #[error("no parent relay for this namespace")]
    NoParent,
    /// The route lookup failed.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// Every parent is unreachable (or skipped after a recent failure).
    #[error("no parent reachable: {0}")]
    Unreachable(String),
    /// Forwarding would loop: the parent is this relay or already on the request's path.
    #[error("relay loop: parent {parent} is already on the path {path}")]
    Loop {
        /// The parent's URL.
        parent: String,
        /// The path the request had travelled.
        path: String,
    },
    /// The parent refused the request.
    #[error("parent refused: {reason} (code {code:?})")]
    Refused {
        /// Its REQUEST_ERROR code, passed on downstream.
        code: RequestErrorCode,
        /// Its reason.
        reason: String,
    },
}

impl UpstreamError {
    /// The REQUEST_ERROR code to send downstream.
    pub fn request_code(&self) -> RequestErrorCode {
        match self {
            UpstreamError::NoParent | UpstreamError::Loop { .. } => RequestErrorCode::DoesNotExist,
            UpstreamError::Refused { code, .. } => *code,
            UpstreamError::Resolve(_) | UpstreamError::Unreachable(_) => RequestErrorCode::InternalError,
        }
    }

    /// The reason phrase to send downstream (the parent's own reason for a refusal).
    pub fn reason(&self) -> String {
        match self {
            UpstreamError::Refused { reason, .. } => reason.clone(),
            other => other.to_string(),
        }
    }

    /// Whether the track cannot be had from the parents now but might be later: no parent
    /// knows the namespace, or they answered DOES_NOT_EXIST for a reason other than the
    /// request's relay path (a loop or a tree too deep, which waiting cannot change).
    pub fn not_published_yet(&self) -> bool {
        match self {
            UpstreamError::NoParent => true,
            UpstreamError::Refused {
                code: RequestErrorCode::DoesNotExist,
                reason,
            } => !is_path_refusal(reason),
            _ => false,
        }
    }
}

/// The reason phrases Banyan relays give when a request's relay path is refused start with
/// one of these (and are passed down the tree unchanged).
pub const PATH_REFUSALS: [&str; 2] = ["relay loop", "relay tree too deep"];

/// Whether a refusal's reason says the request's relay path was refused (see
/// [`PATH_REFUSALS`]).
pub fn is_path_refusal(reason: &str) -> bool {
    PATH_REFUSALS.iter().any(|p| reason.starts_with(p))
}

/// A parent a request went to: its URL and the session it travelled on (to watch for GOAWAY
/// and failure).
#[derive(Clone, Debug)]
pub struct Parent {
    /// Its URL.
    pub url: Url,
    /// The session to it.
    pub session: Session,
}

#[derive(Debug, Default)]
struct Link {
    session: Option<Session>,
    /// Skip this parent until then (it failed recently).
    down_until: Option<Instant>,
}

/// One session per parent, shared by everything this relay asks upstream.
#[derive(Debug)]
pub struct Parents {
    dial: Arc<dyn Dial>,
    resolver: Arc<dyn Resolver>,
    config: ParentsConfig,
    links: Mutex<HashMap<Url, Arc<tokio::sync::Mutex<Link>>>>,
    metrics: Arc<Metrics>,
    /// The parent sessions' drivers and request refusers, and the delayed close of a session
    /// going away: aborted when the parents are dropped.
    tasks: Tasks,
}

impl Parents {
    /// Parent links dialed with `dial` (which decides transport, TLS verification and
    /// timeouts), to the parents `resolver` names.
    pub fn new(
        dial: Arc<dyn Dial>,
        resolver: Arc<dyn Resolver>,
        config: ParentsConfig,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            dial,
            resolver,
            config,
            links: Mutex::new(HashMap::new()),
            metrics,
            tasks: Tasks::default(),
        })
    }

    /// This relay's Hop ID.
    pub fn hop_id(&self) -> u64 {
        self.config.hop_id
    }

    /// Send a request for `namespace` to the first usable parent. `attempt` sends it on the
    /// given session with the HOP_PATH to put in its parameters (`None` when the parent did
    /// not declare the extension). DOES_NOT_EXIST moves on to the next parent (a publisher
    /// that reconnected to another origin is found there); any other refusal ends the search
    /// (another parent would say the same); a failed session moves on to the next parent.
    pub async fn request<T, F, Fut>(
        &self,
        namespace: &TrackNamespace,
        path: &HopPath,
        mut attempt: F,
    ) -> Result<(T, Parent), UpstreamError>
    where
        F: FnMut(Session, Option<HopPath>) -> Fut,
        Fut: Future<Output = Result<T, SessionError>>,
    {
        let urls = self.resolver.resolve(namespace).await?;
        if urls.is_empty() {
            return Err(UpstreamError::NoParent);
        }
        let mut last = None;
        for url in urls {
            let session = match self.session(&url).await {
                Ok(session) => session,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let peer_hop = session.peer_setup().hop_id;
            if let Some(peer) = peer_hop {
                if peer == self.config.hop_id || path.contains(peer) {
                    last = Some(UpstreamError::Loop {
                        parent: url.to_string(),
                        path: path.to_string(),
                    });
                    continue;
                }
            }
            let hop_path = match peer_hop {
                Some(_) => Some(path.with(self.config.hop_id).ok_or_else(|| UpstreamError::Loop {
                    parent: url.to_string(),
                    path: format!("{path} (too long to extend)"),
                })?),
                None => None,
            };
            match attempt(session.clone(), hop_path).await {
                Ok(value) => return Ok((value, Parent { url, session })),
                Err(SessionError::Refused {
                    code: code @ RequestErrorCode::DoesNotExist,
                    reason,
                    ..
                }) => last = Some(UpstreamError::Refused { code, reason }),
                Err(SessionError::Refused { code, reason, .. }) => {
                    return Err(UpstreamError::Refused { code, reason })
                }
                Err(e) => {
                    tracing::info!(parent = %url, error = %e, "request to parent failed");
                    self.failed(&Parent {
                        url: url.clone(),
                        session,
                    });
                    last = Some(UpstreamError::Unreachable(format!("{url}: {e}")));
                }
            }
        }
        Err(last.unwrap_or(UpstreamError::NoParent))
    }

    /// Report that a request or subscription on `parent` failed. If its session is closed or
    /// going away, the parent is skipped for a while and the next request opens a new session
    /// (to it, after the pause, or to another parent).
    pub fn failed(&self, parent: &Parent) {
        let link = self.link(&parent.url);
        // Only a brief lock, never held across an await elsewhere for long; try and move on
        // if a connect is in progress (that connect decides the link's fate).
        let Ok(mut link) = link.try_lock() else {
            return;
        };
        // A session that is still healthy (only one request failed, or a new session already
        // replaced the failed one) stays in use.
        let broken = link
            .session
            .as_ref()
            .is_none_or(|s| s.is_closed() || s.is_going_away());
        if broken && (parent.session.is_closed() || parent.session.is_going_away()) {
            link.session = None;
            link.down_until = Some(Instant::now() + self.config.retry_after);
        }
    }

    fn link(&self, url: &Url) -> Arc<tokio::sync::Mutex<Link>> {
        self.links.lock().entry(url.clone()).or_default().clone()
    }

    /// The session to `url`: the live one, or a new one unless the parent failed recently.
    async fn session(&self, url: &Url) -> Result<Session, UpstreamError> {
        let link = self.link(url);
        let mut link = link.lock().await;
        if let Some(session) = link.session.clone() {
            if !session.is_closed() && !session.is_going_away() {
                return Ok(session);
            }
            link.session = None;
            if session.is_going_away() {
                // Let subscriptions that are moving away finish their groups, then leave so the
                // parent can finish its drain.
                self.tasks.spawn(async move {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    session.close(SessionErrorCode::NoError, "moved to another parent");
                });
            }
            link.down_until = Some(Instant::now() + self.config.retry_after);
        }
        if link.down_until.is_some_and(|until| Instant::now() < until) {
            return Err(UpstreamError::Unreachable(format!(
                "{url}: failed recently; retrying in at most {:?}",
                self.config.retry_after
            )));
        }
        let options = ClientOptions::with_token(self.config.token.as_deref());
        match self.dial.dial(url, options).await {
            Ok((session, driver)) => {
                self.metrics.parent_connects.inc();
                tracing::info!(parent = %url, "connected to parent");
                let span = tracing::info_span!("parent", %url);
                self.tasks.spawn(
                    async move {
                        let _ = driver.run().await;
                    }
                    .instrument(span),
                );
                self.tasks.spawn(refuse_requests(session.clone()));
                link.session = Some(session.clone());
                link.down_until = None;
                Ok(session)
            }
            Err(e) => {
                self.metrics.parent_connect_failures.inc();
                tracing::warn!(parent = %url, error = %e, "cannot connect to parent");
                link.down_until = Some(Instant::now() + self.config.retry_after);
                Err(UpstreamError::Unreachable(format!("{url}: {e}")))
            }
        }
    }
}

/// A parent has no business asking its child for anything on this session.
async fn refuse_requests(session: Session) {
    while let Some(request) = session.accept().await {
        let _ = request
            .reject(
                RequestErrorCode::NotSupported,
                "a child relay serves no requests on its parent link",
            )
            .await;
    }
}

/// The Hop ID of the relay named `relay_id`: the first 62 bits of its SHA-256, so the same id
/// always gives the same Hop ID and distinct ids practically never collide.
pub fn hop_id(relay_id: &str) -> u64 {
    use aws_lc_rs::digest::{digest, SHA256};
    let hash = digest(&SHA256, relay_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(hash.as_ref().get(..8).unwrap_or(&[0; 8]));
    u64::from_be_bytes(first) >> 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_publisher_is_worth_waiting_for() {
        let refused = |code, reason: &str| UpstreamError::Refused {
            code,
            reason: reason.into(),
        };
        assert!(UpstreamError::NoParent.not_published_yet());
        assert!(refused(RequestErrorCode::DoesNotExist, "no publisher for namespace a").not_published_yet());
        // A refused relay path stays refused, however long one waits.
        for reason in [
            "relay loop: this relay (1f) is already on the request's path [1f]",
            "relay tree too deep: this relay would be hop 4 of at most 3 (path [1, 2, 3])",
        ] {
            assert!(!refused(RequestErrorCode::DoesNotExist, reason).not_published_yet());
        }
        assert!(!refused(RequestErrorCode::Unauthorized, "no").not_published_yet());
        assert!(!UpstreamError::Unreachable("x".into()).not_published_yet());
    }

    #[test]
    fn hop_ids_are_stable_distinct_and_varint_sized() {
        assert_eq!(hop_id("edge-1"), hop_id("edge-1"));
        assert_ne!(hop_id("edge-1"), hop_id("edge-2"));
        assert!(hop_id("edge-1") < 1 << 62);
    }

    #[test]
    fn route_urls_carry_the_namespace_text_form_and_relay_id() {
        let resolver = HttpResolver::new(
            Url::parse("http://control:8080/base/").unwrap(),
            "edge 1".into(),
            Duration::from_secs(1),
        )
        .unwrap();
        let namespace = TrackNamespace::from_path("live/show 1").unwrap();
        assert_eq!(
            resolver.route_url(&namespace).unwrap().as_str(),
            "http://control:8080/base/v1/route/live/show%201?relay=edge%201"
        );
    }

    #[derive(Debug)]
    struct Fixed(Result<Vec<Url>, ResolveError>);

    impl Resolver for Fixed {
        fn resolve<'a>(&'a self, _: &'a TrackNamespace) -> ResolveFuture<'a> {
            Box::pin(std::future::ready(self.0.clone()))
        }
    }

    #[tokio::test]
    async fn resolvers_fall_through_errors_and_empty_answers() {
        let a = Url::parse("moqt://a:1").unwrap();
        let error = ResolveError::Control {
            url: "x".into(),
            reason: "down".into(),
        };
        let ns = TrackNamespace::default();
        let chain = Resolvers(vec![
            Arc::new(Fixed(Err(error.clone()))),
            Arc::new(Fixed(Ok(vec![]))),
            Arc::new(Fixed(Ok(vec![a.clone()]))),
        ]);
        assert_eq!(chain.resolve(&ns).await, Ok(vec![a]));
        let failing = Resolvers(vec![
            Arc::new(Fixed(Ok(vec![]))),
            Arc::new(Fixed(Err(error.clone()))),
        ]);
        assert_eq!(failing.resolve(&ns).await, Err(error));
        let empty = Resolvers(vec![Arc::new(Fixed(Ok(vec![])))]);
        assert_eq!(empty.resolve(&ns).await, Ok(vec![]));
    }
}
