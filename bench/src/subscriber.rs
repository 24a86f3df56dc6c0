//! Subscribers: connect, SUBSCRIBE to a broadcast's `video` track, read every subgroup and
//! object, and record latency, time to first object and which groups arrived.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use banyan_media::loc::{capture_timestamp, unix_micros};
use banyan_moq::coding::{SessionErrorCode, TrackName, TrackNamespace};
use banyan_moq::message::{Parameters, Subscribe};
use banyan_moq::session::{Client, ClientOptions, Session, SubgroupReader, Subscription, TrackEvent};
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use url::Url;

use crate::publisher::{Broadcast, TRACK};

/// RENDEZVOUS_TIMEOUT of every subscriber's SUBSCRIBE, milliseconds. The bench's publishers
/// have their PUBLISH_NAMESPACE accepted before the first subscriber starts, so on a single
/// relay no wait ever happens; this covers a relay that learns of the broadcast a moment later
/// (an edge of a tree finding it upstream). Without it a draft-18 relay refuses at once
/// (DOES_NOT_EXIST); it is short so a broadcast that is really missing still fails, counted,
/// well within the drain timeout.
pub const RENDEZVOUS_TIMEOUT_MS: u64 = 2_000;

/// Counters shared by every subscriber, read once a second for progress.
#[derive(Debug, Default)]
pub struct Counters {
    /// Objects received.
    pub objects: AtomicU64,
    /// Payload bytes received.
    pub bytes: AtomicU64,
    /// Subscribers connected right now.
    pub connected: AtomicU64,
    /// Subscribers whose connect or SUBSCRIBE failed.
    pub failed: AtomicU64,
}

/// One subscriber's plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where to connect (scheme chooses the transport).
    pub url: Url,
    /// The client endpoint to dial from.
    pub client: Client,
    /// Setup options (token).
    pub options: ClientOptions,
    /// The broadcast to subscribe to.
    pub broadcast: Arc<Broadcast>,
    /// When to start connecting.
    pub start_at: Instant,
}

/// What one subscriber saw.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Connect or SUBSCRIBE failed.
    pub failed: bool,
    /// Got SUBSCRIBE_OK.
    pub established: bool,
    /// The subscription ended before the publisher's last object.
    pub dropped: bool,
    /// Received the publisher's last object.
    pub completed: bool,
    /// The publisher's group when SUBSCRIBE_OK arrived.
    pub group_at_subscribe: Option<u64>,
    /// Which step failed, when `failed`: `connect` (handshake or SETUP) or `subscribe`.
    pub failed_at: Option<&'static str>,
    /// Microseconds of the QUIC + TLS handshake (`None` over WebSocket or when it failed).
    pub handshake_us: Option<u64>,
    /// Microseconds from the handshake's end to the server's SETUP.
    pub setup_us: Option<u64>,
    /// Microseconds from sending SUBSCRIBE to SUBSCRIBE_OK.
    pub subscribe_us: Option<u64>,
    /// Microseconds from starting to connect to the first object.
    pub ttff_us: Option<u64>,
    /// The objects' latencies in microseconds (live objects only).
    pub latencies_us: Vec<u64>,
    /// Objects received.
    pub objects: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Objects captured before SUBSCRIBE was sent.
    pub cached_objects: u64,
    /// Objects without a timestamp.
    pub without_timestamp: u64,
    /// Group IDs of which at least one object arrived.
    pub groups: BTreeSet<u64>,
    /// The publisher's last group when this subscriber stopped (its last object's group
    /// once the publisher has stopped).
    pub last_group: Option<u64>,
}

/// What the subgroup readers record into.
#[derive(Debug)]
struct Recorder {
    outcome: Mutex<Outcome>,
    got_last: Notify,
    connect_started: Instant,
    subscribed_at_us: u64,
}

/// A subscriber's SUBSCRIBE for `namespace`'s video track.
fn subscribe_message(namespace: &TrackNamespace) -> Subscribe {
    Subscribe {
        request_id: 0,
        track_namespace: namespace.clone(),
        track_name: TrackName::from(TRACK),
        parameters: Parameters {
            rendezvous_timeout: Some(RENDEZVOUS_TIMEOUT_MS),
            ..Parameters::default()
        },
    }
}

/// Run one subscriber until it has the publisher's last object, its subscription ends, or
/// `abort` turns true.
pub async fn run(plan: Plan, counters: Arc<Counters>, mut abort: watch::Receiver<bool>) -> Outcome {
    let Joined {
        session,
        driver,
        subscription,
        connect_started,
        subscribed_at_us,
        stages,
    } = match join(&plan, &counters, &mut abort).await {
        Ok(joined) => joined,
        Err(outcome) => return outcome,
    };
    counters.connected.fetch_add(1, Ordering::Relaxed);
    let recorder = Arc::new(Recorder {
        outcome: Mutex::new(Outcome {
            established: true,
            group_at_subscribe: plan.broadcast.current_group(),
            handshake_us: stages.handshake_us,
            setup_us: stages.setup_us,
            subscribe_us: stages.subscribe_us,
            ..Default::default()
        }),
        got_last: Notify::new(),
        connect_started,
        subscribed_at_us,
    });
    let ended_early = receive(subscription, &recorder, &counters, &plan.broadcast, abort).await;
    session.close(SessionErrorCode::NoError, "bench finished");
    driver.abort();
    counters.connected.fetch_sub(1, Ordering::Relaxed);
    let mut outcome = std::mem::take(&mut *recorder.outcome.lock());
    outcome.dropped = ended_early && !outcome.completed;
    outcome.last_group = plan
        .broadcast
        .last_object
        .borrow()
        .map(|(group, _)| group)
        .or_else(|| plan.broadcast.current_group());
    outcome
}

/// A subscriber connected and subscribed.
struct Joined {
    session: Session,
    driver: tokio::task::JoinHandle<Result<(), banyan_moq::session::Error>>,
    subscription: Subscription,
    connect_started: Instant,
    subscribed_at_us: u64,
    /// Its handshake, SETUP and SUBSCRIBE timings (the `Outcome` fields).
    stages: Outcome,
}

/// Wait for the subscriber's start time, connect and subscribe; the outcome to report
/// instead when that fails (counted) or the run is aborted first.
async fn join(
    plan: &Plan,
    counters: &Counters,
    abort: &mut watch::Receiver<bool>,
) -> Result<Joined, Outcome> {
    let failed = |step: &'static str| {
        counters.failed.fetch_add(1, Ordering::Relaxed);
        Outcome {
            failed: true,
            failed_at: Some(step),
            ..Default::default()
        }
    };
    tokio::select! {
        _ = tokio::time::sleep_until(plan.start_at) => {}
        _ = abort.wait_for(|a| *a) => return Err(Outcome::default()),
    }
    let connect_started = Instant::now();
    let connected = tokio::select! {
        c = plan.client.connect_timed(&plan.url, plan.options.clone()) => c,
        _ = abort.wait_for(|a| *a) => return Err(Outcome::default()),
    };
    let (session, driver, timings) = connected.map_err(|e| {
        tracing::debug!(error = %e, "subscriber connect failed");
        failed("connect")
    })?;
    let driver = tokio::spawn(driver.run());
    let subscribed_at_us = unix_micros();
    let subscribe_started = Instant::now();
    let subscribe = subscribe_message(&plan.broadcast.namespace);
    let subscribed = tokio::select! {
        s = session.subscribe(subscribe) => s.map_err(|e| {
            tracing::debug!(error = %e, "subscribe failed");
            failed("subscribe")
        }),
        _ = abort.wait_for(|a| *a) => Err(Outcome::default()),
    };
    let stages = Outcome {
        handshake_us: timings.handshake.map(micros),
        setup_us: Some(micros(timings.setup)),
        subscribe_us: Some(micros(subscribe_started.elapsed())),
        ..Default::default()
    };
    match subscribed {
        Ok(subscription) => Ok(Joined {
            session,
            driver,
            subscription,
            connect_started,
            subscribed_at_us,
            stages,
        }),
        Err(outcome) => {
            let reason = if outcome.failed {
                "subscribe failed"
            } else {
                "bench aborted"
            };
            session.close(SessionErrorCode::NoError, reason);
            driver.abort();
            Err(outcome)
        }
    }
}

/// Read the subscription's groups (a task per subgroup stream) until the publisher's last
/// object arrives, the subscription ends, or `abort`. Returns whether it ended before the
/// publisher's last object was even written (the relay dropped it).
async fn receive(
    mut subscription: Subscription,
    recorder: &Arc<Recorder>,
    counters: &Arc<Counters>,
    broadcast: &Arc<Broadcast>,
    mut abort: watch::Receiver<bool>,
) -> bool {
    let mut readers = tokio::task::JoinSet::new();
    let mut open = true;
    let mut ended_early = false;
    loop {
        tokio::select! {
            event = subscription.next(), if open => match event {
                Ok(Some(TrackEvent::Subgroup(reader))) => {
                    readers.spawn(read_subgroup(reader, recorder.clone(), counters.clone(), broadcast.clone()));
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    open = false;
                    ended_early = broadcast.last_object.borrow().is_none();
                    if readers.is_empty() {
                        break;
                    }
                }
            },
            Some(_) = readers.join_next(), if !readers.is_empty() => {
                if !open && readers.is_empty() {
                    break;
                }
            }
            _ = recorder.got_last.notified() => {
                recorder.outcome.lock().completed = true;
                break;
            }
            _ = abort.wait_for(|a| *a) => break,
        }
    }
    readers.abort_all();
    ended_early
}

async fn read_subgroup(
    mut reader: SubgroupReader,
    recorder: Arc<Recorder>,
    counters: Arc<Counters>,
    broadcast: Arc<Broadcast>,
) {
    let group = reader.group_id();
    while let Ok(Some(object)) = reader.next().await {
        let now_us = unix_micros();
        let len = object.payload.len() as u64;
        counters.objects.fetch_add(1, Ordering::Relaxed);
        counters.bytes.fetch_add(len, Ordering::Relaxed);
        {
            let mut o = recorder.outcome.lock();
            if o.ttff_us.is_none() {
                o.ttff_us = Some(micros(recorder.connect_started.elapsed()));
            }
            o.objects += 1;
            o.bytes += len;
            o.groups.insert(group);
            match capture_timestamp(&object.properties) {
                None => o.without_timestamp += 1,
                Some(ts) if ts < recorder.subscribed_at_us => o.cached_objects += 1,
                Some(ts) => o.latencies_us.push(now_us.saturating_sub(ts)),
            }
        }
        if *broadcast.last_object.borrow() == Some((group, object.object_id)) {
            recorder.got_last.notify_one();
        }
    }
}

/// A duration in whole microseconds, saturating.
pub(crate) fn micros(d: std::time::Duration) -> u64 {
    d.as_micros().try_into().unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use banyan_moq::message::Message;
    use banyan_moq::Version;

    #[test]
    fn subscribe_asks_for_the_rendezvous_wait() {
        let namespace = TrackNamespace::from_path("bench/0").unwrap();
        let subscribe = subscribe_message(&namespace);
        assert_eq!(
            subscribe.parameters.rendezvous_timeout,
            Some(RENDEZVOUS_TIMEOUT_MS)
        );
        let frame = Message::Subscribe(subscribe).to_frame(Version::Draft18).unwrap();
        // The parameter block ends the message: one parameter, type 0x04, varint 2000 (0x87d0).
        assert!(frame.ends_with(&[0x01, 0x04, 0x87, 0xd0]), "{frame:02x?}");
    }
}
