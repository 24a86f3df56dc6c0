//! `banyan-bench`: parse the command line, start logging, run, print the summary (stderr)
//! and, with `--json`, the report (stdout). `banyan-bench interactions …` runs the
//! interaction profile instead of fan-out, `banyan-bench flash …` a flash crowd through the
//! control plane.

use std::process::ExitCode;

use anyhow::Context;
use banyan_bench::{Args, Bench, FlashArgs, FlashBench, InteractArgs, InteractBench};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // A fan-out URL always has a scheme, so the words `interactions` and `flash` cannot be one.
    let mode = match std::env::args().nth(1).as_deref() {
        Some("interactions") => Mode::Interactions(InteractArgs::parse_from(std::env::args().skip(1))),
        Some("flash") => Mode::Flash(FlashArgs::parse_from(std::env::args().skip(1))),
        _ => Mode::FanOut(Args::parse()),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match mode {
        Mode::FanOut(args) => fan_out(args).await.map(|()| ExitCode::SUCCESS),
        Mode::Interactions(args) => interact(args).await.map(|()| ExitCode::SUCCESS),
        Mode::Flash(args) => flash(args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("banyan-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

enum Mode {
    FanOut(Args),
    Interactions(InteractArgs),
    Flash(FlashArgs),
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

async fn flash(args: FlashArgs) -> anyhow::Result<ExitCode> {
    let bench = FlashBench::from_args(&args).context("invalid arguments")?;
    let report = bench.run(|line| eprintln!("{line}")).await;
    let report = report.context("running the flash crowd")?;
    print(&report.summary(), &report, args.json)?;
    let failed = report.verdict.as_ref().is_some_and(|v| !v.pass);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
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
