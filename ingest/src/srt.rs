//! The SRT listener and one encoder connection: SRT itself (handshake, retransmission, the
//! latency window) is `srt-tokio`'s; the encoder calls (`srt://host:PORT?streamid=KEY`) and
//! this module decides on the connection request, before any media: the streamid is the stream
//! key, with the RTMP key rules ([`crate::rtmp::Context::admit`]); a refused key gets an SRT
//! rejection (`Forbidden`, or `Conflict` while another encoder publishes the broadcast). An
//! accepted connection's messages (MPEG-TS) go through [`crate::ts::Demuxer`] into the same
//! [`Mapper`] as RTMP.
//!
//! SRT has no "unpublish": every close (the caller's shutdown, or its silence for
//! `--idle-timeout`) leaves the broadcast waiting `--reconnect-grace` for the same key.
//! Bounds: `--max-connections` (shared count with RTMP's rule, its own semaphore), the PES
//! bounds of [`crate::ts`], and srt-tokio's receive buffer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::{ConnectionRequest, SrtIncoming, SrtListener};
use tokio::sync::Semaphore;

use crate::mapping::{MapError, Mapper};
use crate::rtmp::{Context, Refusal};
use crate::ts::{Demuxer, TsEvent};

/// Bind the SRT listener on `addr` with receive latency `latency`; the bound address too.
pub async fn bind(
    addr: SocketAddr,
    latency: Duration,
) -> std::io::Result<(SrtListener, SrtIncoming, SocketAddr)> {
    let socket = tokio::net::UdpSocket::bind(addr).await?;
    let local = socket.local_addr()?;
    let (listener, incoming) = SrtListener::builder()
        .latency(latency)
        .socket(socket)
        .bind(local)
        .await?;
    Ok((listener, incoming, local))
}

/// Take encoders from `incoming` until `shutdown` resolves; then close every connection.
pub async fn serve(
    listener: SrtListener,
    mut incoming: SrtIncoming,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(ctx.config.max_connections));
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let request = tokio::select! {
            request = incoming.incoming().next() => match request {
                Some(r) => r,
                None => break,
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        ctx.registry.prune();
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            ctx.metrics.connections_refused.inc();
            tracing::warn!(peer = %request.remote(), max = ctx.config.max_connections, "too many connections; rejecting");
            let _ = request
                .reject(RejectReason::Server(ServerRejectReason::Overload))
                .await;
            continue;
        };
        let ctx = ctx.clone();
        connections.spawn(async move {
            connection(&ctx, request).await;
            drop(permit);
        });
    }
    connections.shutdown().await;
    drop(listener);
}

/// Why an SRT connection ended.
#[derive(Debug, thiserror::Error)]
enum SrtError {
    #[error("silent for the idle timeout")]
    Idle,
    #[error("a newer connection with the same stream key took the broadcast over")]
    TakenOver,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Media(#[from] MapError),
}

async fn connection(ctx: &Arc<Context>, request: ConnectionRequest) {
    let peer = request.remote();
    let id = ctx.next_id();
    let key = request.stream_id().map(|s| s.to_string()).unwrap_or_default();
    // Bounded inside (the relay's answer within twice --connect-timeout); not cancelled here, so
    // a claim is never left half made.
    let live = match ctx.admit(&key, id, peer).await {
        Ok(live) => live,
        Err(refusal) => {
            let reason = match refusal {
                Refusal::Busy(_) => ServerRejectReason::Conflict,
                Refusal::Key(_) => ServerRejectReason::Forbidden,
            };
            let _ = request.reject(RejectReason::Server(reason)).await;
            return;
        }
    };
    let mut socket = match request.accept(None).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%peer, "SRT accept failed: {e}");
            ctx.registry.release(&live, id, false);
            return;
        }
    };
    ctx.metrics.connections.inc();
    ctx.metrics.connections_total.inc();
    let mut mapper = Mapper::new(live.clone(), ctx.metrics.clone());
    let mut demux = Demuxer::default();
    let result = async {
        loop {
            let message = match tokio::time::timeout(ctx.config.idle_timeout, socket.next()).await {
                Err(_) => return Err(SrtError::Idle),
                Ok(None) => return Ok(()),
                Ok(Some(message)) => message?,
            };
            if !live.held_by(id) {
                return Err(SrtError::TakenOver);
            }
            let (_, data) = message;
            ctx.metrics.bytes.inc_by(data.len() as u64);
            for event in demux.push(&data) {
                // The catalog is made at the first frame: wait for every stream's configuration.
                let ready = (!demux.has_video() || mapper.has_config(true))
                    && (!demux.has_audio() || mapper.has_config(false));
                media(&mut mapper, event, ready)?;
            }
            let skipped = demux.take_skipped();
            if skipped > 0 {
                ctx.metrics.ts_skipped.inc_by(skipped);
                tracing::debug!(%peer, skipped, "MPEG-TS packets skipped");
            }
        }
    }
    .await;
    let clean = match &result {
        Ok(()) => {
            tracing::info!(%peer, "SRT connection closed");
            false
        }
        Err(SrtError::Media(e)) => {
            tracing::warn!(%peer, "closing: {e}");
            ctx.media_error(e)
        }
        Err(e) => {
            tracing::warn!(%peer, "closing: {e}");
            false
        }
    };
    drop(socket);
    ctx.metrics.connections.dec();
    ctx.registry.release(&live, id, clean);
}

fn media(mapper: &mut Mapper, event: TsEvent, ready: bool) -> Result<(), MapError> {
    match event {
        TsEvent::Video { .. } | TsEvent::Audio { .. } if !ready => {}
        TsEvent::VideoConfig(config) => mapper.video_config(config),
        TsEvent::AudioConfig(config) => mapper.audio_config(config),
        TsEvent::Video {
            dts,
            pts,
            keyframe,
            data,
        } => mapper.video_frame(dts, pts, keyframe, data)?,
        TsEvent::Audio { t, data } => mapper.audio_frame(t, data)?,
        TsEvent::Unsupported(what) => return Err(MapError::Unsupported(what)),
    }
    Ok(())
}
