//! The environment cache's side of `cache_gc`: which environments are in
//! use, and removing the others.

use super::EnvCache;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Who was given which environment, for the collector.
#[derive(Default)]
pub(super) struct Users {
    /// Environment key to the workspaces given it (a workspace is removed
    /// when its attempt ends: one that still exists is still using it).
    pub(super) by_key: HashMap<String, Vec<PathBuf>>,
    /// Keys being removed right now: no fast path for them.
    pub(super) collecting: HashSet<String>,
}

impl EnvCache {
    /// Records that workspace `ws` was given environment `key`; false while
    /// that environment is being removed (the caller then waits for its
    /// lock and builds it again).
    pub(super) fn note_use(&self, key: &str, ws: &Path) -> bool {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let given = users.by_key.entry(key.to_string()).or_default();
        if !given.iter().any(|w| w == ws) {
            given.push(ws.to_path_buf());
        }
        !users.collecting.contains(key)
    }

    /// Removes environments not used for `max_age` (see `cache_gc`), never
    /// the shared empty one, one whose lock another builder holds, or one
    /// a live workspace of this process was given. Lock files stay: removing
    /// one another process has open would let two builders hold "the" lock.
    pub fn collect_unused(&self, max_age: std::time::Duration) -> crate::cache_gc::Collected {
        // Locks of the environments being removed, held until the pass ends.
        let mut held = Vec::new();
        let done =
            crate::cache_gc::collect(&self.root, max_age, std::time::SystemTime::now(), |path| {
                let key = path.file_name().unwrap_or_default().to_string_lossy();
                if key.ends_with(".lock") || path == self.empty.dir {
                    return true;
                }
                let lock = std::fs::File::options()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(self.root.join(format!("{key}.lock")))
                    .ok()
                    .and_then(|f| {
                        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).ok()
                    });
                let Some(lock) = lock else {
                    return true; // being built
                };
                let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
                let given = users.by_key.entry(key.to_string()).or_default();
                given.retain(|ws| ws.exists());
                if !given.is_empty() {
                    return true;
                }
                users.collecting.insert(key.to_string());
                held.push(lock);
                false
            });
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.collecting.clear();
        users.by_key.retain(|_, given| {
            given.retain(|ws| ws.exists());
            !given.is_empty()
        });
        drop(users);
        drop(held);
        done
    }
}

#[cfg(test)]
mod tests {
    use super::super::{detect, Interpreter, LogSink, MARKER};
    use super::*;
    use std::time::{Duration, SystemTime};

    const DAY: Duration = Duration::from_secs(86400);

    fn age(dir: &Path, by: Duration) {
        let f = std::fs::File::open(dir).unwrap();
        f.set_modified(SystemTime::now() - by).unwrap();
    }

    /// A real environment (pip, a local wheel) is kept while a live
    /// workspace uses it, while its builder holds its lock, and while it
    /// is recent; then removed (its lock file and the shared empty one
    /// stay) and built again on the next use. An `ensure` that meets it
    /// being removed takes the locked path.
    #[tokio::test]
    async fn unused_environments_go_and_come_back() {
        let data = tempfile::tempdir().unwrap();
        let interp = Interpreter::resolve("python3").await.unwrap();
        let cache = EnvCache::open(data.path().join("envs"), interp, None)
            .await
            .unwrap();
        let ws = data.path().join("work").join("1-1");
        std::fs::create_dir_all(&ws).unwrap();
        let wheel = crate::test_support::write_wheel(&ws, "tinydep", "VALUE = 1\n");
        std::fs::write(
            ws.join("requirements.txt"),
            format!("{}\n", wheel.display()),
        )
        .unwrap();
        let deps = detect(&ws).unwrap();
        let key = cache.key_for(&deps);
        let env = cache.ensure(&deps, &ws, &LogSink::discard()).await.unwrap();
        assert!(env.dir.join(MARKER).exists());
        age(&env.dir, 3 * DAY);
        age(&cache.empty().dir, 3 * DAY);

        let kept = cache.collect_unused(DAY);
        assert_eq!(kept.removed, 0, "a live workspace uses it");
        assert!(env.dir.exists() && cache.empty().dir.exists());

        // The attempt ended; a builder holds the lock: still kept.
        let spare = data.path().join("spare");
        std::fs::rename(&ws, &spare).unwrap();
        let lock = std::fs::File::options()
            .write(true)
            .open(data.path().join("envs").join(format!("{key}.lock")))
            .unwrap();
        let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
        assert_eq!(cache.collect_unused(DAY).removed, 0, "being built");
        drop(held);

        let done = cache.collect_unused(DAY);
        assert_eq!(done.removed, 1);
        assert!(done.bytes > 0);
        assert!(!env.dir.exists(), "unused for the max age");
        assert!(cache.empty().python().exists(), "the shared one stays");
        assert!(data
            .path()
            .join("envs")
            .join(format!("{key}.lock"))
            .exists());

        // Used again: built again, and fresh.
        std::fs::rename(&spare, &ws).unwrap();
        let (sink, mut read) = LogSink::capture();
        let env = cache.ensure(&deps, &ws, &sink).await.unwrap();
        assert!(read()
            .iter()
            .any(|(_, l)| l.starts_with("building environment")));
        std::fs::remove_dir_all(&ws).unwrap();
        assert_eq!(cache.collect_unused(DAY).removed, 0, "just built");

        // A hit touches it; while it is being collected there is no fast path.
        age(&env.dir, 3 * DAY);
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::write(
            ws.join("requirements.txt"),
            format!("{}\n", wheel.display()),
        )
        .unwrap();
        cache.users.lock().unwrap().collecting.insert(key.clone());
        let (sink, mut read) = LogSink::capture();
        cache.ensure(&deps, &ws, &sink).await.unwrap();
        assert!(
            read()
                .iter()
                .any(|(_, l)| l.ends_with("(built by another run)")),
            "the locked path"
        );
        cache.users.lock().unwrap().collecting.clear();
        let used = std::fs::metadata(&env.dir).unwrap().modified().unwrap();
        assert!(SystemTime::now().duration_since(used).unwrap_or_default() < DAY);
    }
}
