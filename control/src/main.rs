//! `banyan-control`: parse the configuration, start logging, serve until SIGTERM/Ctrl-C.

use std::process::ExitCode;

use anyhow::Context as _;
use banyan_control::binary::{self, shutdown_signal};
use banyan_control::config::ControlConfig;
use banyan_control::Control;

#[tokio::main]
async fn main() -> ExitCode {
    binary::main("banyan-control", ControlConfig::load(), |c| &c.log, run).await
}

async fn run(config: ControlConfig) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    let control = Control::bind(&config)
        .await
        .context("starting the control plane")?;
    let addr = control.local_addr().context("reading the bound address")?;
    tracing::info!(%addr, "control plane listening");
    // Scripts and tests read this line.
    println!("listening: http {addr}");
    control.run(shutdown).await.context("serving")
}
