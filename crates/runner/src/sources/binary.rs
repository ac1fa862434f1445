//! The binary cache: files downloaded by URL, named by their SHA-256 and
//! checked against it before every use (see the design note in
//! `sources.rs`).

use super::{display_url, open_dir, tmp_owner, tmp_path, SetupLog};
use crate::cache_gc::{self, Collected};
use crate::error::SetupError;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Largest binary downloaded.
pub const MAX_BINARY_BYTES: u64 = 1 << 30;
/// Longest the server may keep a download waiting for its next bytes.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

type Pins = Arc<Mutex<HashMap<String, usize>>>;

pub struct BinaryCache {
    dir: PathBuf,
    http: reqwest::Client,
    max_bytes: u64,
    /// One download per hash in this process; the others wait, then hit.
    downloads: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Binaries attempts of this process are using (kept by the collector).
    pins: Pins,
}

/// A verified binary, kept by the collector while this lives.
#[derive(Debug)]
pub struct CachedBinary {
    /// The executable file.
    pub path: PathBuf,
    /// Whether it was downloaded now (false: the cache had it).
    pub downloaded: bool,
    sha: String,
    pins: Pins,
}

impl Drop for CachedBinary {
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

impl BinaryCache {
    pub fn open(dir: PathBuf) -> std::io::Result<BinaryCache> {
        // Runs may execute the binaries (under user isolation they run as
        // other users), not list or change them.
        open_dir(&dir, 0o711)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(BinaryCache {
            dir,
            http,
            max_bytes: MAX_BINARY_BYTES,
            downloads: Default::default(),
            pins: Arc::default(),
        })
    }

    /// The binary `sha256` of `url`: the cached file when it still hashes to
    /// its name, else a fresh download that does.
    pub async fn get(
        &self,
        url: &str,
        sha256: &str,
        log: &SetupLog<'_>,
    ) -> Result<CachedBinary, SetupError> {
        let sha = sha256.to_ascii_lowercase();
        if minitower_core::job::check_sha256(&sha).is_err() {
            return Err(SetupError::BinaryDownload(format!(
                "the lease names an invalid sha256 {sha256:?}"
            )));
        }
        let path = self.dir.join(&sha);
        let mut pinned = self.pin(&sha, path.clone());
        let lock = {
            let mut map = self.downloads.lock().await;
            map.entry(sha.clone()).or_default().clone()
        };
        let _one = lock.lock().await;
        if path.exists() {
            match hash_file(&path).await {
                Ok(actual) if actual == sha => {
                    cache_gc::touch(&path);
                    return Ok(pinned);
                }
                other => {
                    let got = other.unwrap_or_else(|e| format!("unreadable ({e})"));
                    tracing::warn!(path = %path.display(), %got, "cached binary does not match its hash; downloading it again");
                    log.line(&format!(
                        "binary: the cached {sha} no longer matches its hash (got {got}); downloading it again"
                    ));
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let shown = log.mask(&display_url(url));
        let size = self.download(url, &sha, &path).await.map_err(|e| match e {
            SetupError::BinaryDownload(m) => {
                SetupError::BinaryDownload(log.mask(&format!("{shown}: {m}")))
            }
            other => other,
        })?;
        log.line(&format!(
            "binary: downloaded {shown} ({size} bytes, sha256 {sha})"
        ));
        pinned.downloaded = true;
        Ok(pinned)
    }

    fn pin(&self, sha: &str, path: PathBuf) -> CachedBinary {
        *self
            .pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(sha.to_string())
            .or_insert(0) += 1;
        CachedBinary {
            path,
            downloaded: false,
            sha: sha.to_string(),
            pins: self.pins.clone(),
        }
    }

    /// Streams `url` into a scratch file while hashing and counting, and
    /// renames it to `dest` (mode 0755) only when it hashes to `sha`.
    async fn download(&self, url: &str, sha: &str, dest: &Path) -> Result<u64, SetupError> {
        let fail = |m: String| SetupError::BinaryDownload(m);
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| fail(without_url(e)))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        if resp.content_length().is_some_and(|n| n > self.max_bytes) {
            return Err(too_large(self.max_bytes));
        }
        let tmp = tmp_path(&self.dir);
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            let mut body = resp.bytes_stream();
            loop {
                let chunk = tokio::time::timeout(STALL_TIMEOUT, body.next())
                    .await
                    .map_err(|_| {
                        fail(format!(
                            "no data for {} s; download abandoned",
                            STALL_TIMEOUT.as_secs()
                        ))
                    })?;
                let Some(chunk) = chunk else { break };
                let chunk = chunk.map_err(|e| fail(without_url(e)))?;
                size += chunk.len() as u64;
                if size > self.max_bytes {
                    return Err(too_large(self.max_bytes));
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await?;
            }
            let actual = hex::encode(hasher.finalize());
            if actual != sha {
                return Err(SetupError::BinaryMismatch {
                    expected: sha.to_string(),
                    actual,
                });
            }
            file.sync_all().await?;
            drop(file);
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
            std::fs::rename(&tmp, dest)?;
            Ok(size)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Removes binaries unused for `max_age`, never one an attempt of this
    /// process holds, nor a download in progress in a live process.
    pub fn collect_unused(&self, max_age: Duration) -> Collected {
        let pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        cache_gc::collect(&self.dir, max_age, std::time::SystemTime::now(), |path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            match tmp_owner(&name) {
                Some(pid) => crate::workspace::pid_alive(pid),
                None => pins.contains_key(name.as_ref()),
            }
        })
    }
}

fn too_large(max: u64) -> SetupError {
    SetupError::BinaryDownload(format!(
        "the binary is larger than the {} MiB a runner downloads",
        max >> 20
    ))
}

/// A transfer error without the URL reqwest puts in it (the caller names
/// the URL, without its query).
fn without_url(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The SHA-256 of a file, hex.
async fn hash_file(path: &Path) -> std::io::Result<String> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&p)?;
        let mut h = Sha256::new();
        std::io::copy(&mut f, &mut h)?;
        Ok(hex::encode(h.finalize()))
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
#[path = "binary_tests.rs"]
mod tests;
