//! Every way a command can fail, and the exit code scripts see for it.

use minitower_client::ClientError;
use minitower_core::RunStatus;

/// Exit codes documented in `minitower --help`.
pub mod exit {
    pub const OK: i32 = 0;
    /// Generic error, or a run that ended failed, dead or cancelled.
    pub const FAILED: i32 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: i32 = 2;
    /// The server answered 404.
    pub const NOT_FOUND: i32 = 3;
    /// Not logged in, or the token was refused (401/403).
    pub const AUTH: i32 = 4;
    /// The server could not be reached.
    pub const UNREACHABLE: i32 = 5;
    /// Interrupted by Ctrl-C.
    pub const INTERRUPTED: i32 = 130;
}

/// A command's failure.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{}", api_message(.0))]
    Api(#[from] ClientError),
    #[error("{0}")]
    Usage(String),
    /// Something named on the command line does not exist (exit 3).
    #[error("{0}")]
    NotFound(String),
    #[error(
        "not logged in: run `minitower login --server URL --token TOKEN` (or set MINITOWER_TOKEN)"
    )]
    NotLoggedIn,
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Towerfile(#[from] minitower_core::towerfile::TowerfileError),
    #[error("packaging failed: {0}")]
    Package(#[from] minitower_core::package::PackageError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The followed run ended in a status other than `completed`.
    #[error("run {id} {status}")]
    RunEnded { id: i64, status: RunStatus },
    #[error("interrupted")]
    Interrupted,
    #[error("{0}")]
    Other(String),
}

fn api_message(e: &ClientError) -> String {
    match e {
        ClientError::Api {
            status, message, ..
        } => {
            let msg = if message.is_empty() {
                "request failed"
            } else {
                message
            };
            format!("{msg} (HTTP {status})")
        }
        ClientError::Transport(m) => format!("cannot reach the server: {m}"),
        ClientError::Decode(m) => format!("unexpected answer from the server: {m}"),
    }
}

impl CliError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Api(ClientError::Api { status: 404, .. }) => exit::NOT_FOUND,
            CliError::Api(ClientError::Api {
                status: 401 | 403, ..
            })
            | CliError::NotLoggedIn => exit::AUTH,
            CliError::Api(ClientError::Transport(_)) => exit::UNREACHABLE,
            CliError::Usage(_) => exit::USAGE,
            CliError::NotFound(_) => exit::NOT_FOUND,
            CliError::Interrupted => exit::INTERRUPTED,
            _ => exit::FAILED,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let context = context.into();
        move |source| CliError::Io { context, source }
    }
}

/// Shorthand for command results.
pub type CliResult<T> = Result<T, CliError>;
