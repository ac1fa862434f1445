//! `minitowerd`: parse configuration, start the control plane, stop on
//! SIGTERM or SIGINT.

use clap::Parser;
use minitower_server::{bind, telemetry, Application, ServerConfig};

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
