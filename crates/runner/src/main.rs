//! `minitower-runner`: parses the configuration, sets up logging and turns
//! signals into the library's two shutdown stages (first signal drains,
//! second cancels what is left).

use clap::Parser;
use minitower_runner::{run_with, RunnerConfig};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "minitower-runner",
    version,
    about = "Leases MiniTower runs, executes them in Python environments and reports results."
)]
struct Cli {
    #[command(flatten)]
    config: RunnerConfig,
    /// Format of the runner's own logs: `text` or `json`.
    #[arg(long, env = "MINITOWER_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// mimalloc, as in `minitowerd` (see there why): the runner's per-run
/// requests, log batches and workspace unpacking allocate as the server's
/// requests do.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // Re-executed as an attempt's supervisor: stay single-threaded.
    minitower_runner::supervisor::run_if_requested();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    let drain = CancellationToken::new();
    let force = CancellationToken::new();
    let (d, f) = (drain.clone(), force.clone());
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            seen += 1;
            if seen == 1 {
                tracing::info!(
                    "signal received: draining (send it again to cancel running attempts)"
                );
                d.cancel();
            } else {
                tracing::warn!("second signal: cancelling running attempts now");
                f.cancel();
            }
        }
    });
    run_with(cli.config, drain, force).await
}

fn init_tracing(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
