//! The gateway's Prometheus metrics (`banyan_ingest_*`) and its HTTP endpoints: `/metrics`
//! (OpenMetrics text) and `/health` (`ok` while the listeners run).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A media kind label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `video` or `audio`.
    pub kind: &'static str,
}

/// Every gateway metric.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Encoder connections open.
    pub connections: Gauge,
    /// Encoder connections accepted.
    pub connections_total: Counter,
    /// Connections closed at once because `--max-connections` were open.
    pub connections_refused: Counter,
    /// Connections closed for not publishing within the handshake timeout, or for bytes that are
    /// not RTMP.
    pub handshake_failures: Counter,
    /// Broadcasts being published (including those waiting for their encoder to return).
    pub streams: Gauge,
    /// Broadcasts started.
    pub streams_total: Counter,
    /// Stream keys refused (unknown here, or refused by the relay).
    pub refused_keys: Counter,
    /// Streams refused for a codec Banyan does not carry.
    pub refused_codecs: Counter,
    /// Connections closed for a malformed FLV tag.
    pub malformed_tags: Counter,
    /// MPEG-TS packets (or broken PES/ADTS units) skipped on SRT connections.
    pub ts_skipped: Counter,
    /// Encoders that came back within the grace period and resumed their broadcast.
    pub reconnects: Counter,
    /// Media payload bytes received from encoders.
    pub bytes: Counter,
    /// Frames written into broadcasts.
    pub frames: Family<KindLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("banyan_ingest");
        let connections = Gauge::default();
        registry.register(
            "connections_open",
            "Encoder connections open",
            connections.clone(),
        );
        let mut counter = |name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let connections_total = counter("connections", "Encoder connections accepted");
        let connections_refused = counter(
            "connections_refused",
            "Connections closed at once: --max-connections reached",
        );
        let handshake_failures = counter(
            "handshake_failures",
            "Connections closed before publishing: not RTMP, too slow, or too much before publish",
        );
        let streams_total = counter("streams", "Broadcasts started");
        let refused_keys = counter(
            "refused_keys",
            "Stream keys refused (unknown, or refused by the relay)",
        );
        let refused_codecs = counter(
            "refused_codecs",
            "Streams refused for a codec Banyan does not carry",
        );
        let malformed_tags = counter("malformed_tags", "Connections closed for a malformed FLV tag");
        let ts_skipped = counter(
            "ts_skipped_packets",
            "MPEG-TS packets (or broken PES/ADTS units) skipped on SRT connections: garbage, unknown PIDs, oversized PES",
        );
        let reconnects = counter(
            "reconnects",
            "Encoders that reconnected within the grace period and resumed their broadcast",
        );
        let bytes = counter("bytes", "Media payload bytes received from encoders");
        let streams = Gauge::default();
        registry.register("streams_live", "Broadcasts being published", streams.clone());
        let frames = Family::<KindLabel, Counter>::default();
        registry.register("frames", "Frames written into broadcasts", frames.clone());
        Self {
            registry,
            connections,
            connections_total,
            connections_refused,
            handshake_failures,
            streams,
            streams_total,
            refused_keys,
            refused_codecs,
            malformed_tags,
            ts_skipped,
            reconnects,
            bytes,
            frames,
        }
    }
}

impl Metrics {
    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serve `/metrics` and `/health` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(render))
        .route("/health", axum::routing::get(|| async { "ok\n" }))
        .with_state(metrics);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

async fn render(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}

/// The address a listener is bound to, for logs (`0.0.0.0:0` if unknown).
pub fn local(listener: &tokio::net::TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}
