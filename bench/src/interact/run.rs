//! One interaction run: connect watchers (SUBSCRIBE `likes`, `chat/<room>`) on the watch
//! relay, connect viewers (PUBLISH `interact`) on the ingest relay, send likes and comments at
//! a fixed rate for the window, drain until every watcher has seen them, and report.
//!
//! # Method
//! - A viewer sends like number `k` as one OBJECT_DATAGRAM (group `k`, object 0) carrying its
//!   cumulative total `k`, and records when it sent it; after the window it sends its final
//!   total once on a subgroup stream (reliable), as `docs/interactions.md` asks of a client.
//! - Like-to-visible: all viewers' send times are merged and sorted, `S[0] ≤ S[1] ≤ …`. A
//!   watcher seeing total `T` at time `t` has seen `T` likes counted, and at least `T` likes
//!   had been sent by then, so `S[T-1] ≤ t`: like `j` (1-based, in send order) is visible at the
//!   first total `≥ j`, and its latency is that time minus `S[j-1]`: how long the total shown
//!   lags behind the count sent. Every send and arrival is timed on this process's monotonic
//!   clock.
//! - Comment latency: each comment's text carries its send time (µs since the Unix epoch);
//!   a watcher subtracts it from its clock when the object arrives (same host, same clock).
//! - Conservation: the sum of the viewers' final totals against each watcher's last total.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use banyan_media::loc::unix_micros;
use banyan_moq::coding::{SessionErrorCode, TrackName, TrackNamespace};
use banyan_moq::data::{ObjectDatagram, ObjectProperties, ObjectStatus};
use banyan_moq::message::{Message, Parameters, Publish, Subscribe};
use banyan_moq::session::{
    Client, ClientOptions, Session, SessionConfig, SubgroupReader, SubgroupWriter, Subscription, TrackEvent,
    TrackWriter, TransportConfig,
};
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use url::Url;

use super::args::{InteractArgs, InteractProfile};
use super::metrics::{self, Scrape};
use super::report::{
    Comments, Host, InteractReport, Likes, RelaySide, Sessions, WatchEgress, INTERACT_SCHEMA_VERSION,
};
use super::wire;
use crate::procfs::{host_busy_percent, parse_net_dev_tx, HostSample, ProcessSampler, Sample};
use crate::run::SUBSCRIBER_SOCKETS;
use crate::Error;
use banyan_media::stats::{round3, Distribution};

/// At most this many like-latency samples are computed (likes are strided to fit).
pub const MAX_LIKE_SAMPLES: u64 = 2_000_000;

/// How long one relay metrics scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// An interaction benchmark ready to run.
#[derive(Debug, Clone)]
pub struct InteractBench {
    profile: InteractProfile,
    verification: banyan_certs::ServerVerification,
    options: ClientOptions,
}

/// What one watcher saw; shared with its reader tasks.
#[derive(Debug, Default)]
struct Watcher {
    /// Whether its totals and comment latencies are kept.
    timed: bool,
    /// Totals seen on `likes`, with when, in arrival order (timed watchers only).
    totals: Mutex<Vec<(u64, Instant)>>,
    /// The largest total seen.
    max_total: AtomicU64,
    /// Comments received.
    comments: AtomicU64,
    /// Comment latencies in µs (timed watchers only).
    comment_latencies_us: Mutex<Vec<u64>>,
}

/// Objects and bytes all watchers received, read at both ends of the window.
#[derive(Debug, Default)]
struct Received {
    likes_objects: AtomicU64,
    chat_objects: AtomicU64,
    bytes: AtomicU64,
}

/// A viewer, connected and publishing `interact`.
struct Viewer {
    index: u64,
    writer: TrackWriter,
}

/// What a viewer sent, and its publication (kept open until the sessions close).
#[derive(Default)]
struct Sent {
    like_times: Vec<Instant>,
    comments: u64,
    writer: Option<TrackWriter>,
}

/// Counters and process samples at one instant.
#[derive(Debug, Clone)]
struct Snapshot {
    at: Instant,
    likes_objects: u64,
    chat_objects: u64,
    bytes: u64,
    ingest: Option<Sample>,
    watch: Option<Sample>,
    bench: Option<Sample>,
    host: Option<HostSample>,
    loopback: Option<(u64, u64)>,
    ingest_metrics: Option<Scrape>,
    watch_metrics: Option<Scrape>,
}

impl InteractBench {
    /// Validate the command line.
    pub fn from_args(args: &InteractArgs) -> Result<Self, Error> {
        let (profile, verification) = InteractProfile::from_args(args)?;
        Ok(Self {
            profile,
            verification,
            options: args.access.client_options(),
        })
    }

    /// The profile.
    pub fn profile(&self) -> &InteractProfile {
        &self.profile
    }

    /// Run, calling `progress` with a line about once a second.
    pub async fn run(&self, mut progress: impl FnMut(&str)) -> Result<InteractReport, Error> {
        let p = &self.profile;
        let rig = Rig::new(p, &self.verification, &self.options)?;
        let mut open = Open::default();

        // Watchers first, so they see every like and comment from the start.
        let watching = rig.connect_watchers(&mut open).await;
        progress(&format!(
            "{} of {} watchers subscribed",
            watching.connected, p.watchers
        ));
        let viewers = rig.connect_viewers(&mut open).await;
        let viewers_connected = viewers.len() as u64;
        progress(&format!(
            "{viewers_connected} of {} viewers publishing interact",
            p.viewers
        ));

        let window = rig.send_window(viewers, &watching, &mut progress).await;
        rig.drain(&watching.watchers, &window.sent).await;
        progress(&format!(
            "drained after {:.1} s",
            window.t_end.elapsed().as_secs_f64()
        ));
        open.close(watching.readers).await;

        Ok(self.report(ReportInputs {
            window,
            watchers: &watching.watchers,
            sessions: Sessions {
                viewers: viewers_connected,
                watchers: watching.connected,
                failed: rig.failed.load(Ordering::Relaxed),
            },
            with_chat: rig.with_chat,
            probes: &rig.probes,
        }))
    }

    fn report(&self, input: ReportInputs<'_>) -> InteractReport {
        let p = &self.profile;
        let ReportInputs {
            window: Window { start, end, sent, .. },
            watchers,
            sessions,
            with_chat,
            probes,
        } = input;
        let window = end.at.saturating_duration_since(start.at).as_secs_f64();
        let per_s = |x: f64| rate(x, window);
        let (likes_sent, comments_sent) = sent_totals(&sent);

        let finals: Vec<u64> = watchers
            .iter()
            .map(|w| w.max_total.load(Ordering::Relaxed))
            .collect();
        let watchers_complete = finals.iter().filter(|&&t| t == likes_sent).count() as u64;
        let timed: Vec<&Arc<Watcher>> = watchers.iter().filter(|w| w.timed).collect();
        let (like_latencies, totals_seen) = like_latencies(&sent, &timed, likes_sent);
        let comment_latencies: Vec<u64> = timed
            .iter()
            .flat_map(|w| w.comment_latencies_us.lock().clone())
            .collect();
        let delivered: Vec<u64> = watchers
            .iter()
            .map(|w| w.comments.load(Ordering::Relaxed))
            .collect();
        let comments_complete = delivered.iter().filter(|&&c| c == comments_sent).count() as u64;

        let watch = watch_egress(&start, &end, window, sessions.watchers);
        let likes_sent_per_s = per_s(likes_sent as f64);
        let ingest_cpu = cpu_percent(probes.ingest_proc.as_ref(), &start.ingest, &end.ingest);
        let ingest_relay = RelaySide {
            likes_per_s_per_core: ingest_cpu
                .filter(|&c| c > 0.0)
                .map(|c| (likes_sent_per_s / (c / 100.0)).round()),
            ..relay_side(
                p.relay_pid,
                ingest_cpu,
                &start.ingest_metrics,
                &end.ingest_metrics,
                window,
            )
        };
        let watch_relay = relay_side(
            p.watch_relay_pid,
            cpu_percent(probes.watch_proc.as_ref(), &start.watch, &end.watch),
            &start.watch_metrics,
            &end.watch_metrics,
            window,
        );
        InteractReport {
            schema: INTERACT_SCHEMA_VERSION,
            mode: "interactions".into(),
            profile: p.clone(),
            window_s: round3(window),
            likes: Likes {
                sent: likes_sent,
                sent_per_s: likes_sent_per_s,
                final_total_min: finals.iter().min().copied(),
                final_total_max: finals.iter().max().copied(),
                watchers_complete,
                conserved: sessions.watchers > 0 && watchers_complete == watchers.len() as u64,
                totals_seen,
            },
            like_to_visible_ms: Distribution::from_micros(like_latencies),
            comments: Comments {
                sent: comments_sent,
                sent_per_s: per_s(comments_sent as f64),
                delivered_min: with_chat.then(|| delivered.iter().min().copied()).flatten(),
                watchers_complete: if with_chat { comments_complete } else { 0 },
                all_delivered: with_chat && comments_complete == watchers.len() as u64,
            },
            comment_latency_ms: Distribution::from_micros(comment_latencies),
            sessions,
            watch,
            ingest_relay,
            watch_relay,
            host: host(&start, &end, window),
        }
    }
}

/// Like-to-visible latencies of the timed watchers (sampled: at most [`MAX_LIKE_SAMPLES`] in
/// all), and how many like totals they saw.
fn like_latencies(sent: &[Sent], timed: &[&Arc<Watcher>], likes_sent: u64) -> (Vec<u64>, u64) {
    let mut send_times: Vec<Instant> = sent.iter().flat_map(|s| s.like_times.iter().copied()).collect();
    send_times.sort_unstable();
    let stride = (likes_sent * timed.len() as u64)
        .div_ceil(MAX_LIKE_SAMPLES)
        .max(1);
    let mut latencies = Vec::new();
    let mut totals_seen = 0;
    for (w, watcher) in timed.iter().enumerate() {
        let seen = watcher.totals.lock().clone();
        totals_seen += seen.len() as u64;
        latencies.extend(like_to_visible(&send_times, &seen, stride, w as u64 % stride));
    }
    (latencies, totals_seen)
}

/// What the watchers received over the window, per second.
fn watch_egress(start: &Snapshot, end: &Snapshot, window: f64, watchers: u64) -> WatchEgress {
    let per_s = |x: f64| rate(x, window);
    let likes_objects = end.likes_objects.saturating_sub(start.likes_objects) as f64;
    WatchEgress {
        likes_objects_per_s: per_s(likes_objects),
        chat_objects_per_s: per_s(end.chat_objects.saturating_sub(start.chat_objects) as f64),
        payload_bytes_per_s: per_s(end.bytes.saturating_sub(start.bytes) as f64),
        likes_objects_per_s_per_watcher: if watchers > 0 {
            round3(per_s(likes_objects) / watchers as f64)
        } else {
            0.0
        },
    }
}

/// What every phase of a run shares: the client sockets, how to dial, what to sample.
struct Rig<'a> {
    profile: &'a InteractProfile,
    clients: Vec<Client>,
    options: ClientOptions,
    /// Bounds the sessions connecting at once.
    gate: Arc<Semaphore>,
    /// Sessions that failed to connect, PUBLISH or SUBSCRIBE.
    failed: Arc<AtomicU64>,
    namespace: TrackNamespace,
    ingest: Url,
    watch: Url,
    /// Whether viewers comment (and watchers read `chat/<room>`).
    with_chat: bool,
    probes: Probes,
}

/// The relays' processes and metrics endpoints a [`Snapshot`] reads.
struct Probes {
    ingest_metrics: Option<Url>,
    watch_metrics: Option<Url>,
    ingest_proc: Option<ProcessSampler>,
    watch_proc: Option<ProcessSampler>,
}

/// Sessions kept open until the run closes them, with their drivers.
#[derive(Default)]
struct Open {
    sessions: Vec<Session>,
    drivers: Vec<JoinHandle<()>>,
}

/// The watchers, subscribed and reading.
struct Watching {
    watchers: Vec<Arc<Watcher>>,
    /// What all of them received.
    received: Arc<Received>,
    /// One task per subscription.
    readers: JoinSet<()>,
    /// Watchers subscribed to every track they asked for.
    connected: u64,
}

/// The measurement window: counters at both ends, and what each viewer sent.
struct Window {
    start: Snapshot,
    end: Snapshot,
    /// When the last sends were due.
    t_end: Instant,
    sent: Vec<Sent>,
}

/// What the report is computed from.
struct ReportInputs<'a> {
    window: Window,
    watchers: &'a [Arc<Watcher>],
    sessions: Sessions,
    with_chat: bool,
    probes: &'a Probes,
}

impl<'a> Rig<'a> {
    /// The client sockets, URLs and samplers for `profile`; the relays' processes are sampled
    /// once, so a wrong pid fails here.
    fn new(
        profile: &'a InteractProfile,
        verification: &banyan_certs::ServerVerification,
        options: &ClientOptions,
    ) -> Result<Self, Error> {
        let p = profile;
        let tls = banyan_certs::client_config(verification, &[])?;
        let sockets = u64::from(p.viewers + p.watchers).clamp(1, SUBSCRIBER_SOCKETS);
        let clients: Vec<Client> = (0..sockets)
            .map(|_| Client::new(tls.clone(), &TransportConfig::default(), SessionConfig::default()))
            .collect::<Result<_, _>>()
            .map_err(Error::Client)?;
        let namespace = TrackNamespace::from_path(&p.broadcast).map_err(|e| Error::Config(e.to_string()))?;
        let parse = |u: &str| Url::parse(u).map_err(|e| Error::Config(e.to_string()));
        let (ingest, watch) = (parse(&p.ingest)?, parse(&p.watch)?);
        let probes = Probes {
            ingest_metrics: p.ingest_metrics.as_deref().map(parse).transpose()?,
            watch_metrics: p.watch_metrics.as_deref().map(parse).transpose()?,
            ingest_proc: p.relay_pid.map(ProcessSampler::new),
            watch_proc: p.watch_relay_pid.map(ProcessSampler::new),
        };
        for sampler in probes.ingest_proc.iter().chain(&probes.watch_proc) {
            sampler.sample()?;
        }
        Ok(Self {
            profile,
            clients,
            options: options.clone(),
            gate: Arc::new(Semaphore::new(p.connect_concurrency as usize)),
            failed: Arc::new(AtomicU64::new(0)),
            namespace,
            ingest,
            watch,
            with_chat: p.comments_per_s > 0.0,
            probes,
        })
    }

    /// How session number `slot` dials `url` (sessions take the client sockets in turn).
    fn dial(&self, slot: usize, url: &Url) -> Option<Dial> {
        let client = slot
            .checked_rem(self.clients.len())
            .and_then(|i| self.clients.get(i))?;
        Some(Dial {
            client: client.clone(),
            url: url.clone(),
            options: self.options.clone(),
            gate: self.gate.clone(),
            failed: self.failed.clone(),
        })
    }

    /// Connect the watchers to the watch relay, SUBSCRIBE each to `likes` (and `chat/<room>`
    /// when viewers comment), and start reading.
    async fn connect_watchers(&self, open: &mut Open) -> Watching {
        let p = self.profile;
        let received = Arc::new(Received::default());
        let watchers: Vec<Arc<Watcher>> = (0..p.watchers)
            .map(|w| {
                Arc::new(Watcher {
                    timed: p.latency_watchers == 0 || w < p.latency_watchers,
                    ..Default::default()
                })
            })
            .collect();
        let mut tracks = vec!["likes".to_string()];
        if self.with_chat {
            tracks.push(format!("chat/{}", p.room));
        }
        let mut connecting = JoinSet::new();
        for (w, watcher) in watchers.iter().enumerate() {
            let Some(dial) = self.dial(w, &self.watch) else {
                continue;
            };
            let (namespace, tracks, watcher) = (self.namespace.clone(), tracks.clone(), watcher.clone());
            connecting.spawn(async move {
                let (session, driver) = dial.connect("watcher").await?;
                let mut subscriptions = Vec::new();
                for track in tracks {
                    match session.subscribe(subscribe(&namespace, &track)).await {
                        Ok(s) => subscriptions.push((track, s)),
                        Err(e) => {
                            tracing::debug!(error = %e, track, "watcher SUBSCRIBE failed");
                            dial.give_up(&session, &driver, "subscribe failed");
                            return None;
                        }
                    }
                }
                Some((session, driver, watcher, subscriptions))
            });
        }
        let mut readers = JoinSet::new();
        let mut connected = 0;
        while let Some(joined) = connecting.join_next().await {
            let Ok(Some((session, driver, watcher, subscriptions))) = joined else {
                continue;
            };
            open.push(session, driver);
            connected += 1;
            for (track, subscription) in subscriptions {
                let chat = track != "likes";
                readers.spawn(read_track(subscription, chat, watcher.clone(), received.clone()));
            }
        }
        Watching {
            watchers,
            received,
            readers,
            connected,
        }
    }

    /// Connect the viewers to the ingest relay, each publishing `interact`.
    async fn connect_viewers(&self, open: &mut Open) -> Vec<Viewer> {
        let p = self.profile;
        let mut connecting = JoinSet::new();
        for v in 0..u64::from(p.viewers) {
            let Some(dial) = self.dial(v as usize + p.watchers as usize, &self.ingest) else {
                continue;
            };
            let namespace = self.namespace.clone();
            connecting.spawn(async move {
                let (session, driver) = dial.connect("viewer").await?;
                match publish_interact(&session, namespace).await {
                    Ok(writer) => Some((session, driver, Viewer { index: v, writer })),
                    Err(e) => {
                        tracing::debug!(error = %e, "viewer PUBLISH interact failed");
                        dial.give_up(&session, &driver, "publish failed");
                        None
                    }
                }
            });
        }
        let mut viewers = Vec::new();
        while let Some(joined) = connecting.join_next().await {
            let Ok(Some((session, driver, viewer))) = joined else {
                continue;
            };
            open.push(session, driver);
            viewers.push(viewer);
        }
        viewers
    }

    /// The window: every viewer sends on its own schedule, phases spread evenly, with a
    /// progress line each second; counters are read just before and just after.
    async fn send_window(
        &self,
        viewers: Vec<Viewer>,
        watching: &Watching,
        progress: &mut impl FnMut(&str),
    ) -> Window {
        let start = self.probes.snapshot(&watching.received).await;
        let t0 = Instant::now() + Duration::from_millis(50);
        let t_end = t0 + self.profile.duration();
        let likes_sent_now = Arc::new(AtomicU64::new(0));
        let mut senders = self.start_senders(viewers, t0, t_end, &likes_sent_now);
        let mut ticker = tokio::time::interval_at(t0 + Duration::from_secs(1), Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = ticker.tick() => progress(&format!(
                    "{:.1} s: {} likes sent, smallest total seen {}",
                    t0.elapsed().as_secs_f64(),
                    likes_sent_now.load(Ordering::Relaxed),
                    smallest_total(&watching.watchers)
                )),
                _ = tokio::time::sleep_until(t_end) => break,
            }
        }
        let end = self.probes.snapshot(&watching.received).await;
        let mut sent = Vec::new();
        while let Some(joined) = senders.join_next().await {
            if let Ok(s) = joined {
                sent.push(s);
            }
        }
        Window {
            start,
            end,
            t_end,
            sent,
        }
    }

    /// One sender task per viewer, sending from `t0` to `t_end`; each like counted in
    /// `likes_sent` as it goes.
    fn start_senders(
        &self,
        viewers: Vec<Viewer>,
        t0: Instant,
        t_end: Instant,
        likes_sent: &Arc<AtomicU64>,
    ) -> JoinSet<Sent> {
        let p = self.profile;
        let mut senders = JoinSet::new();
        let n = viewers.len().max(1) as f64;
        let source_base = unix_micros() << 20;
        for viewer in viewers {
            let schedule = Schedule {
                t0,
                t_end,
                likes_per_s: p.likes_per_s,
                comments_per_s: p.comments_per_s,
                phase: viewer.index as f64 / n,
                room: p.room.to_string(),
                source: (source_base | viewer.index) & ((1 << 62) - 1),
            };
            senders.spawn(send(viewer, schedule, likes_sent.clone()));
        }
        senders
    }

    /// Wait until every watcher has seen every like and comment `sent`, or the drain timeout.
    async fn drain(&self, watchers: &[Arc<Watcher>], sent: &[Sent]) {
        let (likes_sent, comments_sent) = sent_totals(sent);
        let deadline = Instant::now() + self.profile.drain_timeout();
        let complete = |w: &Watcher| {
            w.max_total.load(Ordering::Relaxed) == likes_sent
                && (!self.with_chat || w.comments.load(Ordering::Relaxed) == comments_sent)
        };
        while Instant::now() < deadline && !watchers.iter().all(|w| complete(w)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Probes {
    /// The relays' metrics (scraped concurrently), then the watchers' counters and every
    /// process and host sample, timed after the scrapes.
    async fn snapshot(&self, received: &Received) -> Snapshot {
        let (ingest_metrics, watch_metrics) = tokio::join!(
            scrape(self.ingest_metrics.as_ref()),
            scrape(self.watch_metrics.as_ref())
        );
        Snapshot {
            at: Instant::now(),
            likes_objects: received.likes_objects.load(Ordering::Relaxed),
            chat_objects: received.chat_objects.load(Ordering::Relaxed),
            bytes: received.bytes.load(Ordering::Relaxed),
            ingest: self.ingest_proc.as_ref().and_then(|s| s.sample().ok()),
            watch: self.watch_proc.as_ref().and_then(|s| s.sample().ok()),
            bench: ProcessSampler::this_process().sample().ok(),
            host: HostSample::take().ok(),
            loopback: std::fs::read_to_string("/proc/net/dev")
                .ok()
                .and_then(|t| parse_net_dev_tx(&t, "lo").ok()),
            ingest_metrics,
            watch_metrics,
        }
    }
}

impl Open {
    fn push(&mut self, session: Session, driver: JoinHandle<()>) {
        self.sessions.push(session);
        self.drivers.push(driver);
    }

    /// Stop the readers, close every session, and wait for the drivers to end.
    async fn close(self, mut readers: JoinSet<()>) {
        readers.abort_all();
        for session in &self.sessions {
            session.close(SessionErrorCode::NoError, "bench finished");
        }
        while readers.join_next().await.is_some() {}
        for driver in &self.drivers {
            driver.abort();
        }
        for driver in self.drivers {
            let _ = driver.await;
        }
    }
}

/// One scrape of `url`, if there is one and it succeeds.
async fn scrape(url: Option<&Url>) -> Option<Scrape> {
    metrics::scrape(url?, SCRAPE_TIMEOUT).await.ok()
}

/// Likes and comments all viewers sent.
fn sent_totals(sent: &[Sent]) -> (u64, u64) {
    (
        sent.iter().map(|s| s.like_times.len() as u64).sum(),
        sent.iter().map(|s| s.comments).sum(),
    )
}

/// The smallest total any watcher has seen so far.
fn smallest_total(watchers: &[Arc<Watcher>]) -> u64 {
    watchers
        .iter()
        .map(|w| w.max_total.load(Ordering::Relaxed))
        .min()
        .unwrap_or(0)
}

/// `x` per second over a window of `window_s` seconds (0 for an empty window).
fn rate(x: f64, window_s: f64) -> f64 {
    if window_s > 0.0 {
        round3(x / window_s)
    } else {
        0.0
    }
}

/// A process's CPU between two samples, % of one core to one decimal.
fn cpu_percent(sampler: Option<&ProcessSampler>, a: &Option<Sample>, b: &Option<Sample>) -> Option<f64> {
    match (sampler, a, b) {
        (Some(s), Some(a), Some(b)) => s.cpu_percent(a, b).map(|c| (c * 10.0).round() / 10.0),
        _ => None,
    }
}

/// A relay's cost over a window of `window_s` seconds from its scrapes at both ends (no
/// likes per core: only the ingest side has those).
fn relay_side(
    pid: Option<u32>,
    cpu_percent: Option<f64>,
    start: &Option<Scrape>,
    end: &Option<Scrape>,
    window_s: f64,
) -> RelaySide {
    let (start, end) = (start.as_ref(), end.as_ref());
    let per_s = |series: &str| growth(start, end, series).map(|x| rate(x, window_s));
    RelaySide {
        pid,
        cpu_percent,
        likes_per_s_per_core: None,
        likes_in_per_s: per_s("likes_in_total"),
        refused: refused(start, end),
        objects_out_per_s: per_s("objects_out_total"),
        bytes_out_per_s: per_s("bytes_out_total"),
    }
}

/// How much `series` grew between two scrapes.
fn growth(a: Option<&Scrape>, b: Option<&Scrape>, series: &str) -> Option<f64> {
    metrics::delta(a?, b?, series)
}

/// Interactions refused between two scrapes, all reasons.
fn refused(a: Option<&Scrape>, b: Option<&Scrape>) -> Option<f64> {
    let (a, b) = (a?, b?);
    let series = format!("{}interactions_refused_total", metrics::PREFIX);
    Some(
        b.iter()
            .filter(|(k, _)| k.starts_with(&series))
            .map(|(k, v)| v - a.get(k).copied().unwrap_or(0.0))
            .sum(),
    )
}

/// The host over a window of `window_s` seconds.
fn host(start: &Snapshot, end: &Snapshot, window_s: f64) -> Host {
    let per_s = |x: f64| rate(x, window_s);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let loopback = start.loopback.zip(end.loopback);
    let hosts = start.host.as_ref().zip(end.host.as_ref());
    Host {
        cpus,
        cpu_busy_percent: hosts
            .and_then(|(a, b)| host_busy_percent(&a.cpu, &b.cpu, cpus))
            .map(|v| (v * 10.0).round() / 10.0),
        bench_cpu_percent: cpu_percent(Some(&ProcessSampler::this_process()), &start.bench, &end.bench),
        loopback_bytes_per_s: loopback.map(|(a, b)| per_s(b.0.saturating_sub(a.0) as f64).round()),
        loopback_packets_per_s: loopback.map(|(a, b)| per_s(b.1.saturating_sub(a.1) as f64).round()),
        udp_rcvbuf_errors: hosts.and_then(|(a, b)| b.udp_drops_since(a)),
    }
}

/// Like-to-visible latencies in µs for likes `offset + 1`, `offset + 1 + stride`, … (1-based,
/// in send order, `send_times` sorted): like `j` is visible at the first total `≥ j` in `seen`
/// (arrival order). Likes never covered by a total give no sample.
pub fn like_to_visible(
    send_times: &[Instant],
    seen: &[(u64, Instant)],
    stride: u64,
    offset: u64,
) -> Vec<u64> {
    let mut out = Vec::new();
    let mut covered = 0u64;
    let mut next = seen.iter();
    let mut at = None;
    let mut j = offset + 1;
    while let Some(sent_at) = usize::try_from(j - 1).ok().and_then(|i| send_times.get(i)) {
        while covered < j {
            match next.next() {
                Some(&(total, t)) => {
                    if total > covered {
                        covered = total;
                        at = Some(t);
                    }
                }
                None => return out,
            }
        }
        if let Some(t) = at {
            out.push(
                t.saturating_duration_since(*sent_at)
                    .as_micros()
                    .try_into()
                    .unwrap_or(u64::MAX),
            );
        }
        j += stride.max(1);
    }
    out
}

/// How to open one session: through `gate` (bounded concurrent connects), failures counted.
struct Dial {
    client: Client,
    url: Url,
    options: ClientOptions,
    gate: Arc<Semaphore>,
    failed: Arc<AtomicU64>,
}

impl Dial {
    /// Connect and start the session's driver; `None` (counted) if the connect failed.
    async fn connect(&self, who: &'static str) -> Option<(Session, JoinHandle<()>)> {
        let _permit = self.gate.acquire().await.ok()?;
        match self.client.connect(&self.url, self.options.clone()).await {
            Ok((session, driver)) => Some((
                session,
                tokio::spawn(async move {
                    let _ = driver.run().await;
                }),
            )),
            Err(e) => {
                tracing::debug!(error = %e, who, "connect failed");
                self.failed.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Count a session that connected but could not set up its tracks, and close it.
    fn give_up(&self, session: &Session, driver: &JoinHandle<()>, why: &str) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        session.close(SessionErrorCode::NoError, why);
        driver.abort();
    }
}

/// A watcher's SUBSCRIBE for an interaction track. It asks for no RENDEZVOUS_TIMEOUT: a
/// broadcast's origin relay publishes `likes` and `chat/<room>` itself (whether or not anyone
/// publishes media), and an edge fetches them from its parent, so there is never a publisher
/// to wait for; a relay without interactions refuses at once.
fn subscribe(namespace: &TrackNamespace, track: &str) -> Subscribe {
    Subscribe {
        request_id: 0,
        track_namespace: namespace.clone(),
        track_name: TrackName::from(track),
        parameters: Parameters::default(),
    }
}

/// PUBLISH `(namespace, "interact")` and wait for PUBLISH_OK.
async fn publish_interact(session: &Session, namespace: TrackNamespace) -> Result<TrackWriter, String> {
    let mut writer = session
        .publish(Publish {
            request_id: 0,
            track_namespace: namespace,
            track_name: TrackName::from("interact"),
            track_alias: 0,
            parameters: Parameters::default(),
            track_properties: Default::default(),
        })
        .await
        .map_err(|e| e.to_string())?;
    match writer.next_request().await {
        Ok(Some(Message::RequestOk(_))) => Ok(writer),
        other => Err(format!("no PUBLISH_OK: {other:?}")),
    }
}

/// Read one subscription until it ends, each subgroup on its own task.
async fn read_track(
    mut subscription: Subscription,
    chat: bool,
    watcher: Arc<Watcher>,
    received: Arc<Received>,
) {
    let mut groups = JoinSet::new();
    loop {
        tokio::select! {
            event = subscription.next() => match event {
                Ok(Some(TrackEvent::Subgroup(reader))) => {
                    groups.spawn(read_group(reader, chat, watcher.clone(), received.clone()));
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            },
            Some(_) = groups.join_next(), if !groups.is_empty() => {}
        }
    }
    while groups.join_next().await.is_some() {}
}

async fn read_group(mut reader: SubgroupReader, chat: bool, watcher: Arc<Watcher>, received: Arc<Received>) {
    while let Ok(Some(object)) = reader.next().await {
        let now = Instant::now();
        received
            .bytes
            .fetch_add(object.payload.len() as u64, Ordering::Relaxed);
        if chat {
            received.chat_objects.fetch_add(1, Ordering::Relaxed);
            let Some(sent_us) =
                wire::decode_chat_text(object.payload).and_then(|t| wire::comment_sent_us(&t))
            else {
                continue;
            };
            watcher.comments.fetch_add(1, Ordering::Relaxed);
            if watcher.timed {
                watcher
                    .comment_latencies_us
                    .lock()
                    .push(unix_micros().saturating_sub(sent_us));
            }
        } else {
            received.likes_objects.fetch_add(1, Ordering::Relaxed);
            let Some(total) = wire::decode_total(object.payload) else {
                continue;
            };
            watcher.max_total.fetch_max(total, Ordering::Relaxed);
            if watcher.timed {
                watcher.totals.lock().push((total, now));
            }
        }
    }
}

/// When and what one viewer sends.
#[derive(Debug, Clone)]
struct Schedule {
    t0: Instant,
    t_end: Instant,
    likes_per_s: f64,
    comments_per_s: f64,
    /// This viewer's offset within one period, in periods (0..1).
    phase: f64,
    room: String,
    source: u64,
}

impl Schedule {
    /// When event `k` of a `rate`/s series is due; `None` once past the window.
    fn due(&self, rate: f64, k: u64) -> Option<Instant> {
        if rate <= 0.0 {
            return None;
        }
        let at = self.t0 + Duration::from_secs_f64((k as f64 + self.phase) / rate);
        (at < self.t_end).then_some(at)
    }
}

/// Send likes and comments on `schedule`; then the final like total on a stream.
async fn send(viewer: Viewer, schedule: Schedule, likes_sent: Arc<AtomicU64>) -> Sent {
    let mut sent = Sent::default();
    let (mut likes, mut comments) = (0u64, 0u64);
    let mut comment_stream: Option<SubgroupWriter> = None;
    if schedule.comments_per_s > 0.0 {
        comment_stream = viewer.writer.open_subgroup(0, 0, None, false).await.ok();
    }
    loop {
        let next_like = schedule.due(schedule.likes_per_s, likes);
        let next_comment = schedule.due(schedule.comments_per_s, comments);
        let (at, is_like) = match (next_like, next_comment) {
            (None, None) => break,
            (Some(l), Some(c)) if c < l => (c, false),
            (Some(l), _) => (l, true),
            (None, Some(c)) => (c, false),
        };
        tokio::time::sleep_until(at).await;
        if is_like {
            likes += 1;
            let datagram = ObjectDatagram {
                track_alias: 0,
                group_id: likes,
                object_id: 0,
                publisher_priority: None,
                properties: ObjectProperties::default(),
                end_of_group: false,
                status: ObjectStatus::Normal,
                payload: wire::like(schedule.source, likes),
            };
            // A datagram that cannot be sent now is made good by the next total.
            let _ = viewer.writer.send_datagram(datagram);
            sent.like_times.push(Instant::now());
            likes_sent.fetch_add(1, Ordering::Relaxed);
        } else {
            let text = wire::comment_text(viewer.index, comments, unix_micros());
            if let Some(stream) = comment_stream.as_mut() {
                if stream
                    .write_payload(comments, wire::comment(&schedule.room, &text))
                    .await
                    .is_ok()
                {
                    sent.comments += 1;
                }
            }
            comments += 1;
        }
    }
    if let Some(stream) = comment_stream {
        stream.finish();
    }
    if likes > 0 {
        // The final total, reliably: a lost last datagram must not lose likes.
        if let Ok(mut stream) = viewer.writer.open_subgroup(likes + 1, 0, None, false).await {
            let _ = stream.write_payload(0, wire::like(schedule.source, likes)).await;
            stream.finish();
        }
    }
    // The publication stays open until the run closes the session.
    sent.writer = Some(viewer.writer);
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_like_is_visible_at_the_first_total_covering_it() {
        let t = Instant::now();
        let ms = |m: u64| t + Duration::from_millis(m);
        let sends = [ms(0), ms(10), ms(20), ms(30)];
        // Totals 2 at 50 ms, 4 at 100 ms.
        let seen = [(2, ms(50)), (4, ms(100))];
        assert_eq!(
            like_to_visible(&sends, &seen, 1, 0),
            vec![50_000, 40_000, 80_000, 70_000]
        );
        // Every other like, starting with the second.
        assert_eq!(like_to_visible(&sends, &seen, 2, 1), vec![40_000, 70_000]);
    }

    #[test]
    fn likes_never_covered_give_no_sample_and_totals_may_repeat() {
        let t = Instant::now();
        let ms = |m: u64| t + Duration::from_millis(m);
        let sends = [ms(0), ms(1), ms(2)];
        let seen = [(1, ms(5)), (1, ms(6)), (2, ms(7))];
        assert_eq!(like_to_visible(&sends, &seen, 1, 0), vec![5_000, 6_000]);
        assert!(like_to_visible(&sends, &[], 1, 0).is_empty());
    }
}
