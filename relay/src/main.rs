//! `banyan-relay`: parse the configuration, start logging, run the relay until SIGTERM/Ctrl-C.

use std::process::ExitCode;

use banyan_control::binary::{self, shutdown_signal};
use banyan_relay::config::RelayConfig;
use banyan_relay::Relay;

#[tokio::main]
async fn main() -> ExitCode {
    binary::main("banyan-relay", RelayConfig::load(), |c| &c.log, run).await
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
    if let Some((scheme, ws)) = relay.ws_addr() {
        tracing::info!(%ws, "relay listening for MoQT over WebSocket ({scheme}://, QMux)");
        // Before the `listening: udp` line, which scripts wait for.
        println!("listening: websocket {scheme}://{ws}/");
    }
    println!("listening: udp {addr} http {http}");
    relay.run(shutdown).await
}
