//! The binary only parses the command line and hands over to the library.

use clap::Parser;
use doorman::cli::{init_logging, run, Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, matches!(cli.command, Command::Serve));
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("doorman: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
