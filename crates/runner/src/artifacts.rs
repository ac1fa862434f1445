//! Content-addressed artifact cache.
//!
//! Artifacts are stored as `<sha256>.tar.gz` once their bytes were verified,
//! so a hit needs no download and no re-hash. Recency is the file's mtime
//! (touched on every use), which works across runner processes sharing the
//! data dir. Eviction keeps the cache under its size cap, oldest first, and
//! skips artifacts pinned by an attempt of this process; another process
//! losing a file it is about to open just downloads it again.

use crate::error::SetupError;
use futures::StreamExt;
use minitower_client::Client;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The artifact cache of one data dir.
pub struct ArtifactCache {
    dir: PathBuf,
    max_bytes: u64,
    pins: Arc<Mutex<HashMap<String, usize>>>,
    downloads: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A cached artifact that will not be evicted while this is alive.
pub struct Pinned {
    /// Where the verified `.tar.gz` is.
    pub path: PathBuf,
    /// Whether it was already cached (no download happened).
    pub hit: bool,
    sha: String,
    pins: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = pins.get_mut(&self.sha) {
            *n -= 1;
            if *n == 0 {
                pins.remove(&self.sha);
            }
        }
    }
}

impl ArtifactCache {
    /// Opens (creating) the cache and removes downloads left half-done by dead processes.
    pub fn open(dir: PathBuf, max_bytes: u64) -> std::io::Result<ArtifactCache> {
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = tmp_owner(&name) {
                if !crate::workspace::pid_alive(pid) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(ArtifactCache {
            dir,
            max_bytes,
            pins: Arc::default(),
            downloads: Default::default(),
        })
    }

    /// Returns the verified artifact for `sha`, downloading it when needed.
    pub async fn get(
        &self,
        client: &Client,
        run_id: i64,
        lease_token: &str,
        sha: &str,
    ) -> Result<Pinned, SetupError> {
        let sha = sha.to_ascii_lowercase();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SetupError::Download(format!(
                "the lease names an invalid artifact hash {sha:?}"
            )));
        }
        let path = self.dir.join(format!("{sha}.tar.gz"));
        // Fast path: pin first so a concurrent eviction in this process skips it.
        let pinned = self.pin(&sha, path.clone(), true);
        if touch(&path) && intact(&path, &sha).await {
            return Ok(pinned);
        }
        drop(pinned);
        // One download per hash in this process; others wait and then hit.
        let lock = {
            let mut map = self.downloads.lock().await;
            map.entry(sha.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let pinned = self.pin(&sha, path.clone(), true);
        if touch(&path) && intact(&path, &sha).await {
            return Ok(pinned);
        }
        drop(pinned);
        let pinned = self.pin(&sha, path.clone(), false);
        self.download(client, run_id, lease_token, &sha, &path)
            .await?;
        self.evict();
        Ok(pinned)
    }

    fn pin(&self, sha: &str, path: PathBuf, hit: bool) -> Pinned {
        *self
            .pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(sha.to_string())
            .or_insert(0) += 1;
        Pinned {
            path,
            hit,
            sha: sha.to_string(),
            pins: self.pins.clone(),
        }
    }

    async fn download(
        &self,
        client: &Client,
        run_id: i64,
        lease_token: &str,
        sha: &str,
        dest: &Path,
    ) -> Result<(), SetupError> {
        let resp = client.artifact(run_id, lease_token).await.map_err(|e| {
            if e.is_lease_gone() {
                SetupError::LeaseGone
            } else {
                SetupError::Download(e.to_string())
            }
        })?;
        let tmp = self.dir.join(format!(
            ".tmp-{}-{:x}.part",
            std::process::id(),
            crate::retry::random_u64()
        ));
        let result = async {
            let mut file = std::fs::File::create(&tmp)?;
            let mut hasher = Sha256::new();
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| SetupError::Download(e.to_string()))?;
                hasher.update(&chunk);
                file.write_all(&chunk)?;
            }
            let actual = hex::encode(hasher.finalize());
            if actual != sha {
                return Err(SetupError::ChecksumMismatch {
                    expected: sha.to_string(),
                    actual,
                });
            }
            file.sync_all()?;
            std::fs::rename(&tmp, dest)?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Deletes artifacts not used for `max_age` (see `cache_gc`), never one
    /// pinned by an attempt of this process nor a download in progress. The
    /// pin table is held for the pass (a few file removals), so no attempt
    /// pins an artifact while it is being removed.
    pub fn collect_unused(&self, max_age: std::time::Duration) -> crate::cache_gc::Collected {
        let pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        crate::cache_gc::collect(&self.dir, max_age, std::time::SystemTime::now(), |path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            match name.strip_suffix(".tar.gz") {
                Some(sha) => pins.contains_key(sha),
                None => tmp_owner(&name).is_some_and(crate::workspace::pid_alive),
            }
        })
    }

    /// Deletes least recently used, unpinned artifacts until the cache fits its cap.
    pub fn evict(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, String, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let sha = name.strip_suffix(".tar.gz")?.to_string();
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), sha, e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        if total <= self.max_bytes {
            return;
        }
        files.sort();
        let pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        for (_, len, sha, path) in files {
            if total <= self.max_bytes {
                break;
            }
            if pins.contains_key(&sha) {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                tracing::debug!(%sha, "evicted artifact");
                total -= len;
            }
        }
    }
}

/// Marks a cached file as just used; false when it is not there.
/// Whether a cached artifact still hashes to its name. Checked on every
/// use: a cache entry changed by anyone (another run on a runner without
/// isolation, a disk fault) is removed and downloaded again, never unpacked.
/// Artifacts up to this size are hashed on the calling task.
const INLINE_HASH_BYTES: u64 = 256 << 10;

async fn intact(path: &Path, sha: &str) -> bool {
    let (p, want) = (path.to_path_buf(), sha.to_string());
    let check = move || -> std::io::Result<bool> {
        use sha2::{Digest, Sha256};
        let mut f = std::fs::File::open(&p)?;
        let mut h = Sha256::new();
        std::io::copy(&mut f, &mut h)?;
        Ok(hex::encode(h.finalize()) == want)
    };
    // A small artifact (most apps: a few files) is hashed in place, in
    // tens of microseconds; handing it to a blocking thread and back cost
    // more than that in wake-ups (measured: ~0.15 ms of a run's start).
    let small = std::fs::metadata(path).is_ok_and(|m| m.len() <= INLINE_HASH_BYTES);
    let ok = if small {
        check().unwrap_or(false)
    } else {
        tokio::task::spawn_blocking(check)
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or(false)
    };
    if !ok {
        tracing::warn!(path = %path.display(), "cached artifact does not match its hash; downloading it again");
        let _ = std::fs::remove_file(path);
    }
    ok
}

fn touch(path: &Path) -> bool {
    match std::fs::File::options().append(true).open(path) {
        Ok(f) => {
            let _ = f.set_modified(std::time::SystemTime::now());
            true
        }
        Err(_) => false,
    }
}

/// The pid in a temp download name `.tmp-<pid>-<rand>.part`.
fn tmp_owner(name: &str) -> Option<i32> {
    name.strip_prefix(".tmp-")?.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn put(dir: &Path, sha: &str, len: usize, age_s: u64) {
        let p = dir.join(format!("{sha}.tar.gz"));
        std::fs::write(&p, vec![0u8; len]).unwrap();
        let f = std::fs::File::options().append(true).open(&p).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(age_s))
            .unwrap();
    }

    #[test]
    fn evicts_oldest_unpinned_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(dir.path().to_path_buf(), 250).unwrap();
        let (a, b, c) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        put(dir.path(), &a, 100, 300); // oldest, but pinned
        put(dir.path(), &b, 100, 200);
        put(dir.path(), &c, 100, 100);
        let pin = cache.pin(&a, dir.path().join(format!("{a}.tar.gz")), true);
        cache.evict();
        assert!(
            dir.path().join(format!("{a}.tar.gz")).exists(),
            "pinned artifact evicted"
        );
        assert!(
            !dir.path().join(format!("{b}.tar.gz")).exists(),
            "LRU artifact kept"
        );
        assert!(dir.path().join(format!("{c}.tar.gz")).exists());
        drop(pin);
        assert!(cache.pins.lock().unwrap().is_empty());
    }

    #[test]
    fn collects_artifacts_unused_for_the_max_age_unless_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(dir.path().to_path_buf(), u64::MAX).unwrap();
        let (a, b, c) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        let day = 86400;
        put(dir.path(), &a, 10, 3 * day); // old, pinned by a running attempt
        put(dir.path(), &b, 10, 3 * day); // old, unused
        put(dir.path(), &c, 10, 60); // used a minute ago
        let live_tmp = dir
            .path()
            .join(format!(".tmp-{}-7.part", std::process::id()));
        std::fs::write(&live_tmp, b"x").unwrap();
        let f = std::fs::File::open(&live_tmp).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(3 * day))
            .unwrap();
        let pin = cache.pin(&a, dir.path().join(format!("{a}.tar.gz")), true);
        let done = cache.collect_unused(Duration::from_secs(day));
        assert_eq!((done.removed, done.in_use), (1, 2));
        assert!(dir.path().join(format!("{a}.tar.gz")).exists(), "pinned");
        assert!(!dir.path().join(format!("{b}.tar.gz")).exists());
        assert!(dir.path().join(format!("{c}.tar.gz")).exists(), "recent");
        assert!(live_tmp.exists(), "a download of a live process");
        drop(pin);
        assert_eq!(cache.collect_unused(Duration::from_secs(day)).removed, 1);
        assert!(!dir.path().join(format!("{a}.tar.gz")).exists());
    }

    #[test]
    fn removes_dead_downloads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".tmp-999999999-1.part"), b"x").unwrap();
        let mine = format!(".tmp-{}-1.part", std::process::id());
        std::fs::write(dir.path().join(&mine), b"x").unwrap();
        ArtifactCache::open(dir.path().to_path_buf(), 1).unwrap();
        assert!(!dir.path().join(".tmp-999999999-1.part").exists());
        assert!(dir.path().join(&mine).exists());
    }
}
