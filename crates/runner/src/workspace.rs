//! Data-dir layout, the per-runner instance lock and per-attempt workspaces.
//!
//! ```text
//! <data_dir>/artifacts/<sha256>.tar.gz     shared artifact cache
//! <data_dir>/envs/<hash>/                  shared Python environments
//! <data_dir>/git/<key>.git                 shared git clones (see `sources`)
//! <data_dir>/binaries/<sha256>             shared downloaded binaries (see `sources`)
//! <data_dir>/runners/<name>/token.json     saved runner token (0600)
//! <data_dir>/runners/<name>/lock           held while the runner lives
//! <data_dir>/runners/<name>/work/<run>-<attempt>/   one workspace per attempt
//! ```
//!
//! Several runner processes may share a data dir (they share the caches);
//! the instance lock makes sure only one process uses a given runner name, so
//! the workspaces under its `work/` can be wiped at start: whatever is there
//! was left by a crash.

use crate::error::SetupError;
use crate::RunnerError;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Held for the runner's lifetime: owns `runners/<name>/`.
pub struct Instance {
    /// `runners/<name>/`: token file and workspaces.
    pub state_dir: PathBuf,
    /// Parent of the per-attempt workspaces.
    pub work_dir: PathBuf,
    _lock: Flock<File>,
}

impl Instance {
    /// Takes the instance lock (one process per runner name).
    pub fn acquire(data_dir: &Path, name: &str) -> Result<Instance, RunnerError> {
        let state_dir = data_dir.join("runners").join(safe_name(name));
        let work_dir = state_dir.join("work");
        std::fs::create_dir_all(&work_dir).map_err(|e| RunnerError::io(&work_dir, e))?;
        let lock_path = state_dir.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| RunnerError::io(&lock_path, e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| {
            RunnerError::AlreadyRunning {
                name: name.to_string(),
                dir: data_dir.to_path_buf(),
            }
        })?;
        Ok(Instance {
            state_dir,
            work_dir,
            _lock: lock,
        })
    }

    /// Removes workspaces left by a previous crash (after its processes were
    /// killed: see `supervisor::tree::kill_leftovers`).
    pub fn clear_workspaces(&self) -> Result<(), RunnerError> {
        let entries =
            std::fs::read_dir(&self.work_dir).map_err(|e| RunnerError::io(&self.work_dir, e))?;
        for entry in entries.flatten() {
            tracing::info!(path = %entry.path().display(), "removing workspace left by a previous run");
            remove_tree(&entry.path());
        }
        Ok(())
    }

    /// A short name for this runner instance (its state dir), carried by
    /// every process it supervises so a successor can find leftovers.
    pub fn scope(&self) -> String {
        use sha2::{Digest, Sha256};
        let dir = std::fs::canonicalize(&self.state_dir).unwrap_or_else(|_| self.state_dir.clone());
        let h = Sha256::digest(dir.as_os_str().as_encoded_bytes());
        hex::encode(&h[..8])
    }
}

/// A file-name-safe spelling of a runner name.
pub fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

/// Removes a file or directory tree, ignoring what is already gone.
pub fn remove_tree(path: &Path) {
    let r = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => Ok(()),
    };
    if let Err(e) = r {
        tracing::warn!(path = %path.display(), error = %e, "could not remove");
    }
}

/// Whether a process with this pid exists.
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// One attempt's unpacked artifact; removed when dropped.
pub struct Workspace {
    /// The working directory of the script.
    pub dir: PathBuf,
}

impl Workspace {
    /// Unpacks the verified archive into a fresh directory under `work_dir`.
    pub async fn unpack(
        work_dir: &Path,
        run_id: i64,
        attempt_no: i64,
        archive: &Path,
    ) -> Result<Workspace, SetupError> {
        let dir = work_dir.join(format!("{run_id}-{attempt_no}"));
        let archive = archive.to_path_buf();
        let d = dir.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<(), SetupError> {
            remove_tree(&d);
            std::fs::create_dir_all(&d)?;
            let file = File::open(&archive)?;
            let len = file.metadata()?.len();
            // The server already enforced its size limits; the runner only guards
            // against a bomb, relative to what it downloaded.
            let limits = minitower_core::archive::Limits::for_artifact_size(len.max(100 << 20));
            minitower_core::archive::unpack(
                std::io::BufReader::with_capacity(64 << 10, file),
                &d,
                limits,
            )
            .map_err(|e| SetupError::Unpack(e.to_string()))?;
            Ok(())
        })
        .await
        .map_err(|e| SetupError::Io(e.to_string()))?;
        let ws = Workspace { dir };
        result.map(|_| ws)
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let dir = std::mem::take(&mut self.dir);
        if dir.as_os_str().is_empty() {
            return;
        }
        // Large trees take time to delete; do not hold up the attempt's task.
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(move || remove_tree(&dir));
            }
            Err(_) => remove_tree(&dir),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_lock_excludes_and_cleans() {
        let dir = tempfile::tempdir().unwrap();
        let a = Instance::acquire(dir.path(), "r/1").unwrap();
        std::fs::create_dir_all(a.work_dir.join("5-1/sub")).unwrap();
        assert!(matches!(
            Instance::acquire(dir.path(), "r/1"),
            Err(RunnerError::AlreadyRunning { .. })
        ));
        drop(a);
        let b = Instance::acquire(dir.path(), "r/1").unwrap();
        b.clear_workspaces().unwrap();
        assert!(!b.work_dir.join("5-1").exists());
        assert!(b.state_dir.ends_with("r_1"));
    }

    #[test]
    fn names_are_safe() {
        assert_eq!(safe_name("../x y"), "_x_y");
        assert_eq!(safe_name("runner-1"), "runner-1");
        assert!(pid_alive(std::process::id() as i32));
    }
}
