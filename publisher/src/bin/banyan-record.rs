//! `banyan-record`: see `banyan_publisher::record`.

use clap::Parser;

use banyan_publisher::record::{RecordCli, RecordCommand, EXIT_DISK_FULL};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = RecordCli::parse();
    let result = match cli.command {
        RecordCommand::Run(args) => {
            banyan_publisher::cli::init_tracing(&args.log);
            banyan_publisher::record::run(*args).await
        }
        RecordCommand::Export(args) => {
            banyan_publisher::record::export::export(&args.recording, &args.output).map(|e| {
                eprintln!(
                    "banyan-record: exported {} segments, {} frames, {} bytes to {}",
                    e.segments,
                    e.samples,
                    e.bytes,
                    args.output.display()
                );
            })
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if banyan_publisher::record::is_disk_full(&e) => {
            eprintln!("banyan-record: ALERT: disk full (ENOSPC), recording stopped: {e:#}");
            std::process::ExitCode::from(EXIT_DISK_FULL)
        }
        Err(e) => {
            eprintln!("banyan-record: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
