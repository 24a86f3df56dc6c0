//! `banyan-bench`: parse the command line, start logging, run, print the summary (stderr)
//! and, with `--json`, the report (stdout).

use std::process::ExitCode;

use anyhow::Context;
use banyan_bench::{Args, Bench};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("banyan-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let bench = Bench::from_args(&args).context("invalid arguments")?;
    let report = bench
        .run(|progress| eprintln!("{progress}"))
        .await
        .context("running the benchmark")?;
    eprint!("{}", report.summary());
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).context("serializing the report")?
        );
    }
    Ok(())
}
