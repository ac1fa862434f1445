//! `minitowerd`: parse configuration, start the control plane, stop on
//! SIGTERM or SIGINT.

use clap::Parser;
use minitower_server::{bind, telemetry, Application, ServerConfig};

/// mimalloc instead of glibc's `malloc` (SQLite's allocations too: see
/// `minitower_store_sql::Lite::configure_library`). `perf` in `dispatch`
/// (2026-12-08) had glibc's allocator at 20% of the server's CPU, requests
/// and rows being many small short-lived allocations; with mimalloc the
/// server spent 9-26% less CPU per run (`bench/README.md`). Built with
/// `no_thp`: mimalloc otherwise asks for transparent huge pages, which
/// added 16 MiB to the idle server's RSS.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = ServerConfig::parse();
    let generated = config.ensure_bootstrap_token();
    if let Err(e) = config.validate() {
        eprintln!("minitowerd: {e}");
        std::process::exit(2);
    }
    if let Some(token) = generated {
        // Printed once, here only: it is never logged or stored.
        eprintln!(
            "minitowerd: MINITOWER_BOOTSTRAP_TOKEN is not set; the bootstrap token for \
             this start is:\n\n    {token}\n\n(set MINITOWER_BOOTSTRAP_TOKEN to choose one)"
        );
    }
    telemetry::init(config.log_format);
    let listener = bind(&config).await?;
    let app = Application::build(config, listener).await?;
    app.run_until(shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
