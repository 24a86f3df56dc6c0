//! One benchmark run: connect publishers, ramp subscribers up, measure a window, drain, and
//! turn what everyone saw into a [`Report`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use banyan_certs::ServerVerification;
use banyan_moq::coding::{SessionErrorCode, TrackNamespace};
use banyan_moq::session::{Client, ClientOptions, Session, SessionConfig, TransportConfig, TransportKind};
use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::procfs::{host_busy_percent, HostSample, ProcessSampler, Sample};
use crate::profile::{url_for, Args, Profile};
use crate::publisher::{self, Broadcast, Stream};
use crate::report::{
    BenchUsage, Connections, Delivered, Groups, HostUsage, Progress, Published, RelayUsage, Report,
    SCHEMA_VERSION,
};
use crate::subscriber::{self, Counters, Outcome, Plan};
use crate::Error;
use banyan_media::stats::{round3, Distribution};

/// Subscriber sessions share this many client endpoints (UDP sockets), round-robin.
pub const SUBSCRIBER_SOCKETS: u64 = 32;

/// A benchmark ready to run: the profile plus how to reach the relay.
#[derive(Debug, Clone)]
pub struct Bench {
    profile: Profile,
    verification: ServerVerification,
    options: ClientOptions,
}

/// Counters at one instant.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    at: Instant,
    objects: u64,
    bytes: u64,
    relay: Option<Sample>,
    bench: Option<Sample>,
    host: Option<HostSample>,
}

impl Bench {
    /// Validate the command line.
    pub fn from_args(args: &Args) -> Result<Self, Error> {
        let profile = Profile::from_args(args)?;
        let (verification, _) = args.access.verification()?;
        Ok(Self {
            profile,
            verification,
            options: args.access.client_options(),
        })
    }

    /// The profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Run the benchmark, calling `progress` about once a second.
    pub async fn run(&self, mut progress: impl FnMut(&Progress)) -> Result<Report, Error> {
        let p = &self.profile;
        let relay = p.relay_pid.map(ProcessSampler::new);
        let baseline = match &relay {
            Some(sampler) => Some(sampler.sample()?),
            None => None,
        };
        let this = ProcessSampler::this_process();
        let mut rss_peak = baseline.map(|b| b.rss_bytes);

        let tls = banyan_certs::client_config(&self.verification, &[])?;
        let new_client = || {
            Client::new(tls.clone(), &TransportConfig::default(), SessionConfig::default())
                .map_err(Error::Client)
        };

        // Publishers.
        let broadcasts = broadcasts(p)?;
        let (stop_tx, stop) = watch::channel(false);
        let (mut publishers, publisher_sessions) =
            self.start_publishers(&broadcasts, &new_client, stop).await?;

        // Subscribers, spread over the ramp-up and round-robin over broadcasts.
        let counters = Arc::new(Counters::default());
        let (abort_tx, abort) = watch::channel(false);
        let t0 = Instant::now();
        let mut subscribers = self.start_subscribers(&broadcasts, &new_client, t0, &counters, &abort)?;

        // Ramp-up and measurement window, with progress once a second.
        let snapshot = || Snapshot {
            at: Instant::now(),
            objects: counters.objects.load(Ordering::Relaxed),
            bytes: counters.bytes.load(Ordering::Relaxed),
            relay: relay.as_ref().and_then(|r| r.sample().ok()),
            bench: this.sample().ok(),
            host: HostSample::take().ok(),
        };
        let (start_snap, end_snap) = self
            .measure(t0, &snapshot, &mut |now, last| {
                if let Some(rss) = now.relay.map(|r| r.rss_bytes) {
                    rss_peak = rss_peak.max(Some(rss));
                }
                progress(&progress_line(
                    now,
                    last,
                    t0,
                    t0 + p.ramp_up(),
                    p,
                    &counters,
                    relay.as_ref(),
                ));
            })
            .await;
        if let Some(rss) = end_snap.relay.map(|r| r.rss_bytes) {
            rss_peak = rss_peak.max(Some(rss));
        }

        // Drain: publishers write one last object each; subscribers stop when they have it.
        let _ = stop_tx.send(true);
        let outcomes = drain(&mut subscribers, p.drain_timeout(), &abort_tx).await;
        let elapsed = t0.elapsed();
        for session in &publisher_sessions {
            session.close(SessionErrorCode::NoError, "bench finished");
        }
        publishers.abort_all();

        Ok(self.report(ReportInputs {
            outcomes,
            broadcasts: &broadcasts,
            start: start_snap,
            end: end_snap,
            baseline,
            rss_peak,
            elapsed,
            relay: relay.as_ref(),
            this: &this,
        }))
    }

    /// Wait out the ramp-up and the measurement window, calling `tick` once a second with the
    /// newest snapshot and the one before; returns the snapshots at the window's start and end.
    async fn measure(
        &self,
        t0: Instant,
        snapshot: &impl Fn() -> Snapshot,
        tick: &mut impl FnMut(&Snapshot, &Snapshot),
    ) -> (Snapshot, Snapshot) {
        let window_start = t0 + self.profile.ramp_up();
        let window_end = window_start + self.profile.duration();
        let mut ticker = tokio::time::interval_at(t0 + Duration::from_secs(1), Duration::from_secs(1));
        let mut last = snapshot();
        let mut start: Option<Snapshot> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(window_start), if start.is_none() => {
                    start = Some(snapshot());
                }
                _ = ticker.tick() => {
                    let now = snapshot();
                    tick(&now, &last);
                    last = now;
                }
                _ = tokio::time::sleep_until(window_end) => break,
            }
        }
        let end = snapshot();
        (start.unwrap_or(end), end)
    }

    /// Connect the publishers (`broadcasts_per_publisher` broadcasts each) and serve their
    /// broadcasts until `stop`; returns their tasks and sessions.
    async fn start_publishers(
        &self,
        broadcasts: &[Arc<Broadcast>],
        new_client: &impl Fn() -> Result<Client, Error>,
        stop: watch::Receiver<bool>,
    ) -> Result<(tokio::task::JoinSet<()>, Vec<Session>), Error> {
        let p = &self.profile;
        let stream = Stream {
            interval: p.frame_interval(),
            gop: u64::from(p.gop),
            payload: Bytes::from(vec![0x5a; usize::try_from(p.object_size).unwrap_or(0)]),
        };
        let mut publishers = tokio::task::JoinSet::new();
        let mut sessions = Vec::new();
        let url = url::Url::parse(&p.url).map_err(|e| Error::Config(e.to_string()))?;
        let per_publisher = p.broadcasts_per_publisher as usize;
        for (index, mine) in broadcasts.chunks(per_publisher.max(1)).enumerate() {
            let client = new_client()?;
            let publisher_error = |source| Error::Publisher { index, source };
            let (session, driver) = client
                .connect(&url, self.options.clone())
                .await
                .map_err(publisher_error)?;
            publishers.spawn(async move {
                let _ = driver.run().await;
            });
            let publications = publisher::announce(&session, mine)
                .await
                .map_err(publisher_error)?;
            let serving = publisher::serve(session.clone(), mine.to_vec(), stream.clone(), stop.clone());
            publishers.spawn(async move {
                let _keep = (publications, client);
                serving.await;
            });
            sessions.push(session);
        }
        Ok((publishers, sessions))
    }

    /// Start every subscriber at its point of the ramp-up from `t0`, round-robin over the
    /// broadcasts and the client sockets.
    fn start_subscribers(
        &self,
        broadcasts: &[Arc<Broadcast>],
        new_client: &impl Fn() -> Result<Client, Error>,
        t0: Instant,
        counters: &Arc<Counters>,
        abort: &watch::Receiver<bool>,
    ) -> Result<tokio::task::JoinSet<Outcome>, Error> {
        let p = &self.profile;
        let sockets = p.subscribers.clamp(1, SUBSCRIBER_SOCKETS);
        let clients: Vec<Client> = (0..sockets).map(|_| new_client()).collect::<Result<_, _>>()?;
        let urls = [
            url_for(&p.url, TransportKind::Quic)?,
            url_for(&p.url, TransportKind::WebTransport)?,
            url_for(&p.url, TransportKind::WebSocket)?,
        ];
        let ramp = p.ramp_up();
        let mut subscribers = tokio::task::JoinSet::new();
        for j in 0..p.subscribers {
            let (Some(broadcast), Some(client)) = (
                broadcasts.get((j % p.broadcasts) as usize),
                clients.get((j % sockets) as usize),
            ) else {
                continue;
            };
            let url = match p.transport.for_subscriber(j) {
                TransportKind::Quic => &urls[0],
                TransportKind::WebTransport => &urls[1],
                TransportKind::WebSocket => &urls[2],
            };
            let plan = Plan {
                url: url.clone(),
                client: client.clone(),
                options: self.options.clone(),
                broadcast: broadcast.clone(),
                start_at: t0 + ramp.mul_f64(j as f64 / p.subscribers as f64),
            };
            subscribers.spawn(subscriber::run(plan, counters.clone(), abort.clone()));
        }
        Ok(subscribers)
    }

    fn report(&self, input: ReportInputs<'_>) -> Report {
        let p = &self.profile;
        let ReportInputs {
            outcomes,
            broadcasts,
            start,
            end,
            baseline,
            rss_peak,
            elapsed,
            relay,
            this,
        } = input;
        let window = end.at.saturating_duration_since(start.at).as_secs_f64();
        let per_s = |x: u64| if window > 0.0 { x as f64 / window } else { 0.0 };

        let mut delivered = Delivered {
            objects: end.objects.saturating_sub(start.objects),
            bytes: end.bytes.saturating_sub(start.bytes),
            expected_objects_per_s: round3(p.fps * p.subscribers as f64),
            ..Default::default()
        };
        delivered.objects_per_s = round3(per_s(delivered.objects));
        delivered.object_delivery_ratio = object_delivery_ratio(&delivered);
        delivered.gbit_per_s = (per_s(delivered.bytes) * 8.0 / 1e9 * 1e6).round() / 1e6;
        let mut connections = Connections {
            attempted: p.subscribers,
            ..Default::default()
        };
        let Tally {
            groups,
            latencies,
            ttff,
        } = tally(outcomes, &mut delivered, &mut connections);

        let published = Published {
            objects: broadcasts.iter().map(|b| b.objects_sent()).sum(),
            subscriptions: broadcasts
                .iter()
                .map(|b| b.subscriptions.load(Ordering::Relaxed))
                .sum(),
        };

        let relay_usage = match relay {
            None => RelayUsage::default(),
            Some(sampler) => relay_usage(
                sampler,
                p.relay_pid,
                (&start, &end),
                baseline,
                rss_peak,
                &delivered,
                &connections,
            ),
        };
        let bench = BenchUsage {
            cpu_percent: match (start.bench, end.bench) {
                (Some(a), Some(b)) => this.cpu_percent(&a, &b).map(|c| (c * 10.0).round() / 10.0),
                _ => None,
            },
            rss_bytes: end.bench.map(|s| s.rss_bytes),
        };

        let host = host_usage(&start, &end, &relay_usage, &bench);
        Report {
            schema: SCHEMA_VERSION,
            profile: p.clone(),
            elapsed_s: round3(elapsed.as_secs_f64()),
            window_s: round3(window),
            latency_ms: Distribution::from_micros(latencies),
            ttff_ms: Distribution::from_micros(ttff),
            delivered,
            published,
            groups,
            connections,
            relay: relay_usage,
            bench,
            host,
        }
    }
}

/// The profile's broadcasts, `<prefix>/<index>`, none started.
fn broadcasts(p: &Profile) -> Result<Vec<Arc<Broadcast>>, Error> {
    (0..p.broadcasts)
        .map(|i| {
            TrackNamespace::from_path(&format!("{}/{i}", p.namespace_prefix))
                .map(|ns| Arc::new(Broadcast::new(ns)))
                .map_err(|e| Error::Config(format!("namespace: {e}")))
        })
        .collect()
}

/// Collect the subscribers' outcomes; once `limit` has passed, tell the stragglers to stop.
async fn drain(
    subscribers: &mut tokio::task::JoinSet<Outcome>,
    limit: Duration,
    abort: &watch::Sender<bool>,
) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(subscribers.len());
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            joined = subscribers.join_next() => match joined {
                Some(Ok(outcome)) => outcomes.push(outcome),
                Some(Err(_)) => {}
                None => return outcomes,
            },
            _ = &mut deadline, if !*abort.borrow() => {
                let _ = abort.send(true);
            }
        }
    }
}

/// What the subscribers' outcomes add up to, beyond the window's counters.
struct Tally {
    groups: Groups,
    latencies: Vec<u64>,
    ttff: Vec<u64>,
}

/// Objects delivered in the window over what a perfect relay would have delivered (four
/// decimals); `None` when nothing was expected.
pub fn object_delivery_ratio(delivered: &Delivered) -> Option<f64> {
    (delivered.expected_objects_per_s > 0.0)
        .then(|| (delivered.objects_per_s / delivered.expected_objects_per_s * 1e4).round() / 1e4)
}

/// Add every subscriber's outcome into `delivered` and `connections`; the group delivery and
/// the latency and time-to-first-frame samples.
fn tally(outcomes: Vec<Outcome>, delivered: &mut Delivered, connections: &mut Connections) -> Tally {
    let (mut latencies, mut ttff) = (Vec::new(), Vec::new());
    let mut groups = Groups::default();
    for o in outcomes {
        connections.failed += u64::from(o.failed);
        connections.established += u64::from(o.established);
        connections.dropped += u64::from(o.dropped);
        connections.completed += u64::from(o.completed);
        delivered.total_objects += o.objects;
        delivered.total_bytes += o.bytes;
        delivered.cached_objects += o.cached_objects;
        delivered.without_timestamp += o.without_timestamp;
        ttff.extend(o.ttff_us);
        if o.established {
            let (expected, received) = group_delivery(&o);
            groups.expected += expected;
            groups.received += received;
        }
        latencies.extend(o.latencies_us);
    }
    groups.skipped = groups.expected.saturating_sub(groups.received);
    groups.delivery_ratio =
        (groups.expected > 0).then(|| (groups.received as f64 / groups.expected as f64 * 1e6).round() / 1e6);
    Tally {
        groups,
        latencies,
        ttff,
    }
}

/// The relay process's CPU and memory over the window (its first and last snapshots).
fn relay_usage(
    sampler: &ProcessSampler,
    pid: Option<u32>,
    (start, end): (&Snapshot, &Snapshot),
    baseline: Option<Sample>,
    rss_peak: Option<u64>,
    delivered: &Delivered,
    connections: &Connections,
) -> RelayUsage {
    let cpu = match (start.relay, end.relay) {
        (Some(a), Some(b)) => sampler.cpu_percent(&a, &b).map(|c| round3(c * 1000.0) / 1000.0),
        _ => None,
    };
    let rss = end.relay.map(|s| s.rss_bytes);
    let base = baseline.map(|s| s.rss_bytes);
    RelayUsage {
        pid,
        cpu_percent: cpu.map(|c| (c * 10.0).round() / 10.0),
        cpu_percent_per_gbit_per_s: cpu
            .filter(|_| delivered.gbit_per_s > 0.0)
            .map(|c| (c / delivered.gbit_per_s * 10.0).round() / 10.0),
        rss_bytes: rss,
        rss_baseline_bytes: base,
        rss_peak_bytes: rss_peak,
        rss_per_subscriber_bytes: match (rss, base) {
            (Some(r), Some(b)) if connections.established > 0 => {
                Some((r.saturating_sub(b) as f64 / connections.established as f64).round())
            }
            _ => None,
        },
    }
}

/// The whole host's CPU over the window, and what neither the relay nor the bench used.
fn host_usage(start: &Snapshot, end: &Snapshot, relay: &RelayUsage, bench: &BenchUsage) -> HostUsage {
    // The machine's CPUs, not this process's affinity (pinned runs see one).
    let cpus = end
        .host
        .map(|h| h.cpu.cpus)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let host_busy = match (start.host, end.host) {
        (Some(a), Some(b)) => host_busy_percent(&a.cpu, &b.cpu, cpus),
        _ => None,
    };
    HostUsage {
        cpus,
        cpu_busy_percent: host_busy.map(|v| (v * 10.0).round() / 10.0),
        other_cpu_percent: host_busy.map(|busy| {
            let other = busy - relay.cpu_percent.unwrap_or(0.0) - bench.cpu_percent.unwrap_or(0.0);
            (other.max(0.0) * 10.0).round() / 10.0
        }),
        udp_rcvbuf_errors: match (start.host, end.host) {
            (Some(a), Some(b)) => b.udp_drops_since(&a),
            _ => None,
        },
    }
}

struct ReportInputs<'a> {
    outcomes: Vec<Outcome>,
    broadcasts: &'a [Arc<Broadcast>],
    start: Snapshot,
    end: Snapshot,
    baseline: Option<Sample>,
    rss_peak: Option<u64>,
    elapsed: Duration,
    relay: Option<&'a ProcessSampler>,
    this: &'a ProcessSampler,
}

/// Groups a subscriber should have had and had: from where it joined (the earlier of its
/// first group and the publisher's group at SUBSCRIBE_OK) to the publisher's last group.
pub fn group_delivery(o: &Outcome) -> (u64, u64) {
    let joined = o.group_at_subscribe.unwrap_or(0);
    let first = o.groups.first().map_or(joined, |&g| g.min(joined));
    let Some(last) = o.last_group.or_else(|| o.groups.last().copied()) else {
        return (0, 0);
    };
    if last < first {
        return (0, 0);
    }
    let received = o.groups.range(first..=last).count() as u64;
    (last - first + 1, received)
}

fn progress_line(
    now: &Snapshot,
    last: &Snapshot,
    t0: Instant,
    window_start: Instant,
    p: &Profile,
    counters: &Counters,
    relay: Option<&ProcessSampler>,
) -> Progress {
    let secs = now.at.saturating_duration_since(last.at).as_secs_f64();
    let rate = |a: u64, b: u64| {
        if secs > 0.0 {
            a.saturating_sub(b) as f64 / secs
        } else {
            0.0
        }
    };
    Progress {
        elapsed_s: now.at.saturating_duration_since(t0).as_secs_f64(),
        phase: if now.at < window_start {
            "ramp-up"
        } else {
            "measuring"
        },
        connected: counters.connected.load(Ordering::Relaxed),
        subscribers: p.subscribers,
        failed: counters.failed.load(Ordering::Relaxed),
        objects_per_s: rate(now.objects, last.objects),
        gbit_per_s: rate(now.bytes, last.bytes) * 8.0 / 1e9,
        relay_cpu_percent: match (relay, &last.relay, &now.relay) {
            (Some(r), Some(a), Some(b)) => r.cpu_percent(a, b),
            _ => None,
        },
        relay_rss_bytes: now.relay.map(|r| r.rss_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(at_subscribe: Option<u64>, groups: &[u64], last: Option<u64>) -> Outcome {
        Outcome {
            established: true,
            group_at_subscribe: at_subscribe,
            groups: groups.iter().copied().collect(),
            last_group: last,
            ..Default::default()
        }
    }

    #[test]
    fn object_delivery_counts_objects_not_groups() {
        // The overload case of issue 19: every group touched, three quarters of the objects.
        let delivered = Delivered {
            objects_per_s: 15_750.0,
            expected_objects_per_s: 21_000.0,
            ..Default::default()
        };
        assert_eq!(object_delivery_ratio(&delivered), Some(0.75));
        let nothing_expected = Delivered::default();
        assert_eq!(object_delivery_ratio(&nothing_expected), None);
    }

    #[test]
    fn every_group_from_join_to_last() {
        assert_eq!(group_delivery(&outcome(Some(3), &[3, 4, 5, 6], Some(6))), (4, 4));
        // Joined while the relay still held the previous group: that counts from there.
        assert_eq!(group_delivery(&outcome(Some(3), &[2, 3, 4], Some(4))), (3, 3));
    }

    #[test]
    fn gaps_and_missing_tail_are_skips() {
        assert_eq!(group_delivery(&outcome(Some(0), &[0, 1, 3], Some(5))), (6, 3));
        // Started at the next group instead of the current one: the current one is a skip.
        assert_eq!(group_delivery(&outcome(Some(2), &[3, 4], Some(4))), (3, 2));
        // Nothing arrived at all.
        assert_eq!(group_delivery(&outcome(Some(2), &[], Some(4))), (3, 0));
        // Broadcast not started at SUBSCRIBE_OK: counts from group 0.
        assert_eq!(group_delivery(&outcome(None, &[0, 1], Some(1))), (2, 2));
    }

    #[test]
    fn nothing_expected_without_a_publisher() {
        assert_eq!(group_delivery(&outcome(None, &[], None)), (0, 0));
        assert_eq!(group_delivery(&outcome(Some(9), &[], Some(4))), (0, 0));
    }
}
