//! A live test publisher for behaviour-at-scale tests: groups paced on a fixed schedule
//! (object `n` is due at `start + n * interval`, so the interval is known exactly), payloads
//! that carry their group, object and send time (receivers rebuild each payload to check it
//! byte for byte and subtract the send time for latency), a start gate, and progress a test
//! can poll instead of sleeping.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use banyan_certs::{client_config, parse_sha256_hex, ServerVerification};
use banyan_moq::coding::{PublishDoneCode, RequestErrorCode, TrackNamespace};
use banyan_moq::message::{Parameters, PublishNamespace};
use banyan_moq::session::{Client, NamespacePublication, Request, Session, SessionConfig, TransportConfig};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::watch;

use super::TestRelay;

/// The instant every timestamp in this process counts from (the relay is in-process, so
/// publisher and subscribers share one clock).
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since [`epoch`].
pub fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// Bytes before the filler: group, object, send time (little-endian u64 each).
pub const STAMP_LEN: usize = 24;

/// The payload of `group`/`object` sent at `sent_us`, `size` bytes long (at least
/// [`STAMP_LEN`]): the stamp, then filler that depends on every stamped value.
pub fn stamped(group: u64, object: u64, sent_us: u64, size: usize) -> Bytes {
    let size = size.max(STAMP_LEN);
    let mut buf = BytesMut::with_capacity(size);
    buf.put_u64_le(group);
    buf.put_u64_le(object);
    buf.put_u64_le(sent_us);
    let seed = group
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(object.wrapping_mul(31))
        .wrapping_add(sent_us);
    for i in 0..(size - STAMP_LEN) as u64 {
        buf.put_u8((seed.wrapping_add(i.wrapping_mul(7)) >> 3) as u8);
    }
    buf.freeze()
}

/// What a stamped payload says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub group: u64,
    pub object: u64,
    pub sent_us: u64,
}

/// Read a payload's stamp and check that every byte is the one the publisher wrote.
pub fn check_stamped(payload: &Bytes) -> Stamp {
    assert!(payload.len() >= STAMP_LEN, "payload of {} bytes", payload.len());
    let field = |i: usize| u64::from_le_bytes(payload[i * 8..i * 8 + 8].try_into().unwrap());
    let stamp = Stamp {
        group: field(0),
        object: field(1),
        sent_us: field(2),
    };
    let expected = stamped(stamp.group, stamp.object, stamp.sent_us, payload.len());
    assert!(
        *payload == expected,
        "payload of {}/{} is not byte-identical to what was published",
        stamp.group,
        stamp.object
    );
    stamp
}

/// What a [`LivePublisher`] produces for each SUBSCRIBE.
#[derive(Clone, Copy, Debug)]
pub struct Live {
    /// Groups to produce (`u64::MAX`: until the subscription ends).
    pub groups: u64,
    /// Objects per group, on one subgroup stream per group.
    pub objects: u64,
    /// Time between consecutive objects.
    pub interval: Duration,
    /// Payload sizes vary deterministically in `[min_size, max_size]`.
    pub min_size: usize,
    pub max_size: usize,
    /// After the last group: `true` sends PUBLISH_DONE; `false` keeps the subscription open
    /// (the track stays live and cached) until the subscriber leaves.
    pub finish: bool,
}

impl Live {
    /// A small stream that runs until the subscription ends: 5 objects of 100-300 bytes per
    /// group, one every 20 ms.
    pub fn endless() -> Self {
        Self {
            groups: u64::MAX,
            objects: 5,
            interval: Duration::from_millis(20),
            min_size: 100,
            max_size: 300,
            finish: false,
        }
    }

    /// The size of object `object` of group `group`.
    pub fn size(&self, group: u64, object: u64) -> usize {
        let span = self.max_size.saturating_sub(self.min_size) as u64 + 1;
        let mix = group
            .wrapping_mul(7919)
            .wrapping_add(object.wrapping_mul(104_729));
        self.min_size + (mix % span) as usize
    }

    /// Every (group, object) the pattern produces, in order.
    pub fn expected(&self) -> Vec<(u64, Vec<u64>)> {
        (0..self.groups)
            .map(|g| (g, (0..self.objects).collect()))
            .collect()
    }
}

/// The last object written: its location and when it was written.
#[derive(Clone, Copy, Debug)]
pub struct Written {
    pub group: u64,
    pub object: u64,
    pub at: Instant,
}

/// A session publishing a namespace and serving [`Live`] objects to every SUBSCRIBE.
pub struct LivePublisher {
    pub publication: Option<NamespacePublication>,
    gate: watch::Sender<bool>,
    subscribes: Arc<AtomicUsize>,
    progress: watch::Receiver<Option<Written>>,
    task: tokio::task::JoinHandle<()>,
}

impl LivePublisher {
    /// Publish `namespace` on `session` and serve `live`. With `gated`, accepted
    /// subscriptions wait for [`open_gate`](Self::open_gate) before the first object.
    pub async fn start(session: Session, namespace: &str, live: Live, gated: bool) -> Self {
        Self::start_from(session, namespace, live, gated, 0).await
    }

    /// [`start`](Self::start) with group IDs counting from `first_group` (a restarted
    /// publisher numbers its groups above the ones it sent before, as banyan-publish does).
    pub async fn start_from(
        session: Session,
        namespace: &str,
        live: Live,
        gated: bool,
        first_group: u64,
    ) -> Self {
        let request = PublishNamespace {
            request_id: 0,
            track_namespace: TrackNamespace::from_path(namespace).unwrap(),
            parameters: Parameters::default(),
        };
        let publication = session
            .publish_namespace(request)
            .await
            .expect("publish namespace");
        let (gate, gate_rx) = watch::channel(!gated);
        let (progress_tx, progress) = watch::channel(None);
        let progress_tx = Arc::new(progress_tx);
        let subscribes = Arc::new(AtomicUsize::new(0));
        let counted = subscribes.clone();
        let task = tokio::spawn(async move {
            while let Some(request) = session.accept().await {
                let Request::Subscribe(request) = request else {
                    let _ = request
                        .reject(RequestErrorCode::NotSupported, "live test publisher")
                        .await;
                    continue;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                let mut gate = gate_rx.clone();
                let progress = progress_tx.clone();
                tokio::spawn(async move {
                    let Ok(mut writer) = request.accept(Default::default()).await else {
                        return;
                    };
                    if gate.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    let start = tokio::time::Instant::now();
                    let mut n: u32 = 0;
                    for group in first_group..first_group.saturating_add(live.groups) {
                        let Ok(mut subgroup) = writer.open_subgroup(group, 0, Some(10), false).await else {
                            return;
                        };
                        for object in 0..live.objects {
                            tokio::time::sleep_until(start + live.interval * n).await;
                            n = n.saturating_add(1);
                            let payload = stamped(group, object, now_us(), live.size(group, object));
                            if subgroup.write_payload(object, payload).await.is_err() {
                                return;
                            }
                            progress.send_replace(Some(Written {
                                group,
                                object,
                                at: Instant::now(),
                            }));
                        }
                        subgroup.finish();
                    }
                    if live.finish {
                        let _ = writer
                            .finish(PublishDoneCode::TrackEnded, "pattern complete")
                            .await;
                    } else {
                        // Hold the track open (and cached) until the subscriber leaves.
                        while let Ok(Some(_)) = writer.next_request().await {}
                    }
                });
            }
        });
        Self {
            publication: Some(publication),
            gate,
            subscribes,
            progress,
            task,
        }
    }

    /// Let gated subscriptions start producing.
    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    /// SUBSCRIBEs this publisher has received.
    pub fn subscribes(&self) -> usize {
        self.subscribes.load(Ordering::SeqCst)
    }

    /// The last object written, if any.
    pub fn written(&self) -> Option<Written> {
        *self.progress.borrow()
    }

    /// Wait until the last object written satisfies `ready`, and return it.
    pub async fn wait_written(&self, mut ready: impl FnMut(&Written) -> bool) -> Written {
        let mut rx = self.progress.clone();
        let written = rx
            .wait_for(|w| w.as_ref().is_some_and(&mut ready))
            .await
            .expect("publisher alive");
        written.expect("some object written")
    }

    /// Withdraw the namespace (NAMESPACE_DONE reaches namespace subscribers).
    pub fn withdraw(&mut self) {
        if let Some(publication) = self.publication.take() {
            publication.withdraw();
        }
    }
}

impl Drop for LivePublisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestRelay {
    /// A client with its own QUIC transport settings (e.g. small receive windows for a
    /// subscriber that stops reading).
    pub fn client_with(&self, transport: &TransportConfig) -> Client {
        let hash = parse_sha256_hex(&self.hash).unwrap();
        let tls = client_config(&ServerVerification::PinnedSha256(vec![hash]), &[]).unwrap();
        let config = SessionConfig {
            setup_timeout: Duration::from_secs(10),
            ..Default::default()
        };
        Client::new(tls, transport, config).unwrap()
    }
}

/// The `p`th percentile (0..=100) of sorted samples, nearest-rank.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The relay process's resident set size in KiB (from /proc/self/status; the relay runs
/// in-process), or 0 where that file does not exist.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
