//! A slot's fork servers: the shared empty environment's, started with the
//! runner, and up to [`MAX_CACHED`] of cached environments (apps with
//! dependencies), so an app with a `requirements.txt` is forked too.
//!
//! # The invariant
//! A run is forked only by a server of its own environment, as that
//! environment is now: a server remembers the environment's marker (which
//! holds the manifest: every file's size and mtime) from when it started,
//! and a run whose environment's marker differs (rebuilt, say after the
//! cache collector removed it) starts the ordinary way while the stale
//! server is dropped. Everything else a forked run is promised (fencing,
//! users, a fresh `__main__`) is the fork server's own (see the parent
//! module).
//!
//! # How
//! The first run of a cached environment on a slot starts the ordinary way
//! and starts the environment's server in the background (an interpreter
//! start and the warm imports, ~0.1-0.3 s, which no run waits for); later
//! runs are forked. A server unused for [`IDLE`] is dropped at the next
//! lookup, and past [`MAX_CACHED`] the least recently used goes (its
//! supervisor ends its warm interpreter once no run of it is left).
//!
//! # Proof
//! `tests/execution.rs` (`an_app_with_dependencies_is_forked_once_its_server_is_up`):
//! runs of an app with a local wheel are forked after the first, import
//! their dependency from their environment, and once the environment's
//! marker changes no run is forked by the stale server.

use super::ForkServer;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Servers of cached environments kept per slot.
pub const MAX_CACHED: usize = 2;
/// How long a cached environment's server is kept without a run.
pub const IDLE: Duration = Duration::from_secs(300);

/// What starting one more server of this slot takes.
pub struct StartArgs {
    pub cwd: PathBuf,
    pub supervisor: PathBuf,
    pub cgroups: Option<PathBuf>,
    pub scope: String,
    pub user: Option<(u32, u32)>,
}

impl StartArgs {
    /// A server of the environment at `env_dir`.
    async fn server(&self, env_dir: &Path) -> Arc<ForkServer> {
        ForkServer::start(
            env_dir,
            self.cwd.clone(),
            self.supervisor.clone(),
            self.cgroups.clone(),
            &self.scope,
            self.user,
        )
        .await
    }
}

struct Cached {
    dir: PathBuf,
    marker: String,
    server: Arc<ForkServer>,
    used: Instant,
}

#[derive(Default)]
struct Servers {
    cached: Vec<Cached>,
    /// Environments whose server is being started.
    starting: Vec<PathBuf>,
}

/// One slot's fork servers.
pub struct SlotForks {
    empty_dir: PathBuf,
    empty: Arc<ForkServer>,
    args: StartArgs,
    servers: std::sync::Mutex<Servers>,
}

impl SlotForks {
    /// A slot with the empty environment's server started.
    pub async fn start(empty_dir: &Path, args: StartArgs) -> Arc<SlotForks> {
        let empty = args.server(empty_dir).await;
        Arc::new(SlotForks {
            empty_dir: empty_dir.to_path_buf(),
            empty,
            args,
            servers: Default::default(),
        })
    }

    /// The server that may fork a run of the environment at `env_dir`, or
    /// `None` (the run starts the ordinary way; a server for next time is
    /// started in the background).
    pub fn for_env(self: &Arc<Self>, env_dir: &Path) -> Option<Arc<ForkServer>> {
        if env_dir == self.empty_dir {
            return Some(self.empty.clone());
        }
        let marker = crate::envs::marker(env_dir)?;
        let now = Instant::now();
        let mut s = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        s.cached.retain(|c| {
            now.duration_since(c.used) < IDLE && (c.dir != env_dir || c.marker == marker)
        });
        if let Some(c) = s.cached.iter_mut().find(|c| c.dir == env_dir) {
            c.used = now;
            return Some(c.server.clone());
        }
        if !s.starting.iter().any(|d| d == env_dir) {
            s.starting.push(env_dir.to_path_buf());
            let me = self.clone();
            let dir = env_dir.to_path_buf();
            tokio::spawn(async move { me.start_cached(dir, marker).await });
        }
        None
    }

    async fn start_cached(self: Arc<Self>, dir: PathBuf, marker: String) {
        let server = self.args.server(&dir).await;
        let mut s = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        s.starting.retain(|d| d != &dir);
        s.cached.push(Cached {
            dir,
            marker,
            server,
            used: Instant::now(),
        });
        while s.cached.len() > MAX_CACHED {
            let oldest = (0..s.cached.len())
                .min_by_key(|&i| s.cached[i].used)
                .unwrap_or(0);
            s.cached.remove(oldest);
        }
    }
}
