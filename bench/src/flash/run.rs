//! [`FlashBench`]: viewers arrive on schedule, each asks control and joins where told; a
//! poller watches the fleet through `GET /v1/status`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use banyan_certs::ServerVerification;
use banyan_control::api::{Status, WatchResponse};
use banyan_moq::coding::TrackNamespace;
use banyan_moq::session::{Client, ClientOptions, SessionConfig, TransportConfig, TransportKind};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;
use url::Url;

use super::args::FlashArgs;
use super::report::{CpuUse, FlashReport, RelaySeen, ViewerResult};
use crate::procfs::{host_busy_percent, HostSample, ProcessSampler, Sample};
use crate::publisher::Broadcast;
use crate::subscriber::{self, micros, Counters, Plan};
use crate::Error;

/// How long one `/v1/watch` or `/v1/status` request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Streams a viewer lets the relay open at once: one per subgroup of the groups in flight
/// (a handful), with room for a relay that is behind. quinn prepares a table entry for every
/// stream the peer may open when a connection starts, so the library's defaults (4,096 data
/// streams and 1,024 requests) cost each new connection ≈ 5,000 hash-table inserts and fresh
/// pages: a fifth of the bench's CPU in a flash crowd's profile, for nothing a viewer uses.
const VIEWER_DATA_STREAMS: u32 = 64;
/// Request streams a viewer lets the relay open at once.
const VIEWER_REQUESTS: u32 = 16;

/// The QUIC settings of a viewer: the defaults with [`VIEWER_DATA_STREAMS`] and
/// [`VIEWER_REQUESTS`].
fn viewer_transport() -> TransportConfig {
    TransportConfig {
        max_concurrent_data_streams: VIEWER_DATA_STREAMS,
        max_concurrent_requests: VIEWER_REQUESTS,
        ..TransportConfig::default()
    }
}

/// One flash-crowd run, ready to start.
#[derive(Debug)]
pub struct FlashBench {
    args: FlashArgs,
    watch_url: Url,
    status_url: Url,
    http: reqwest::Client,
    /// The `--tls-*` choice, or `None` to pin each answer's `cert_sha256`.
    verification: Option<ServerVerification>,
}

impl FlashBench {
    /// Validate the arguments and prepare the HTTP client.
    pub fn from_args(args: &FlashArgs) -> Result<Self, Error> {
        args.validate()?;
        let mut watch_url = args
            .control
            .join(&format!("v1/watch/{}", args.broadcast))
            .map_err(|e| Error::Config(format!("control URL: {e}")))?;
        if let Some(region) = &args.region {
            watch_url.query_pairs_mut().append_pair("region", region);
        }
        let status_url = args
            .control
            .join("v1/status")
            .map_err(|e| Error::Config(format!("control URL: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        let a = &args.access;
        let verification = if a.tls_hash.is_empty() && a.tls_ca.is_none() && !a.tls_insecure {
            None
        } else {
            Some(a.verification()?.0)
        };
        Ok(Self {
            args: args.clone(),
            watch_url,
            status_url,
            http,
            verification,
        })
    }

    /// Run the crowd; `progress` gets a line a second.
    pub async fn run(&self, progress: impl Fn(String)) -> Result<FlashReport, Error> {
        let namespace = TrackNamespace::from_path(&self.args.broadcast)
            .map_err(|e| Error::Config(format!("--broadcast: {e}")))?;
        // Fail early and clearly when control is not there.
        let before = self.status().await?;
        let broadcast = Arc::new(Broadcast::new(namespace));
        let clients = Arc::new(Clients::new(self.verification.clone(), self.args.endpoints));
        let counters = Arc::new(Counters::default());
        let answered = Arc::new(AtomicU64::new(0));
        let (abort_tx, abort) = watch::channel(false);
        let me = ProcessSampler::this_process();
        let cpu_before = (me.sample().ok(), HostSample::take().ok());
        let t0 = Instant::now();
        let fleet = Arc::new(Mutex::new(Fleet::default()));
        fleet.lock().observe(&before, Duration::ZERO);
        let poller = (!self.args.status_every.is_zero()).then(|| {
            tokio::spawn(poll_fleet(
                self.http.clone(),
                self.status_url.clone(),
                self.args.status_every,
                fleet.clone(),
                t0,
                abort.clone(),
            ))
        });

        let viewers = self.args.viewers;
        let mut joins = Vec::with_capacity(usize::try_from(viewers).unwrap_or(0));
        let mut next_progress = t0 + Duration::from_secs(1);
        for index in 0..viewers {
            let at = t0 + self.args.arrival.mul_f64(index as f64 / viewers as f64);
            tokio::time::sleep_until(at).await;
            let viewer = Viewer {
                index,
                http: self.http.clone(),
                watch_url: self.watch_url.clone(),
                transport: self.args.transport.for_subscriber(index),
                clients: clients.clone(),
                broadcast: broadcast.clone(),
                counters: counters.clone(),
                answered: answered.clone(),
                abort: abort.clone(),
            };
            joins.push(tokio::spawn(viewer.run()));
            if Instant::now() >= next_progress {
                progress(progress_line(t0, index + 1, &answered, &counters));
                next_progress += Duration::from_secs(1);
            }
        }
        let end = Instant::now() + self.args.watch;
        while Instant::now() < end {
            tokio::time::sleep_until(next_progress.min(end)).await;
            if Instant::now() >= next_progress {
                progress(progress_line(t0, viewers, &answered, &counters));
                next_progress += Duration::from_secs(1);
            }
        }
        let _ = abort_tx.send(true);
        let mut results = Vec::with_capacity(joins.len());
        for join in joins {
            results.push(join.await.unwrap_or_else(|_| ViewerResult::lost()));
        }
        if let Some(poller) = poller {
            let _ = poller.await;
        }
        clients.close();
        let fleet = std::mem::take(&mut *fleet.lock());
        let mut report = FlashReport::new(
            &self.args,
            results,
            fleet.relays.into_values().collect(),
            fleet.polls,
        );
        report.cpu = cpu_use(&me, cpu_before);
        Ok(report)
    }

    async fn status(&self) -> Result<Status, Error> {
        fetch_status(&self.http, &self.status_url)
            .await
            .map_err(|e| Error::Config(format!("control plane at {}: {e}", self.args.control)))
    }
}

/// One viewer: ask control, then join where told.
struct Viewer {
    index: u64,
    http: reqwest::Client,
    watch_url: Url,
    transport: TransportKind,
    clients: Arc<Clients>,
    broadcast: Arc<Broadcast>,
    counters: Arc<Counters>,
    answered: Arc<AtomicU64>,
    abort: watch::Receiver<bool>,
}

impl Viewer {
    async fn run(self) -> ViewerResult {
        let arrived = Instant::now();
        let answer = match self.ask().await {
            Ok(answer) => answer,
            Err(refusal) => {
                return ViewerResult {
                    refused: Some(refusal),
                    control_us: Some(micros(arrived.elapsed())),
                    ..ViewerResult::default()
                }
            }
        };
        let control_us = micros(arrived.elapsed());
        self.answered.fetch_add(1, Ordering::Relaxed);
        let endpoint = &answer.endpoint;
        let url = match self.transport {
            TransportKind::Quic => endpoint.moqt.as_deref(),
            TransportKind::WebTransport => endpoint.webtransport.as_deref(),
            TransportKind::WebSocket => endpoint.websocket.as_deref(),
        };
        let Some(url) = url.and_then(|u| Url::parse(u).ok()) else {
            return ViewerResult {
                refused: Some(format!("no usable {:?} URL in the answer", self.transport)),
                control_us: Some(control_us),
                relay: Some(answer.relay_id),
                ..ViewerResult::default()
            };
        };
        let client = match self.clients.get(endpoint.cert_sha256.as_deref(), self.index) {
            Ok(client) => client,
            Err(e) => {
                return ViewerResult {
                    refused: Some(format!("client for {}: {e}", answer.relay_id)),
                    control_us: Some(control_us),
                    relay: Some(answer.relay_id),
                    ..ViewerResult::default()
                }
            }
        };
        let plan = Plan {
            url,
            client,
            options: ClientOptions::with_token(Some(answer.token.as_str()).filter(|t| !t.is_empty())),
            broadcast: self.broadcast,
            start_at: Instant::now(),
        };
        let outcome = subscriber::run(plan, self.counters, self.abort).await;
        ViewerResult {
            refused: None,
            control_us: Some(control_us),
            relay: Some(answer.relay_id),
            outcome,
        }
    }

    /// `GET /v1/watch/…`: the answer, or why there is none (`HTTP 503`, a transport error).
    async fn ask(&self) -> Result<WatchResponse, String> {
        let response = self
            .http
            .get(self.watch_url.clone())
            .send()
            .await
            .map_err(|e| format!("control: {}", error_kind(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("control: HTTP {}", status.as_u16()));
        }
        response
            .json::<WatchResponse>()
            .await
            .map_err(|_| "control: unreadable answer".to_string())
    }
}

/// A short, low-cardinality name for an HTTP client error (the report counts them).
fn error_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect error"
    } else {
        "request error"
    }
}

/// Client endpoints, `endpoints` per server certificate, created on first use.
struct Clients {
    verification: Option<ServerVerification>,
    endpoints: usize,
    by_cert: Mutex<HashMap<Option<String>, Vec<Client>>>,
}

impl Clients {
    fn new(verification: Option<ServerVerification>, endpoints: usize) -> Self {
        Self {
            verification,
            endpoints,
            by_cert: Mutex::new(HashMap::new()),
        }
    }

    /// The endpoint viewer `index` uses for a relay with certificate hash `cert` (`None` when
    /// the `--tls-*` flags decide, or control gave no hash).
    fn get(&self, cert: Option<&str>, index: u64) -> Result<Client, Error> {
        let (key, verification) = match (&self.verification, cert) {
            (Some(v), _) => (None, v.clone()),
            (None, Some(hex)) => {
                let hash = banyan_certs::parse_sha256_hex(hex)
                    .map_err(|e| Error::Config(format!("cert_sha256 in control's answer: {e}")))?;
                (Some(hex.to_owned()), ServerVerification::PinnedSha256(vec![hash]))
            }
            (None, None) => (None, ServerVerification::SystemRoots),
        };
        let slot = usize::try_from(index).unwrap_or(0) % self.endpoints;
        let mut by_cert = self.by_cert.lock();
        let clients = by_cert.entry(key).or_default();
        while clients.len() <= slot {
            let tls = banyan_certs::client_config(&verification, &[])?;
            let client =
                Client::new(tls, &viewer_transport(), SessionConfig::default()).map_err(Error::Client)?;
            clients.push(client);
        }
        clients
            .get(slot)
            .cloned()
            .ok_or_else(|| Error::Config("no client endpoint".into()))
    }

    fn close(&self) {
        for client in self.by_cert.lock().values().flatten() {
            client.close();
        }
    }
}

/// What the status poller saw.
#[derive(Debug, Default)]
struct Fleet {
    polls: u64,
    relays: BTreeMap<String, RelaySeen>,
}

impl Fleet {
    fn observe(&mut self, status: &Status, at: Duration) {
        self.polls += 1;
        for r in &status.relays {
            let seen = self
                .relays
                .entry(r.relay_id.clone())
                .or_insert_with(|| RelaySeen {
                    relay_id: r.relay_id.clone(),
                    spawned: r.spawned,
                    first_seen_s: banyan_media::stats::round3(at.as_secs_f64()),
                    capacity: r.capacity.max_viewers,
                    ..RelaySeen::default()
                });
            seen.capacity = r.capacity.max_viewers;
            seen.max_sessions = seen.max_sessions.max(r.load.sessions);
            seen.max_viewers = seen.max_viewers.max(r.viewers);
            if r.load.sessions > r.capacity.max_viewers {
                seen.over_capacity_polls += 1;
            }
        }
    }
}

/// The bench's own CPU and the machine's since `before` (a flash crowd on a shared machine is
/// only as fast as the CPU it gets).
fn cpu_use(me: &ProcessSampler, before: (Option<Sample>, Option<HostSample>)) -> CpuUse {
    let round = |v: f64| (v * 10.0).round() / 10.0;
    let bench_percent = match (before.0, me.sample().ok()) {
        (Some(a), Some(b)) => me.cpu_percent(&a, &b).map(round),
        _ => None,
    };
    let host = before.1.zip(HostSample::take().ok());
    CpuUse {
        bench_percent,
        host_busy_percent: host
            .and_then(|(a, b)| host_busy_percent(&a.cpu, &b.cpu, b.cpu.cpus))
            .map(round),
        cpus: host.map_or(0, |(_, b)| b.cpu.cpus),
    }
}

async fn poll_fleet(
    http: reqwest::Client,
    url: Url,
    every: Duration,
    fleet: Arc<Mutex<Fleet>>,
    t0: Instant,
    mut abort: watch::Receiver<bool>,
) {
    loop {
        if let Ok(status) = fetch_status(&http, &url).await {
            fleet.lock().observe(&status, t0.elapsed());
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = abort.wait_for(|a| *a) => return,
        }
    }
}

async fn fetch_status(http: &reqwest::Client, url: &Url) -> Result<Status, reqwest::Error> {
    http.get(url.clone())
        .send()
        .await?
        .error_for_status()?
        .json::<Status>()
        .await
}

fn progress_line(t0: Instant, arrived: u64, answered: &AtomicU64, counters: &Counters) -> String {
    format!(
        "{:>5.1}s  arrived {arrived}  answered {}  watching {}  failed {}  objects {}",
        t0.elapsed().as_secs_f64(),
        answered.load(Ordering::Relaxed),
        counters.connected.load(Ordering::Relaxed),
        counters.failed.load(Ordering::Relaxed),
        counters.objects.load(Ordering::Relaxed),
    )
}
