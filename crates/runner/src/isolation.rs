//! Isolation between runs, and between runs and the runner.
//!
//! # The invariant
//! Under `user` isolation a script cannot read the runner's token or
//! environment, cannot change the shared caches (artifacts, Python
//! environments) that later runs of other teams use, and cannot read another
//! run's workspace.
//!
//! # How it is kept
//! - Each concurrency slot of a runner has its own unprivileged uid/gid
//!   (`uid_base + slot`, none of them the runner's), and the supervisor
//!   starts the script as that user with `no_new_privs` and no
//!   supplementary groups. Two attempts that run at the same time never
//!   share a uid.
//! - The runner's directories are traversable but not listable by others
//!   (`0711`), its token is `0600`, the artifact cache `0700`; environments
//!   are owned by the runner and only readable by scripts; a workspace is
//!   `0700` and owned by its attempt's user. `/proc/<runner>/environ` is
//!   unreadable to another uid (the kernel's ptrace access check).
//! - Caches are re-verified on every use anyway: an artifact by its SHA-256,
//!   an environment by the hash of its file manifest ([`crate::envs`]).
//! - The script's environment is built from an allowlist
//!   ([`crate::process::base_env`]); `HOME` and `TMPDIR` point into its own
//!   workspace.
//!
//! `none` runs scripts as the runner's own user (development). `auto`, the
//! default, gives `user` when the runner is root and the interpreter is
//! usable by an unprivileged user, else `none`; the runner logs which one it
//! has. `user` refuses to start without it.
//!
//! # Proof
//! `tests/isolation.rs` runs a script that tries each of these and checks
//! that every attempt is refused, and that a later run sees unmodified caches.

use crate::RunnerError;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// How scripts are separated from the runner and from each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Scripts run as the runner's user.
    None,
    /// Each slot's scripts run as their own unprivileged user.
    User { uid_base: u32 },
}

impl Isolation {
    /// The uid and gid of `slot`'s scripts, when they get their own.
    pub fn user_for(&self, slot: usize) -> Option<(u32, u32)> {
        match self {
            Isolation::None => None,
            Isolation::User { uid_base } => {
                let id = uid_base.saturating_add(slot as u32);
                Some((id, id))
            }
        }
    }

    /// For the start-up log line.
    pub fn describe(&self) -> String {
        match self {
            Isolation::None => "none (scripts run as the runner's user)".into(),
            Isolation::User { uid_base } => {
                format!("user (one unprivileged uid per slot from {uid_base}, no_new_privs)")
            }
        }
    }
}

/// The first uid of this runner's pool: `MINITOWER_ISOLATION_UID_BASE`, or
/// one derived from the runner's scope so two runners on a host differ.
pub fn uid_base(explicit: Option<u32>, scope: &str) -> u32 {
    explicit.unwrap_or_else(|| {
        let h = u32::from_str_radix(&scope[..scope.len().min(6)], 16).unwrap_or(0);
        100_000 + (h % 4000) * 256
    })
}

/// Whether this process may start scripts as other users.
pub fn can_switch_users() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Closes the runner's own directories to other users: traversable where a
/// script's workspace or environment lies below, nothing listable, the
/// token and the artifact cache private. The data dir itself only gains
/// the traverse bits.
pub fn lock_down(data_dir: &Path, state_dir: &Path, work_dir: &Path) -> Result<(), RunnerError> {
    let set = |p: &Path, mode: u32| -> Result<(), RunnerError> {
        if p.exists() {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                .map_err(|e| RunnerError::io(p, e))?;
        }
        Ok(())
    };
    // The data dir may be one the operator chose (even a shared one): only
    // let others traverse it, never change more of it.
    if let Ok(m) = std::fs::metadata(data_dir) {
        let mode = m.permissions().mode() & 0o7777;
        if mode & 0o011 != 0o011 {
            set(data_dir, mode | 0o011)?;
        }
    }
    if let Some(runners) = state_dir.parent() {
        set(runners, 0o711)?;
    }
    set(state_dir, 0o711)?;
    set(work_dir, 0o711)?;
    set(&state_dir.join("token.json"), 0o600)?;
    set(&data_dir.join("artifacts"), 0o700)?;
    set(&data_dir.join("envs"), 0o755)?;
    Ok(())
}

/// Gives a fresh workspace to its attempt's user: the tree owned by it, the
/// top `0700` so no other uid can look in.
pub fn hand_over(ws: &Path, user: Option<(u32, u32)>) -> std::io::Result<()> {
    let Some((uid, gid)) = user else {
        return Ok(());
    };
    fn walk(p: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
        let meta = std::fs::symlink_metadata(p)?;
        if meta.is_dir() {
            for e in std::fs::read_dir(p)? {
                walk(&e?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    walk(ws, uid, gid)?;
    std::fs::set_permissions(ws, std::fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_get_distinct_unprivileged_users() {
        let iso = Isolation::User { uid_base: 100_000 };
        assert_eq!(iso.user_for(0), Some((100_000, 100_000)));
        assert_eq!(iso.user_for(3), Some((100_003, 100_003)));
        assert_eq!(Isolation::None.user_for(3), None);
        let a = uid_base(None, "0a1b2c3d");
        let b = uid_base(None, "ffee0011");
        assert!(a >= 100_000 && b >= 100_000 && a != b);
        assert_eq!(uid_base(Some(70_000), "0a1b2c3d"), 70_000);
    }
}
