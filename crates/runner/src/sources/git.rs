//! The git cache: one bare clone per repository URL, fetched under a lock,
//! and checkouts of one commit into a workspace (see the design note in
//! `sources.rs`).

use super::{display_url, open_dir, tail, tmp_owner, tmp_path, SetupLog};
use crate::cache_gc::{self, Collected};
use crate::error::SetupError;
use crate::process::GroupGuard;
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::Command;

/// Longest a fetch from the repository may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest a local git command (resolving, checking out) may take.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(300);
/// The user name sent with a token (GitHub's convention; GitLab, Gitea and
/// most others accept any name with a token).
const TOKEN_USER: &str = "x-access-token";

/// Answers git's prompts from its environment: the token never appears in
/// a command line or a file.
const ASKPASS: &str = "#!/bin/sh\n\
# MiniTower: git credentials from the environment, never from argv.\n\
case \"$1\" in\n\
Username*) printf '%s\\n' \"$MINITOWER_GIT_USERNAME\" ;;\n\
*) printf '%s\\n' \"$MINITOWER_GIT_PASSWORD\" ;;\n\
esac\n";

/// Variables of the runner's environment git may see: how to reach the
/// network, not who the runner is.
const PASS_VARS: &[&str] = &[
    "PATH",
    "HOME",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "GIT_SSH_COMMAND",
    "SSH_AUTH_SOCK",
];

pub struct GitCache {
    dir: PathBuf,
    askpass: PathBuf,
    fetch_timeout: Duration,
    /// One fetch per repository in this process (the flock is per process
    /// too, but a blocked attempt should not poll it).
    locks: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Why a git command (or the file work around it) failed.
enum Failed {
    Start(std::io::Error),
    Io(std::io::Error),
    Exit(String),
    TimedOut(Duration),
}

impl Failed {
    fn describe(&self) -> String {
        match self {
            Failed::Start(e) => format!("cannot run git: {e}"),
            Failed::Io(e) => format!("runner I/O error: {e}"),
            Failed::Exit(stderr) => tail(stderr, 3),
            Failed::TimedOut(t) => format!("timed out after {} s", t.as_secs()),
        }
    }
}

/// A setup error whose whole text went through the run's masker (git's
/// output, the URL and the ref, like script output).
fn fail(log: &SetupLog, message: String) -> SetupError {
    SetupError::Git(log.mask(&message))
}

impl GitCache {
    pub fn open(dir: PathBuf) -> std::io::Result<GitCache> {
        use std::os::unix::fs::PermissionsExt;
        open_dir(&dir, 0o700)?;
        let askpass = dir.join("askpass");
        // Written anew at every start (another process may be using the
        // old one: replace it whole).
        let tmp = tmp_path(&dir);
        std::fs::write(&tmp, ASKPASS)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))?;
        std::fs::rename(&tmp, &askpass)?;
        Ok(GitCache {
            dir,
            askpass,
            fetch_timeout: FETCH_TIMEOUT,
            locks: Default::default(),
        })
    }

    /// Fetches `url`, resolves `git_ref` and checks that commit out into
    /// `dest` (a fresh directory). Returns the commit.
    pub async fn checkout(
        &self,
        url: &str,
        git_ref: &str,
        password: Option<&str>,
        dest: &Path,
        log: &SetupLog<'_>,
    ) -> Result<String, SetupError> {
        let shown = display_url(url);
        let key = key(url);
        let local = {
            let mut map = self.locks.lock().await;
            map.entry(key.clone()).or_default().clone()
        };
        let _local = local.lock().await;
        let _flock = self.flock(&key).await?;
        let mirror = self.dir.join(format!("{key}.git"));
        let full_sha = is_hex(git_ref) && matches!(git_ref.len(), 40 | 64);
        let fresh = !mirror.join("HEAD").is_file();
        if fresh {
            log.line(&format!("git: cloning {shown}"));
            self.clone_mirror(url, &mirror, password)
                .await
                .map_err(|e| fail(log, format!("could not fetch {shown}: {}", e.describe())))?;
        } else if full_sha && self.resolve(&mirror, git_ref).await.is_some() {
            log.line(&format!("git: commit {git_ref} is already cached"));
        } else {
            log.line(&format!("git: fetching {shown}"));
            let refspecs = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];
            let mut args: Vec<&OsStr> = vec![
                "fetch".as_ref(),
                "--quiet".as_ref(),
                "--prune".as_ref(),
                "--no-tags".as_ref(),
                "--end-of-options".as_ref(),
                url.as_ref(),
            ];
            args.extend(refspecs.iter().map(|s| OsStr::new(*s)));
            self.git(Some(&mirror), &args, password, self.fetch_timeout)
                .await
                .map_err(|e| fail(log, format!("could not fetch {shown}: {}", e.describe())))?;
        }
        cache_gc::touch(&mirror);
        let mut commit = self.resolve(&mirror, git_ref).await;
        if commit.is_none() && full_sha {
            // A commit on no branch or tag: ask for it by name.
            let dst = format!("+{git_ref}:refs/minitower/commits/{git_ref}");
            let args: [&OsStr; 6] = [
                "fetch".as_ref(),
                "--quiet".as_ref(),
                "--no-tags".as_ref(),
                "--end-of-options".as_ref(),
                url.as_ref(),
                dst.as_ref(),
            ];
            if self
                .git(Some(&mirror), &args, password, self.fetch_timeout)
                .await
                .is_ok()
            {
                commit = self.resolve(&mirror, git_ref).await;
            }
        }
        let Some(commit) = commit else {
            let what = "no tag, branch or commit by that name";
            return Err(fail(
                log,
                format!("ref {git_ref:?} not found in {shown} ({what})"),
            ));
        };
        log.line(&format!("git: {git_ref} is commit {commit}"));
        self.check_out(&mirror, &commit, dest).await.map_err(|e| {
            let why = e.describe();
            fail(
                log,
                format!("could not check out {commit} of {shown}: {why}"),
            )
        })?;
        Ok(commit)
    }

    /// Takes `<key>.lock`, polling so an abandoned attempt stops waiting.
    async fn flock(&self, key: &str) -> Result<Flock<File>, SetupError> {
        let path = self.dir.join(format!("{key}.lock"));
        let deadline = tokio::time::Instant::now() + self.fetch_timeout * 2;
        loop {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| SetupError::Io(format!("{}: {e}", path.display())))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(lock),
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {}
                Err((_, e)) => return Err(SetupError::Io(format!("{}: {e}", path.display()))),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SetupError::Git(
                    "another runner process has been fetching this repository for too long".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A bare clone of `url` at `mirror`, made aside and renamed into place.
    async fn clone_mirror(
        &self,
        url: &str,
        mirror: &Path,
        password: Option<&str>,
    ) -> Result<(), Failed> {
        crate::workspace::remove_tree(mirror);
        let tmp = tmp_path(&self.dir);
        let args: [&OsStr; 6] = [
            "clone".as_ref(),
            "--bare".as_ref(),
            "--quiet".as_ref(),
            "--template=".as_ref(),
            url.as_ref(),
            tmp.as_os_str(),
        ];
        let cloned = self.git(None, &args, password, self.fetch_timeout).await;
        let done = cloned.and_then(|_| {
            // No automatic gc (objects a workspace fetch needs stay, and no
            // fetch pays for a repack), and any commit may be fetched from it.
            use std::io::Write;
            File::options()
                .append(true)
                .open(tmp.join("config"))
                .and_then(|mut f| {
                    f.write_all(b"[gc]\n\tauto = 0\n[uploadpack]\n\tallowAnySHA1InWant = true\n")
                })
                .and_then(|_| std::fs::rename(&tmp, mirror))
                .map_err(Failed::Io)
        });
        if done.is_err() {
            crate::workspace::remove_tree(&tmp);
        }
        done
    }

    /// The commit `git_ref` names in `mirror`: a full SHA itself, else a
    /// tag, a branch, a full ref name, or an unambiguous short SHA.
    async fn resolve(&self, mirror: &Path, git_ref: &str) -> Option<String> {
        let mut names = Vec::new();
        let hex = is_hex(git_ref);
        if hex && matches!(git_ref.len(), 40 | 64) {
            names.push(git_ref.to_string());
        } else {
            names.push(format!("refs/tags/{git_ref}"));
            names.push(format!("refs/heads/{git_ref}"));
            if git_ref.starts_with("refs/") {
                names.push(git_ref.to_string());
            }
            if hex && git_ref.len() >= 4 {
                names.push(git_ref.to_string());
            }
        }
        for name in names {
            let spec = format!("{name}^{{commit}}");
            let args: [&OsStr; 5] = [
                "rev-parse".as_ref(),
                "--verify".as_ref(),
                "--quiet".as_ref(),
                "--end-of-options".as_ref(),
                spec.as_ref(),
            ];
            if let Ok(out) = self.git(Some(mirror), &args, None, LOCAL_TIMEOUT).await {
                let sha = out.trim().to_string();
                if is_hex(&sha) && matches!(sha.len(), 40 | 64) {
                    return Some(sha.to_ascii_lowercase());
                }
            }
        }
        None
    }

    /// A repository of its own at `dest` holding `commit` (depth 1) from
    /// the cache, checked out detached.
    async fn check_out(&self, mirror: &Path, commit: &str, dest: &Path) -> Result<(), Failed> {
        let format = if commit.len() == 64 { "sha256" } else { "sha1" };
        let object_format = format!("--object-format={format}");
        let init: [&OsStr; 5] = [
            "init".as_ref(),
            "--quiet".as_ref(),
            "--template=".as_ref(),
            object_format.as_ref(),
            dest.as_os_str(),
        ];
        self.git(None, &init, None, LOCAL_TIMEOUT).await?;
        let ws_git = dest.join(".git");
        // The cache is a local path: allowed explicitly (git restricts the
        // file transport where it can be reached from untrusted input).
        let fetch: [&OsStr; 9] = [
            "-c".as_ref(),
            "protocol.file.allow=always".as_ref(),
            "fetch".as_ref(),
            "--quiet".as_ref(),
            "--no-tags".as_ref(),
            "--depth=1".as_ref(),
            "--end-of-options".as_ref(),
            mirror.as_os_str(),
            commit.as_ref(),
        ];
        self.git(Some(&ws_git), &fetch, None, LOCAL_TIMEOUT).await?;
        let checkout: [&OsStr; 7] = [
            "-c".as_ref(),
            "advice.detachedHead=false".as_ref(),
            "--work-tree".as_ref(),
            dest.as_os_str(),
            "checkout".as_ref(),
            "--quiet".as_ref(),
            commit.as_ref(),
        ];
        self.git(Some(&ws_git), &checkout, None, LOCAL_TIMEOUT)
            .await?;
        Ok(())
    }

    /// Runs `git [--git-dir=<git_dir>] <args>` with the hermetic
    /// environment, `password` offered through askpass; its stdout.
    async fn git(
        &self,
        git_dir: Option<&Path>,
        args: &[&OsStr],
        password: Option<&str>,
        timeout: Duration,
    ) -> Result<String, Failed> {
        let mut cmd = Command::new("git");
        if let Some(d) = git_dir {
            let mut a = OsString::from("--git-dir=");
            a.push(d);
            cmd.arg(a);
        }
        cmd.args(args)
            .env_clear()
            .envs(
                PASS_VARS
                    .iter()
                    .filter_map(|k| Some((k, std::env::var_os(k)?))),
            )
            .env("LC_ALL", "C")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if std::env::var_os("GIT_SSH_COMMAND").is_none() {
            cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
        }
        if let Some(p) = password {
            cmd.env("GIT_ASKPASS", &self.askpass)
                .env("MINITOWER_GIT_USERNAME", TOKEN_USER)
                .env("MINITOWER_GIT_PASSWORD", p);
        }
        let child = cmd.spawn().map_err(Failed::Start)?;
        let guard = GroupGuard::new(child.id());
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            // The guard kills the group (helpers such as git-remote-http).
            Err(_) => Err(Failed::TimedOut(timeout)),
            Ok(Err(e)) => Err(Failed::Start(e)),
            Ok(Ok(out)) => {
                guard.disarm();
                if out.status.success() {
                    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
                } else {
                    Err(Failed::Exit(
                        String::from_utf8_lossy(&out.stderr).into_owned(),
                    ))
                }
            }
        }
    }

    /// Removes clones unused for `max_age`, never one whose lock is held
    /// (taken here for the pass), nor a clone in progress in a live process.
    /// Lock files stay: removing one another process has open would let
    /// two holders have "the" lock.
    pub fn collect_unused(&self, max_age: Duration) -> Collected {
        let mut held = Vec::new();
        let done = cache_gc::collect(&self.dir, max_age, std::time::SystemTime::now(), |path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let Some(key) = name.strip_suffix(".git") else {
                return match tmp_owner(&name) {
                    Some(pid) => crate::workspace::pid_alive(pid),
                    None => true, // lock files and askpass
                };
            };
            let lock = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(self.dir.join(format!("{key}.lock")))
                .ok()
                .and_then(|f| Flock::lock(f, FlockArg::LockExclusiveNonblock).ok());
            match lock {
                Some(l) => {
                    held.push(l);
                    false
                }
                None => true,
            }
        });
        drop(held);
        done
    }
}

/// The cache key of a repository URL.
fn key(url: &str) -> String {
    hex::encode(&Sha256::digest(url.as_bytes())[..16])
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
#[path = "git_tests.rs"]
mod tests;
