//! A userspace link emulator between two network namespaces, for TCP and UDP alike.
//!
//! Kernel netem is not available where Banyan's benchmarks run, and [`crate::impair`] only
//! relays UDP datagrams. To compare transports honestly (WebSocket over TCP against QUIC over
//! UDP) both must cross the same impaired link, with the kernel's own TCP reacting to the
//! loss. [`Link::create`] builds that link:
//!
//! ```text
//!   netns A                      this process                       netns B
//!   10.77.0.1/24 ── TUN A ──► [ Lane a→b: loss, rate, delay ] ──► TUN B ── 10.77.0.2/24
//!                       ◄──── [ Lane b→a: loss, rate, delay ] ◄────
//! ```
//!
//! Two namespaces are created with `ip netns add` (iproute2), each gets a TUN device (created
//! here, then moved in with `ip link set … netns`) with its address, and `lo` is brought up in
//! each. Every IP packet read from one TUN device goes through that direction's impairment
//! (the same model and counters as the UDP proxy: [`Impairment`], [`DirectionStats`]) and is
//! written into the other. TUN devices carry no offloads, so TCP segments cross one MTU-sized
//! packet at a time and each can be lost on its own. Programs run on either side with
//! `ip netns exec NAME …`.
//!
//! [`Link::create`] returns a handle and a driver future (the caller runs it, as with
//! [`crate::impair::Proxy::bind`]); dropping the handle stops the driver, and the namespaces
//! are deleted once both are gone (also on an error during setup). [`probe`] holds the
//! small UDP and TCP probes `banyan-netem` uses to check a link.

pub mod probe;

use std::future::Future;
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tun_rs::{AsyncDevice, DeviceBuilder};

use crate::impair::{
    count_duplicates, count_send, earliest, DirectionCounters, DirectionStats, Impairment, Lane,
};

/// Largest IP packet read from a TUN device.
const MAX_PACKET: usize = 65_535;

/// Configuration of a [`Link`].
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Name of side A's network namespace; its TUN device has the same name.
    pub ns_a: String,
    /// Name of side B's network namespace; its TUN device has the same name.
    pub ns_b: String,
    /// Side A's address.
    pub addr_a: Ipv4Addr,
    /// Side B's address.
    pub addr_b: Ipv4Addr,
    /// Prefix length of both addresses (they must share the subnet).
    pub prefix: u8,
    /// MTU of both TUN devices.
    pub mtu: u16,
    /// Impairments on packets from A to B.
    pub a_to_b: Impairment,
    /// Impairments on packets from B to A.
    pub b_to_a: Impairment,
    /// Seed for the impairment RNGs (each direction derives its own stream from it).
    pub seed: u64,
    /// Delete namespaces of the same names left behind by an earlier run, instead of failing.
    pub replace: bool,
}

impl Default for LinkConfig {
    /// A clean link between `bnm-a` (10.77.0.1/24) and `bnm-b` (10.77.0.2/24), MTU 1500.
    fn default() -> Self {
        Self {
            ns_a: "bnm-a".into(),
            ns_b: "bnm-b".into(),
            addr_a: Ipv4Addr::new(10, 77, 0, 1),
            addr_b: Ipv4Addr::new(10, 77, 0, 2),
            prefix: 24,
            mtu: 1500,
            a_to_b: Impairment::default(),
            b_to_a: Impairment::default(),
            seed: 1,
            replace: false,
        }
    }
}

/// Why a [`Link`] could not be set up or stopped running.
#[derive(Debug, thiserror::Error)]
pub enum NetemError {
    /// Creating namespaces and TUN devices needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN).
    #[error(
        "banyan-netem must run as root to create network namespaces and TUN devices (effective uid {0})"
    )]
    NotRoot(u32),
    /// The TUN driver's device node is missing.
    #[error("/dev/net/tun is missing: load the tun module or give the container the device")]
    NoTun,
    /// iproute2's `ip` could not be run.
    #[error("cannot run `ip` (iproute2 is needed to create namespaces): {0}")]
    NoIp(io::Error),
    /// A namespace name or TUN device name is unusable.
    #[error("{0:?} is not a usable name: 1-15 characters out of letters, digits, '-', '_' and '.'")]
    BadName(String),
    /// A namespace of that name already exists.
    #[error("network namespace {0:?} already exists (left by an earlier run? `ip netns del {0}`, or pass --replace)")]
    NamespaceExists(String),
    /// An `ip` command failed.
    #[error("`{command}` failed: {stderr}")]
    Ip {
        /// The command line.
        command: String,
        /// What it printed on stderr (or its exit status).
        stderr: String,
    },
    /// A TUN device could not be created.
    #[error("creating TUN device {name}: {source}")]
    Tun {
        /// The device's name.
        name: String,
        /// Why.
        source: io::Error,
    },
    /// Reading a TUN device failed (e.g. its namespace was deleted under the link).
    #[error("reading TUN device {name}: {source}")]
    Read {
        /// The device's name.
        name: String,
        /// Why.
        source: io::Error,
    },
}

/// A snapshot of the link's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets from A to B.
    pub a_to_b: DirectionStats,
    /// Packets from B to A.
    pub b_to_a: DirectionStats,
}

impl std::fmt::Display for LinkStats {
    /// `a->b in … queued N | b->a in … queued N`, the line `banyan-netem` prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a->b {} queued {} | b->a {} queued {}",
            self.a_to_b, self.a_to_b.queued, self.b_to_a, self.b_to_a.queued
        )
    }
}

/// Handle to a running link. Dropping it stops the driver; the namespaces go when both are
/// dropped.
#[derive(Debug)]
pub struct Link {
    counters: Arc<Counters>,
    namespaces: Arc<Namespaces>,
    _shutdown: oneshot::Sender<()>,
}

impl Link {
    /// Creates the namespaces and TUN devices and returns the handle and the driver future that
    /// carries packets between them. Must be called within a tokio runtime; the driver must be
    /// polled (e.g. `tokio::spawn(driver)`) for packets to flow, and completes when the handle
    /// is dropped, or with an error when a TUN device can no longer be read.
    pub fn create(
        config: LinkConfig,
    ) -> Result<
        (
            Link,
            impl Future<Output = Result<(), NetemError>> + Send + 'static,
        ),
        NetemError,
    > {
        preflight(&config)?;
        let namespaces = Arc::new(Namespaces::default());
        let dev_a = side(&namespaces, &config.ns_a, config.addr_a, &config)?;
        let dev_b = side(&namespaces, &config.ns_b, config.addr_b, &config)?;
        let counters = Arc::new(Counters::default());
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let driver = Driver {
            a: Side {
                name: config.ns_a.clone(),
                dev: dev_a,
            },
            b: Side {
                name: config.ns_b.clone(),
                dev: dev_b,
            },
            a_to_b: Lane::new(config.a_to_b.clone(), config.seed),
            b_to_a: Lane::new(config.b_to_a.clone(), config.seed ^ 0x9e37_79b9_7f4a_7c15),
            counters: counters.clone(),
            _namespaces: namespaces.clone(),
        };
        let link = Link {
            counters,
            namespaces,
            _shutdown: shutdown_tx,
        };
        Ok((link, driver.run(shutdown_rx)))
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            a_to_b: self.counters.a_to_b.snapshot(),
            b_to_a: self.counters.b_to_a.snapshot(),
        }
    }

    /// The namespaces this link created.
    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces.names()
    }
}

/// Checks what setup needs, so a missing piece is reported as such rather than as a failed
/// command.
fn preflight(config: &LinkConfig) -> Result<(), NetemError> {
    for name in [&config.ns_a, &config.ns_b] {
        let ok = (1..=15).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && name != "."
            && name != "..";
        if !ok {
            return Err(NetemError::BadName(name.clone()));
        }
    }
    if config.ns_a == config.ns_b {
        return Err(NetemError::BadName(config.ns_b.clone()));
    }
    if let Some(euid) = effective_uid() {
        if euid != 0 {
            return Err(NetemError::NotRoot(euid));
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        return Err(NetemError::NoTun);
    }
    Command::new("ip").arg("-V").output().map_err(NetemError::NoIp)?;
    for name in [&config.ns_a, &config.ns_b] {
        if Path::new("/run/netns").join(name).exists() {
            if !config.replace {
                return Err(NetemError::NamespaceExists(name.clone()));
            }
            ip(&["netns", "del", name])?;
        }
    }
    Ok(())
}

/// This process's effective uid, from `/proc/self/status` (`None` if it cannot be read).
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Creates namespace `ns` with a TUN device of the same name holding `addr`.
fn side(
    namespaces: &Namespaces,
    ns: &str,
    addr: Ipv4Addr,
    config: &LinkConfig,
) -> Result<AsyncDevice, NetemError> {
    ip(&["netns", "add", ns])?;
    namespaces.push(ns);
    // Created in this process's namespace, then moved: the file descriptor keeps working.
    let dev = DeviceBuilder::new()
        .name(ns)
        .mtu(config.mtu)
        .build_async()
        .map_err(|source| NetemError::Tun {
            name: ns.into(),
            source,
        })?;
    let cidr = format!("{addr}/{}", config.prefix);
    ip(&["link", "set", "dev", ns, "netns", ns])?;
    ip(&["-n", ns, "addr", "add", &cidr, "dev", ns])?;
    ip(&["-n", ns, "link", "set", "dev", ns, "up"])?;
    ip(&["-n", ns, "link", "set", "dev", "lo", "up"])?;
    Ok(dev)
}

/// Runs `ip ARGS`, turning a failure into [`NetemError::Ip`].
fn ip(args: &[&str]) -> Result<(), NetemError> {
    let command = format!("ip {}", args.join(" "));
    let output = Command::new("ip").args(args).output().map_err(NetemError::NoIp)?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    Err(NetemError::Ip {
        command,
        stderr: if stderr.is_empty() {
            output.status.to_string()
        } else {
            stderr
        },
    })
}

/// The namespaces created so far; deleted when the last owner drops them.
#[derive(Debug, Default)]
struct Namespaces(parking_lot::Mutex<Vec<String>>);

impl Namespaces {
    fn push(&self, name: &str) {
        self.0.lock().push(name.into());
    }

    fn names(&self) -> Vec<String> {
        self.0.lock().clone()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in self.0.lock().drain(..).rev() {
            if let Err(e) = ip(&["netns", "del", &name]) {
                tracing::warn!(error = %e, "netem: namespace left behind");
            }
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    a_to_b: DirectionCounters,
    b_to_a: DirectionCounters,
}

struct Side {
    name: String,
    dev: AsyncDevice,
}

impl std::fmt::Debug for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Side")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

enum Event {
    Shutdown,
    Release,
    FromA(io::Result<usize>),
    FromB(io::Result<usize>),
}

#[derive(Debug)]
struct Driver {
    a: Side,
    b: Side,
    a_to_b: Lane<()>,
    b_to_a: Lane<()>,
    counters: Arc<Counters>,
    /// Keeps the namespaces until the devices in them are closed.
    _namespaces: Arc<Namespaces>,
}

impl Driver {
    async fn run(mut self, mut shutdown: oneshot::Receiver<()>) -> Result<(), NetemError> {
        let mut from_a = vec![0u8; MAX_PACKET];
        let mut from_b = vec![0u8; MAX_PACKET];
        loop {
            let next = earliest(self.a_to_b.next_release(), self.b_to_a.next_release());
            let event = tokio::select! {
                biased;
                _ = &mut shutdown => Event::Shutdown,
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => Event::Release,
                r = self.a.dev.recv(&mut from_a) => Event::FromA(r),
                r = self.b.dev.recv(&mut from_b) => Event::FromB(r),
            };
            let now = Instant::now();
            match event {
                Event::Shutdown => return Ok(()),
                Event::Release => {}
                Event::FromA(Ok(len)) => {
                    let packet = from_a.get(..len).unwrap_or_default();
                    self.a_to_b.admit(now, (), packet, &self.counters.a_to_b);
                }
                Event::FromB(Ok(len)) => {
                    let packet = from_b.get(..len).unwrap_or_default();
                    self.b_to_a.admit(now, (), packet, &self.counters.b_to_a);
                }
                Event::FromA(Err(source)) => return Err(read_error(&self.a, source)),
                Event::FromB(Err(source)) => return Err(read_error(&self.b, source)),
            }
            release(&mut self.a_to_b, &self.b, &self.counters.a_to_b, now).await;
            release(&mut self.b_to_a, &self.a, &self.counters.b_to_a, now).await;
        }
    }
}

fn read_error(side: &Side, source: io::Error) -> NetemError {
    NetemError::Read {
        name: side.name.clone(),
        source,
    }
}

/// Writes every packet of `lane` that is due into `to`.
async fn release(lane: &mut Lane<()>, to: &Side, c: &DirectionCounters, now: Instant) {
    while let Some(s) = lane.pop_due(now, c) {
        for _ in 0..s.copies {
            let sent = match to.dev.send(&s.payload).await {
                Ok(_) => true,
                Err(e) => {
                    tracing::debug!(device = %to.name, error = %e, "netem: write failed");
                    false
                }
            };
            count_send(c, sent, s.payload.len());
        }
        count_duplicates(c, s.copies);
    }
}
