//! The internal HTTP listener (`--http-listen`):
//!
//! - `GET /metrics`: OpenMetrics text ([`Metrics::render`]), [`METRICS_CONTENT_TYPE`].
//! - `GET /health`: `{"status":"ok","sessions":N,"relay_id":"..."}`, or status 503 with
//!   `"status":"draining"` once the relay is draining.
//! - `GET /certificate.sha256`: the development certificate's SHA-256 as hex and a newline
//!   (404 without `--dev-cert`), with `Access-Control-Allow-Origin: *` so a browser page on
//!   another origin can fetch it for WebTransport `serverCertificateHashes`.
//! - `GET /v1/gifts/{broadcast}`: gift totals from the ledger (404 without one).
//! - `GET /v1/moderation/{broadcast}`: the moderation action log from the ledger's file,
//!   oldest first (404 without a ledger).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use banyan_moq::coding::TrackNamespace;

use crate::interact::ledger::Ledger;
use crate::interact::moderation::Action;
use crate::metrics::Metrics;

/// The content type of `/metrics` (OpenMetrics text, what [`Metrics::render`] encodes).
pub const METRICS_CONTENT_TYPE: &str = crate::metrics::CONTENT_TYPE;

/// What the HTTP handlers read; cheap to clone.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// The relay's metrics.
    pub metrics: Arc<Metrics>,
    /// The hex SHA-256 of the development certificate, when `--dev-cert` is used.
    pub cert_hash: Option<String>,
    /// Set when the relay starts draining; `/health` then answers 503.
    pub draining: Arc<AtomicBool>,
    /// This relay's id (`--relay-id`).
    pub relay_id: String,
    /// The gift ledger (`--gift-ledger`), for `/v1/gifts/{broadcast}`.
    pub gifts: Option<Arc<Ledger>>,
}

impl HttpState {
    /// State with fresh `draining = false` and no certificate hash.
    pub fn new(metrics: Arc<Metrics>, relay_id: impl Into<String>) -> Self {
        Self {
            metrics,
            cert_hash: None,
            draining: Arc::new(AtomicBool::new(false)),
            relay_id: relay_id.into(),
            gifts: None,
        }
    }
}

/// The `/health` body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Health {
    /// `"ok"` or `"draining"`.
    pub status: String,
    /// Open sessions (all transports).
    pub sessions: i64,
    /// The relay's id.
    pub relay_id: String,
}

/// The router with every endpoint, for embedding or tests.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/certificate.sha256", get(certificate_hash))
        .route("/v1/gifts/{*broadcast}", get(gift_totals))
        .route("/v1/moderation/{*broadcast}", get(moderation_log))
        .with_state(state)
}

/// Serve the router on `listener` until `shutdown` completes (then finish in-flight requests).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(state): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(METRICS_CONTENT_TYPE),
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn health(State(state): State<HttpState>) -> Response {
    let draining = state.draining.load(Ordering::Relaxed);
    let body = Health {
        status: if draining { "draining" } else { "ok" }.to_owned(),
        sessions: state.metrics.sessions_total(),
        relay_id: state.relay_id.clone(),
    };
    let code = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body)).into_response()
}

async fn certificate_hash(State(state): State<HttpState>) -> Response {
    let cors = (header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    let text = (
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    match &state.cert_hash {
        Some(hash) => (StatusCode::OK, [cors, text], format!("{hash}\n")).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [cors, text],
            "no development certificate\n",
        )
            .into_response(),
    }
}

/// `GET /v1/gifts/{broadcast}`: the broadcast's gift totals from the ledger, as JSON
/// (`{"gifts": N, "amount": A}`); 404 on a relay without a ledger.
async fn gift_totals(State(state): State<HttpState>, Path(broadcast): Path<String>) -> Response {
    let Some(ledger) = &state.gifts else {
        return (StatusCode::NOT_FOUND, "no gift ledger on this relay\n").into_response();
    };
    let namespace = match TrackNamespace::from_path(&broadcast) {
        Ok(namespace) => namespace,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let (ledger, namespace) = (ledger.clone(), namespace.to_string());
    match tokio::task::spawn_blocking(move || ledger.totals(&namespace)).await {
        Ok(Ok(totals)) => Json(totals).into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("gift ledger: {e}\n")).into_response(),
    }
}

/// Most actions `GET /v1/moderation/{broadcast}` returns (the newest).
const LOG_ACTIONS: usize = 500;

/// One entry of the moderation action log (`GET /v1/moderation/{broadcast}`).
#[derive(Debug, serde::Serialize)]
struct LogEntry {
    seq: u64,
    at_ms: u64,
    moderator: String,
    /// The action in words (`ban eve`, `delete 3#17`).
    action: String,
}

/// `GET /v1/moderation/{broadcast}`: the broadcast's moderation actions from the store,
/// oldest first (the newest 500), as JSON `[{"seq", "at_ms", "moderator", "action"}]`; 404 on
/// a relay without a ledger.
async fn moderation_log(State(state): State<HttpState>, Path(broadcast): Path<String>) -> Response {
    let Some(ledger) = &state.gifts else {
        return (StatusCode::NOT_FOUND, "no ledger on this relay\n").into_response();
    };
    let namespace = match TrackNamespace::from_path(&broadcast) {
        Ok(namespace) => namespace,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let (ledger, namespace) = (ledger.clone(), namespace.to_string());
    match tokio::task::spawn_blocking(move || ledger.actions(&namespace, LOG_ACTIONS)).await {
        Ok(Ok(actions)) => {
            let entries: Vec<LogEntry> = actions
                .into_iter()
                .map(|logged| LogEntry {
                    seq: logged.seq,
                    at_ms: logged.at_ms,
                    moderator: logged.moderator,
                    action: Action::decode(&mut bytes::Bytes::from(logged.action))
                        .map_or_else(|e| format!("unreadable: {e}"), |a| a.describe()),
                })
                .collect();
            let cors = (header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            ([cors], Json(entries)).into_response()
        }
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("ledger: {e}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use banyan_moq::session::TransportKind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A parsed HTTP/1.1 response.
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// One GET with `Connection: close`, read to EOF.
    async fn get(addr: SocketAddr, path: &str) -> Reply {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        // Axum sends small bodies with Content-Length; a chunked body would need decoding.
        assert!(
            !headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked"),
            "unexpected chunked body"
        );
        Reply {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    async fn start(
        state: HttpState,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state, async move {
            let _ = stopped.await;
        }));
        (addr, stop, task)
    }

    #[tokio::test]
    async fn endpoints() {
        let metrics = Metrics::new();
        let _s1 = metrics.session_guard(TransportKind::Quic);
        let _s2 = metrics.session_guard(TransportKind::WebTransport);
        metrics.objects_out.inc_by(42);
        let mut state = HttpState::new(metrics.clone(), "edge-1:4443");
        state.cert_hash = Some("ab".repeat(32));
        let draining = state.draining.clone();
        let (addr, stop, task) = start(state).await;

        let r = get(addr, "/metrics").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some(METRICS_CONTENT_TYPE));
        assert!(
            r.body.contains("banyan_relay_objects_out_total 42\n"),
            "{}",
            r.body
        );

        let r = get(addr, "/health").await;
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().starts_with("application/json"));
        let h: Health = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            h,
            Health {
                status: "ok".into(),
                sessions: 2,
                relay_id: "edge-1:4443".into()
            }
        );

        let r = get(addr, "/certificate.sha256").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, format!("{}\n", "ab".repeat(32)));
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));

        assert_eq!(get(addr, "/nope").await.status, 404);

        draining.store(true, Ordering::Relaxed);
        let r = get(addr, "/health").await;
        assert_eq!(r.status, 503);
        let h: Health = serde_json::from_str(&r.body).unwrap();
        assert_eq!(h.status, "draining");

        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn no_dev_certificate_is_404() {
        let (addr, stop, task) = start(HttpState::new(Metrics::new(), "r")).await;
        let r = get(addr, "/certificate.sha256").await;
        assert_eq!(r.status, 404);
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}
