//! `banyan-ingest`: the RTMP ingest gateway (see the crate docs and `--help`).

use std::process::ExitCode;

use banyan_control::binary::{self, shutdown_signal};
use banyan_ingest::config::IngestConfig;

#[tokio::main]
async fn main() -> ExitCode {
    binary::main("banyan-ingest", IngestConfig::load(), |c| &c.log, run).await
}

async fn run(config: IngestConfig) -> anyhow::Result<()> {
    // Installed before the `listening:` lines, so a SIGTERM right after them ends cleanly.
    let shutdown = shutdown_signal()?;
    banyan_ingest::run(config, shutdown).await
}
