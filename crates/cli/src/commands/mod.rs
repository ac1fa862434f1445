//! One module per group of commands, all sharing [`Ctx`].

pub mod access;
pub mod admin;
pub mod deploy;
pub mod inspect;
pub mod login;
pub mod run;
pub mod scaffold;
pub mod schedules;
pub mod webhooks;

use crate::cli::{Command, Global};
use crate::config::{self, Config, DEFAULT_SERVER};
use crate::error::{CliError, CliResult};
use minitower_client::Client;
use std::path::PathBuf;

/// What every command needs: the global flags and the saved profiles.
pub struct Ctx {
    pub global: Global,
    pub config_path: PathBuf,
    pub config: Config,
}

impl Ctx {
    /// Reads the config file named by the environment.
    pub fn load(global: Global) -> CliResult<Ctx> {
        let config_path = config::path()?;
        let config = Config::load_from(&config_path)?;
        Ok(Ctx {
            global,
            config_path,
            config,
        })
    }

    /// Whether to print JSON.
    pub fn json(&self) -> bool {
        self.global.json
    }

    /// Flag or environment, else the profile, else the local default.
    pub fn server(&self) -> String {
        self.global
            .server
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| {
                self.config
                    .profile(self.global.profile.as_deref())
                    .map(|p| p.server.clone())
            })
            .unwrap_or_else(|| DEFAULT_SERVER.to_string())
    }

    /// Flag or environment, else the profile.
    pub fn token(&self) -> Option<String> {
        self.global
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .or_else(|| {
                self.config
                    .profile(self.global.profile.as_deref())
                    .and_then(|p| p.token.clone())
            })
    }

    /// A client without credentials (health, login).
    pub fn anonymous(&self) -> CliResult<Client> {
        self.check_profile()?;
        let server = self.server();
        check_server_url(&server)?;
        Ok(Client::new(&server, None)?)
    }

    /// A client with the team token; refuses when there is none.
    pub fn client(&self) -> CliResult<Client> {
        self.check_profile()?;
        let token = self.token().ok_or(CliError::NotLoggedIn)?;
        let server = self.server();
        check_server_url(&server)?;
        Ok(Client::new(&server, Some(token))?)
    }

    /// A profile named with --profile (or MINITOWER_PROFILE) must exist.
    fn check_profile(&self) -> CliResult<()> {
        let Some(name) = self.global.profile.as_deref().filter(|n| !n.is_empty()) else {
            return Ok(());
        };
        if self.config.profiles.contains_key(name) {
            return Ok(());
        }
        let known: Vec<&str> = self.config.profiles.keys().map(String::as_str).collect();
        let listed = if known.is_empty() {
            "there are none yet: `minitower login` saves one".to_string()
        } else {
            format!("existing: {}", known.join(", "))
        };
        Err(CliError::Usage(format!(
            "no such profile {name:?} in {} ({listed})",
            self.config_path.display()
        )))
    }
}

/// The server must be an http(s) URL: `localhost:8080` alone is refused
/// with the fix, not sent to the HTTP library to fail obscurely.
pub fn check_server_url(server: &str) -> CliResult<()> {
    let lower = server.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(());
    }
    let hint = if server.contains("://") {
        "only http:// and https:// are supported".to_string()
    } else {
        format!("add the scheme: http://{server}")
    };
    Err(CliError::Usage(format!(
        "invalid server URL {server:?}: {hint}"
    )))
}

/// Runs one parsed command.
pub async fn dispatch(ctx: &mut Ctx, command: Command) -> CliResult<()> {
    match command {
        Command::Login(a) => login::login(ctx, a).await,
        Command::Deploy(a) => deploy::deploy(ctx, a).await,
        Command::Run(a) => run::run(ctx, *a).await,
        Command::Logs(a) => run::logs(ctx, a).await,
        Command::Runs(a) => inspect::runs(ctx, a).await,
        Command::Show(a) => inspect::show(ctx, a.run).await,
        Command::Cancel(a) => inspect::cancel(ctx, a.run).await,
        Command::Apps => inspect::apps(ctx).await,
        Command::Versions(a) => inspect::versions(ctx, &a.app).await,
        Command::Schedules(c) => schedules::schedules(ctx, c).await,
        Command::Webhooks(c) => webhooks::webhooks(ctx, c).await,
        Command::Tokens(t) => admin::tokens(ctx, t).await,
        Command::Environments(c) => access::environments(ctx, c).await,
        Command::Secrets(c) => access::secrets(ctx, c).await,
        Command::Runners => admin::runners(ctx).await,
        Command::Status => admin::status(ctx).await,
        Command::Dev(a) => crate::dev::dev(ctx, a).await,
        Command::Completions(a) => scaffold::completions(a.shell),
        Command::Init(a) => scaffold::init(ctx, a),
    }
}
