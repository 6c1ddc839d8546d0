//! The binary only parses the command line and hands over to the library.

use clap::Parser;
use doorman::cli::{init_logging, run, Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tune_allocator();
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

/// Each argon2 hash takes ~19 MiB. glibc raises its mmap threshold after freeing a large block,
/// so later hashes would land in per-thread arenas and stay resident (8 logins: 10 -> 150 MiB).
/// A fixed threshold keeps big blocks in mmap, returned to the OS on free; two arenas are plenty
/// for a server whose heavy work runs on a few threads.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
