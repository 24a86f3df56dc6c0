//! `banyan-bench`: parse the command line, start logging, run, print the summary (stderr)
//! and, with `--json`, the report (stdout). `banyan-bench interactions …` runs the
//! interaction profile instead of fan-out.

use std::process::ExitCode;

use anyhow::Context;
use banyan_bench::{Args, Bench, InteractArgs, InteractBench};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // A fan-out URL always has a scheme, so the word `interactions` cannot be one.
    let interactions = std::env::args().nth(1).as_deref() == Some("interactions");
    let mode = if interactions {
        Mode::Interactions(InteractArgs::parse_from(std::env::args().skip(1)))
    } else {
        Mode::FanOut(Args::parse())
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match mode {
        Mode::FanOut(args) => fan_out(args).await,
        Mode::Interactions(args) => interact(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("banyan-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

enum Mode {
    FanOut(Args),
    Interactions(InteractArgs),
}

async fn fan_out(args: Args) -> anyhow::Result<()> {
    let bench = Bench::from_args(&args).context("invalid arguments")?;
    let report = bench.run(|progress| eprintln!("{progress}")).await;
    let report = report.context("running the benchmark")?;
    print(&report.summary(), &report, args.json)
}

async fn interact(args: InteractArgs) -> anyhow::Result<()> {
    let bench = InteractBench::from_args(&args).context("invalid arguments")?;
    let report = bench.run(|line| eprintln!("{line}")).await;
    let report = report.context("running the interaction benchmark")?;
    print(&report.summary(), &report, args.json)
}

/// The human summary on stderr; with `--json`, the report as one JSON object on stdout.
fn print(summary: &str, report: &impl serde::Serialize, json: bool) -> anyhow::Result<()> {
    eprint!("{summary}");
    if json {
        println!(
            "{}",
            serde_json::to_string(report).context("serializing the report")?
        );
    }
    Ok(())
}
