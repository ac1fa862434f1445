//! Typed errors of the runner library.
//!
//! [`RunnerError`] stops the runner as a whole; [`SetupError`] fails one
//! attempt before its process starts and becomes the run's `error_message`,
//! so its texts are written for the person reading the run.

use minitower_client::ClientError;
use std::path::PathBuf;

/// Why the runner could not start or keep going.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// A setting is unusable; the message names the variable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The control plane refused the registration (bad registration token, ...).
    #[error("registration refused by the control plane: {0}")]
    Registration(#[source] ClientError),
    /// Shutdown was requested before the runner got going.
    #[error("shut down before registration completed")]
    Interrupted,
    /// Another runner process with the same name uses this data directory.
    #[error("another runner named {name:?} is already using {dir}")]
    AlreadyRunning { name: String, dir: PathBuf },
    /// The Python interpreter could not be found or run.
    #[error("python interpreter {bin:?}: {message}")]
    Python { bin: String, message: String },
    /// A file or directory of the data dir could not be used.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RunnerError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> RunnerError {
        RunnerError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Why an attempt failed before its process ran; the text becomes `error_message`.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The artifact could not be downloaded.
    #[error("artifact download failed: {0}")]
    Download(String),
    /// The downloaded bytes do not hash to the version's recorded SHA-256.
    #[error(
        "artifact checksum mismatch: expected sha256 {expected}, downloaded bytes hash to {actual}"
    )]
    ChecksumMismatch { expected: String, actual: String },
    /// The archive is unsafe or corrupt.
    #[error("artifact could not be unpacked: {0}")]
    Unpack(String),
    /// The entrypoint named by the version is not in the archive.
    #[error("entrypoint {0:?} not found in the artifact")]
    MissingEntrypoint(String),
    /// The entrypoint exists but is neither Python, shell nor executable.
    #[error("entrypoint {0:?} is not a .py or .sh file and is not executable")]
    NotRunnable(String),
    /// Installing the dependencies failed; the setup log has the details.
    #[error("environment setup failed: {0}")]
    EnvBuild(String),
    /// The process could not be started.
    #[error("could not start the entrypoint: {0}")]
    Spawn(String),
    /// The git source could not be fetched, its ref resolved or checked
    /// out; the message names the URL (never credentials) and the ref.
    #[error("git source: {0}")]
    Git(String),
    /// The binary source could not be downloaded.
    #[error("binary download failed: {0}")]
    BinaryDownload(String),
    /// The downloaded binary does not hash to the version's `sha256`.
    #[error("binary sha256 mismatch: expected {expected}, got {actual}")]
    BinaryMismatch { expected: String, actual: String },
    /// The control plane answered 410: the lease is gone (the attempt is fenced).
    #[error("the lease is gone")]
    LeaseGone,
    /// Local disk trouble.
    #[error("runner I/O error: {0}")]
    Io(String),
}

impl From<std::io::Error> for SetupError {
    fn from(e: std::io::Error) -> Self {
        SetupError::Io(e.to_string())
    }
}
