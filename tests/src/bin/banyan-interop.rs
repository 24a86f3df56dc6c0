//! `banyan-interop`: Banyan's client for the MoQ interop runner. Runs the runner's test cases
//! with Banyan's own MoQT stack (`banyan_tests::interop`) against any draft-18 relay and prints
//! TAP version 14 on stdout.
//!
//! ```text
//! RELAY_URL=moqt://relay.example:4443/ banyan-interop
//! banyan-interop -r https://localhost:4443/ --tls-disable-verify -t fetch
//! banyan-interop -l
//! ```

use std::process::ExitCode;
use std::time::Duration;

use banyan_tests::interop::{self, Case, Config, Outcome};
use clap::Parser;

/// The MoQ interop runner's client contract, implemented with Banyan's MoQT stack (draft-18).
///
/// Runs the interop test cases against the relay at RELAY_URL (`moqt://host:port/path` for raw
/// QUIC, `https://host:port/path` for WebTransport) and prints TAP version 14 on stdout: a plan
/// `1..N`, then `ok N - case` or `not ok N - case`, each with a YAML block holding
/// `duration_ms` and `message` (what was observed, or why the case failed). Exits 0 when every
/// case passed, 1 when one failed, 127 when TESTCASE names no case this client knows.
///
/// Cases publish under the namespace `moq-test/interop/<run id>/<case>` (the run id is new on
/// every run, so reruns against a long-lived relay do not collide) with the track `test-track`.
#[derive(Debug, Parser)]
#[command(name = "banyan-interop", version, verbatim_doc_comment)]
struct Args {
    /// The relay URL [env: RELAY_URL]
    #[arg(short, long, value_name = "URL")]
    relay: Option<String>,
    /// Run only this case; all cases when absent [env: TESTCASE]
    #[arg(short = 't', long = "test", value_name = "CASE")]
    test: Option<String>,
    /// Accept any server certificate [env: TLS_DISABLE_VERIFY=1|true]
    #[arg(long)]
    tls_disable_verify: bool,
    /// List the cases (name and what each asserts) and exit
    #[arg(short, long)]
    list: bool,
    /// How long connecting (QUIC, WebTransport CONNECT, SETUP) may take
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    setup_timeout: Duration,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for case in Case::ALL {
            println!("{:<31} {}", case.name(), case.describe());
        }
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();

    let test = args.test.or_else(|| env("TESTCASE"));
    let cases = match test.as_deref() {
        None => Case::ALL.to_vec(),
        Some(name) => match Case::from_name(name) {
            Some(case) => vec![case],
            None => {
                eprintln!("banyan-interop: unknown test case {name:?} (banyan-interop -l lists them)");
                println!("TAP version 14\n1..0 # SKIP unsupported test case {name}");
                return ExitCode::from(127);
            }
        },
    };
    let relay = args
        .relay
        .or_else(|| env("RELAY_URL"))
        .unwrap_or_else(|| "https://localhost:4443/".to_string());
    let tls_disable_verify = args.tls_disable_verify
        || env("TLS_DISABLE_VERIFY").is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true"));

    let outcomes = match relay.parse() {
        Ok(url) => {
            let mut config = Config::new(url);
            config.tls_disable_verify = tls_disable_verify;
            config.setup_timeout = args.setup_timeout;
            eprintln!(
                "banyan-interop: {} case(s) against {relay}, namespace {}/{}",
                cases.len(),
                config.namespace,
                config.run_id
            );
            match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime.block_on(interop::run(&config, &cases)),
                Err(e) => failed(&cases, &format!("starting the async runtime: {e}")),
            }
        }
        Err(e) => failed(&cases, &format!("RELAY_URL {relay:?} is not a URL: {e}")),
    };
    print!("{}", interop::report(&outcomes));
    for o in &outcomes {
        eprintln!(
            "  [{}] {}: {}",
            if o.passed { "PASS" } else { "FAIL" },
            o.case,
            o.message
        );
    }
    if outcomes.iter().all(|o| o.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Every case failed for the same reason, before any could start.
fn failed(cases: &[Case], why: &str) -> Vec<Outcome> {
    cases
        .iter()
        .map(|&case| Outcome {
            case,
            transport: None,
            passed: false,
            duration: Duration::ZERO,
            message: why.to_string(),
        })
        .collect()
}
