//! What each Banyan binary does around its work, shared by `banyan-control`, `banyan-relay`
//! and the publisher's `banyan-publish`/`banyan-watch`: the exit codes and log set-up of a
//! service's `main`, and the SIGTERM/Ctrl-C future that ends a run.

use std::future::Future;
use std::process::ExitCode;

/// A service binary's `main` around `run`: the configuration error (`name: error`, exit 2),
/// logging to stderr at the configuration's filter ([`init_tracing`]), then `run`'s error
/// (`name: error: error`, exit 1) or success (exit 0).
pub async fn main<C, F>(
    name: &str,
    config: anyhow::Result<C>,
    log_filter: impl FnOnce(&C) -> &str,
    run: impl FnOnce(C) -> F,
) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            return ExitCode::from(2);
        }
    };
    init_tracing(log_filter(&config));
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Log to stderr with `filter` (tracing `EnvFilter` syntax), or at `info` if it does not parse.
/// Installs the global subscriber: call it once, from `main`.
pub fn init_tracing(filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// A future that resolves on SIGTERM (what service managers and `kill` send) or Ctrl-C
/// (SIGINT). The handlers are installed now, so a signal that comes before the future is first
/// polled counts: install them before announcing readiness.
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
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
