//! `minitower dev`: a whole local MiniTower in one process — control plane on
//! SQLite, an in-process runner, a `dev` team, a saved CLI profile and the
//! bundled examples deployed — so trying MiniTower is one command.

mod examples;

use crate::cli::DevArgs;
use crate::commands::deploy::{deploy_dir, print_outcome, DeployOptions};
use crate::commands::Ctx;
use crate::config::Profile;
use crate::error::{CliError, CliResult};
use crate::output::print_json;
use minitower_client::Client;
use minitower_core::api::BootstrapTeamRequest;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Team created on first start.
const TEAM: &str = "dev";
/// Name of the embedded runner.
const RUNNER: &str = "dev-runner";
/// Profile saved for the CLI.
const PROFILE: &str = "dev";
/// How long running attempts may finish after Ctrl-C before they are cancelled.
const DRAIN: Duration = Duration::from_secs(10);

/// Ctrl-C presses, listened for from the moment this is made (tokio's
/// `ctrl_c()` only installs its handler when first polled).
struct Interrupts {
    #[cfg(unix)]
    sigint: tokio::signal::unix::Signal,
}

impl Interrupts {
    fn listen() -> CliResult<Self> {
        Ok(Self {
            #[cfg(unix)]
            sigint: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(CliError::io("listening for Ctrl-C"))?,
        })
    }

    /// The next Ctrl-C; never returns if none can be heard.
    async fn next(&mut self) {
        #[cfg(unix)]
        if self.sigint.recv().await.is_some() {
            return;
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_ok() {
            return;
        }
        std::future::pending::<()>().await
    }
}

/// Secrets generated once per data folder and reused on every start.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Secrets {
    bootstrap_token: String,
    registration_token: String,
    team_password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    team_token: Option<String>,
}

fn random_token(prefix: &str) -> CliResult<String> {
    let mut buf = [0u8; 24];
    getrandom::fill(&mut buf).map_err(|e| CliError::Other(format!("no randomness: {e}")))?;
    Ok(format!("{prefix}{}", hex::encode(buf)))
}

impl Secrets {
    fn load_or_create(path: &Path) -> CliResult<Secrets> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                CliError::Other(format!("{} is damaged: {}", path.display(), e.message()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let s = Secrets {
                    bootstrap_token: random_token("mtb_")?,
                    registration_token: random_token("mtr_")?,
                    team_password: random_token("")?,
                    team_token: None,
                };
                s.save(path)?;
                Ok(s)
            }
            Err(e) => Err(CliError::io(format!("reading {}", path.display()))(e)),
        }
    }

    fn save(&self, path: &Path) -> CliResult<()> {
        let text = toml::to_string_pretty(self).map_err(|e| CliError::Other(e.to_string()))?;
        write_private(path, text.as_bytes())
            .map_err(CliError::io(format!("writing {}", path.display())))
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        let mut f = opts.open(path)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)
    }
    #[cfg(not(unix))]
    {
        opts.open(path)?.write_all(bytes)
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("MINITOWER_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A closed stderr must not panic (the failed-write report is an `eprintln!`).
        .log_internal_errors(false)
        .compact()
        .try_init();
}

/// A banner line on stdout. `dev | tee log` may lose its reader (Ctrl-C
/// kills `tee` too): a closed stdout is ignored, never a panic.
fn out(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{args}");
    let _ = o.flush();
}

/// A line on stderr, ignoring a closed stderr.
fn err(args: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// How to call this CLI from another terminal: `minitower` when that is
/// what PATH finds, the `cargo run` line when started through cargo, else
/// the executable's path.
fn self_command() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "minitower".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            std::fs::canonicalize(d.join("minitower")).ok() == std::fs::canonicalize(&exe).ok()
        })
    });
    if on_path {
        return "minitower".into();
    }
    if std::env::var_os("CARGO").is_some() {
        let release = exe
            .parent()
            .and_then(|d| d.file_name())
            .is_some_and(|n| n == "release");
        return if release {
            "cargo run --release --bin minitower --".into()
        } else {
            "cargo run --bin minitower --".into()
        };
    }
    exe.display().to_string()
}

/// URL clients use for a bound address (`0.0.0.0` is reached via loopback).
fn client_url(addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        ip => ip,
    };
    format!("http://{}", std::net::SocketAddr::new(ip, addr.port()))
}

/// Creates the `dev` team on first start, or checks the saved token.
async fn ensure_team(url: &str, secrets: &mut Secrets, path: &Path) -> CliResult<String> {
    let anon = Client::new(url, None)?;
    if let Some(t) = &secrets.team_token {
        match anon.with_token(t.clone()).me().await {
            Ok(_) => return Ok(t.clone()),
            Err(e) if matches!(e.status(), Some(401 | 403)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let req = BootstrapTeamRequest {
        slug: TEAM.into(),
        name: "Local development".into(),
        password: Some(secrets.team_password.clone()),
    };
    let token = match anon.bootstrap_team(&secrets.bootstrap_token, &req).await {
        Ok(tw) => tw.token,
        // The team exists but the saved token was revoked: log in again.
        Err(e) if e.status() == Some(409) => anon.login(TEAM, &secrets.team_password).await?.token,
        Err(e) => return Err(e.into()),
    };
    secrets.team_token = Some(token.clone());
    secrets.save(path)?;
    Ok(token)
}

pub async fn dev(ctx: &mut Ctx, args: DevArgs) -> CliResult<()> {
    init_logging();
    let data_dir = std::path::absolute(&args.data_dir).map_err(CliError::io(format!(
        "resolving {}",
        args.data_dir.display()
    )))?;
    std::fs::create_dir_all(&data_dir)
        .map_err(CliError::io(format!("creating {}", data_dir.display())))?;
    let secrets_path = data_dir.join("dev-secrets.toml");
    let mut secrets = Secrets::load_or_create(&secrets_path)?;

    let config = minitower_server::ServerConfig::local(
        &data_dir,
        args.listen.clone(),
        secrets.bootstrap_token.clone(),
        secrets.registration_token.clone(),
    );
    let listener = tokio::net::TcpListener::bind(&args.listen).await.map_err(|e| {
        CliError::Other(format!(
            "cannot listen on {}: {e} (is another `minitower dev` running? pick another address with --listen)",
            args.listen
        ))
    })?;
    let app = minitower_server::Application::build(config, listener)
        .await
        .map_err(|e| CliError::Other(format!("cannot start the control plane: {e}")))?;
    let addr = app.local_addr();
    let url = client_url(addr);
    let server_stop = CancellationToken::new();
    let mut server = tokio::spawn(app.run_until(server_stop.clone().cancelled_owned()));

    let result = serve(
        ctx,
        &args,
        &data_dir,
        &url,
        &mut secrets,
        &secrets_path,
        &mut server,
    )
    .await;

    server_stop.cancel();
    if !server.is_finished() {
        match tokio::time::timeout(Duration::from_secs(10), &mut server).await {
            Ok(Ok(Err(e))) => err(format_args!(
                "warning: control plane stopped with an error: {e}"
            )),
            Ok(_) => {}
            Err(_) => server.abort(),
        }
    }
    result
}

/// Everything after the server is up; returns when it is time to stop.
async fn serve(
    ctx: &mut Ctx,
    args: &DevArgs,
    data_dir: &Path,
    url: &str,
    secrets: &mut Secrets,
    secrets_path: &Path,
    server: &mut tokio::task::JoinHandle<Result<(), minitower_server::StartupError>>,
) -> CliResult<()> {
    // Listen for Ctrl-C before the banner says to press it: a SIGINT that
    // arrives between the banner and the first poll of `ctrl_c()` would
    // otherwise take the default action and kill the process uncleanly.
    let mut interrupts = Interrupts::listen()?;
    let token = ensure_team(url, secrets, secrets_path).await?;
    ctx.config.profiles.insert(
        PROFILE.into(),
        Profile {
            server: url.to_string(),
            token: Some(token.clone()),
            team: Some(TEAM.into()),
        },
    );
    ctx.config.current = Some(PROFILE.into());
    ctx.config.save_to(&ctx.config_path)?;

    let drain = CancellationToken::new();
    let force = CancellationToken::new();
    let mut rc = minitower_runner::RunnerConfig::new(
        url.to_string(),
        RUNNER.into(),
        secrets.registration_token.clone(),
        data_dir.join("runner"),
    );
    rc.drain_timeout = DRAIN;
    rc.poll_interval = Duration::from_secs(1);
    let mut runner = tokio::spawn(minitower_runner::run_with(rc, drain.clone(), force.clone()));

    let client = Client::new(url, Some(token.clone()))?;
    let mut deployed = Vec::new();
    if !args.no_examples {
        let dirs = examples::extract(&data_dir.join("examples"))
            .map_err(CliError::io("unpacking the bundled examples"))?;
        let opts = DeployOptions {
            if_changed: true,
            ..DeployOptions::default()
        };
        for dir in dirs {
            match deploy_dir(&client, &dir, &opts).await {
                Ok(out) => {
                    if !ctx.json() {
                        print_outcome(&out);
                    }
                    deployed.push(out);
                }
                Err(e) => err(format_args!(
                    "warning: deploying example {}: {e}",
                    dir.display()
                )),
            }
        }
    }

    if ctx.json() {
        print_json(&serde_json::json!({
            "url": url,
            "ui": format!("{url}/"),
            "team": TEAM,
            "token": token,
            "profile": PROFILE,
            "config": ctx.config_path,
            "data_dir": data_dir,
            "examples": deployed,
        }));
    } else {
        let me = self_command();
        out(format_args!(
            "\nMiniTower is running at {url}/ (team {TEAM}, data in {})",
            data_dir.display()
        ));
        out(format_args!(
            "  UI:       {url}/   (sign in with the token below, on the Token tab)"
        ));
        out(format_args!("  Token:    {token}"));
        out(format_args!(
            "  Profile:  {PROFILE:?} saved in {} — in another terminal try:",
            ctx.config_path.display()
        ));
        out(format_args!("              {me} run hello -p name=you"));
        out(format_args!(
            "              {me} run countdown -p seconds=5"
        ));
        out(format_args!("Press Ctrl-C to stop."));
    }

    let outcome = tokio::select! {
        _ = interrupts.next() => Ok(()),
        r = &mut runner => Err(CliError::Other(match r {
            Ok(Ok(())) => "the runner stopped unexpectedly".into(),
            Ok(Err(e)) => format!("the runner stopped: {e:#}"),
            Err(e) => format!("the runner crashed: {e}"),
        })),
        r = &mut *server => Err(CliError::Other(match r {
            Ok(Ok(())) => "the control plane stopped unexpectedly".into(),
            Ok(Err(e)) => format!("the control plane stopped: {e}"),
            Err(e) => format!("the control plane crashed: {e}"),
        })),
    };

    if !runner.is_finished() {
        err(format_args!(
            "Stopping: running runs get up to {}s to finish (Ctrl-C again to cancel them now)...",
            DRAIN.as_secs()
        ));
        drain.cancel();
        let force_on_ctrl_c = {
            let force = force.clone();
            tokio::spawn(async move {
                interrupts.next().await;
                force.cancel();
            })
        };
        match tokio::time::timeout(DRAIN + Duration::from_secs(15), &mut runner).await {
            Ok(Ok(Err(e))) => err(format_args!("warning: runner stopped with an error: {e:#}")),
            Ok(_) => {}
            Err(_) => {
                force.cancel();
                runner.abort();
            }
        }
        force_on_ctrl_c.abort();
    }
    if outcome.is_ok() && !ctx.json() {
        err(format_args!(
            "Stopped. Start again with the same --data-dir to keep your apps and runs."
        ));
    }
    outcome
}
