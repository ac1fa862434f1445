//! The command line grammar.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Configuration:
  The server and token come from, in order: --server/--token, the
  MINITOWER_SERVER_URL/MINITOWER_TOKEN environment variables, then the saved
  profile (written by `minitower login` or `minitower dev`) in
  $MINITOWER_CONFIG, else $XDG_CONFIG_HOME/minitower/config.toml, else
  ~/.config/minitower/config.toml.

Exit codes:
  0    success (for `run` and `logs --follow`: the run completed)
  1    error, or the run ended failed, dead or cancelled
  2    invalid command line
  3    not found (HTTP 404)
  4    not logged in, or the token was refused (HTTP 401/403)
  5    the server could not be reached
  130  interrupted with Ctrl-C (a followed run keeps going)";

/// MiniTower: deploy Python apps and run them on your own runners.
#[derive(Debug, Parser)]
#[command(name = "minitower", version, after_long_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Print machine-readable JSON instead of tables and prose.
    #[arg(long, global = true)]
    pub json: bool,
    /// Control plane URL (overrides the profile).
    #[arg(long, global = true, env = "MINITOWER_SERVER_URL", value_name = "URL")]
    pub server: Option<String>,
    /// Team token (overrides the profile).
    #[arg(long, global = true, env = "MINITOWER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Saved profile to use (default: the one `login` saved last).
    #[arg(long, global = true, env = "MINITOWER_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Save a server and team token as a profile.
    ///
    /// Either pass an existing token with --token, or log in to a team with a
    /// password (--team; the password is prompted for when not given).
    Login(LoginArgs),
    /// Package the app in DIR (per its Towerfile) and upload it as a new version.
    Deploy(DeployArgs),
    /// Start a run of APP and follow its logs until it ends.
    ///
    /// Exits 0 when the run completed and 1 when it failed, died or was
    /// cancelled. Ctrl-C stops following (exit 130) without cancelling the run.
    /// With --json, log lines and then the final run are printed as one JSON
    /// object per line.
    Run(Box<RunArgs>),
    /// Print a run's logs (and keep following with --follow).
    Logs(LogsArgs),
    /// List recent runs.
    Runs(RunsArgs),
    /// Show one run with its attempts.
    Show(RunRef),
    /// Ask for a run to be cancelled.
    Cancel(RunRef),
    /// List the team's apps.
    Apps,
    /// List the versions of an app, newest first.
    Versions(AppRef),
    /// Create, list, pause, resume and delete an app's cron schedules.
    #[command(subcommand)]
    Schedules(SchedulesCmd),
    /// Create, list, test and delete webhook endpoints; show deliveries.
    #[command(subcommand)]
    Webhooks(WebhooksCmd),
    /// Create, list and revoke team tokens.
    #[command(subcommand)]
    Tokens(TokensCmd),
    /// Create, list and delete the team's environments.
    #[command(subcommand)]
    Environments(EnvironmentsCmd),
    /// Set, list and delete secrets of an environment (values never shown).
    #[command(subcommand)]
    Secrets(SecretsCmd),
    /// List runners (admin tokens only).
    Runners,
    /// Show the server, its health and who the token belongs to.
    Status,
    /// Start a complete local MiniTower (server + runner) in one process.
    ///
    /// Data lives in --data-dir (default ./.minitower). The first start creates a
    /// team `dev` and its tokens; every start saves a CLI profile for it and
    /// deploys the bundled examples (hello, with-deps, countdown) when they changed.
    Dev(DevArgs),
    /// Print a shell completion script (e.g. `minitower completions bash > ~/.local/share/bash-completion/completions/minitower`).
    Completions(CompletionsArgs),
    /// Create a new app in DIR: a Towerfile and a main.py that deploy as they are.
    ///
    /// Refuses to overwrite existing files. Then: `minitower deploy DIR` and
    /// `minitower run NAME`.
    Init(InitArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to generate completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Folder of the new app (created when missing).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// App name (default: the folder's name, made into a slug).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Team slug to log in to with its password.
    #[arg(long)]
    pub team: Option<String>,
    /// Team password (prompted for when missing; also read from MINITOWER_PASSWORD).
    #[arg(
        long,
        requires = "team",
        env = "MINITOWER_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Folder holding the Towerfile.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Run time limit of the version, e.g. 60s, 10m (server default: 1h).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Skip the upload when the latest version already has the same archive.
    #[arg(long)]
    pub if_changed: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// App slug.
    pub app: String,
    /// Input parameter KEY=VALUE (repeatable; merged over --input).
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Whole input as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub input: Option<String>,
    /// Version to run (default: latest).
    #[arg(long, value_name = "N")]
    pub version: Option<i64>,
    /// Higher runs are leased first: a number, or foreground (100),
    /// background (0) or best_effort (-100). Default: the version's.
    #[arg(long, value_name = "N|NAME", allow_hyphen_values = true)]
    pub priority: Option<String>,
    /// Give the run a pseudo-terminal (optionally COLSxROWS, e.g. 120x40).
    #[arg(long, value_name = "COLSxROWS", num_args = 0..=1, default_missing_value = "on")]
    pub pty: Option<String>,
    /// Give the run pipes even when its version asks for a terminal.
    #[arg(long, conflicts_with = "pty")]
    pub no_pty: bool,
    /// Memory limit of this run, e.g. 256MiB (instead of the version's).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// CPU limit in cores, e.g. 1.5.
    #[arg(long, value_name = "CORES")]
    pub cpus: Option<f64>,
    /// Most processes and threads the run may have.
    #[arg(long, value_name = "N")]
    pub pids: Option<u64>,
    /// Workspace disk limit, e.g. 1GiB.
    #[arg(long, value_name = "SIZE")]
    pub disk: Option<String>,
    /// Another ref (tag, branch, commit) of a git version's repository.
    #[arg(long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
    /// Check out this git repository (at --ref) for the run instead of the
    /// version's archive or repository.
    #[arg(long = "git-url", value_name = "URL")]
    pub git_url: Option<String>,
    /// Runner environment that may take the run (server default: default).
    #[arg(long, value_name = "ENV")]
    pub environment: Option<String>,
    /// Retries after a lost runner (server default: 2).
    #[arg(long, value_name = "N")]
    pub max_retries: Option<i64>,
    /// Retries after a failed attempt (default: the Towerfile's `retries`).
    #[arg(long, value_name = "N")]
    pub retries: Option<i64>,
    /// First delay before a failure retry, e.g. 2s (later ones double).
    #[arg(long, value_name = "DURATION")]
    pub retry_delay: Option<String>,
    /// This run's attempt timeout instead of the version's, e.g. 30s, 10m.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Repeat-safe key: the same key returns the first run instead of starting another.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Print the queued run and exit without following it.
    #[arg(long, short = 'd')]
    pub detach: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Run id.
    pub run: i64,
    /// Keep streaming until the run ends (exit code as for `run`).
    #[arg(long, short = 'f')]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only runs of this app.
    pub app: Option<String>,
    /// Only runs in this status (queued, running, completed, failed, ...).
    #[arg(long)]
    pub status: Option<String>,
    /// How many runs to show.
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
}

#[derive(Debug, Args)]
pub struct RunRef {
    /// Run id.
    pub run: i64,
}

#[derive(Debug, Args)]
pub struct AppRef {
    /// App slug.
    pub app: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    Member,
}

#[derive(Debug, Subcommand)]
pub enum TokensCmd {
    /// Mint a token; its secret is printed this once.
    Create {
        /// A name to recognise it by.
        name: String,
        /// Role of the token (members always get member tokens).
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        /// Lifetime, e.g. 30d, 12h (default: until revoked).
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// Limit the token to one app (with --actions; for CI systems).
        #[arg(long, value_name = "APP")]
        app: Option<String>,
        /// Limit the token to these actions: read, trigger, cancel, deploy
        /// (comma-separated; makes it a scoped member token).
        #[arg(long, value_delimiter = ',', value_enum)]
        actions: Vec<ActionArg>,
    },
    /// List the team's tokens (never their secrets).
    List,
    /// Revoke a token at once.
    Revoke {
        /// Token id (see `tokens list`).
        id: i64,
    },
}

/// What a scoped token may do.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ActionArg {
    Read,
    Trigger,
    Cancel,
    Deploy,
}

#[derive(Debug, Subcommand)]
pub enum EnvironmentsCmd {
    /// Add an environment to the team.
    Create {
        /// Environment name (lowercase letters, digits, '-').
        name: String,
    },
    /// List the environments with their online runners.
    List,
    /// Delete an environment and its secrets (refused while runs or schedules use it).
    Delete {
        /// Environment name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCmd {
    /// Set a secret: the value is read from stdin when it is not a terminal,
    /// else prompted for without echo (never from the command line).
    Set {
        /// Environment variable name the runner sets it under.
        name: String,
        /// Environment of the secret.
        #[arg(long, short = 'e', default_value = "default")]
        environment: String,
    },
    /// List an environment's secrets: names, versions and update times.
    List {
        /// Environment of the secrets.
        #[arg(long, short = 'e', default_value = "default")]
        environment: String,
    },
    /// Delete a secret of an environment.
    Delete {
        /// Secret name.
        name: String,
        /// Environment of the secret.
        #[arg(long, short = 'e', default_value = "default")]
        environment: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCmd {
    /// Send run events to URL, signed per Standard Webhooks (the secret is
    /// printed once).
    Create(WebhookCreateArgs),
    /// List the team's endpoints.
    List,
    /// Delete an endpoint with its pending events and history.
    Delete(WebhookRef),
    /// Show an endpoint's delivery attempts, newest first.
    Deliveries(WebhookDeliveriesArgs),
    /// Queue a `webhook.test` event for an endpoint.
    Test(WebhookRef),
}

#[derive(Debug, Args)]
pub struct WebhookCreateArgs {
    /// Endpoint URL (http or https).
    pub url: String,
    /// Only this app's runs (default: every app of the team).
    #[arg(long, value_name = "APP")]
    pub app: Option<String>,
    /// Which events: terminal (default), failures or all.
    #[arg(long, value_name = "KIND")]
    pub events: Option<String>,
}

#[derive(Debug, Args)]
pub struct WebhookRef {
    /// Webhook id (see `webhooks list`).
    pub id: i64,
}

#[derive(Debug, Args)]
pub struct WebhookDeliveriesArgs {
    /// Webhook id.
    pub id: i64,
    /// How many attempts to show.
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCmd {
    /// Schedule runs of APP by a cron expression.
    ///
    /// 5 fields (minute hour day-of-month month day-of-week), 6 with a
    /// leading seconds field, or an alias such as @hourly, read in --timezone.
    Create(ScheduleCreateArgs),
    /// List APP's schedules with their next fire times.
    List(AppRef),
    /// Pause a schedule: no tick fires until it is resumed.
    Pause(ScheduleRef),
    /// Resume a schedule; ticks missed while paused do not fire.
    Resume(ScheduleRef),
    /// Delete a schedule (runs it started keep its id).
    Delete(ScheduleRef),
}

#[derive(Debug, Args)]
pub struct ScheduleCreateArgs {
    /// App slug.
    pub app: String,
    /// Cron expression, e.g. "0 9 * * 1-5" or @daily.
    #[arg(long)]
    pub cron: String,
    /// IANA time zone the expression is read in (default UTC).
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,
    /// Input parameter KEY=VALUE (repeatable; merged over --input).
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Whole input as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub input: Option<String>,
    /// Pin a version (default: the latest when each tick fires).
    #[arg(long, value_name = "N")]
    pub version: Option<i64>,
    /// Runner environment of its runs (default: default).
    #[arg(long, value_name = "ENV")]
    pub environment: Option<String>,
    /// Create it paused.
    #[arg(long)]
    pub paused: bool,
}

#[derive(Debug, Args)]
pub struct ScheduleRef {
    /// Schedule id (see `schedules list APP`).
    pub id: i64,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Where the database, artifacts, runner workspaces and tokens live.
    #[arg(long, default_value = ".minitower", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: String,
    /// Do not deploy the bundled examples.
    #[arg(long)]
    pub no_examples: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }
}
