//! Artifact storage, content-addressed by SHA-256.
//!
//! Uploads are spooled to a temp file (hashed while streaming), fsynced, then
//! renamed into place, so a crash never leaves a half-written object that a
//! version points to, and identical uploads are stored once.
//!
//! The artifact collector (`retention.rs`) deletes objects no version
//! references once they are older than a grace period. An object is
//! committed before its version row, so its time is when it was last
//! committed: committing content that is already stored refreshes it, and
//! [`Objects::delete_if_before`] checks it again at the moment of deleting.

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// A streamed object body.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Where artifacts live. The local directory is the default; other backends
/// (S3) implement the same contract.
#[async_trait]
pub trait Objects: Send + Sync + 'static {
    /// Directory for spooling uploads before they are committed.
    fn spool_dir(&self) -> &Path;
    /// Commits a complete, fsynced spool file as the object `sha256`. The
    /// spool file is consumed. Committing an existing object stores nothing
    /// new but makes it count as committed now (at least within
    /// [`REFRESH_AFTER`]), so the collector leaves it to the version that
    /// is about to reference it.
    async fn commit(&self, spool: &Path, sha256: &str) -> io::Result<()>;
    /// Opens an object for streaming: body and size, or `None` if missing.
    async fn open(&self, sha256: &str) -> io::Result<Option<(ByteStream, u64)>>;
    /// Objects last committed before `before`: the collector's candidates.
    async fn list_before(&self, before: SystemTime) -> io::Result<Vec<StoredObject>>;
    /// Deletes the object unless it was committed at or after `before`
    /// (checked at the moment of deleting); `true` when it was deleted.
    async fn delete_if_before(&self, sha256: &str, before: SystemTime) -> io::Result<bool>;
}

/// An object as the collector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub sha256: String,
    pub size: u64,
    /// When it was last committed.
    pub committed: SystemTime,
}

/// A commit of content already stored refreshes the object's time when it
/// is older than this (locally always: it costs a rename; in a bucket it
/// costs the upload again). The collector's grace period must be well
/// above it (`MINITOWER_ARTIFACT_GC_GRACE` is at least twice this).
pub const REFRESH_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// Whether `s` is a lowercase or uppercase SHA-256 hex digest.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Objects in a local directory: `<root>/sha256/<2 hex>/<hex>`.
pub struct LocalObjects {
    root: PathBuf,
    spool: PathBuf,
}

impl LocalObjects {
    /// Opens (creating) the directory and clears spool files left by a crash.
    pub fn open(root: &Path) -> io::Result<Self> {
        let spool = root.join("tmp");
        std::fs::create_dir_all(root.join("sha256"))?;
        if spool.exists() {
            std::fs::remove_dir_all(&spool)?;
        }
        std::fs::create_dir_all(&spool)?;
        Ok(LocalObjects {
            root: root.to_path_buf(),
            spool,
        })
    }

    fn path_of(&self, sha256: &str) -> io::Result<PathBuf> {
        if !is_sha256(sha256) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a sha256 hex digest",
            ));
        }
        Ok(self.root.join("sha256").join(&sha256[..2]).join(sha256))
    }
}

#[async_trait]
impl Objects for LocalObjects {
    fn spool_dir(&self) -> &Path {
        &self.spool
    }

    async fn commit(&self, spool: &Path, sha256: &str) -> io::Result<()> {
        let dest = self.path_of(sha256)?;
        let spool = spool.to_path_buf();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            // Content already stored is replaced by its identical copy: one
            // atomic rename that also makes it count as committed now. A
            // reader holding the old file keeps reading the same bytes.
            let dir = dest.parent().expect("object path has a parent");
            std::fs::create_dir_all(dir)?;
            std::fs::File::open(&spool)?.sync_all()?;
            std::fs::rename(&spool, &dest)?;
            std::fs::File::open(dir)?.sync_all()?;
            Ok(())
        })
        .await
        .map_err(io::Error::other)?
    }

    async fn open(&self, sha256: &str) -> io::Result<Option<(ByteStream, u64)>> {
        let path = self.path_of(sha256)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let size = file.metadata().await?.len();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
        Ok(Some((Box::pin(stream), size)))
    }

    async fn list_before(&self, before: SystemTime) -> io::Result<Vec<StoredObject>> {
        let root = self.root.join("sha256");
        tokio::task::spawn_blocking(move || list_dir(&root, before))
            .await
            .map_err(io::Error::other)?
    }

    async fn delete_if_before(&self, sha256: &str, before: SystemTime) -> io::Result<bool> {
        let path = self.path_of(sha256)?;
        static N: AtomicU64 = AtomicU64::new(0);
        let trash = self.spool.join(format!(
            "gc-{}-{}-{sha256}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        tokio::task::spawn_blocking(move || delete_local(&path, &trash, before))
            .await
            .map_err(io::Error::other)?
    }
}

/// Objects under `<root>/<2 hex>/<hex>` committed before `before`; other
/// names are not ours and are left out.
fn list_dir(root: &Path, before: SystemTime) -> io::Result<Vec<StoredObject>> {
    let mut out = Vec::new();
    let shards = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for shard in shards {
        let shard = shard?;
        let prefix = shard.file_name().to_string_lossy().into_owned();
        if prefix.len() != 2 || !shard.file_type()?.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(shard.path())? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_sha256(&name) || !name.starts_with(&prefix) {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) if m.is_file() => m,
                // deleted meanwhile, or not a file
                _ => continue,
            };
            let committed = meta.modified()?;
            if committed < before {
                out.push(StoredObject {
                    sha256: name,
                    size: meta.len(),
                    committed,
                });
            }
        }
    }
    Ok(out)
}

/// Moves the object aside, then decides on the moved file's time: a commit
/// that refreshed it before the move (its version row is on its way) puts
/// it back; one after the move finds no object and stores its copy. So an
/// object a commit relies on is never lost, whatever the interleaving.
fn delete_local(path: &Path, trash: &Path, before: SystemTime) -> io::Result<bool> {
    match std::fs::rename(path, trash) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    if std::fs::metadata(trash)?.modified()? >= before {
        // If a commit stored a copy meanwhile, this replaces it with the
        // same bytes.
        std::fs::rename(trash, path)?;
        return Ok(false);
    }
    std::fs::remove_file(trash)?;
    Ok(true)
}
