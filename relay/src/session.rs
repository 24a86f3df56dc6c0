//! One client session at the relay: authorize each request, enforce the session's limits,
//! and hand it to the namespace registry, the track registry or a forwarder.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use banyan_moq::coding::{FullTrackName, Location, RequestErrorCode, TrackNamespace};
use banyan_moq::data::{FetchItem, FetchObject};
use banyan_moq::message::{
    Fetch, FetchOk, FetchType, HopPath, Parameters, Publish, PublishBlocked, RequestOk, SubscribeOk,
    SubscriptionFilter, Token,
};
use banyan_moq::session::{
    FetchRequest, NamespaceAnnouncer, NamespaceEvent, PublishNamespaceRequest, PublishRequest, Request,
    Session, SubscribeNamespaceRequest, SubscribeRequest, SubscribeTracksRequest, TrackStatusRequest,
};

use crate::auth::{Action, AuthError, Authenticator, Claims};
use crate::cache::Start;
use crate::forward::{forward, ForwardConfig};
use crate::interact::hub::{Hub, INTERACT};
use crate::metrics::{Metrics, RefuseReason};
use crate::origin::Origins;
use crate::track::{SubscriberGuard, Track, TrackState, Tracks};
use tokio::sync::watch;

/// Limits on sessions and what each may ask (part of [`RelayConfig`](crate::config::RelayConfig)).
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LimitSettings {
    /// Most concurrent sessions (raw QUIC and WebTransport together); more are refused.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_sessions: usize,

    /// Most concurrent subscriptions (SUBSCRIBE, FETCH, TRACK_STATUS) on one session.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    pub max_subscriptions_per_session: usize,

    /// Most namespaces (PUBLISH_NAMESPACE and SUBSCRIBE_NAMESPACE) on one session.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_namespaces_per_session: usize,

    /// Largest control message accepted, in bytes (at most 65535, the draft-18 limit).
    #[arg(long, value_name = "BYTES", default_value = "65535", value_parser = crate::config::parse_size)]
    #[serde(with = "crate::config::serde_size")]
    pub max_message_size: usize,

    /// Largest object payload accepted, in bytes (suffixes KiB, MiB, GiB accepted).
    #[arg(long, value_name = "BYTES", default_value = "8MiB", value_parser = crate::config::parse_size)]
    #[serde(with = "crate::config::serde_size")]
    pub max_object_size: usize,

    /// Sustained control requests per second allowed on one session (token bucket rate).
    #[arg(long, value_name = "PER_SEC", default_value_t = 200)]
    pub request_rate: u32,

    /// Requests one session may make in a burst above --request-rate (token bucket size).
    #[arg(long, value_name = "N", default_value_t = 400)]
    pub request_burst: u32,
}

impl From<&LimitSettings> for SessionLimits {
    fn from(s: &LimitSettings) -> Self {
        Self {
            subscriptions: s.max_subscriptions_per_session,
            namespaces: s.max_namespaces_per_session,
            request_rate: f64::from(s.request_rate),
            request_burst: f64::from(s.request_burst),
        }
    }
}

/// How long a FETCH answered from the cache waits for objects upstream reported but that
/// have not arrived yet (one upstream round trip is typical; the bound keeps a stalled
/// upstream from holding the FETCH).
const FETCH_CATCH_UP: Duration = Duration::from_secs(1);

/// The last Location in `[.., end)`: `end` excludes itself, and Object 0 excludes the whole
/// of its group. `None` for an empty range.
fn last_before(end: Location) -> Option<Location> {
    match (end.group, end.object) {
        (0, 0) => None,
        (group, 0) => Some(Location::new(group - 1, u64::MAX)),
        (group, object) => Some(Location::new(group, object - 1)),
    }
}

/// What every session handler shares.
#[derive(Debug)]
pub struct Shared {
    /// Published namespaces.
    pub origins: Arc<Origins>,
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
}

/// Limits applied to each session.
#[derive(Clone, Debug)]
pub struct SessionLimits {
    /// Concurrent subscriptions.
    pub subscriptions: usize,
    /// Concurrently published namespaces.
    pub namespaces: usize,
    /// Sustained requests per second.
    pub request_rate: f64,
    /// Requests allowed in a burst.
    pub request_burst: f64,
}

/// A token bucket for the session's request rate.
#[derive(Debug)]
struct RateLimit {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl RateLimit {
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The state of one session at the relay.
#[derive(Debug)]
pub struct SessionHandler {
    shared: Arc<Shared>,
    session: Session,
    /// Claims from the session's SETUP token or URL `?jwt=`, if any.
    claims: Option<Claims>,
    subscriptions: Arc<AtomicUsize>,
    namespaces: Arc<AtomicUsize>,
    rate: Mutex<RateLimit>,
    /// This session's SUBSCRIBEs by Request ID, for joining FETCH: registered as they arrive
    /// (a joining FETCH may come right behind its SUBSCRIBE, before the answer), filled in
    /// when accepted, removed when they end.
    joinable: Arc<JoinMap>,
}

impl SessionHandler {
    /// A handler for `session` with the claims established at setup.
    pub fn new(shared: Arc<Shared>, session: Session, claims: Option<Claims>) -> Arc<Self> {
        let limits = &shared.limits;
        let rate = RateLimit {
            tokens: limits.request_burst,
            last: Instant::now(),
            rate: limits.request_rate,
            burst: limits.request_burst,
        };
        Arc::new(Self {
            session,
            claims,
            subscriptions: Arc::new(AtomicUsize::new(0)),
            namespaces: Arc::new(AtomicUsize::new(0)),
            rate: Mutex::new(rate),
            joinable: Arc::new(JoinMap::default()),
            shared,
        })
    }

    /// Serve the session's requests until it closes.
    pub async fn run(self: Arc<Self>) {
        while let Some(request) = self.session.accept().await {
            let allowed = self.rate.lock().map(|mut r| r.allow()).unwrap_or(false);
            if !allowed {
                self.shared.metrics.refuse(RefuseReason::RateLimited);
                tokio::spawn(async move {
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
            tokio::spawn(async move {
                handler.handle(request).await;
                drop(slot);
            });
        }
    }

    async fn handle(self: Arc<Self>, request: Request) {
        if let Err(e) = self.authorize_request(&request) {
            tracing::info!(error = %e, "request refused: not authorized");
            self.shared.metrics.auth_failures.inc();
            self.shared.metrics.refuse(RefuseReason::Unauthorized);
            let _ = request.reject(e.request_code(), "not authorized").await;
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

    /// Check `tokens` (from the request) or the session's claims for `action` on `namespace`.
    fn authorize(
        &self,
        tokens: &[Token],
        action: Action,
        namespace: &TrackNamespace,
    ) -> Result<(), AuthError> {
        match self.claims_for(tokens)? {
            Some(claims) => claims.check(action, namespace),
            None => Ok(()),
        }
    }

    /// The claims that speak for a request: its own token, else the session's. `None` when the
    /// relay runs without auth.
    fn claims_for(&self, tokens: &[Token]) -> Result<Option<Claims>, AuthError> {
        let Some(auth) = &self.shared.auth else {
            return Ok(None);
        };
        let claims = match crate::auth::jwt_from_tokens(tokens) {
            Some(jwt) => auth.verify(&jwt?)?,
            None => self.claims.clone().ok_or(AuthError::Missing)?,
        };
        Ok(Some(claims))
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

    async fn subscribe(
        self: Arc<Self>,
        request: SubscribeRequest,
        path: HopPath,
    ) -> Result<(), banyan_moq::session::Error> {
        let message = request.message.clone();
        let Some(_slot) = Slot::take(&self.subscriptions, self.shared.limits.subscriptions) else {
            self.shared.metrics.refuse(RefuseReason::Limit);
            return request
                .reject(
                    RequestErrorCode::ExcessiveLoad,
                    "too many subscriptions on this session",
                )
                .await;
        };
        let name = match FullTrackName::new(message.track_namespace.clone(), message.track_name.clone()) {
            Ok(name) => name,
            Err(e) => {
                return request
                    .reject(RequestErrorCode::InvalidRange, &e.to_string())
                    .await
            }
        };
        self.shared.interact.prepare(&name);
        // Held for a publisher as long as asked (RENDEZVOUS_TIMEOUT, capped); without the
        // parameter not at all (draft-18 §"RENDEZVOUS TIMEOUT Parameter").
        let rendezvous = self
            .shared
            .tracks
            .rendezvous(message.parameters.rendezvous_timeout);
        let guard = self.shared.tracks.subscribe(name, &path);
        let track = guard.track().clone();
        // A relay asking for a track this relay gets from that very relay (or from one on the
        // request's path) would close a loop that coalescing hides from the path check.
        if let Some(parent) = track.parent_hop() {
            if path.contains(parent) || self.session.peer_setup().hop_id == Some(parent) {
                self.shared.metrics.refuse(RefuseReason::Loop);
                let reason = format!(
                    "relay loop: this relay receives the track from relay {parent:x}, which asks for it"
                );
                return request.reject(RequestErrorCode::DoesNotExist, &reason).await;
            }
        }
        let info = match track.ready(rendezvous).await {
            TrackState::Live(info) => info,
            TrackState::Waiting => {
                self.shared.metrics.refuse(RefuseReason::NotFound);
                let namespace = &message.track_namespace;
                return if rendezvous.is_zero() {
                    request
                        .reject(
                            RequestErrorCode::DoesNotExist,
                            &format!("no publisher for namespace {namespace}"),
                        )
                        .await
                } else {
                    request
                        .reject(
                            RequestErrorCode::Timeout,
                            &format!("no publisher for namespace {namespace} within {rendezvous:?}"),
                        )
                        .await
                };
            }
            TrackState::Failed { code, reason } => {
                self.shared.metrics.refuse(RefuseReason::NotFound);
                return request.reject(code, &reason).await;
            }
            TrackState::Ended { reason, .. } => {
                self.shared.metrics.refuse(RefuseReason::NotFound);
                return request
                    .reject(RequestErrorCode::DoesNotExist, &format!("track ended: {reason}"))
                    .await;
            }
            TrackState::Pending => {
                return request
                    .reject(RequestErrorCode::Timeout, "upstream did not answer")
                    .await
            }
        };
        // The Largest Object that SUBSCRIBE_OK reports is the one the filters are relative to
        // (draft-18 §Subscription Filters; {0, 0} when nothing has arrived yet), so the start
        // is fixed here, not when the forwarder first looks at the cache: objects arriving in
        // between belong to this subscriber.
        let largest = track.largest();
        let (start, end_group) = match message.parameters.subscription_filter {
            // Join fast: from the first object of the Largest Object's group.
            None | Some(SubscriptionFilter::LargestObject) => (
                Start::At {
                    group: largest.map_or(0, |l| l.group),
                    object: 0,
                },
                None,
            ),
            Some(SubscriptionFilter::NextGroupStart) => (
                Start::At {
                    group: largest.map_or(0, |l| l.group.saturating_add(1)),
                    object: 0,
                },
                None,
            ),
            Some(SubscriptionFilter::AbsoluteStart { start_location }) => (
                Start::At {
                    group: start_location.group,
                    object: start_location.object,
                },
                None,
            ),
            Some(SubscriptionFilter::AbsoluteRange {
                start_location,
                end_group_delta,
            }) => (
                Start::At {
                    group: start_location.group,
                    object: start_location.object,
                },
                Some(start_location.group.saturating_add(end_group_delta)),
            ),
        };
        let ok = SubscribeOk {
            track_alias: 0,
            parameters: Parameters {
                largest_object: largest,
                group_order: info.group_order,
                ..Default::default()
            },
            track_properties: info.track_properties,
        };
        let request_id = message.request_id;
        let writer = request.accept(ok).await?;
        self.joinable.established(request_id, (track.clone(), largest));
        forward(
            guard,
            writer,
            start,
            end_group,
            self.shared.forward.clone(),
            self.shared.metrics.clone(),
        )
        .await;
        Ok(())
    }

    async fn publish_namespace(
        self: Arc<Self>,
        request: PublishNamespaceRequest,
    ) -> Result<(), banyan_moq::session::Error> {
        let namespace = request.message.track_namespace.clone();
        let Some(_slot) = Slot::take(&self.namespaces, self.shared.limits.namespaces) else {
            self.shared.metrics.refuse(RefuseReason::Limit);
            return request
                .reject(
                    RequestErrorCode::ExcessiveLoad,
                    "too many namespaces on this session",
                )
                .await;
        };
        let guard = match self.shared.origins.publish(
            namespace.clone(),
            self.session.clone(),
            self.shared.publisher_takeover,
        ) {
            Ok(guard) => guard,
            Err(e) => {
                self.shared.metrics.refuse(RefuseReason::Other);
                return request
                    .reject(RequestErrorCode::Uninterested, &e.to_string())
                    .await;
            }
        };
        let mut publication = request.accept().await?;
        tokio::select! {
            _ = publication.withdrawn() => {}
            _ = self.session.closed() => {}
            // Replaced by another session (`--publisher-takeover`): ending the request stream
            // tells this publisher its namespace is no longer routed to it.
            () = guard.replaced() => {
                tracing::info!(%namespace, "publisher replaced by another session");
            }
        }
        drop(publication);
        drop(guard);
        Ok(())
    }

    async fn subscribe_namespace(
        self: Arc<Self>,
        request: SubscribeNamespaceRequest,
        path: HopPath,
    ) -> Result<(), banyan_moq::session::Error> {
        let prefix = request.message.track_namespace_prefix.clone();
        let Some(_slot) = Slot::take(&self.namespaces, self.shared.limits.namespaces) else {
            self.shared.metrics.refuse(RefuseReason::Limit);
            return request
                .reject(
                    RequestErrorCode::ExcessiveLoad,
                    "too many namespaces on this session",
                )
                .await;
        };
        let mut watch = self.shared.origins.watch(prefix.clone());
        // Namespaces published higher up the tree, as the first reachable parent sees them.
        let mut upstream = match self.shared.tracks.parents() {
            Some(parents) => {
                let message = request.message.clone();
                let result = parents
                    .request(&prefix, &path, |session, hop_path| {
                        let mut message = message.clone();
                        message.parameters = Parameters {
                            hop_path,
                            ..Default::default()
                        };
                        async move { session.subscribe_namespace(message).await }
                    })
                    .await;
                match result {
                    Ok((subscription, _)) => Some(subscription),
                    Err(e) => {
                        tracing::debug!(%prefix, error = %e, "no namespaces from parents");
                        None
                    }
                }
            }
            None => None,
        };
        let mut announcer = request.accept().await?;
        let mut seen = NamespaceSources::default();
        loop {
            let from_parent = async {
                match &mut upstream {
                    Some(subscription) => subscription.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = watch.next() => match event {
                    Some(event) => seen.apply(&mut announcer, Source::Local, event).await?,
                    None => return Ok(()),
                },
                event = from_parent => match event {
                    Ok(Some(event)) => seen.apply(&mut announcer, Source::Parent, event).await?,
                    Ok(None) | Err(_) => {
                        // The parent link ended: what only it reported is gone.
                        upstream = None;
                        seen.parent_lost(&mut announcer).await?;
                    }
                },
                _ = announcer.cancelled() => return Ok(()),
            }
        }
    }

    /// SUBSCRIBE_TRACKS: PUBLISH every track pushed to this relay under the prefix, those live
    /// now and each new one, until the request is cancelled (draft-18 §"Relays": "When a relay
    /// receives an incoming PUBLISH message, it MUST send a PUBLISH request to each subscriber
    /// that has sent SUBSCRIBE_TRACKS for the Track's namespace or a prefix thereof"). Tracks
    /// published before cancelling carry on until unsubscribed.
    async fn subscribe_tracks(
        self: Arc<Self>,
        request: SubscribeTracksRequest,
        path: HopPath,
    ) -> Result<(), banyan_moq::session::Error> {
        let prefix = request.message.track_namespace_prefix.clone();
        if request.message.parameters.forward == Some(false) {
            self.shared.metrics.refuse(RefuseReason::Other);
            return request
                .reject(
                    RequestErrorCode::NotSupported,
                    "SUBSCRIBE_TRACKS with FORWARD 0 is not supported by this relay",
                )
                .await;
        }
        let Some(_slot) = Slot::take(&self.namespaces, self.shared.limits.namespaces) else {
            self.shared.metrics.refuse(RefuseReason::Limit);
            return request
                .reject(
                    RequestErrorCode::ExcessiveLoad,
                    "too many namespaces on this session",
                )
                .await;
        };
        let mut watch = self.shared.tracks.watch(prefix.clone());
        let mut stream = request.accept().await?;
        let relay = !path.is_empty();
        loop {
            tokio::select! {
                track = watch.next() => {
                    let Some(track) = track else { return Ok(()) };
                    match Slot::take(&self.subscriptions, self.shared.limits.subscriptions) {
                        Some(slot) => {
                            tokio::spawn(self.clone().publish_to(track, relay, slot));
                        }
                        None => {
                            self.shared.metrics.refuse(RefuseReason::Limit);
                            let blocked = PublishBlocked {
                                track_namespace_suffix: track.name.namespace.strip_prefix(&prefix).unwrap_or_default(),
                                track_name: track.name.name.clone(),
                            };
                            stream.send(&blocked.into()).await?;
                        }
                    }
                }
                message = stream.next() => match message {
                    Ok(Some(other)) => {
                        tracing::debug!(message = other.name(), "unexpected message on a SUBSCRIBE_TRACKS stream");
                        self.session.close(
                            banyan_moq::coding::SessionErrorCode::ProtocolViolation,
                            "unexpected message on a SUBSCRIBE_TRACKS stream",
                        );
                        return Ok(());
                    }
                    // Cancelled: no further PUBLISH for it.
                    Ok(None) | Err(_) => return Ok(()),
                },
            }
        }
    }

    /// PUBLISH one track this relay has to this session and forward it from the cache.
    async fn publish_to(self: Arc<Self>, track: Arc<Track>, relay: bool, _slot: Slot) {
        // A session that subscribed to the track (perhaps held waiting for this very PUBLISH)
        // has it already: no PUBLISH on top (draft-18 §"Relays").
        if self.joinable.subscribes_to(&track.name) {
            return;
        }
        let Some(info) = track.live_info() else { return };
        let guard = SubscriberGuard::join(&track, relay);
        let publish = Publish {
            track_namespace: track.name.namespace.clone(),
            track_name: track.name.name.clone(),
            parameters: Parameters {
                largest_object: info.largest,
                group_order: info.group_order,
                ..Default::default()
            },
            track_properties: info.track_properties,
            ..Default::default()
        };
        let writer = match self.session.publish(publish).await {
            Ok(writer) => writer,
            Err(e) => {
                tracing::debug!(track = %track.name, error = %e, "could not PUBLISH to a SUBSCRIBE_TRACKS subscriber");
                return;
            }
        };
        tracing::debug!(track = %track.name, "published to a SUBSCRIBE_TRACKS subscriber");
        let start = Start::At {
            group: info.largest.map_or(0, |l| l.group),
            object: 0,
        };
        forward(
            guard,
            writer,
            start,
            None,
            self.shared.forward.clone(),
            self.shared.metrics.clone(),
        )
        .await;
    }

    async fn publish(self: Arc<Self>, request: PublishRequest) -> Result<(), banyan_moq::session::Error> {
        let message = request.message.clone();
        if message.track_name.as_bytes().as_ref() == INTERACT {
            // The request was authorized a moment ago with these claims; should they fail now
            // (the token just expired), the publication is a viewer's, allowed no room.
            let claims = self.claims_for(&message.parameters.authorization_tokens);
            // Relays declare a Hop ID and their publications carry already-limited sums; a
            // declared Hop ID alone is not enough to skip the per-viewer limits: the session
            // must also be allowed to publish the broadcast (any session, without auth).
            let from_relay = self.session.peer_setup().hop_id.is_some()
                && match &claims {
                    Ok(Some(claims)) => claims.check(Action::Publish, &message.track_namespace).is_ok(),
                    Ok(None) => true,
                    Err(_) => false,
                };
            // A viewer token's `room` claim holds its comments to that room; a claim that is
            // not a room number allows none (`u64::MAX` is above every room count).
            let room = match &claims {
                Ok(Some(claims)) => claims.room.as_ref().map(|room| room.parse().unwrap_or(u64::MAX)),
                Ok(None) => None,
                Err(_) => Some(u64::MAX),
            };
            return self
                .shared
                .interact
                .clone()
                .serve(request, from_relay, room)
                .await;
        }
        let name = match FullTrackName::new(message.track_namespace.clone(), message.track_name.clone()) {
            Ok(name) => name,
            Err(e) => {
                return request
                    .reject(RequestErrorCode::InvalidRange, &e.to_string())
                    .await
            }
        };
        if !self.shared.publisher_takeover && self.shared.tracks.pushed_and_live(&name) {
            self.shared.metrics.refuse(RefuseReason::Other);
            return request
                .reject(
                    RequestErrorCode::Uninterested,
                    &format!("track {name} is already published by another session"),
                )
                .await;
        }
        let subscription = request.accept(RequestOk::default()).await?;
        self.shared.tracks.insert_pushed(name, subscription);
        Ok(())
    }

    async fn track_status(
        self: Arc<Self>,
        request: TrackStatusRequest,
        path: HopPath,
    ) -> Result<(), banyan_moq::session::Error> {
        let message = request.message.clone();
        let name = FullTrackName {
            namespace: message.track_namespace.clone(),
            name: message.track_name.clone(),
        };
        if let Some(track) = self.shared.tracks.get(&name) {
            if let Some(largest) = track.largest() {
                let mut ok = RequestOk::default();
                ok.parameters.largest_object = Some(largest);
                return request.respond(ok).await;
            }
        }
        let mut upstream = message.clone();
        upstream.parameters = Parameters::default();
        let result = self
            .ask_upstream(&message.track_namespace, &path, |session, hop_path| {
                let mut upstream = upstream.clone();
                upstream.parameters.hop_path = hop_path;
                async move { session.track_status(upstream).await }
            })
            .await;
        match result {
            Ok(ok) => request.respond(ok).await,
            Err((code, reason)) => request.reject(code, &reason).await,
        }
    }

    async fn fetch(
        self: Arc<Self>,
        request: FetchRequest,
        path: HopPath,
    ) -> Result<(), banyan_moq::session::Error> {
        let message = request.message.clone();
        let (track, start, end) = match &message.fetch_type {
            FetchType::Standalone(range) => {
                let name = FullTrackName {
                    namespace: range.track_namespace.clone(),
                    name: range.track_name.clone(),
                };
                match self.shared.tracks.get(&name) {
                    Some(track) if track.cache.oldest().is_some_and(|o| o <= range.start_location) => {
                        // End Location is the last Object plus one; Object 0 asks for the
                        // whole of that group (draft-18, "Standalone Fetch"). The cache
                        // wants `[start, end)`.
                        let end = if range.end_location.object == 0 {
                            Location::new(range.end_location.group.saturating_add(1), 0)
                        } else {
                            range.end_location
                        };
                        (track, range.start_location, end)
                    }
                    _ => return self.fetch_upstream(request, message, path).await,
                }
            }
            FetchType::RelativeJoining(join) | FetchType::AbsoluteJoining(join) => {
                let joined = self.joinable.join(join.joining_request_id).await;
                let Some((track, joining_location)) = joined else {
                    return request
                        .reject(
                            RequestErrorCode::InvalidJoiningRequestId,
                            "no such subscription on this session",
                        )
                        .await;
                };
                let joining_group = joining_location.map_or(0, |l| l.group);
                let start_group = match &message.fetch_type {
                    FetchType::RelativeJoining(_) => joining_group.saturating_sub(join.joining_start),
                    _ => join.joining_start,
                };
                let end =
                    joining_location.map_or(Location::new(0, 0), |l| Location::new(l.group, l.object + 1));
                (track, Location::new(start_group, 0), end)
            }
        };
        // Objects upstream reported (in its SUBSCRIBE_OK) may still be on their way into the
        // cache: a subscriber FETCHing up to the Largest Object it was just told about must get
        // them all, not the part that happened to arrive.
        if let Some(last) = last_before(end) {
            track.caught_up(last, FETCH_CATCH_UP).await;
        }
        self.shared.metrics.cache_hits.inc();
        let objects = track.cache.range(start, end);
        // FETCH_OK's End Location uses the request's encoding: the last Object plus one.
        let end_location = objects
            .last()
            .map_or(start, |(g, _, _, o)| Location::new(*g, o.id.saturating_add(1)));
        let ok = FetchOk {
            end_of_track: false,
            end_location,
            ..Default::default()
        };
        let mut writer = request.accept(ok).await?;
        for (group, subgroup, priority, object) in objects {
            let item = FetchItem::Object(FetchObject {
                group_id: group,
                subgroup_id: Some(subgroup),
                object_id: object.id,
                publisher_priority: priority.unwrap_or(128),
                properties: object.properties,
                payload: object.payload,
            });
            writer.write(&item).await?;
        }
        writer.finish();
        Ok(())
    }

    /// Forward a FETCH the cache cannot answer to the publisher and relay its objects.
    async fn fetch_upstream(
        &self,
        request: FetchRequest,
        message: Fetch,
        path: HopPath,
    ) -> Result<(), banyan_moq::session::Error> {
        let FetchType::Standalone(range) = &message.fetch_type else {
            return request
                .reject(
                    RequestErrorCode::NotSupported,
                    "joining fetch needs a subscription",
                )
                .await;
        };
        self.shared.metrics.cache_misses.inc();
        let mut upstream = message.clone();
        upstream.parameters = Parameters::default();
        let result = self
            .ask_upstream(&range.track_namespace, &path, |session, hop_path| {
                let mut upstream = upstream.clone();
                upstream.parameters.hop_path = hop_path;
                async move { session.fetch(upstream).await }
            })
            .await;
        let mut reader = match result {
            Ok(reader) => reader,
            Err((code, reason)) => return request.reject(code, &reason).await,
        };
        let ok = reader.fetch_ok().cloned().unwrap_or_default();
        let mut writer = request
            .accept(FetchOk {
                parameters: Parameters::default(),
                ..ok
            })
            .await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(30), reader.next()).await {
                Ok(Ok(Some(item))) => writer.write(&item).await?,
                Ok(Ok(None)) => break,
                Ok(Err(_)) | Err(_) => {
                    drop(writer);
                    return Ok(());
                }
            }
        }
        writer.finish();
        Ok(())
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
        let result = match (self.shared.origins.route(namespace), self.shared.tracks.parents()) {
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

/// Where a namespace announcement came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Local,
    Parent,
}

/// The namespaces one SUBSCRIBE_NAMESPACE has announced, and from which sources: a namespace
/// published both here and above is announced once, and withdrawn when neither has it.
#[derive(Debug, Default)]
struct NamespaceSources(HashMap<TrackNamespace, (bool, bool)>);

impl NamespaceSources {
    async fn apply(
        &mut self,
        announcer: &mut NamespaceAnnouncer,
        source: Source,
        event: NamespaceEvent,
    ) -> Result<(), banyan_moq::session::Error> {
        let (namespace, present) = match event {
            NamespaceEvent::Published(ns) => (ns, true),
            NamespaceEvent::Done(ns) => (ns, false),
        };
        let entry = self.0.entry(namespace.clone()).or_default();
        let before = entry.0 || entry.1;
        match source {
            Source::Local => entry.0 = present,
            Source::Parent => entry.1 = present,
        }
        let after = entry.0 || entry.1;
        if !after {
            self.0.remove(&namespace);
        }
        match (before, after) {
            (false, true) => announcer.announce(&namespace).await,
            (true, false) => announcer.done(&namespace).await,
            _ => Ok(()),
        }
    }

    async fn parent_lost(
        &mut self,
        announcer: &mut NamespaceAnnouncer,
    ) -> Result<(), banyan_moq::session::Error> {
        let from_parent: Vec<TrackNamespace> = self
            .0
            .iter()
            .filter(|(_, (_, parent))| *parent)
            .map(|(ns, _)| ns.clone())
            .collect();
        for namespace in from_parent {
            self.apply(announcer, Source::Parent, NamespaceEvent::Done(namespace))
                .await?;
        }
        Ok(())
    }
}

/// A subscription a joining FETCH can refer to: its track and its joining location.
type Joinable = (Arc<Track>, Option<Location>);

/// How long a joining FETCH waits for the answer to the SUBSCRIBE it joins.
const JOIN_WAIT: Duration = Duration::from_secs(30);

/// How long a joining FETCH waits for its SUBSCRIBE to arrive: the two come on separate
/// streams, so the FETCH can be read first even when it was sent second.
const JOIN_ARRIVAL: Duration = Duration::from_secs(1);

/// A session's SUBSCRIBEs that a joining FETCH can name, by Request ID: each from its arrival
/// (a watch holding `None`) through its SUBSCRIBE_OK (`Some`) to its end (removed).
#[derive(Debug, Default)]
struct JoinMap {
    subscriptions: Mutex<HashMap<u64, JoinEntry>>,
    arrived: tokio::sync::Notify,
}

/// One SUBSCRIBE in a [`JoinMap`].
#[derive(Debug)]
struct JoinEntry {
    /// The track it asks for (`None` if the name was invalid).
    name: Option<FullTrackName>,
    /// Its subscription, once accepted.
    joinable: watch::Sender<Option<Joinable>>,
}

impl JoinMap {
    /// Subscription `id` was accepted: joining FETCHes for it may proceed.
    fn established(&self, id: u64, joinable: Joinable) {
        if let Some(tx) = self
            .subscriptions
            .lock()
            .ok()
            .and_then(|m| m.get(&id).map(|e| e.joinable.clone()))
        {
            tx.send_replace(Some(joinable));
        }
    }

    /// Whether the session has a SUBSCRIBE for `name` (held, answered or live).
    fn subscribes_to(&self, name: &FullTrackName) -> bool {
        self.subscriptions
            .lock()
            .is_ok_and(|m| m.values().any(|e| e.name.as_ref() == Some(name)))
    }

    /// The subscription `id` names, once it is established; `None` if it never arrives,
    /// is refused or ends first.
    async fn join(&self, id: u64) -> Option<Joinable> {
        let arrival = tokio::time::Instant::now() + JOIN_ARRIVAL;
        let mut rx = loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(rx) = self
                .subscriptions
                .lock()
                .ok()
                .and_then(|m| m.get(&id).map(|e| e.joinable.subscribe()))
            {
                break rx;
            }
            tokio::time::timeout_at(arrival, arrived).await.ok()?;
        };
        let established = match tokio::time::timeout(JOIN_WAIT, rx.wait_for(Option::is_some)).await {
            Ok(Ok(joinable)) => joinable.clone(),
            Ok(Err(_)) | Err(_) => None,
        };
        established
    }
}

/// A SUBSCRIBE's entry in the session's [`JoinMap`], from its arrival to its end.
struct JoinSlot {
    map: Arc<JoinMap>,
    id: u64,
}

impl JoinSlot {
    fn new(map: &Arc<JoinMap>, id: u64, name: Option<FullTrackName>) -> Self {
        if let Ok(mut m) = map.subscriptions.lock() {
            m.insert(
                id,
                JoinEntry {
                    name,
                    joinable: watch::Sender::new(None),
                },
            );
        }
        map.arrived.notify_waiters();
        Self { map: map.clone(), id }
    }
}

impl Drop for JoinSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.subscriptions.lock() {
            m.remove(&self.id);
        }
    }
}

/// A counted slot in a per-session limit, released on drop.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(counter: &Arc<AtomicUsize>, limit: usize) -> Option<Slot> {
        let taken = counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < limit).then_some(n + 1)
        });
        taken.ok().map(|_| Slot(counter.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
