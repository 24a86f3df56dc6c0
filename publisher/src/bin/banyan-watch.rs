//! `banyan-watch`: see `banyan_publisher::cli::WatchArgs`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = banyan_publisher::cli::WatchArgs::parse();
    banyan_publisher::cli::init_tracing(&args.log);
    match banyan_publisher::watch::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("banyan-watch: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
