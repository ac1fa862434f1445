//! Where a job's files come from besides the uploaded archive: a checkout of
//! a git repository, or a binary downloaded by URL
//! (`minitower_core::job::Source`).
//!
//! # Design note
//!
//! ```text
//! <data_dir>/git/<key>.git        bare clone of one repository URL (key: SHA-256 of the URL)
//! <data_dir>/git/<key>.lock       flock held while that clone is fetched or read
//! <data_dir>/git/askpass          answers git's credential prompts from its environment
//! <data_dir>/binaries/<sha256>    a downloaded binary, named by its content hash
//! ```
//!
//! **Git.** The invariants, and what keeps each:
//! - *A run executes exactly the commit recorded on its attempt.* The ref
//!   is resolved once, in the cached clone and under its lock (tag, then
//!   branch, then `refs/…`, then a short SHA; a full SHA is itself), and
//!   that SHA, not the ref, is fetched into the workspace and checked out
//!   detached. The attempt reports it as `source_commit`.
//! - *Nothing a run does reaches the cache.* The workspace is a repository
//!   of its own, filled by a depth-1 fetch of the one commit from the cache:
//!   its own objects, no `alternates`, no hard links, so the run may commit,
//!   rewrite or delete in it freely (and `git rev-parse HEAD` works there).
//! - *One fetch per repository at a time*, across attempts and runner
//!   processes sharing the data dir: an in-process mutex, then an `flock`
//!   on `<key>.lock`, held from the fetch through the checkout; the cache
//!   collector takes the same lock before it removes a clone.
//! - *Credentials stay out of URLs, argv and logs.* A URL carrying
//!   credentials is refused at upload (`core::job::check_git_url`) and any
//!   user info is cut again before a URL is logged. The secret named by
//!   `git.secret` reaches git only in its environment
//!   (`MINITOWER_GIT_PASSWORD`), read by the `askpass` script when the
//!   server asks (a 401), never sent unasked (unlike `http.extraHeader`,
//!   which would also go to a host that redirects elsewhere). Everything
//!   git prints is masked with the run's secret values, as script output
//!   is, before it reaches a log line or an error.
//! - *Git never waits for a person, nor forever.* `GIT_TERMINAL_PROMPT=0`,
//!   ssh in batch mode, stdin closed; every git command has a timeout and
//!   runs in its own process group, killed on timeout or when the attempt
//!   is abandoned (cancel, fencing).
//! - *The host's git configuration does not change what a run gets*: the
//!   system and global config files are ignored (no `url.insteadOf`, no
//!   credential helpers); proxy and CA variables of the runner pass through.
//!
//! A branch or a tag is fetched on every use (they move); a full commit SHA
//! already in the cache needs no fetch at all; one on no branch or tag is
//! fetched by itself (servers that allow it) and kept under
//! `refs/minitower/commits/`. Submodules and LFS are not fetched.
//!
//! **Binaries.** `binaries/<sha256>` is only ever a complete download whose
//! bytes hashed to its name: the body is streamed to a `.tmp-<pid>-…` file
//! while hashed and counted (at most 1 GiB), and renamed
//! into place only on a match, so two processes downloading the same binary
//! cannot corrupt it (the rename is atomic; within one process a download
//! per hash is shared). A mismatch fails the attempt ("binary sha256
//! mismatch: expected X, got Y") and caches nothing. The cached file is
//! hashed again before every use; one that no longer matches is deleted and
//! downloaded again. It is owned by the runner, mode 0755, in a 0711
//! directory: under user isolation a run may execute it, never change it.
//! The run's working directory is the unpacked archive, as for scripts.
//!
//! **Collection.** Each use touches the clone or the binary; `cache_gc`
//! removes those unused for the max age, except a clone whose lock someone
//! holds, a binary an attempt of this process holds, and downloads or
//! clones in progress in a live process.

mod binary;
mod git;

use crate::cache_gc::Collected;
use crate::error::SetupError;
use crate::logs::LogSink;
use crate::mask::Masker;
use crate::workspace::{remove_tree, Workspace};
use minitower_core::api::Lease;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use binary::CachedBinary;

/// A path, `file://` URL or scp-less local form: what git would read from
/// this host's file system.
pub fn is_local_git_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    url.starts_with('/') || url.starts_with('.') || lower.starts_with("file:")
}

/// The git and binary caches of one data dir.
pub struct Sources {
    git: git::GitCache,
    binaries: binary::BinaryCache,
    /// Whether a git URL may name a repository on this host.
    allow_local_git: bool,
}

/// A git checkout: the attempt's workspace and the commit it holds.
pub struct Checkout {
    pub ws: Workspace,
    /// Full lowercase hex SHA (40, or 64 for a SHA-256 repository).
    pub commit: String,
}

impl Sources {
    /// Opens (creating) both caches under `data_dir` and removes what dead
    /// processes left half-done.
    pub fn open(data_dir: &Path, allow_local_git: bool) -> std::io::Result<Sources> {
        Ok(Sources {
            git: git::GitCache::open(data_dir.join("git"))?,
            binaries: binary::BinaryCache::open(data_dir.join("binaries"))?,
            allow_local_git,
        })
    }

    /// Checks `git_ref` of `url` out into a fresh workspace for the lease's
    /// attempt (under `work_dir`); `secret` names the lease secret used as
    /// the password. Setup lines and errors name the URL and the ref.
    pub async fn checkout(
        &self,
        lease: &Lease,
        (url, git_ref, secret): (&str, &str, Option<&str>),
        work_dir: &Path,
        sink: &LogSink,
    ) -> Result<Checkout, SetupError> {
        let log = SetupLog::new(sink, lease);
        // The fetch runs as the runner: a path on this host would read what
        // the runner can read (another team's cached clone, say).
        if !self.allow_local_git && is_local_git_url(url) {
            return Err(SetupError::Git(format!(
                "git.url {url:?} names a repository on the runner's host, which this runner does not allow (MINITOWER_RUNNER_GIT_ALLOW_LOCAL)"
            )));
        }
        let password = match secret {
            None => None,
            Some(name) => Some(lease.secrets.0.get(name).ok_or_else(|| {
                SetupError::Git(format!(
                    "git.secret {name:?} has no value in the run's environment (set it with `minitower secrets set`)"
                ))
            })?),
        };
        let dir = work_dir.join(format!("{}-{}", lease.run_id, lease.attempt_no));
        remove_tree(&dir);
        // Removed again when dropped, whatever happens below.
        let ws = Workspace { dir };
        let commit = self
            .git
            .checkout(url, git_ref, password.map(String::as_str), &ws.dir, &log)
            .await?;
        Ok(Checkout { ws, commit })
    }

    /// The verified binary `sha256` from `url`, downloaded when not cached.
    pub async fn binary(
        &self,
        lease: &Lease,
        url: &str,
        sha256: &str,
        sink: &LogSink,
    ) -> Result<CachedBinary, SetupError> {
        let log = SetupLog::new(sink, lease);
        self.binaries.get(url, sha256, &log).await
    }

    /// Removes clones and binaries unused for `max_age` (see `cache_gc`).
    pub fn collect_unused(&self, max_age: Duration) -> Collected {
        let g = self.git.collect_unused(max_age);
        let b = self.binaries.collect_unused(max_age);
        Collected {
            removed: g.removed + b.removed,
            bytes: g.bytes + b.bytes,
            in_use: g.in_use + b.in_use,
        }
    }
}

/// Setup log lines of one attempt, masked with its secret values.
pub(crate) struct SetupLog<'a> {
    sink: &'a LogSink,
    masker: Masker,
}

impl<'a> SetupLog<'a> {
    fn new(sink: &'a LogSink, lease: &Lease) -> SetupLog<'a> {
        SetupLog {
            sink,
            masker: Masker::new(lease.secrets.0.values()),
        }
    }

    /// A log that drops its lines but still masks (unit tests, or work not
    /// tied to a run).
    #[cfg(test)]
    pub(crate) fn for_tests(sink: &'a LogSink, secrets: &[&str]) -> SetupLog<'a> {
        SetupLog {
            sink,
            masker: Masker::new(secrets),
        }
    }

    /// Sends one setup line, masked.
    fn line(&self, text: &str) {
        self.sink.send("setup", self.mask(text));
    }

    /// `text` with every secret value replaced.
    fn mask(&self, text: &str) -> String {
        let mut m = self.masker.clone();
        let mut out = Vec::with_capacity(text.len());
        m.feed(text.as_bytes(), &mut out);
        m.finish(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// `url` without user info or query, for logs and errors: the upload
/// refused credentials already, this only makes sure of it.
pub(crate) fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.scheme() != "file" && u.has_host() => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.set_query(None);
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// `<dir>/.tmp-<pid>-<random>`: a scratch name the collector and `open`
/// know to leave alone while its process lives.
fn tmp_path(dir: &Path) -> PathBuf {
    dir.join(format!(
        ".tmp-{}-{:x}",
        std::process::id(),
        crate::retry::random_u64()
    ))
}

/// The pid in a `.tmp-<pid>-…` name.
fn tmp_owner(name: &str) -> Option<i32> {
    name.strip_prefix(".tmp-")?.split('-').next()?.parse().ok()
}

/// Creates `dir` with `mode` and removes the scratch entries of dead
/// processes in it.
fn open_dir(dir: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if tmp_owner(&name).is_some_and(|pid| !crate::workspace::pid_alive(pid)) {
            remove_tree(&entry.path());
        }
    }
    Ok(())
}

/// The last lines of a command's error output, for an error message.
fn tail(text: &str, lines: usize) -> String {
    let kept: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut s = kept[kept.len().saturating_sub(lines)..].join(" / ");
    if s.len() > 500 {
        let mut cut = 500;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_queries_for_display() {
        assert_eq!(
            display_url("https://u:p@example.com/a.git?x=1"),
            "https://example.com/a.git"
        );
        assert_eq!(display_url("/srv/repo.git"), "/srv/repo.git");
        assert_eq!(display_url("file:///srv/r.git"), "file:///srv/r.git");
        assert_eq!(display_url("git@host:acme/r.git"), "git@host:acme/r.git");
    }

    #[test]
    fn tails_keep_the_last_lines_short() {
        assert_eq!(tail("a\n\n b \nc\n", 2), "b / c");
        assert!(tail(&"x".repeat(2000), 1).len() < 510);
        assert_eq!(tmp_owner(".tmp-42-ab"), Some(42));
        assert_eq!(tmp_owner("abc.git"), None);
    }

    #[test]
    fn the_setup_log_masks_secret_values() {
        let (sink, mut read) = LogSink::capture();
        let log = SetupLog::for_tests(&sink, &["hunter22"]);
        log.line("fatal: password hunter22 refused");
        assert_eq!(
            read(),
            vec![(
                "setup".to_string(),
                "fatal: password *** refused".to_string()
            )]
        );
    }
}
