//! `banyan-impair`: a UDP impairment proxy for manual testing.
//!
//! ```text
//! banyan-impair --listen 127.0.0.1:5000 --upstream 127.0.0.1:4443 --delay 20ms --jitter 5ms --loss 1% --seed 1
//! banyan-impair --listen 127.0.0.1:5000 --upstream 127.0.0.1:4443 --delay 20ms --s2c rate=1M,loss=3%
//! ```
//!
//! The plain flags apply to both directions; `--c2s` / `--s2c` take `key=value,...` overrides
//! for one direction. Counters are printed to stderr every second.
//!
//! While it runs, each line on stdin changes the impairments: `c2s SPEC`, `s2c SPEC` or
//! `both SPEC`, with SPEC as for `--c2s` (applied on top of what is in force; `rate=none` lifts a
//! cap). Each accepted change is echoed to stderr as `impair: c2s ... s2c ...`, and a bad line
//! gets an error there and changes nothing. Tests use it to cap a link mid-run and lift it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use banyan_tests::impair::{ImpairmentArgs, Proxy, ProxyConfig};
use clap::Parser;
use tokio::io::AsyncBufReadExt;

/// UDP impairment proxy: seeded delay, jitter, loss, reordering, duplication and a rate cap per
/// direction, one upstream socket per client.
#[derive(Debug, Parser)]
#[command(name = "banyan-impair", version)]
struct Args {
    /// Address to listen on for clients.
    #[arg(long, default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    /// Address to forward to.
    #[arg(long)]
    upstream: SocketAddr,
    /// RNG seed; the same seed and traffic give the same impairments.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    impairment: ImpairmentArgs,
    /// Client → server overrides, e.g. `delay=30ms,loss=2%`.
    #[arg(long, value_name = "SPEC")]
    c2s: Option<String>,
    /// Server → client overrides, e.g. `rate=1M,duplicate=1%`.
    #[arg(long, value_name = "SPEC")]
    s2c: Option<String>,
    /// Forget a client after this long without traffic.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    idle_timeout: Duration,
}

/// Applies one stdin command (`c2s SPEC`, `s2c SPEC`, `both SPEC`) to the running proxy.
fn change(proxy: &Proxy, line: &str) -> anyhow::Result<()> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(());
    }
    let (which, spec) = line
        .split_once(char::is_whitespace)
        .context("expected `c2s SPEC`, `s2c SPEC` or `both SPEC`")?;
    let (mut c2s, mut s2c) = proxy.impairments();
    match which {
        "c2s" => c2s.apply_spec(spec.trim())?,
        "s2c" => s2c.apply_spec(spec.trim())?,
        "both" => {
            c2s.apply_spec(spec.trim())?;
            s2c.apply_spec(spec.trim())?;
        }
        other => anyhow::bail!("unknown direction {other:?} (c2s, s2c or both)"),
    }
    proxy.set_impairments(c2s, s2c);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    let both = args.impairment.impairment();

    let mut config = ProxyConfig::new(args.upstream);
    config.listen = args.listen;
    config.seed = args.seed;
    config.idle_timeout = args.idle_timeout;
    config.client_to_server = both.clone();
    config.server_to_client = both;
    if let Some(spec) = &args.c2s {
        config.client_to_server.apply_spec(spec).context("--c2s")?;
    }
    if let Some(spec) = &args.s2c {
        config.server_to_client.apply_spec(spec).context("--s2c")?;
    }

    let (proxy, driver) = Proxy::bind(config.clone())
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    eprintln!("banyan-impair: {} -> {}", proxy.local_addr(), args.upstream);
    eprintln!("  c2s: {:?}", config.client_to_server);
    eprintln!("  s2c: {:?}", config.server_to_client);
    let driver = tokio::spawn(driver);

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) => match change(&proxy, &line) {
                    Ok(()) => {
                        let (c2s, s2c) = proxy.impairments();
                        eprintln!("impair: c2s {c2s:?} s2c {s2c:?}");
                    }
                    Err(e) => eprintln!("impair: {line:?} ignored: {e:#}"),
                },
                Ok(None) | Err(_) => stdin_open = false,
            },
            _ = tick.tick() => {
                let s = proxy.stats();
                eprintln!(
                    "clients {} | c2s {} | s2c {}",
                    s.clients, s.client_to_server, s.server_to_client
                );
            }
            r = tokio::signal::ctrl_c() => {
                r.context("waiting for ctrl-c")?;
                break;
            }
        }
    }
    drop(proxy);
    driver.await.context("proxy driver")?;
    Ok(())
}
