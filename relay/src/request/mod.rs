//! One client session at the relay: authorize each request, enforce the session's limits,
//! and hand it to the namespace registry, the track registry or a forwarder.

mod fetch;
mod join;
mod limits;
mod publish;
mod publish_namespace;
mod subscribe;
mod subscribe_namespace;
mod subscribe_tracks;
mod track_status;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use banyan_moq::coding::{FullTrackName, RequestErrorCode, TrackName, TrackNamespace};
use banyan_moq::message::{FetchType, HopPath, Token};
use banyan_moq::session::{Request, Session};
use governor::DefaultDirectRateLimiter;

use crate::auth::{Action, AuthError, Authenticator, ClaimsExt as _, Grant, Refreshed};
use crate::interact::hub::{Hub, INTERACT};
use crate::metrics::{Metrics, RefuseReason};
use crate::namespaces::Namespaces;
use crate::tasks::Tasks;
use crate::track::forward::ForwardConfig;
use crate::track::Tracks;
use join::{JoinMap, JoinSlot};
pub use limits::{LimitSettings, SessionLimits};

/// What every session handler shares.
#[derive(Debug)]
pub struct Shared {
    /// Published namespaces.
    pub namespaces: Arc<Namespaces>,
    /// Tracks and their caches.
    pub tracks: Arc<Tracks>,
    /// Likes, comments and gifts per broadcast.
    pub interact: Arc<Hub>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Token verification; `None` runs without auth (`--insecure-no-auth`).
    pub auth: Option<Authenticator>,
    /// Per-session limits.
    pub limits: SessionLimits,
    /// Fan-out tuning.
    pub forward: ForwardConfig,
    /// Whether a second publisher of a live namespace replaces the first.
    pub publisher_takeover: bool,
    /// This relay's Hop ID (loop detection; see [`banyan_moq::message::hop_path`]).
    pub hop_id: u64,
    /// Most relays a request may pass through, this one included.
    pub max_depth: usize,
    /// Work that outlives the request that started it: each track's upstream feed, the
    /// interaction sweeper. Aborted when the relay stops.
    pub tasks: Tasks,
}

/// The id the next session at this relay gets (counted per process: ids tell sessions apart
/// in the viewer count, nothing else).
static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(0);

/// The state of one session at the relay.
#[derive(Debug)]
pub struct SessionHandler {
    shared: Arc<Shared>,
    session: Session,
    /// Tells this session's subscriptions from others' (a viewer is counted once per
    /// broadcast however many of its tracks it reads).
    id: u64,
    /// The token speaking for the session (from SETUP or URL `?jwt=`, else the first
    /// request's) and when it runs out; refreshed by later tokens for the same subject.
    grant: Arc<Grant>,
    subscriptions: Arc<AtomicUsize>,
    namespaces: Arc<AtomicUsize>,
    rate: DefaultDirectRateLimiter,
    /// This session's SUBSCRIBEs by Request ID, for joining FETCH: registered as they arrive
    /// (a joining FETCH may come right behind its SUBSCRIBE, before the answer), filled in
    /// when accepted, removed when they end.
    joinable: Arc<JoinMap>,
    /// The session's requests in progress (and the PUBLISHes of SUBSCRIBE_TRACKS).
    tasks: Tasks,
}

impl SessionHandler {
    /// A handler for `session` with the grant established at setup.
    pub fn new(shared: Arc<Shared>, session: Session, grant: Arc<Grant>) -> Arc<Self> {
        Arc::new(Self {
            session,
            id: NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed),
            grant,
            subscriptions: Arc::new(AtomicUsize::new(0)),
            namespaces: Arc::new(AtomicUsize::new(0)),
            rate: shared.limits.rate_limiter(),
            joinable: Arc::new(JoinMap::default()),
            tasks: Tasks::default(),
            shared,
        })
    }

    /// Serve the session's requests until it closes. Each request runs as a task of the
    /// session's own set, aborted when the session ends.
    pub async fn run(self: Arc<Self>) {
        if self.shared.auth.is_some() {
            let (grant, session) = (self.grant.clone(), self.session.clone());
            let metrics = self.shared.metrics.clone();
            self.tasks.spawn(async move {
                crate::auth::expire(&grant, &session).await;
                metrics.sessions_expired.inc();
            });
        }
        if let Some(watch) = self.clone().ban_watch() {
            self.tasks.spawn(watch);
        }
        while let Some(request) = self.session.accept().await {
            if self.rate.check().is_err() {
                self.shared.metrics.refuse(RefuseReason::RateLimited);
                self.tasks.spawn(async move {
                    let _ = request
                        .reject(RequestErrorCode::ExcessiveLoad, "request rate limit")
                        .await;
                });
                continue;
            }
            let slot = match &request {
                Request::Subscribe(r) => Some(JoinSlot::new(
                    &self.joinable,
                    r.message.request_id,
                    FullTrackName::new(r.message.track_namespace.clone(), r.message.track_name.clone()).ok(),
                )),
                _ => None,
            };
            let handler = self.clone();
            self.tasks.spawn(async move {
                handler.handle(request).await;
                drop(slot);
            });
        }
        // The session has ended: what its requests still do is for nobody.
        self.tasks.shutdown().await;
    }

    async fn handle(self: Arc<Self>, request: Request) {
        if let Err(e) = self.authorize_request(&request) {
            tracing::info!(error = %e, "request refused: not authorized");
            self.shared.metrics.auth_failures.inc();
            self.shared.metrics.refuse(RefuseReason::Unauthorized);
            let reason = if e == AuthError::Banned {
                "banned"
            } else {
                "not authorized"
            };
            let _ = request.reject(e.request_code(), reason).await;
            return;
        }
        let path = match self.check_path(&request) {
            Ok(path) => path,
            Err(reason) => {
                tracing::warn!(%reason, "request refused: relay path");
                self.shared.metrics.refuse(RefuseReason::Loop);
                let _ = request.reject(RequestErrorCode::DoesNotExist, &reason).await;
                return;
            }
        };
        let result = match request {
            Request::Subscribe(r) => self.subscribe(r, path).await,
            Request::PublishNamespace(r) => self.publish_namespace(r).await,
            Request::SubscribeNamespace(r) => self.subscribe_namespace(r, path).await,
            Request::SubscribeTracks(r) => self.subscribe_tracks(r, path).await,
            Request::Publish(r) => self.publish(r).await,
            Request::TrackStatus(r) => self.track_status(r, path).await,
            Request::Fetch(r) => self.fetch(r, path).await,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "request ended with an error");
        }
    }

    /// Check `tokens` (from the request) or the session's claims for `action` on `namespace`;
    /// a viewer banned from the broadcast is refused too.
    fn authorize(
        &self,
        tokens: &[Token],
        action: Action,
        namespace: &TrackNamespace,
    ) -> Result<(), AuthError> {
        match self.claims_for(tokens)? {
            Some(claims) => {
                claims.check(action, namespace)?;
                match &claims.sub {
                    Some(sub) if self.shared.interact.banned(namespace, sub) => Err(AuthError::Banned),
                    _ => Ok(()),
                }
            }
            None => Ok(()),
        }
    }

    /// For a viewer's session whose token names a `sub` and is scoped to one broadcast (or
    /// less): a task closing the session, and so every subscription it has, as soon as this
    /// relay learns the viewer is banned from that broadcast (`UNAUTHORIZED`, reason
    /// "banned"). Relays' sessions and broader tokens are left to per-request refusals.
    fn ban_watch(self: Arc<Self>) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let claims = self.grant.claims()?;
        let sub = claims.sub.clone()?;
        let prefix = claims.prefix()?;
        if self.session.peer_setup().hop_id.is_some() {
            return None;
        }
        let mut notices = self.shared.interact.ban_notices();
        Some(async move {
            loop {
                notices.borrow_and_update();
                let bans = self.shared.interact.bans_of(&sub);
                if bans.iter().any(|broadcast| prefix.has_prefix(broadcast)) {
                    tracing::info!(%sub, "closing a banned viewer's session");
                    self.shared.metrics.refuse(RefuseReason::Unauthorized);
                    crate::auth::end_session(
                        &self.session,
                        banyan_moq::coding::SessionErrorCode::Unauthorized,
                        "banned",
                    );
                    return;
                }
                if notices.changed().await.is_err() {
                    return;
                }
            }
        })
    }

    /// The claims that speak for a request: its own token, else the session's grant. `None`
    /// when the relay runs without auth. A request's own token for another subject than the
    /// grant's is refused; one for the same subject covering the grant's scope refreshes the
    /// grant (a narrower one authorizes only its own request).
    fn claims_for(&self, tokens: &[Token]) -> Result<Option<crate::auth::Claims>, AuthError> {
        let Some(auth) = &self.shared.auth else {
            return Ok(None);
        };
        let claims = match crate::auth::jwt_from_tokens(tokens) {
            Some(jwt) => {
                let claims = auth.verify(&jwt?)?;
                match self.grant.refresh(&claims) {
                    Ok(refreshed) => self.refreshed(refreshed),
                    Err(AuthError::NarrowerScope) => {}
                    Err(e) => return Err(e),
                }
                claims
            }
            None => self.grant.claims().ok_or(AuthError::Missing)?,
        };
        Ok(Some(claims))
    }

    /// Refresh the session's grant with the token a REQUEST_UPDATE carries on one of its open
    /// requests: verified in full (signature, expiry), then it must name the grant's subject
    /// and cover its namespace and actions ([`Grant::refresh`]). An update without a token
    /// (or a relay without auth) changes nothing. A refused token extends nothing.
    pub fn refresh(&self, tokens: &[Token]) -> Result<(), AuthError> {
        let Some(auth) = &self.shared.auth else {
            return Ok(());
        };
        let Some(jwt) = crate::auth::jwt_from_tokens(tokens) else {
            return Ok(());
        };
        let result = auth.verify(&jwt?).and_then(|claims| self.grant.refresh(&claims));
        match result {
            Ok(refreshed) => {
                self.refreshed(refreshed);
                Ok(())
            }
            Err(e) => {
                tracing::info!(error = %e, "token refresh refused");
                self.shared.metrics.auth_failures.inc();
                Err(e)
            }
        }
    }

    fn refreshed(&self, refreshed: Refreshed) {
        if refreshed == Refreshed::Extended {
            self.shared.metrics.tokens_refreshed.inc();
            tracing::debug!(deadline_ms = self.grant.deadline(), "session token refreshed");
        }
    }

    /// The relay path of a request (empty when it comes straight from a client), refused when
    /// it already passed through this relay (a loop) or would make this relay deeper in the
    /// tree than `--max-depth`.
    fn check_path(&self, request: &Request) -> Result<HopPath, String> {
        let parameters = match request {
            Request::Subscribe(r) => &r.message.parameters,
            Request::TrackStatus(r) => &r.message.parameters,
            Request::SubscribeNamespace(r) => &r.message.parameters,
            Request::SubscribeTracks(r) => &r.message.parameters,
            Request::Fetch(r) => &r.message.parameters,
            _ => return Ok(HopPath::default()),
        };
        let path = parameters.hop_path.clone().unwrap_or_default();
        if path.contains(self.shared.hop_id) {
            return Err(format!(
                "relay loop: this relay ({:x}) is already on the request's path {path}",
                self.shared.hop_id
            ));
        }
        let depth = path.len() + 1;
        if depth > self.shared.max_depth {
            return Err(format!(
                "relay tree too deep: this relay would be hop {depth} of at most {} (path {path})",
                self.shared.max_depth
            ));
        }
        Ok(path)
    }

    /// Authorize a request before dispatch: its own AUTHORIZATION TOKEN, or the session's.
    /// A joining FETCH rides on a subscription that was authorized when it was made.
    fn authorize_request(&self, request: &Request) -> Result<(), AuthError> {
        let (tokens, action, namespace) = match request {
            Request::Subscribe(r) => (
                &r.message.parameters,
                Action::Subscribe,
                &r.message.track_namespace,
            ),
            Request::TrackStatus(r) => (
                &r.message.parameters,
                Action::Subscribe,
                &r.message.track_namespace,
            ),
            Request::SubscribeNamespace(r) => (
                &r.message.parameters,
                Action::Subscribe,
                &r.message.track_namespace_prefix,
            ),
            Request::SubscribeTracks(r) => (
                &r.message.parameters,
                Action::Subscribe,
                &r.message.track_namespace_prefix,
            ),
            Request::PublishNamespace(r) => {
                (&r.message.parameters, Action::Publish, &r.message.track_namespace)
            }
            // A viewer may publish interactions for a broadcast it may watch.
            Request::Publish(r) if r.message.track_name.as_bytes().as_ref() == INTERACT => (
                &r.message.parameters,
                Action::Subscribe,
                &r.message.track_namespace,
            ),
            Request::Publish(r) => (&r.message.parameters, Action::Publish, &r.message.track_namespace),
            Request::Fetch(r) => match &r.message.fetch_type {
                FetchType::Standalone(range) => {
                    (&r.message.parameters, Action::Subscribe, &range.track_namespace)
                }
                FetchType::RelativeJoining(_) | FetchType::AbsoluteJoining(_) => return Ok(()),
            },
        };
        self.authorize(&tokens.authorization_tokens, action, namespace)
    }

    /// Send a request about `namespace` to its local publisher or, when nobody publishes it
    /// here, to a parent relay (`send` gets the session and the HOP_PATH to carry). On failure:
    /// the REQUEST_ERROR code and reason to pass downstream.
    async fn ask_upstream<T, F, Fut>(
        &self,
        namespace: &TrackNamespace,
        path: &HopPath,
        send: F,
    ) -> Result<T, (RequestErrorCode, String)>
    where
        F: Fn(Session, Option<HopPath>) -> Fut,
        Fut: std::future::Future<Output = Result<T, banyan_moq::session::Error>>,
    {
        let result = match (
            self.shared.namespaces.route(namespace),
            self.shared.tracks.parents(),
        ) {
            (Some(publisher), _) => send(publisher.session, None).await,
            (None, Some(parents)) => match parents.request(namespace, path, &send).await {
                Ok((value, _)) => Ok(value),
                Err(e) => return Err((e.request_code(), e.reason())),
            },
            (None, None) => {
                return Err((
                    RequestErrorCode::DoesNotExist,
                    "no publisher for this namespace".into(),
                ))
            }
        };
        result.map_err(|e| match e {
            banyan_moq::session::Error::Refused { code, reason, .. } => (code, reason),
            e => (RequestErrorCode::InternalError, e.to_string()),
        })
    }
}

/// The track a PUBLISH or SUBSCRIBE names, or the REQUEST_ERROR code and reason to refuse it
/// with (a name too long for a track).
fn track_name(
    namespace: &TrackNamespace,
    name: &TrackName,
) -> Result<FullTrackName, (RequestErrorCode, String)> {
    FullTrackName::new(namespace.clone(), name.clone())
        .map_err(|e| (RequestErrorCode::InvalidRange, e.to_string()))
}
