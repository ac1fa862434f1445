//! The workspace disk limit: no kernel mechanism bounds one directory's
//! size on an ordinary filesystem, so a watcher measures the workspace
//! every [`PERIOD`] and reports when it holds more than the limit.
//!
//! A measurement is bounded ([`MAX_ENTRIES`] entries), so a tree of
//! millions of small files costs the runner a bounded walk per period; the
//! sum it then has is a lower bound, still enough to catch a script that
//! writes big files. Sizes are allocated blocks (what `du` counts): a
//! sparse file costs what it really uses; a file with several links in the
//! workspace counts once; symlinks are not followed.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Time between two measurements.
pub const PERIOD: Duration = Duration::from_millis(500);
/// Most entries one measurement looks at.
pub const MAX_ENTRIES: usize = 200_000;

/// Bytes the tree at `dir` occupies on disk (bounded walk, see above).
pub fn usage(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut seen = HashSet::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    let mut entries = 0usize;
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            entries += 1;
            if entries > MAX_ENTRIES {
                return total;
            }
            let Ok(m) = e.metadata() else {
                continue;
            };
            if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
                continue;
            }
            total = total.saturating_add(m.blocks().saturating_mul(512));
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// A running watcher; stops when dropped.
pub struct Watch {
    dir: PathBuf,
    limit: u64,
    exceeded: CancellationToken,
    /// The size that crossed the limit, bytes (0 until then).
    seen: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    /// Measures `dir` every [`PERIOD`] until it holds more than `limit`.
    pub fn start(dir: PathBuf, limit: u64) -> Watch {
        let exceeded = CancellationToken::new();
        let seen = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (dir, exceeded, seen) = (dir.clone(), exceeded.clone(), seen.clone());
            async move {
                loop {
                    tokio::time::sleep(PERIOD).await;
                    let d = dir.clone();
                    let Ok(used) = tokio::task::spawn_blocking(move || usage(&d)).await else {
                        return;
                    };
                    if used > limit {
                        seen.store(used, Ordering::Relaxed);
                        exceeded.cancel();
                        return;
                    }
                }
            }
        });
        Watch {
            dir,
            limit,
            exceeded,
            seen,
            task,
        }
    }

    /// Resolves once the workspace went over the limit (cancel-safe).
    pub async fn exceeded(&self) {
        self.exceeded.cancelled().await
    }

    /// Whether the watcher saw the workspace over the limit.
    pub fn hit(&self) -> bool {
        self.exceeded.is_cancelled()
    }

    /// Measures once more (the script may have written its last bytes
    /// after the last period) and returns whether it is over the limit.
    pub async fn over_now(&self) -> bool {
        let d = self.dir.clone();
        let used = tokio::task::spawn_blocking(move || usage(&d))
            .await
            .unwrap_or(0);
        if used > self.limit {
            self.seen.store(used, Ordering::Relaxed);
        }
        used > self.limit
    }

    /// The size that crossed the limit, when one did.
    pub fn seen(&self) -> Option<u64> {
        Some(self.seen.load(Ordering::Relaxed)).filter(|s| *s > 0)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
