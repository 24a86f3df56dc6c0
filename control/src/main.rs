//! `banyan-control`: parse the configuration, start logging, serve until SIGTERM/Ctrl-C.

use std::process::ExitCode;

use anyhow::Context as _;
use banyan_control::config::ControlConfig;
use banyan_control::Control;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match ControlConfig::load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("banyan-control: {e:#}");
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
            eprintln!("banyan-control: error: {e:#}");
            ExitCode::FAILURE
        }
    }
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

/// Resolves on SIGTERM or Ctrl-C; the handlers are installed now.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
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
