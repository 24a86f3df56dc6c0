//! `banyan-ingest`: the RTMP and SRT ingest gateway. Each encoder's stream (OBS, ffmpeg, a hardware
//! encoder) becomes an ordinary Banyan broadcast published into a relay: an MSF catalog, LOC
//! objects with capture timestamps, one group per GOP, video and audio tracks. It is a
//! publisher in MoQT terms (it reuses `banyan-publisher`'s broadcast and reconnecting publish
//! loop), in its own crate so the relay stays a relay and no relay or viewer carries the RTMP
//! or SRT stack; it scales with broadcasters, not viewers.
//!
//! # Module map
//! - [`config`]: [`config::IngestConfig`], flags > `BANYAN_INGEST_*` > TOML > defaults.
//! - [`keys`]: stream keys as credentials: the `[keys]` table, publish JWTs, hashed log names.
//! - [`rtmp`]: the listener and one connection (handshake, `connect`, `publish`, media), bounded.
//! - [`flv`]: FLV audio/video tag bodies → codec configurations and frames (the hand-written map).
//! - [`srt`]: the SRT listener (`--srt-listen`): streamid = stream key, refused at the connection
//!   request; one connection's MPEG-TS into the mapping.
//! - [`ts`]: MPEG-TS → codec configurations and frames (Annex-B → AVCC + avcC, ADTS → raw AAC +
//!   AudioSpecificConfig, 33-bit PTS → µs), garbage skipped and counted.
//! - [`mapping`]: a connection's frames → its broadcast's tracks: catalog, groups, capture time.
//! - [`broadcasts`]: the broadcasts by namespace: claim (relay decides), resume within the grace
//!   period, end (PUBLISH_DONE).
//! - [`metrics`]: `/metrics` and `/health`.

pub mod broadcasts;
pub mod config;
pub mod flv;
pub mod keys;
pub mod mapping;
pub mod metrics;
pub mod rtmp;
pub mod srt;
pub mod ts;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::broadcasts::Registry;
use crate::config::IngestConfig;
use crate::keys::KeyTable;
use crate::metrics::Metrics;

/// Run the gateway until `shutdown` resolves, then end every broadcast (PUBLISH_DONE) and
/// return. Prints `listening: rtmp ADDR`, `listening: srt ADDR` (with `--srt-listen`) and
/// `listening: http ADDR` on stdout once ready.
pub async fn run(
    config: IngestConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let keys = match &config.keys {
        Some(path) => KeyTable::load(path)?,
        None => KeyTable::default(),
    };
    let metrics = Arc::new(Metrics::default());
    let registry = Arc::new(Registry::new(config.clone(), metrics.clone()));
    let rtmp = tokio::net::TcpListener::bind(config.rtmp_listen)
        .await
        .with_context(|| format!("binding --rtmp-listen {}", config.rtmp_listen))?;
    let http = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("binding --http-listen {}", config.http_listen))?;
    let srt = match config.srt_listen {
        Some(addr) => Some(
            srt::bind(addr, config.srt_latency)
                .await
                .with_context(|| format!("binding --srt-listen {addr}"))?,
        ),
        None => None,
    };
    let (rtmp_addr, http_addr) = (metrics::local(&rtmp), metrics::local(&http));
    tracing::info!(rtmp = %rtmp_addr, srt = ?srt.as_ref().map(|s| s.2), http = %http_addr, relay = %config.relay, keys = keys.len(), "ingest gateway listening");
    println!("listening: rtmp {rtmp_addr}");
    if let Some((_, _, addr)) = &srt {
        println!("listening: srt {addr}");
    }
    println!("listening: http {http_addr}");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let http_task = tokio::spawn(metrics::serve(http, metrics.clone(), stopped()));
    let ctx = Arc::new(rtmp::Context::new(config, keys, registry.clone(), metrics));
    let srt_task = srt
        .map(|(listener, incoming, _)| tokio::spawn(srt::serve(listener, incoming, ctx.clone(), stopped())));
    let serving = rtmp::serve(rtmp, ctx, stopped());
    tokio::pin!(serving);
    tokio::select! {
        () = shutdown => {}
        () = &mut serving => {}
    }
    tracing::info!("shutting down: ending every broadcast");
    let _ = stop_tx.send(true);
    serving.await;
    if let Some(task) = srt_task {
        let _ = task.await;
    }
    registry
        .shutdown(banyan_publisher::publish::LINGER + Duration::from_secs(1))
        .await;
    let _ = http_task.await;
    Ok(())
}
