//! Registration and the runner token.
//!
//! The token is saved in the data dir (mode 0600) so a restart reuses it
//! instead of rotating it; a saved token that gets 401 is replaced by a fresh
//! registration. Registration retries with backoff while the control plane is
//! unreachable, and gives up at once when it refuses.

use crate::retry::Delays;
use crate::{RunnerConfig, RunnerError};
use minitower_client::Client;
use minitower_core::api::RegisterRunnerRequest;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;

/// What is saved next to the runner's other state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct SavedToken {
    server_url: String,
    name: String,
    environment: String,
    max_concurrency: i64,
    runner_id: i64,
    token: String,
}

/// The runner's authenticated client, replaced when the token is rotated.
pub struct Session {
    base: Client,
    config: RunnerConfig,
    token_file: PathBuf,
    current: RwLock<(u64, Client)>,
    reregister: Mutex<()>,
}

impl Session {
    /// Loads a saved token that matches this configuration, or registers.
    pub async fn establish(
        config: &RunnerConfig,
        state_dir: &Path,
        cancel: &CancellationToken,
    ) -> Result<Session, RunnerError> {
        let base = Client::new(&config.server_url, None)
            .map_err(|e| RunnerError::Config(format!("MINITOWER_SERVER_URL: {e}")))?;
        let token_file = state_dir.join("token.json");
        let saved = load(&token_file)
            .filter(|s| s.server_url == config.server_url && s.name == config.name)
            .filter(|s| {
                s.environment == config.environment
                    && s.max_concurrency == config.concurrency as i64
            });
        let session = Session {
            current: RwLock::new((0, base.clone())),
            base,
            config: config.clone(),
            token_file,
            reregister: Mutex::new(()),
        };
        match saved {
            Some(s) => {
                tracing::info!(runner_id = s.runner_id, "using saved runner token");
                *session.current.write().await = (1, session.base.with_token(s.token));
            }
            None => session.register(cancel).await?,
        }
        Ok(session)
    }

    /// The current client and its generation (pass it back to [`Session::reregister`]).
    pub async fn client(&self) -> (u64, Client) {
        self.current.read().await.clone()
    }

    /// Called after a 401: registers again unless another task already did
    /// since generation `seen`.
    pub async fn reregister(
        &self,
        seen: u64,
        cancel: &CancellationToken,
    ) -> Result<(), RunnerError> {
        let _guard = self.reregister.lock().await;
        if self.current.read().await.0 != seen {
            return Ok(());
        }
        tracing::warn!("runner token refused; registering again");
        self.register(cancel).await
    }

    async fn register(&self, cancel: &CancellationToken) -> Result<(), RunnerError> {
        if self.config.registration_token.is_empty() {
            return Err(RunnerError::Config(
                "MINITOWER_RUNNER_REGISTRATION_TOKEN: required to register (no usable saved runner token)".into(),
            ));
        }
        let req = RegisterRunnerRequest {
            name: self.config.name.clone(),
            environment: Some(self.config.environment.clone()),
            max_concurrency: Some(self.config.concurrency as i64),
        };
        let mut backoff = Delays::new(
            Duration::from_millis(200),
            Duration::from_secs(10).max(self.config.poll_interval),
        );
        let registered = loop {
            let attempt = tokio::select! {
                _ = cancel.cancelled() => return Err(RunnerError::Interrupted),
                r = self.base.register_runner(&self.config.registration_token, &req) => r,
            };
            match attempt {
                Ok(r) => break r,
                Err(e) if e.is_transient() => {
                    let d = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?d, "control plane not answering; will retry registration");
                    tokio::select! {
                        _ = cancel.cancelled() => return Err(RunnerError::Interrupted),
                        _ = tokio::time::sleep(d) => {}
                    }
                }
                Err(e) => return Err(RunnerError::Registration(e)),
            }
        };
        tracing::info!(runner_id = registered.runner_id, name = %self.config.name, "registered");
        let saved = SavedToken {
            server_url: self.config.server_url.clone(),
            name: self.config.name.clone(),
            environment: self.config.environment.clone(),
            max_concurrency: self.config.concurrency as i64,
            runner_id: registered.runner_id,
            token: registered.token.clone(),
        };
        if let Err(e) = store(&self.token_file, &saved) {
            tracing::warn!(error = %e, "could not save the runner token; the next start registers again");
        }
        let mut cur = self.current.write().await;
        *cur = (cur.0 + 1, self.base.with_token(registered.token));
        Ok(())
    }
}

fn load(path: &Path) -> Option<SavedToken> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the token file atomically, readable by the owner only.
fn store(path: &Path, saved: &SavedToken) -> Result<(), RunnerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(
            serde_json::to_string_pretty(saved)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        RunnerError::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn token_file_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        let saved = SavedToken {
            server_url: "http://x".into(),
            name: "r".into(),
            environment: "default".into(),
            max_concurrency: 2,
            runner_id: 7,
            token: "secret".into(),
        };
        store(&path, &saved).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(&path), Some(saved));
    }
}
