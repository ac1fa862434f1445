//! Collecting cache entries nobody used for a while.
//!
//! Every cache under the data dir (artifacts, Python environments, and any
//! other kept the same way) is a directory whose direct children are its
//! entries, files or directories. An entry's mtime is when it was last
//! used: the cache [`touch`]es it on every use. [`collect`] removes the
//! entries last used more than `max_age` ago, except those the cache says
//! are in use; the predicate runs right before each removal, so it may
//! also take a lock it needs (and hold it until the pass ends).
//!
//! An entry is first renamed to a `.gc-` name, then removed: nobody ever
//! sees it half-deleted under its own name, and a pass that died half-way
//! leaves only `.gc-` names, which the next pass removes.
//!
//! Runner processes sharing a data dir see each other's uses only through
//! the mtime: an attempt of another process could still be using an entry
//! it last touched when it started. Attempts end within their timeout (at
//! most 7 days), so a max age above that (the default is 14 days) is safe
//! across processes; within one process the in-use predicate covers it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// How often the runner collects its caches (and once at start).
pub const INTERVAL: Duration = Duration::from_secs(3600);

/// Prefix of entries being removed.
const TRASH: &str = ".gc-";

/// What one pass over a cache directory did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collected {
    /// Entries removed.
    pub removed: usize,
    /// Their size on disk (files' lengths).
    pub bytes: u64,
    /// Entries old enough but in use.
    pub in_use: usize,
}

/// Marks `path` (a file or a directory) as used now; false when it is not
/// there (or its time cannot be set).
pub fn touch(path: &Path) -> bool {
    match std::fs::File::open(path) {
        Ok(f) => f.set_modified(SystemTime::now()).is_ok(),
        Err(_) => false,
    }
}

/// Removes the entries of `dir` last used (mtime) more than `max_age`
/// before `now`, except those for which `in_use` returns true. Entries that
/// vanish meanwhile are skipped; a missing `dir` is an empty cache.
pub fn collect(
    dir: &Path,
    max_age: Duration,
    now: SystemTime,
    mut in_use: impl FnMut(&Path) -> bool,
) -> Collected {
    let mut done = Collected::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return done;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix(TRASH) {
            if !trash_owner(rest).is_some_and(crate::workspace::pid_alive) {
                crate::workspace::remove_tree(&path);
            }
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let used = meta.modified().unwrap_or(now);
        if !stale(used, now, max_age) {
            continue;
        }
        if in_use(&path) {
            done.in_use += 1;
            continue;
        }
        let bytes = size_of(&path);
        if remove(dir, &name, &path) {
            tracing::debug!(path = %path.display(), bytes, "removed unused cache entry");
            done.removed += 1;
            done.bytes += bytes;
        }
    }
    done
}

/// Whether an entry last used at `used` is older than `max_age` at `now`
/// (one used "in the future", a clock set back, is not).
fn stale(used: SystemTime, now: SystemTime, max_age: Duration) -> bool {
    now.duration_since(used).is_ok_and(|age| age > max_age)
}

/// Renames the entry aside, then removes it.
fn remove(dir: &Path, name: &str, path: &Path) -> bool {
    static N: AtomicU64 = AtomicU64::new(0);
    let trash = dir.join(format!(
        "{TRASH}{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    if std::fs::rename(path, &trash).is_err() {
        return false; // gone already, or not ours to move
    }
    crate::workspace::remove_tree(&trash);
    true
}

/// The pid in a trash name's rest `<pid>-<n>-<name>`.
fn trash_owner(rest: &str) -> Option<i32> {
    rest.split('-').next()?.parse().ok()
}

/// Bytes of the regular files under `path` (symlinks not followed).
fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| size_of(&e.path())).sum())
        .unwrap_or(0)
}

/// Runs `pass` on a blocking thread at once and then every `every`, until
/// `stop` is cancelled. The runner's main loop starts it with one pass
/// over every cache it keeps.
pub async fn every<F>(every: Duration, stop: CancellationToken, pass: F)
where
    F: Fn() + Send + Sync + 'static,
{
    let pass = Arc::new(pass);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                let pass = pass.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || pass()).await {
                    tracing::warn!(error = %e, "cache collection failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const DAY: Duration = Duration::from_secs(86400);

    /// Sets `path`'s mtime to `age` ago.
    fn age(path: &Path, age: Duration) {
        let f = std::fs::File::open(path).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
    }

    fn file(dir: &Path, name: &str, len: usize, old: Duration) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, vec![7u8; len]).unwrap();
        age(&p, old);
        p
    }

    #[test]
    fn removes_old_unused_entries_files_and_trees() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let old_file = file(d, "old.bin", 100, 3 * DAY);
        let fresh = file(d, "fresh.bin", 100, Duration::from_secs(60));
        let busy = file(d, "busy.bin", 100, 3 * DAY);
        let tree = d.join("env");
        std::fs::create_dir_all(tree.join("lib/site")).unwrap();
        std::fs::write(tree.join("lib/site/a.py"), b"12345").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", tree.join("link")).unwrap();
        age(&tree, 3 * DAY);
        let mut asked = Vec::new();
        let done = collect(d, DAY, SystemTime::now(), |p| {
            asked.push(p.file_name().unwrap().to_string_lossy().into_owned());
            p == busy
        });
        asked.sort();
        assert_eq!(
            asked,
            ["busy.bin", "env", "old.bin"],
            "asked only about stale entries"
        );
        assert_eq!(done.removed, 2);
        assert_eq!(done.in_use, 1);
        assert_eq!(done.bytes, 105, "file lengths, links not followed");
        assert!(!old_file.exists() && !tree.exists());
        assert!(fresh.exists() && busy.exists());
        assert!(std::path::Path::new("/etc/passwd").exists());
        let left: Vec<_> = std::fs::read_dir(d).unwrap().flatten().collect();
        assert_eq!(left.len(), 2, "no trash left behind");
    }

    #[test]
    fn touching_keeps_an_entry() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(dir.path(), "a", 1, 3 * DAY);
        let tree = dir.path().join("t");
        std::fs::create_dir(&tree).unwrap();
        age(&tree, 3 * DAY);
        assert!(touch(&p) && touch(&tree));
        assert!(!touch(&dir.path().join("missing")));
        let done = collect(dir.path(), DAY, SystemTime::now(), |_| false);
        assert_eq!(done, Collected::default());
        assert!(p.exists() && tree.exists());
    }

    #[test]
    fn leftover_trash_goes_unless_its_owner_lives() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(".gc-999999999-0-x");
        std::fs::create_dir_all(dead.join("sub")).unwrap();
        let mine = dir.path().join(format!(".gc-{}-0-y", std::process::id()));
        std::fs::write(&mine, b"x").unwrap();
        collect(dir.path(), DAY, SystemTime::now(), |_| {
            panic!("not an entry")
        });
        assert!(!dead.exists());
        assert!(mine.exists(), "a live pass is removing it");
    }

    #[test]
    fn a_missing_dir_is_an_empty_cache_and_future_times_are_not_stale() {
        let none = collect(
            Path::new("/nonexistent/cache"),
            DAY,
            SystemTime::now(),
            |_| false,
        );
        assert_eq!(none, Collected::default());
        let now = SystemTime::now();
        assert!(!stale(now + DAY, now, Duration::ZERO));
        assert!(!stale(now - DAY, now, DAY), "exactly max age is kept");
        assert!(stale(now - DAY - Duration::from_secs(1), now, DAY));
    }

    #[tokio::test]
    async fn every_runs_at_once_and_stops_when_told() {
        let n = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let task = tokio::spawn(every(Duration::from_secs(3600), stop.clone(), {
            let n = n.clone();
            move || {
                n.fetch_add(1, Ordering::SeqCst);
            }
        }));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while n.load(Ordering::SeqCst) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "first pass never ran"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("stops")
            .unwrap();
        assert_eq!(
            n.load(Ordering::SeqCst),
            1,
            "no second pass within the hour"
        );
    }
}
