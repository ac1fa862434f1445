//! `minitower`: the command line for MiniTower.

mod cli;
mod commands;
mod config;
mod dev;
mod error;
mod output;

use clap::Parser;
use error::{exit, CliError};
use std::io::Write;

/// mimalloc, as in `minitowerd` (see there why): `minitower dev` runs the
/// server and a runner in this process.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // `minitower dev` runs a runner in-process, whose supervisors re-execute
    // this program: such a process must stay single-threaded.
    minitower_runner::supervisor::run_if_requested();
    let cli = cli::Cli::parse();
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(exit::FAILED);
        }
    };
    let result = runtime.block_on(async move {
        let mut ctx = commands::Ctx::load(cli.global)?;
        commands::dispatch(&mut ctx, cli.command).await
    });
    // Do not wait for stray blocking tasks (e.g. a stdin read) on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    let code = match result {
        Ok(()) => exit::OK,
        Err(e) => {
            report(&e, json);
            e.exit_code()
        }
    };
    std::process::exit(code);
}

/// Prints an error on stderr, as JSON with `--json`. Runs that ended badly
/// and interruptions were already reported where they happened.
fn report(e: &CliError, json: bool) {
    if matches!(e, CliError::RunEnded { .. } | CliError::Interrupted) {
        return;
    }
    if json {
        let status = match e {
            CliError::Api(c) => c.status(),
            _ => None,
        };
        let v = serde_json::json!({
            "error": { "message": e.to_string(), "http_status": status, "exit_code": e.exit_code() }
        });
        let _ = writeln!(std::io::stderr().lock(), "{v}");
    } else {
        // A closed stderr (the reader of a pipe is gone) is not a panic.
        let _ = writeln!(std::io::stderr().lock(), "error: {e}");
    }
}
