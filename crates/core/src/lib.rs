//! MiniTower's shared core: wire types, the run state machine, validation,
//! the Towerfile format, packaging and archive safety checks. Pure code with
//! no I/O beyond the readers and writers it is handed, so every binary and
//! every store backend applies the same rules.

pub mod api;
pub mod archive;
pub mod job;
pub mod package;
pub mod params;
pub mod retry;
pub mod schedule;
pub mod status;
pub mod towerfile;
pub mod validate;
pub mod webhook;

pub use status::{AttemptStatus, ResultStatus, RunStatus};

/// Version of MiniTower, reported by `/health` and the CLI.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
