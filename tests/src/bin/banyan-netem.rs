//! `banyan-netem`: a userspace link emulator between two network namespaces, for TCP and UDP.
//!
//! ```text
//! banyan-netem --ns-a bnm-a --ns-b bnm-b --delay 20ms --loss 1% --stats
//! ip netns exec bnm-b banyan-relay --listen 10.77.0.2:4443 …
//! ip netns exec bnm-a banyan-watch moqt://10.77.0.2:4443 …
//! ```
//!
//! It needs root, `/dev/net/tun` and iproute2's `ip`. It creates both namespaces, each with a
//! TUN device holding its address (10.77.0.1/24 in A, 10.77.0.2/24 in B by default), prints
//! `banyan-netem: ready …` on stderr, and carries every IP packet across with the impairment of
//! its direction: the plain flags (banyan-impair's) apply to both directions, `--a2b` / `--b2a`
//! take `key=value,...` overrides for one. On SIGINT or SIGTERM it prints the counters and
//! deletes the namespaces; `--stats` also prints them every `--stats-every`.
//!
//! `banyan-netem serve` and `banyan-netem probe` check a link from inside it (there is no `ping`
//! here): `ip netns exec bnm-b banyan-netem serve`, then
//! `ip netns exec bnm-a banyan-netem probe udp 10.77.0.2:7000` (or `probe tcp`).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use banyan_tests::impair::ImpairmentArgs;
use banyan_tests::netem::{probe, Link, LinkConfig};
use clap::{Parser, Subcommand};
use tokio::signal::unix::{signal, SignalKind};

/// Userspace link emulator on TUN devices between two network namespaces: seeded delay, jitter,
/// loss, reordering, duplication and a rate cap per direction, for every IP packet.
#[derive(Debug, Parser)]
#[command(name = "banyan-netem", version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Probe>,
    /// Side A's network namespace (and TUN device) name.
    #[arg(long, default_value = "bnm-a")]
    ns_a: String,
    /// Side B's network namespace (and TUN device) name.
    #[arg(long, default_value = "bnm-b")]
    ns_b: String,
    /// Side A's address.
    #[arg(long, default_value = "10.77.0.1")]
    addr_a: Ipv4Addr,
    /// Side B's address.
    #[arg(long, default_value = "10.77.0.2")]
    addr_b: Ipv4Addr,
    /// Prefix length of both addresses.
    #[arg(long, default_value_t = 24)]
    prefix: u8,
    /// MTU of both TUN devices.
    #[arg(long, default_value_t = 1500)]
    mtu: u16,
    /// RNG seed; the same seed and traffic give the same impairments.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    impairment: ImpairmentArgs,
    /// A → B overrides, e.g. `delay=30ms,loss=2%`.
    #[arg(long, value_name = "SPEC")]
    a2b: Option<String>,
    /// B → A overrides, e.g. `rate=5mbit`.
    #[arg(long, value_name = "SPEC")]
    b2a: Option<String>,
    /// Delete namespaces of the same names left by an earlier run instead of failing.
    #[arg(long)]
    replace: bool,
    /// Print the counters every --stats-every, not only on exit.
    #[arg(long)]
    stats: bool,
    /// How often --stats prints.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    stats_every: Duration,
}

/// Checks of a link, run inside one of its namespaces.
#[derive(Debug, Subcommand)]
enum Probe {
    /// Echo UDP datagrams and check TCP transfers on one port until killed.
    Serve {
        /// Address for both the UDP socket and the TCP listener.
        #[arg(long, default_value = "0.0.0.0:7000")]
        listen: SocketAddr,
    },
    /// Measure round trips and loss (udp) or send bytes and check them (tcp) to a `serve`.
    Probe {
        #[command(subcommand)]
        kind: ProbeKind,
    },
}

#[derive(Debug, Subcommand)]
enum ProbeKind {
    /// Send numbered datagrams, print `udp: sent N received N rtt_ms min X p50 X max X`.
    Udp {
        /// The server's address.
        to: SocketAddr,
        /// Datagrams to send.
        #[arg(long, default_value_t = 100)]
        count: u64,
        /// Datagram size in bytes.
        #[arg(long, default_value_t = 200)]
        size: usize,
        /// Time between datagrams.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "5ms")]
        interval: Duration,
        /// How long to wait for echoes after the last datagram.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
        linger: Duration,
    },
    /// Send bytes, print `tcp: sent N received N intact B elapsed_ms X`; exit 1 unless intact.
    Tcp {
        /// The server's address.
        to: SocketAddr,
        /// Bytes to send.
        #[arg(long, default_value_t = 1_000_000)]
        bytes: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match args.command {
        None => link(args).await,
        Some(Probe::Serve { listen }) => {
            let udp = tokio::net::UdpSocket::bind(listen)
                .await
                .with_context(|| format!("binding udp {listen}"))?;
            let tcp = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding tcp {listen}"))?;
            println!("serving: udp echo and tcp check on {listen}");
            probe::serve(udp, tcp).await.context("serving probes")
        }
        Some(Probe::Probe { kind }) => match kind {
            ProbeKind::Udp {
                to,
                count,
                size,
                interval,
                linger,
            } => {
                let report = probe::udp(to, count, size, interval, linger)
                    .await
                    .with_context(|| format!("probing {to} over udp"))?;
                println!("{report}");
                Ok(())
            }
            ProbeKind::Tcp { to, bytes } => {
                let report = probe::tcp(to, bytes)
                    .await
                    .with_context(|| format!("probing {to} over tcp"))?;
                println!("{report}");
                anyhow::ensure!(report.intact, "the transfer did not arrive intact");
                Ok(())
            }
        },
    }
}

async fn link(args: Args) -> anyhow::Result<()> {
    let both = args.impairment.impairment();
    let mut config = LinkConfig {
        ns_a: args.ns_a,
        ns_b: args.ns_b,
        addr_a: args.addr_a,
        addr_b: args.addr_b,
        prefix: args.prefix,
        mtu: args.mtu,
        a_to_b: both.clone(),
        b_to_a: both,
        seed: args.seed,
        replace: args.replace,
    };
    if let Some(spec) = &args.a2b {
        config.a_to_b.apply_spec(spec).context("--a2b")?;
    }
    if let Some(spec) = &args.b2a {
        config.b_to_a.apply_spec(spec).context("--b2a")?;
    }
    // Signals are caught before the namespaces exist, so none is left behind by an early one.
    let mut sigint = signal(SignalKind::interrupt()).context("catching SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("catching SIGTERM")?;

    let (link, driver) = Link::create(config.clone()).context("setting up the link")?;
    eprintln!("  a->b: {:?}", config.a_to_b);
    eprintln!("  b->a: {:?}", config.b_to_a);
    eprintln!(
        "banyan-netem: ready a={} {} b={} {}",
        config.ns_a, config.addr_a, config.ns_b, config.addr_b
    );
    let mut driver = tokio::spawn(driver);
    let mut tick = tokio::time::interval(args.stats_every);
    tick.tick().await;
    let ended = loop {
        tokio::select! {
            _ = tick.tick(), if args.stats => eprintln!("{}", link.stats()),
            _ = sigint.recv() => break None,
            _ = sigterm.recv() => break None,
            r = &mut driver => break Some(r),
        }
    };
    let stats = link.stats();
    drop(link);
    let result = match ended {
        Some(r) => r.context("link driver")?.context("link driver"),
        None => driver.await.context("link driver")?.context("link driver"),
    };
    eprintln!("banyan-netem: final {stats}");
    result
}
