//! The HTTP API (axum): handlers parse and validate, take the registry lock briefly, mint
//! tokens outside it and answer. No handler does I/O besides reading its request.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use governor::clock::Clock as _;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;

use crate::api::{
    DrainResponse, ErrorBody, Heartbeat, PublishResponse, RefreshRequest, RefreshResponse, RouteResponse,
    WatchResponse,
};
use crate::history::History;
use crate::metrics::Metrics;
use crate::registry::{PlaceError, Registry};
use crate::token::{valid_user, Minter, Moderators, TokenError};

/// The largest request body accepted (a heartbeat listing thousands of broadcasts fits).
pub const MAX_BODY: usize = 1 << 20;

const STATUS_PAGE: &str = include_str!("status.html");

/// State shared by the handlers and the control loop.
#[derive(Debug)]
pub struct Shared {
    /// The registry.
    pub registry: Mutex<Registry>,
    /// Token minter (None: tokens are empty).
    pub minter: Option<Minter>,
    /// Viewer token lifetime.
    pub token_ttl: Duration,
    /// Publisher token lifetime.
    pub publish_token_ttl: Duration,
    /// Who moderates which broadcast (`--moderator`).
    pub moderators: Moderators,
    /// Assignment rate limiter ([`assignment_limiter`]).
    pub limiter: DefaultDirectRateLimiter,
    /// Counters.
    pub metrics: Metrics,
    /// The last minutes, sampled by the control loop.
    pub history: Mutex<History>,
}

/// The assignment rate limiter: `rate` requests per second sustained, `burst` at once (each at
/// least 1), starting full.
pub fn assignment_limiter(rate: u32, burst: u32) -> DefaultDirectRateLimiter {
    let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
}

/// The API router over `shared`.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(STATUS_PAGE) }))
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route("/v1/history", get(history))
        .route("/v1/relays/heartbeat", post(heartbeat))
        .route("/v1/relays/{id}/drain", post(drain))
        .route("/v1/watch/{*broadcast}", get(watch))
        .route("/v1/refresh", post(refresh))
        .route("/v1/route/{*namespace}", get(route))
        .route("/v1/publish/{*broadcast}", post(publish))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see control/README.md".into(),
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(cors))
        .with_state(shared)
}

/// An error response with an [`ErrorBody`].
pub fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(ErrorBody {
            error: code.to_owned(),
            message,
        }),
    )
        .into_response()
}

async fn cors(request: Request, next: Next) -> Response {
    let preflight = request.method() == Method::OPTIONS;
    let mut response = if preflight {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    response
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let status = shared.registry.lock().status(Instant::now());
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        shared.metrics.render(&status),
    )
        .into_response()
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.registry.lock().status(Instant::now())).into_response()
}

async fn history(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.history.lock().view(Instant::now())).into_response()
}

async fn heartbeat(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let mut json = serde_json::Deserializer::from_slice(&body);
    let parsed = serde_path_to_error::deserialize::<_, Heartbeat>(&mut json)
        .map_err(|e| match e.path().to_string().as_str() {
            "." => format!("malformed heartbeat: {}", e.inner()),
            path => format!("malformed heartbeat: at {path}: {}", e.inner()),
        })
        .and_then(|hb| {
            hb.validate()
                .map(|()| hb)
                .map_err(|e| format!("invalid heartbeat: {e}"))
        });
    match parsed {
        Ok(hb) => {
            Metrics::inc(&shared.metrics.heartbeats);
            let response = shared.registry.lock().heartbeat(hb, Instant::now());
            Json(response).into_response()
        }
        Err(message) => {
            Metrics::inc(&shared.metrics.heartbeats_rejected);
            tracing::debug!(%message, "heartbeat refused");
            error(StatusCode::BAD_REQUEST, "bad_heartbeat", message)
        }
    }
}

async fn drain(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    if shared.registry.lock().order_drain(&id) {
        Metrics::inc(&shared.metrics.drains);
        Json(DrainResponse {
            relay_id: id,
            draining: true,
        })
        .into_response()
    } else {
        place_error(PlaceError::UnknownRelay(id))
    }
}

async fn watch(
    State(shared): State<Arc<Shared>>,
    Assignment { broadcast, query }: Assignment,
) -> Result<Json<WatchResponse>, Response> {
    let region = query.get("region").map(String::as_str).unwrap_or("");
    // A reconnecting viewer names the room it was in, to stay there while it has space.
    let room = match query.get("room").map(|r| r.parse::<u64>()) {
        None => None,
        Some(Ok(room)) => Some(room),
        Some(Err(_)) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "bad_room",
                "room must be a chat room number (a decimal integer)".into(),
            ))
        }
    };
    // The viewer's name (the token's `sub`, what moderators time out and ban): `user`, or
    // a fresh anonymous one.
    let sub = match query.get("user") {
        Some(user) if valid_user(user) => user.clone(),
        Some(_) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "bad_user",
                "user must be 1-64 of A-Z a-z 0-9 _ . -".into(),
            ))
        }
        None => crate::token::subject("anon").map_err(token_error)?,
    };
    let moderator = shared.moderators.allows(&broadcast, &sub);
    let placed = shared
        .registry
        .lock()
        .watch(&broadcast, region, room, Instant::now());
    let placement = placed.map_err(|e| {
        match e {
            PlaceError::UnknownBroadcast(_) => Metrics::inc(&shared.metrics.watch_unknown),
            _ => Metrics::inc(&shared.metrics.watch_no_capacity),
        }
        place_error(e)
    })?;
    let viewer = Viewer {
        sub: &sub,
        room: &placement.chat_room,
        moderator,
    };
    let (token, exp) = mint(&shared, &broadcast, Some(viewer)).map_err(token_error)?;
    Metrics::inc(&shared.metrics.watch_assigned);
    Ok(Json(WatchResponse {
        broadcast,
        relay_id: placement.relay_id,
        region: placement.region,
        endpoint: placement.endpoint,
        token,
        token_expires: exp,
        chat_room: placement.chat_room,
        sub,
        moderator,
    }))
}

/// A fresh token for a valid one (same claims, new expiry). Rate-limited with the
/// assignments; 401 `bad_token` for a token this key did not sign or that has run out, 409
/// `no_auth` when the control plane mints no tokens.
async fn refresh(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    if let Some(refused) = rate_limit(&shared) {
        return refused;
    }
    let request: RefreshRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("expected {{\"token\": \"<jwt>\"}}: {e}"),
            )
        }
    };
    let Some(minter) = &shared.minter else {
        return error(
            StatusCode::CONFLICT,
            "no_auth",
            "this control plane mints no tokens (no --auth-key); there is nothing to refresh".into(),
        );
    };
    let now = unix_now();
    // Probe the claims to pick the lifetime: publishers keep theirs longer.
    let ttl = match minter.verify(&request.token, now) {
        Ok(claims) if claims.publish => shared.publish_token_ttl,
        Ok(_) => shared.token_ttl,
        Err(e) => {
            Metrics::inc(&shared.metrics.refresh_refused);
            return error(StatusCode::UNAUTHORIZED, "bad_token", e.to_string());
        }
    };
    let exp = now.saturating_add(ttl.as_secs().max(1));
    match minter.refresh(&request.token, now, exp) {
        Ok((token, _)) => {
            Metrics::inc(&shared.metrics.refreshed);
            Json(RefreshResponse {
                token,
                token_expires: exp,
            })
            .into_response()
        }
        Err(TokenError::Refused(reason)) => {
            Metrics::inc(&shared.metrics.refresh_refused);
            error(StatusCode::UNAUTHORIZED, "bad_token", reason)
        }
        Err(e) => token_error(e),
    }
}

async fn route(
    State(shared): State<Arc<Shared>>,
    Path(namespace): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(relay) = query.get("relay").filter(|r| !r.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "missing ?relay=ID (the asking relay's id)".into(),
        );
    };
    let namespace = namespace.trim_matches('/');
    match shared.registry.lock().route(namespace, relay, Instant::now()) {
        Ok(upstream) => {
            Metrics::inc(&shared.metrics.routes);
            Json(RouteResponse { upstream }).into_response()
        }
        Err(e) => {
            Metrics::inc(&shared.metrics.routes_refused);
            place_error(e)
        }
    }
}

async fn publish(
    State(shared): State<Arc<Shared>>,
    Assignment { broadcast, query }: Assignment,
) -> Result<Json<PublishResponse>, Response> {
    if broadcast.is_empty() || broadcast.split('/').any(str::is_empty) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the broadcast must be a /-separated path with no empty fields".into(),
        ));
    }
    let region = query.get("region").map(String::as_str).unwrap_or("");
    let placement = shared
        .registry
        .lock()
        .publish(&broadcast, region)
        .map_err(place_error)?;
    let (token, exp) = mint(&shared, &broadcast, None).map_err(token_error)?;
    Metrics::inc(&shared.metrics.publishes);
    Ok(Json(PublishResponse {
        broadcast,
        relay_id: placement.relay_id,
        endpoint: placement.endpoint,
        token,
        token_expires: exp,
    }))
}

/// An assignment request (`GET /v1/watch/…`, `POST /v1/publish/…`) that the rate limiter let
/// through: the broadcast (the path without its outer slashes) and the query.
struct Assignment {
    broadcast: String,
    query: HashMap<String, String>,
}

impl FromRequestParts<Arc<Shared>> for Assignment {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, Response> {
        let Path(broadcast) = Path::<String>::from_request_parts(parts, shared)
            .await
            .map_err(IntoResponse::into_response)?;
        let Query(query) = Query::<HashMap<String, String>>::from_request_parts(parts, shared)
            .await
            .map_err(IntoResponse::into_response)?;
        match rate_limit(shared) {
            Some(refused) => Err(refused),
            None => Ok(Self {
                broadcast: broadcast.trim_matches('/').to_owned(),
                query,
            }),
        }
    }
}

fn rate_limit(shared: &Shared) -> Option<Response> {
    let not_until = shared.limiter.check().err()?;
    let wait = not_until.wait_time_from(shared.limiter.clock().now());
    Metrics::inc(&shared.metrics.rate_limited);
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many assignment requests; retry later".into(),
    );
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Some(response)
}

/// Who a viewer token is for.
struct Viewer<'a> {
    sub: &'a str,
    room: &'a str,
    moderator: bool,
}

/// A publisher token (`viewer` None) or a viewer's token, for `broadcast`, and its expiry;
/// empty without a key.
fn mint(shared: &Shared, broadcast: &str, viewer: Option<Viewer<'_>>) -> Result<(String, u64), TokenError> {
    let publisher = viewer.is_none();
    let ttl = if publisher {
        shared.publish_token_ttl
    } else {
        shared.token_ttl
    };
    let exp = unix_now().saturating_add(ttl.as_secs().max(1));
    let Some(minter) = &shared.minter else {
        return Ok((String::new(), exp));
    };
    let minted = match viewer {
        None => minter.publisher(broadcast, exp),
        Some(v) => minter.viewer(broadcast, v.sub, v.room, exp, v.moderator),
    };
    minted.map(|token| (token, exp))
}

fn token_error(e: TokenError) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, "token", e.to_string())
}

fn place_error(e: PlaceError) -> Response {
    let (status, code) = match &e {
        PlaceError::UnknownBroadcast(_) => (StatusCode::NOT_FOUND, "unknown_broadcast"),
        PlaceError::UnknownRelay(_) => (StatusCode::NOT_FOUND, "unknown_relay"),
        PlaceError::NoCapacity(_) => (StatusCode::SERVICE_UNAVAILABLE, "no_capacity"),
        PlaceError::NoRelays => (StatusCode::SERVICE_UNAVAILABLE, "no_relays"),
    };
    error(status, code, e.to_string())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
