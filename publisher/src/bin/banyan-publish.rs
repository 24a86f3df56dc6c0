//! `banyan-publish`: see `banyan_publisher::cli::PublishArgs`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = banyan_publisher::cli::PublishArgs::parse();
    banyan_publisher::cli::init_tracing(&args.log);
    match banyan_publisher::cli::publish(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("banyan-publish: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
