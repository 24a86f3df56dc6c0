//! A userspace UDP impairment proxy.
//!
//! The proxy listens on one local UDP address and forwards every datagram to one upstream
//! address. Each client address gets its own upstream socket, so the upstream sees one source
//! port per client and QUIC connections stay distinct. Each direction (client → server and
//! server → client) has its own [`Impairment`] and its own seeded RNG, and is applied in this
//! order:
//!
//! 1. **loss**: drop with probability `loss`;
//! 2. **rate cap**: the datagram joins a link that drains at `rate_bytes_per_s`; if the queued
//!    backlog already exceeds `rate_queue` (in time), it is dropped;
//! 3. **delay and jitter**: held for `delay` ± a uniform draw in `[-jitter, +jitter]` (never
//!    below zero; like netem, jitter larger than the gap between datagrams reorders them);
//! 4. **reordering**: with probability `reorder`, held a further `reorder_delay`, so later
//!    datagrams overtake it;
//! 5. **duplication**: with probability `duplicate`, sent twice.
//!
//! Every step is counted in [`DirectionStats`] so tests can prove the impairment happened.
//! The same per-direction model (the crate-internal `Lane`) runs under `crate::netem`, which
//! applies it to IP packets between two network namespaces, and [`ImpairmentArgs`] gives both
//! binaries the same flags.
//! Memory is bounded: the release queue per direction holds at most [`MAX_QUEUED`] datagrams,
//! at most `max_clients` clients are tracked and clients idle for `idle_timeout` are forgotten.
//!
//! [`Proxy::bind`] returns a handle and a driver future; the caller runs the driver (the
//! library spawns nothing unless asked to, via [`Proxy::start`]). Dropping the handle stops the
//! driver.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// Largest number of datagrams held in one direction's release queue; beyond it, datagrams
/// are dropped and counted in [`DirectionStats::dropped_other`].
pub const MAX_QUEUED: usize = 16_384;

/// Largest UDP payload the proxy relays.
const MAX_DATAGRAM: usize = 65_535;

/// Impairments applied to one direction. `Default` is a clean link.
#[derive(Debug, Clone, PartialEq)]
pub struct Impairment {
    /// Fixed one-way delay added to every datagram.
    pub delay: Duration,
    /// Uniform jitter: each datagram's delay is `delay` plus a draw in `[-jitter, +jitter]`,
    /// clamped at zero.
    pub jitter: Duration,
    /// Probability in `[0, 1]` that a datagram is dropped.
    pub loss: f64,
    /// Probability in `[0, 1]` that a datagram is held a further `reorder_delay`.
    pub reorder: f64,
    /// Extra hold for reordered datagrams.
    pub reorder_delay: Duration,
    /// Probability in `[0, 1]` that a datagram is sent twice.
    pub duplicate: f64,
    /// Link rate in bytes per second; `None` for unlimited.
    pub rate_bytes_per_s: Option<u64>,
    /// Longest backlog (as time to drain at the link rate) before datagrams are dropped.
    pub rate_queue: Duration,
}

impl Default for Impairment {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(10),
            duplicate: 0.0,
            rate_bytes_per_s: None,
            rate_queue: Duration::from_millis(50),
        }
    }
}

/// A malformed impairment spec (see [`Impairment::apply_spec`]).
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A `key=value` item had no `=`.
    #[error("expected key=value, got {0:?}")]
    NotKeyValue(String),
    /// The key is not one of the known impairments.
    #[error("unknown impairment {0:?} (known: delay, jitter, loss, reorder, reorder-delay, duplicate, rate, rate-queue)")]
    UnknownKey(String),
    /// A duration did not parse.
    #[error("{key}: {source}")]
    Duration {
        /// The key whose value was wrong.
        key: String,
        /// Why.
        source: humantime::DurationError,
    },
    /// A probability was not a number in `[0, 1]` or a percentage in `[0%, 100%]`.
    #[error("{key}: expected a probability like 0.01 or 1%, got {value:?}")]
    Probability {
        /// The key whose value was wrong.
        key: String,
        /// The value given.
        value: String,
    },
    /// A rate was not a whole number of bytes per second (optionally with k, M or G), nor of
    /// bits per second with tc's `bit` suffix.
    #[error("rate: expected bytes per second like 125000, 125k or 1M, or bits like 5mbit, got {0:?}")]
    Rate(String),
}

impl Impairment {
    /// Applies a comma-separated list of `key=value` overrides, e.g.
    /// `delay=20ms,jitter=5ms,loss=1%,reorder=0.5%,reorder-delay=10ms,duplicate=0.1%,rate=1M`.
    /// `rate=none` removes the rate cap. Durations use humantime syntax, probabilities are
    /// fractions or percentages, rates are bytes per second with an optional k/M/G (×1000), or bits
    /// per second with tc's suffix (`5mbit`).
    pub fn apply_spec(&mut self, spec: &str) -> Result<(), SpecError> {
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| SpecError::NotKeyValue(item.into()))?;
            let (key, value) = (key.trim(), value.trim());
            let duration = || {
                humantime::parse_duration(value).map_err(|source| SpecError::Duration {
                    key: key.into(),
                    source,
                })
            };
            match key {
                "delay" => self.delay = duration()?,
                "jitter" => self.jitter = duration()?,
                "reorder-delay" => self.reorder_delay = duration()?,
                "rate-queue" => self.rate_queue = duration()?,
                "loss" => self.loss = parse_probability(key, value)?,
                "reorder" => self.reorder = parse_probability(key, value)?,
                "duplicate" => self.duplicate = parse_probability(key, value)?,
                "rate" => self.rate_bytes_per_s = parse_rate(value)?,
                _ => return Err(SpecError::UnknownKey(key.into())),
            }
        }
        Ok(())
    }
}

impl FromStr for Impairment {
    type Err = SpecError;

    /// A clean link with the spec's overrides applied (see [`Impairment::apply_spec`]).
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut impairment = Self::default();
        impairment.apply_spec(spec)?;
        Ok(impairment)
    }
}

/// The impairment flags of `banyan-impair` and `banyan-netem`: each applies to both directions,
/// on top of a clean link (per-direction `key=value` overrides are the binaries' own flags).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ImpairmentArgs {
    /// One-way delay, both directions (e.g. 20ms).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub delay: Option<Duration>,
    /// Uniform jitter (±), both directions.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub jitter: Option<Duration>,
    /// Loss probability, both directions (0.01 or 1%).
    #[arg(long, value_parser = probability_arg)]
    pub loss: Option<f64>,
    /// Probability a datagram is held back by --reorder-delay, both directions.
    #[arg(long, value_parser = probability_arg)]
    pub reorder: Option<f64>,
    /// Extra hold for reordered datagrams.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub reorder_delay: Option<Duration>,
    /// Duplication probability, both directions.
    #[arg(long, value_parser = probability_arg)]
    pub duplicate: Option<f64>,
    /// Rate cap in bytes per second (125000, 125k, 1M) or bits per second (5mbit), both
    /// directions.
    #[arg(long, value_parser = rate_arg)]
    pub rate: Option<u64>,
    /// Longest rate-cap backlog, as time, before datagrams are dropped.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub rate_queue: Option<Duration>,
}

impl ImpairmentArgs {
    /// A clean link with the flags that were given applied.
    pub fn impairment(&self) -> Impairment {
        let clean = Impairment::default();
        Impairment {
            delay: self.delay.unwrap_or(clean.delay),
            jitter: self.jitter.unwrap_or(clean.jitter),
            loss: self.loss.unwrap_or(clean.loss),
            reorder: self.reorder.unwrap_or(clean.reorder),
            reorder_delay: self.reorder_delay.unwrap_or(clean.reorder_delay),
            duplicate: self.duplicate.unwrap_or(clean.duplicate),
            rate_bytes_per_s: self.rate.or(clean.rate_bytes_per_s),
            rate_queue: self.rate_queue.unwrap_or(clean.rate_queue),
        }
    }
}

fn probability_arg(value: &str) -> Result<f64, SpecError> {
    parse_probability("probability", value)
}

fn rate_arg(value: &str) -> Result<u64, SpecError> {
    parse_rate(value)?.ok_or_else(|| SpecError::Rate(value.into()))
}

/// Parses `0.01` or `1%` into a probability in `[0, 1]`.
pub fn parse_probability(key: &str, value: &str) -> Result<f64, SpecError> {
    let err = || SpecError::Probability {
        key: key.into(),
        value: value.into(),
    };
    let p = match value.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map_err(|_| err())? / 100.0,
        None => value.parse::<f64>().map_err(|_| err())?,
    };
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(err())
    }
}

/// Parses a rate in bytes per second (`125000`, `125k`, `1M`, `1G`), or in bits per second with
/// tc's `bit` suffix (`5mbit` is 625000 bytes per second); `none` for unlimited.
pub fn parse_rate(value: &str) -> Result<Option<u64>, SpecError> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let err = || SpecError::Rate(value.into());
    let lower = value.to_ascii_lowercase();
    let rate = match lower.strip_suffix("bit") {
        Some(bits) => scaled(bits).map(|bits| bits / 8),
        None => scaled(&lower),
    };
    match rate {
        Some(0) | None => Err(err()),
        Some(rate) => Ok(Some(rate)),
    }
}

/// A whole number with an optional k, m or g (×1000) suffix, in lower case.
fn scaled(value: &str) -> Option<u64> {
    let (digits, multiplier) = match value.char_indices().last() {
        Some((i, 'k')) => (value.get(..i)?, 1_000),
        Some((i, 'm')) => (value.get(..i)?, 1_000_000),
        Some((i, 'g')) => (value.get(..i)?, 1_000_000_000),
        _ => (value, 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(multiplier)
}

/// Configuration of a [`Proxy`].
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Address to listen on for clients (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Address every client's datagrams are forwarded to.
    pub upstream: SocketAddr,
    /// Impairments on datagrams from clients to the upstream.
    pub client_to_server: Impairment,
    /// Impairments on datagrams from the upstream back to clients.
    pub server_to_client: Impairment,
    /// Seed for the impairment RNGs (each direction derives its own stream from it).
    pub seed: u64,
    /// A client with no datagram in either direction for this long is forgotten, and its
    /// upstream socket closed.
    pub idle_timeout: Duration,
    /// Most clients tracked at once; datagrams from further new clients are dropped.
    pub max_clients: usize,
}

impl ProxyConfig {
    /// A clean proxy to `upstream`, listening on a free loopback port of the same family.
    pub fn new(upstream: SocketAddr) -> Self {
        let listen = match upstream {
            SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
        };
        Self {
            listen,
            upstream,
            client_to_server: Impairment::default(),
            server_to_client: Impairment::default(),
            seed: 0,
            idle_timeout: Duration::from_secs(30),
            max_clients: 1024,
        }
    }
}

/// Counters for one direction, as read by [`Proxy::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Datagrams received from the sending side.
    pub packets_in: u64,
    /// Bytes received from the sending side.
    pub bytes_in: u64,
    /// Datagrams sent to the receiving side, duplicates included.
    pub forwarded: u64,
    /// Bytes sent to the receiving side, duplicates included.
    pub bytes_forwarded: u64,
    /// Datagrams dropped by the `loss` draw.
    pub dropped_loss: u64,
    /// Datagrams dropped because the rate-capped link's queue was full.
    pub dropped_rate: u64,
    /// Datagrams dropped for other reasons: release queue full, too many clients, the client
    /// expired before release, or a send error.
    pub dropped_other: u64,
    /// Extra copies sent by the `duplicate` draw.
    pub duplicated: u64,
    /// Datagrams held back by the `reorder` draw.
    pub reordered: u64,
    /// Datagrams waiting in the release queue at the time of the snapshot.
    pub queued: u64,
}

impl std::fmt::Display for DirectionStats {
    /// One line of counters, as `banyan-impair` prints them (bench/scripts read it).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "in {} fwd {} loss {} rate {} other {} dup {} reord {}",
            self.packets_in,
            self.forwarded,
            self.dropped_loss,
            self.dropped_rate,
            self.dropped_other,
            self.duplicated,
            self.reordered
        )
    }
}

/// A snapshot of all the proxy's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Client → upstream.
    pub client_to_server: DirectionStats,
    /// Upstream → client.
    pub server_to_client: DirectionStats,
    /// Clients currently tracked (each with its own upstream socket).
    pub clients: u64,
    /// Clients seen since start.
    pub clients_total: u64,
    /// Clients forgotten after `idle_timeout`.
    pub clients_expired: u64,
}

/// Handle to a running proxy. Dropping it stops the driver.
#[derive(Debug)]
pub struct Proxy {
    local_addr: SocketAddr,
    counters: Arc<Counters>,
    impairments: watch::Sender<(Impairment, Impairment)>,
    _shutdown: oneshot::Sender<()>,
}

impl Proxy {
    /// Binds the listening socket and returns the handle and the driver future that relays
    /// datagrams. The driver must be polled (e.g. `tokio::spawn(driver)`) for anything to
    /// happen; it completes when the handle is dropped.
    pub async fn bind(config: ProxyConfig) -> io::Result<(Proxy, impl Future<Output = ()> + Send + 'static)> {
        let listen = UdpSocket::bind(config.listen).await?;
        let local_addr = listen.local_addr()?;
        let counters = Arc::new(Counters::default());
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let (impairments, changes) =
            watch::channel((config.client_to_server.clone(), config.server_to_client.clone()));
        let driver = Driver::new(config, listen, counters.clone());
        let handle = Proxy {
            local_addr,
            counters,
            impairments,
            _shutdown: shutdown_tx,
        };
        Ok((handle, driver.run(shutdown_rx, changes)))
    }

    /// [`Proxy::bind`], then spawns the driver on the current tokio runtime.
    pub async fn start(config: ProxyConfig) -> io::Result<Proxy> {
        let (proxy, driver) = Self::bind(config).await?;
        tokio::spawn(driver);
        Ok(proxy)
    }

    /// The address clients should send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ProxyStats {
        self.counters.snapshot()
    }

    /// The impairments in force, client → server and server → client.
    pub fn impairments(&self) -> (Impairment, Impairment) {
        self.impairments.borrow().clone()
    }

    /// Changes the impairments while traffic flows (e.g. lowers a rate cap to see a player
    /// adapt, then lifts it). Datagrams already scheduled keep their release times; the new
    /// model applies from the next datagram, and a new rate cap starts from an empty link.
    pub fn set_impairments(&self, client_to_server: Impairment, server_to_client: Impairment) {
        self.impairments
            .send_replace((client_to_server, server_to_client));
    }
}

/// One direction's counters, shared between a driver and its handle.
#[derive(Debug, Default)]
pub(crate) struct DirectionCounters {
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
    forwarded: AtomicU64,
    bytes_forwarded: AtomicU64,
    dropped_loss: AtomicU64,
    dropped_rate: AtomicU64,
    dropped_other: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    queued: AtomicU64,
}

impl DirectionCounters {
    pub(crate) fn snapshot(&self) -> DirectionStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DirectionStats {
            packets_in: get(&self.packets_in),
            bytes_in: get(&self.bytes_in),
            forwarded: get(&self.forwarded),
            bytes_forwarded: get(&self.bytes_forwarded),
            dropped_loss: get(&self.dropped_loss),
            dropped_rate: get(&self.dropped_rate),
            dropped_other: get(&self.dropped_other),
            duplicated: get(&self.duplicated),
            reordered: get(&self.reordered),
            queued: get(&self.queued),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    client_to_server: DirectionCounters,
    server_to_client: DirectionCounters,
    clients: AtomicU64,
    clients_total: AtomicU64,
    clients_expired: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ProxyStats {
        ProxyStats {
            client_to_server: self.client_to_server.snapshot(),
            server_to_client: self.server_to_client.snapshot(),
            clients: self.clients.load(Ordering::Relaxed),
            clients_total: self.clients_total.load(Ordering::Relaxed),
            clients_expired: self.clients_expired.load(Ordering::Relaxed),
        }
    }
}

pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// A datagram (or packet) waiting for its release time, with where it goes (`to`: the client
/// for the proxy, nothing for a point-to-point link).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Scheduled<T> {
    pub(crate) at: Instant,
    seq: u64,
    pub(crate) to: T,
    pub(crate) copies: u8,
    pub(crate) payload: Vec<u8>,
}

/// One direction's impairment state: the [`Impairment`] model applied to a stream of datagrams,
/// each released at its time by [`Lane::pop_due`].
#[derive(Debug)]
pub(crate) struct Lane<T> {
    impairment: Impairment,
    rng: StdRng,
    /// When the rate-capped link finishes sending what is already queued on it.
    link_free_at: Instant,
    queue: BinaryHeap<Reverse<Scheduled<T>>>,
    seq: u64,
}

impl<T: Ord> Lane<T> {
    pub(crate) fn new(impairment: Impairment, seed: u64) -> Self {
        Self {
            impairment,
            rng: StdRng::seed_from_u64(seed),
            link_free_at: Instant::now(),
            queue: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Replaces the model from now on; what is already queued keeps its release time.
    pub(crate) fn set_impairment(&mut self, impairment: Impairment, now: Instant) {
        if impairment.rate_bytes_per_s != self.impairment.rate_bytes_per_s {
            self.link_free_at = now;
        }
        self.impairment = impairment;
    }

    /// Runs loss, rate, delay, reordering and duplication for one datagram bound for `to`.
    pub(crate) fn admit(&mut self, now: Instant, to: T, payload: &[u8], c: &DirectionCounters) {
        bump(&c.packets_in, 1);
        bump(&c.bytes_in, payload.len() as u64);
        let imp = &self.impairment;
        if imp.loss > 0.0 && self.rng.random_bool(imp.loss) {
            bump(&c.dropped_loss, 1);
            return;
        }
        let mut at = now;
        if let Some(rate) = imp.rate_bytes_per_s {
            let start = self.link_free_at.max(now);
            if start.saturating_duration_since(now) > imp.rate_queue {
                bump(&c.dropped_rate, 1);
                return;
            }
            let nanos = (payload.len() as u128 * 1_000_000_000) / u128::from(rate.max(1));
            self.link_free_at = start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
            at = self.link_free_at;
        }
        let mut hold = imp.delay;
        if !imp.jitter.is_zero() {
            let j = imp.jitter.as_secs_f64();
            let draw = self.rng.random_range(-j..=j);
            hold = Duration::from_secs_f64((hold.as_secs_f64() + draw).max(0.0));
        }
        if imp.reorder > 0.0 && self.rng.random_bool(imp.reorder) {
            bump(&c.reordered, 1);
            hold += imp.reorder_delay;
        }
        let copies = if imp.duplicate > 0.0 && self.rng.random_bool(imp.duplicate) {
            2
        } else {
            1
        };
        if self.queue.len() >= MAX_QUEUED {
            bump(&c.dropped_other, 1);
            return;
        }
        // Equal release times leave in arrival order.
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at: at + hold,
            seq: self.seq,
            to,
            copies,
            payload: payload.to_vec(),
        }));
        c.queued.store(self.queue.len() as u64, Ordering::Relaxed);
    }

    pub(crate) fn next_release(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(s)| s.at)
    }

    /// The next datagram whose release time has come, if any.
    pub(crate) fn pop_due(&mut self, now: Instant, c: &DirectionCounters) -> Option<Scheduled<T>> {
        if self.next_release()? > now {
            return None;
        }
        let due = self.queue.pop().map(|Reverse(s)| s);
        c.queued.store(self.queue.len() as u64, Ordering::Relaxed);
        due
    }
}

/// The earlier of two optional release times.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[derive(Debug)]
struct Client {
    upstream: UdpSocket,
    last_seen: Instant,
}

enum Event {
    Shutdown,
    FromClient(io::Result<(usize, SocketAddr)>),
    FromUpstream(SocketAddr, io::Result<usize>),
    Release,
    Sweep,
    Changed,
}

#[derive(Debug)]
struct Driver {
    config: ProxyConfig,
    listen: UdpSocket,
    counters: Arc<Counters>,
    clients: HashMap<SocketAddr, Client>,
    c2s: Lane<SocketAddr>,
    s2c: Lane<SocketAddr>,
    /// Where the next poll of the upstream sockets starts, so no client starves the others.
    poll_start: usize,
}

impl Driver {
    fn new(config: ProxyConfig, listen: UdpSocket, counters: Arc<Counters>) -> Self {
        let c2s = Lane::new(config.client_to_server.clone(), config.seed);
        let s2c = Lane::new(
            config.server_to_client.clone(),
            config.seed ^ 0x9e37_79b9_7f4a_7c15,
        );
        Self {
            config,
            listen,
            counters,
            clients: HashMap::new(),
            c2s,
            s2c,
            poll_start: 0,
        }
    }

    async fn run(
        mut self,
        mut shutdown: oneshot::Receiver<()>,
        mut changes: watch::Receiver<(Impairment, Impairment)>,
    ) {
        let mut from_client = vec![0u8; MAX_DATAGRAM];
        let mut from_upstream = vec![0u8; MAX_DATAGRAM];
        let sweep_every = (self.config.idle_timeout / 4).max(Duration::from_millis(10));
        let mut sweep = tokio::time::interval(sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = earliest(self.c2s.next_release(), self.s2c.next_release());
            let event = tokio::select! {
                biased;
                _ = &mut shutdown => Event::Shutdown,
                Ok(()) = changes.changed() => Event::Changed,
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => Event::Release,
                r = self.listen.recv_from(&mut from_client) => Event::FromClient(r),
                (client, r) = poll_upstreams(&self.clients, &mut self.poll_start, &mut from_upstream) => {
                    Event::FromUpstream(client, r)
                }
                _ = sweep.tick() => Event::Sweep,
            };
            let now = Instant::now();
            match event {
                Event::Shutdown => break,
                Event::Release => self.release(now).await,
                Event::FromClient(Ok((len, client))) => {
                    let payload = from_client.get(..len).unwrap_or_default();
                    self.handle_client_datagram(now, client, payload).await;
                }
                Event::FromClient(Err(e)) => tracing::debug!(error = %e, "impair: listen socket error"),
                Event::FromUpstream(client, Ok(len)) => {
                    if let Some(c) = self.clients.get_mut(&client) {
                        c.last_seen = now;
                    }
                    let payload = from_upstream.get(..len).unwrap_or_default();
                    self.s2c
                        .admit(now, client, payload, &self.counters.server_to_client);
                }
                Event::FromUpstream(client, Err(e)) => {
                    // E.g. ICMP port unreachable surfaced on the connected socket.
                    tracing::debug!(%client, error = %e, "impair: upstream socket error");
                }
                Event::Sweep => self.sweep(now),
                Event::Changed => {
                    let (c2s, s2c) = changes.borrow_and_update().clone();
                    self.c2s.set_impairment(c2s, now);
                    self.s2c.set_impairment(s2c, now);
                }
            }
        }
    }

    async fn handle_client_datagram(&mut self, now: Instant, client: SocketAddr, payload: &[u8]) {
        let counters = &self.counters;
        let full = self.clients.len() >= self.config.max_clients;
        match self.clients.entry(client) {
            Entry::Occupied(mut e) => e.get_mut().last_seen = now,
            Entry::Vacant(e) => {
                if full {
                    bump(&counters.client_to_server.packets_in, 1);
                    bump(&counters.client_to_server.bytes_in, payload.len() as u64);
                    bump(&counters.client_to_server.dropped_other, 1);
                    return;
                }
                let upstream = match connect_upstream(self.config.upstream).await {
                    Ok(s) => s,
                    Err(err) => {
                        tracing::warn!(%client, error = %err, "impair: cannot open upstream socket");
                        bump(&counters.client_to_server.packets_in, 1);
                        bump(&counters.client_to_server.bytes_in, payload.len() as u64);
                        bump(&counters.client_to_server.dropped_other, 1);
                        return;
                    }
                };
                tracing::debug!(%client, via = ?upstream.local_addr().ok(), "impair: new client");
                e.insert(Client {
                    upstream,
                    last_seen: now,
                });
                bump(&counters.clients, 1);
                bump(&counters.clients_total, 1);
            }
        }
        self.c2s
            .admit(now, client, payload, &self.counters.client_to_server);
        // A zero-delay clean lane releases at once rather than waiting for the next loop turn.
        self.release(now).await;
    }

    async fn release(&mut self, now: Instant) {
        while let Some(s) = self.c2s.pop_due(now, &self.counters.client_to_server) {
            let c = &self.counters.client_to_server;
            for _ in 0..s.copies {
                let sent = match self.clients.get(&s.to) {
                    Some(client) => client.upstream.send(&s.payload).await.is_ok(),
                    None => false,
                };
                count_send(c, sent, s.payload.len());
            }
            count_duplicates(c, s.copies);
        }
        while let Some(s) = self.s2c.pop_due(now, &self.counters.server_to_client) {
            let c = &self.counters.server_to_client;
            for _ in 0..s.copies {
                let sent = self.listen.send_to(&s.payload, s.to).await.is_ok();
                count_send(c, sent, s.payload.len());
            }
            count_duplicates(c, s.copies);
        }
    }

    fn sweep(&mut self, now: Instant) {
        let idle = self.config.idle_timeout;
        let before = self.clients.len();
        self.clients
            .retain(|_, c| now.saturating_duration_since(c.last_seen) < idle);
        let expired = (before - self.clients.len()) as u64;
        if expired > 0 {
            tracing::debug!(expired, "impair: idle clients forgotten");
            self.counters.clients.fetch_sub(expired, Ordering::Relaxed);
            bump(&self.counters.clients_expired, expired);
        }
    }
}

/// Counts one send of a released datagram: forwarded, or dropped when the send failed.
pub(crate) fn count_send(c: &DirectionCounters, sent: bool, len: usize) {
    if sent {
        bump(&c.forwarded, 1);
        bump(&c.bytes_forwarded, len as u64);
    } else {
        bump(&c.dropped_other, 1);
    }
}

/// Counts the extra copies of a released datagram.
pub(crate) fn count_duplicates(c: &DirectionCounters, copies: u8) {
    if copies > 1 {
        bump(&c.duplicated, u64::from(copies - 1));
    }
}

async fn connect_upstream(upstream: SocketAddr) -> io::Result<UdpSocket> {
    let local = match upstream {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    Ok(socket)
}

/// Waits for a datagram on any client's upstream socket, starting the scan at a rotating
/// position so a busy client cannot starve the others. Never completes with no clients.
async fn poll_upstreams(
    clients: &HashMap<SocketAddr, Client>,
    start: &mut usize,
    buf: &mut [u8],
) -> (SocketAddr, io::Result<usize>) {
    std::future::poll_fn(|cx| {
        let n = clients.len();
        if n == 0 {
            return Poll::Pending;
        }
        let first = *start % n;
        for (addr, client) in clients.iter().skip(first).chain(clients.iter().take(first)) {
            let mut read = ReadBuf::new(buf);
            match client.upstream.poll_recv(cx, &mut read) {
                Poll::Ready(r) => {
                    *start = start.wrapping_add(1);
                    return Poll::Ready((*addr, r.map(|()| read.filled().len())));
                }
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_every_key() {
        let imp: Impairment =
            "delay=20ms, jitter=5ms,loss=1%,reorder=0.5,reorder-delay=3ms,duplicate=2%,rate=125k,rate-queue=80ms"
                .parse()
                .unwrap();
        assert_eq!(imp.delay, Duration::from_millis(20));
        assert_eq!(imp.jitter, Duration::from_millis(5));
        assert!((imp.loss - 0.01).abs() < 1e-12);
        assert!((imp.reorder - 0.5).abs() < 1e-12);
        assert_eq!(imp.reorder_delay, Duration::from_millis(3));
        assert!((imp.duplicate - 0.02).abs() < 1e-12);
        assert_eq!(imp.rate_bytes_per_s, Some(125_000));
        assert_eq!(imp.rate_queue, Duration::from_millis(80));
        assert_eq!("".parse::<Impairment>().unwrap(), Impairment::default());
    }

    #[test]
    fn rates_in_bytes_or_tc_bits() {
        assert_eq!(parse_rate("125k").unwrap(), Some(125_000));
        assert_eq!(parse_rate("5mbit").unwrap(), Some(625_000));
        assert_eq!(parse_rate("800Kbit").unwrap(), Some(100_000));
        assert_eq!(parse_rate("8bit").unwrap(), Some(1));
        assert_eq!(parse_rate("none").unwrap(), None);
        for bad in ["4bit", "bit", "nonebit", "5mbitbit", "-1mbit"] {
            assert!(parse_rate(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn spec_rejects_nonsense() {
        for bad in [
            "loss",
            "loss=2",
            "loss=-1%",
            "delay=fast",
            "rate=0",
            "rate=1x",
            "colour=red",
        ] {
            assert!(bad.parse::<Impairment>().is_err(), "{bad} accepted");
        }
    }
}
