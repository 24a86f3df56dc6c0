//! `banyan-relay`: parse the configuration, start logging, run the relay until SIGTERM/Ctrl-C.

use std::process::ExitCode;

use banyan_relay::config::RelayConfig;
use banyan_relay::Relay;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match RelayConfig::load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("banyan-relay: {e:#}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("banyan-relay: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: RelayConfig) -> anyhow::Result<()> {
    // Install the signal handlers before announcing readiness: a SIGTERM sent as soon as the
    // `listening:` line appears must drain the relay, not kill it with the default action.
    let shutdown = shutdown_signal()?;
    let relay = Relay::bind(&config).await?;
    let addr = relay.local_addr()?;
    let http = relay.http_addr()?;
    tracing::info!(%addr, %http, "relay listening (raw QUIC moqt-18 and WebTransport on one UDP port)");
    if let Some(hash) = relay.cert_hash() {
        // Scripts and tests read this line; browsers use the hash via serverCertificateHashes.
        println!("certificate sha256: {hash}");
    }
    println!("listening: udp {addr} http {http}");
    relay.run(shutdown).await
}

/// A future that resolves on SIGTERM or Ctrl-C (SIGINT); the handlers are installed now.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use anyhow::Context as _;
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
