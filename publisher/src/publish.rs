//! `banyan-publish`: connect, PUBLISH_NAMESPACE the broadcast, answer SUBSCRIBEs for the
//! catalog and media tracks from the [`Broadcast`], and reconnect with backoff when the relay goes
//! away (a new subscription resumes at the next group).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use banyan_media::catalog::CATALOG_TRACK;
use banyan_moq::coding::{PublishDoneCode, RequestErrorCode, SessionErrorCode, TrackNamespace};
use banyan_moq::data::SubgroupObject;
use banyan_moq::message::{Parameters, PublishNamespace, SubscribeOk};
use banyan_moq::session::{NamespacePublication, Request, Session, SubscribeRequest, TrackWriter};
use banyan_moq::track::{Fanout, LatencyBudget, Step};
use bytes::Bytes;
use tokio::sync::oneshot;

use crate::broadcast::{Broadcast, MediaTrack};
use crate::connect::{Backoff, Connector};

/// Publisher priority of the catalog's streams (highest: 0 is most urgent).
const CATALOG_PRIORITY: u8 = 0;

/// How long after the end of the source the session stays open so the last objects, the
/// PUBLISH_DONEs and the final catalog reach the relay (QUIC discards unsent data on close).
pub const LINGER: Duration = Duration::from_secs(2);

/// Groups a media subscription may fall behind the newest before its oldest group is
/// skipped: it may have the newest group and the two before it in flight (a relay reading
/// at line rate has one, briefly two, since a group finishes as the next starts); when a
/// fourth starts, the oldest one's stream is reset. (The broadcast channel this replaced
/// skipped after 512 objects, several GOPs; a few groups keep the buffering per subscriber
/// bounded by whole groups and the skip lands on a keyframe.)
pub const MAX_LAG: usize = 2;

/// How long after the source ends a media subscription may keep sending its groups in
/// flight before PUBLISH_DONE (within [`LINGER`], so the PUBLISH_DONE still goes out).
pub const DRAIN: Duration = Duration::from_secs(1);

/// Keep a broadcast published on the relay until the source ends (then linger and return),
/// reconnecting with backoff whenever the session fails. Errors only if the first connection
/// attempt fails or the relay refuses the namespace.
pub async fn run(
    connector: Connector,
    namespace: TrackNamespace,
    broadcast: Arc<Broadcast>,
) -> anyhow::Result<()> {
    run_announced(connector, namespace, broadcast, None).await
}

/// [`run`], telling `on_announced` once the relay has accepted the first PUBLISH_NAMESPACE (the
/// ingest gateway accepts an encoder's stream only then: the relay's answer checks its key).
pub async fn run_announced(
    connector: Connector,
    namespace: TrackNamespace,
    broadcast: Arc<Broadcast>,
    mut on_announced: Option<oneshot::Sender<()>>,
) -> anyhow::Result<()> {
    let mut backoff = Backoff::default();
    let mut ever_connected = false;
    loop {
        let attempt = connect_and_announce(&connector, &namespace).await;
        let announced = match attempt {
            Ok(a) => a,
            Err(e) if !ever_connected => return Err(connector.token_expired("publish", &e).unwrap_or(e)),
            Err(e) => {
                if let Some(e) = connector.token_expired("publish", &e) {
                    return Err(e);
                }
                tracing::warn!(error = %format!("{e:#}"), "reconnect failed");
                let delay = backoff.next_delay();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => continue,
                    _ = broadcast.ended() => return Ok(()),
                }
            }
        };
        let Announced {
            session,
            _publication,
            driver,
        } = announced;
        ever_connected = true;
        if let Some(tx) = on_announced.take() {
            let _ = tx.send(());
        }
        let started = tokio::time::Instant::now();
        eprintln!(
            "publish: connected to {}, announced {}",
            connector.url(),
            namespace_path(&namespace)
        );
        let serving = serve(session.clone(), broadcast.clone());
        tokio::pin!(serving);
        let finished = tokio::select! {
            _ = &mut serving => false,
            _ = session.closed() => false,
            _ = broadcast.ended() => true,
            goaway = session.goaway_received() => {
                eprintln!("publish: relay sent GOAWAY{}; reconnecting", if goaway.new_session_uri.is_empty() { String::new() } else { format!(" to {}", goaway.new_session_uri) });
                false
            }
        };
        if finished {
            // Keep answering while the last objects and the final catalog drain.
            let _ = tokio::time::timeout(LINGER, async {
                tokio::select! {
                    _ = &mut serving => {}
                    _ = session.closed() => {}
                }
            })
            .await;
            session.close(SessionErrorCode::NoError, "broadcast complete");
            driver.abort();
            return Ok(());
        }
        if session.is_closed() {
            let closed = anyhow::Error::new(session.closed().await);
            if let Some(e) = connector.token_expired("publish", &closed) {
                driver.abort();
                return Err(e);
            }
        }
        session.close(SessionErrorCode::NoError, "reconnecting");
        driver.abort();
        eprintln!("publish: disconnected from the relay; reconnecting with backoff");
        if started.elapsed() > Duration::from_secs(5) {
            backoff.reset();
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = broadcast.ended() => return Ok(()),
        }
    }
}

/// A connected session with the namespace announced.
struct Announced {
    session: Session,
    _publication: NamespacePublication,
    driver: tokio::task::JoinHandle<Result<(), banyan_moq::session::Error>>,
}

async fn connect_and_announce(
    connector: &Connector,
    namespace: &TrackNamespace,
) -> anyhow::Result<Announced> {
    let (session, driver) = connector.connect(None).await?;
    let driver = tokio::spawn(driver.run());
    let request = PublishNamespace {
        request_id: 0,
        track_namespace: namespace.clone(),
        parameters: Parameters::default(),
    };
    match session.publish_namespace(request).await {
        Ok(publication) => Ok(Announced {
            session,
            _publication: publication,
            driver,
        }),
        Err(e) => {
            session.close(SessionErrorCode::NoError, "announce failed");
            driver.abort();
            Err(e).with_context(|| format!("PUBLISH_NAMESPACE {}", namespace_path(namespace)))
        }
    }
}

/// Answer requests on `session` until it closes.
async fn serve(session: Session, broadcast: Arc<Broadcast>) {
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(request) = session.accept().await {
        while tasks.try_join_next().is_some() {}
        let Request::Subscribe(request) = request else {
            let _ = request
                .reject(
                    RequestErrorCode::NotSupported,
                    "banyan-publish answers SUBSCRIBE only",
                )
                .await;
            continue;
        };
        let name = String::from_utf8_lossy(request.message.track_name.as_bytes()).into_owned();
        if name == CATALOG_TRACK {
            tasks.spawn(serve_catalog(request, broadcast.clone()));
            continue;
        }
        let track = broadcast
            .published()
            .and_then(|p| p.tracks.iter().find(|t| t.name == name).cloned());
        match track {
            Some(track) if !broadcast.is_ended() => {
                tasks.spawn(serve_track(request, track, broadcast.clone()));
            }
            _ => {
                let _ = request
                    .reject(RequestErrorCode::DoesNotExist, "no such track")
                    .await;
            }
        }
    }
    tasks.abort_all();
}

/// The catalog track: the current catalog as object 0 of the current catalog group, and a
/// new group whenever it changes; PUBLISH_DONE when the broadcast is complete.
async fn serve_catalog(request: SubscribeRequest, broadcast: Arc<Broadcast>) {
    let Ok(writer) = request.accept(SubscribeOk::default()).await else {
        return;
    };
    let sender = writer.sender();
    let (end_tx, watcher) = watch_requests(writer);
    let mut published = broadcast.watch_published();
    let mut cancelled = watcher;
    loop {
        let current = published.borrow_and_update().clone();
        if let Some(p) = current {
            let group = broadcast.catalog_group();
            let json = Bytes::from(p.catalog.to_json());
            match sender.open_subgroup(group, 0, Some(CATALOG_PRIORITY), true).await {
                Ok(mut subgroup) => {
                    let _ = subgroup.write(&SubgroupObject::new(0, json)).await;
                    subgroup.finish();
                }
                Err(_) if sender.session().is_closed() => return,
                Err(e) => tracing::debug!(error = %e, "catalog stream"),
            }
            if p.catalog.is_complete == Some(true) {
                let _ = end_tx.send(());
                return;
            }
        }
        tokio::select! {
            changed = published.changed() => if changed.is_err() { return },
            _ = &mut cancelled => return,
        }
    }
}

/// A media track: the track's groups, a subgroup stream each, from the next group on (see
/// [`MediaTrack::subscribe`]), newest first on a congested path; a subscription more than
/// [`MAX_LAG`] groups behind, or with a group still undelivered a GOP after the next began
/// ([`LatencyBudget::Auto`]: a far-away relay), skips its older groups. PUBLISH_DONE (Track Ended) follows the source's end once the groups in
/// flight are sent (for at most [`DRAIN`]); a cancelled subscription stops at once.
async fn serve_track(request: SubscribeRequest, track: Arc<MediaTrack>, broadcast: Arc<Broadcast>) {
    let (consumer, start) = track.subscribe();
    let Ok(writer) = request.accept(SubscribeOk::newest_first()).await else {
        return;
    };
    let mut fanout = Fanout::new(consumer, writer.sender(), start, MAX_LAG).budget(LatencyBudget::Auto);
    let (end_tx, mut cancelled) = watch_requests(writer);
    let deadline = async {
        broadcast.ended().await;
        tokio::time::sleep(DRAIN).await;
    };
    tokio::pin!(deadline);
    let ended = loop {
        tokio::select! {
            step = fanout.step() => match step {
                Step::Ended => break true,
                Step::Skipped { group, reason } => {
                    tracing::warn!(track = %track.name, group, reason = reason.as_str(), "subscription fell behind; skipping a group");
                }
                Step::Started { .. } | Step::Finished { .. } | Step::ReachedEnd => {}
            },
            () = &mut deadline => break true,
            _ = &mut cancelled => break false,
        }
    };
    // Resets whatever is still in flight (nothing, unless the drain ran out or cancelled).
    fanout.abandon().await;
    if ended {
        let _ = end_tx.send(());
    }
}

/// Watch a subscription's request stream in its own task (reading it is not cancel-safe).
/// Returns a sender that ends the subscription with PUBLISH_DONE (Track Ended), and a
/// receiver that resolves when the subscriber cancels or the stream fails.
fn watch_requests(mut writer: TrackWriter) -> (oneshot::Sender<()>, oneshot::Receiver<()>) {
    let (end_tx, mut end_rx) = oneshot::channel::<()>();
    let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                request = writer.next_request() => match request {
                    Ok(Some(_)) => continue,
                    _ => break,
                },
                ended = &mut end_rx => {
                    if ended.is_ok() {
                        let _ = writer.finish(PublishDoneCode::TrackEnded, "broadcast ended").await;
                        // Keep the task (and cancel sender) alive so the caller is not told
                        // the subscription was cancelled.
                        std::future::pending::<()>().await;
                    }
                    break;
                }
            }
        }
        let _ = cancel_tx.send(());
    });
    (end_tx, cancel_rx)
}

/// A namespace as `a/b/c`.
pub fn namespace_path(namespace: &TrackNamespace) -> String {
    namespace
        .fields()
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Print one progress line a second to stderr until `broadcast` ends.
pub async fn progress(broadcast: Arc<Broadcast>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last_bytes = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = broadcast.ended() => return,
        }
        let Some(p) = broadcast.published() else { continue };
        let mut parts = Vec::new();
        let mut bytes = 0;
        for t in &p.tracks {
            let b = t.bytes.load(Ordering::Relaxed);
            bytes += b;
            parts.push(format!(
                "{} frames {} group {}",
                t.name,
                t.frames.load(Ordering::Relaxed),
                t.current_group().map_or("-".to_string(), |g| g.to_string())
            ));
        }
        let kbps = bytes.saturating_sub(last_bytes) * 8 / 1000;
        last_bytes = bytes;
        eprintln!("publish: {} | {kbps} kbit/s", parts.join(" | "));
    }
}
