//! Parent links: one MoQT session per parent, opened through a [`Dial`], and the requests
//! sent over them with the relay path.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use banyan_moq::coding::{RequestErrorCode, SessionErrorCode, TrackNamespace};
use banyan_moq::message::HopPath;
use banyan_moq::session::{Client, ClientOptions, Error as SessionError, Session, SessionDriver};
use parking_lot::Mutex;
use tokio::time::Instant;
use tracing::Instrument;
use url::Url;

use super::{Resolver, UpstreamError};
use crate::metrics::Metrics;
use crate::tasks::Tasks;

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
