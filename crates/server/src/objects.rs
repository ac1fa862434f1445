//! Artifact storage, content-addressed by SHA-256.
//!
//! Uploads are spooled to a temp file (hashed while streaming), fsynced, then
//! renamed into place, so a crash never leaves a half-written object that a
//! version points to, and identical uploads are stored once.

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;

/// A streamed object body.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Where artifacts live. The local directory is the default; other backends
/// (S3) implement the same contract.
#[async_trait]
pub trait Objects: Send + Sync + 'static {
    /// Directory for spooling uploads before they are committed.
    fn spool_dir(&self) -> &Path;
    /// Commits a complete, fsynced spool file as the object `sha256`. The
    /// spool file is consumed. Committing an existing object is a no-op.
    async fn commit(&self, spool: &Path, sha256: &str) -> io::Result<()>;
    /// Opens an object for streaming: body and size, or `None` if missing.
    async fn open(&self, sha256: &str) -> io::Result<Option<(ByteStream, u64)>>;
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
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
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
            if dest.exists() {
                std::fs::remove_file(&spool)?;
                return Ok(());
            }
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
}
