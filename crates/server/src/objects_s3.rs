//! Artifacts in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, ...), so
//! that every replica behind a load balancer serves every artifact.
//!
//! Same contract and key layout as the local directory
//! (`<prefix>/sha256/<2 hex>/<hex>`): uploads are still spooled and hashed
//! locally first (the route does that), then streamed to the bucket — one
//! PUT for small files, a multipart upload in fixed-size parts otherwise —
//! with an `x-amz-checksum-sha256` the bucket verifies. A PUT only becomes
//! visible once complete, so no reader ever sees half an artifact, and two
//! replicas committing the same content write the same bytes. Downloads
//! stream the object body straight through.

use crate::config::ServerConfig;
use crate::objects::{is_sha256, ByteStream, LocalObjects, Objects, StoredObject, REFRESH_AFTER};
use crate::StartupError;
use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, Checksum};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::io::AsyncReadExt;

/// Files up to this size go up in one PUT; larger ones in parts of this
/// size (S3 wants parts of at least 5 MiB).
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded at once per artifact.
const PARTS_IN_FLIGHT: usize = 4;
/// Read size while streaming a spool file.
const READ_CHUNK: usize = 1024 * 1024;

/// The artifact store the configuration names: the bucket of
/// `MINITOWER_OBJECTS_URL` (credentials and endpoint from the usual `AWS_*`
/// variables), else the local `MINITOWER_OBJECTS_DIR`.
pub fn open_objects(config: &ServerConfig) -> Result<Arc<dyn Objects>, StartupError> {
    let io_err = |what: String| {
        move |source| StartupError::Io {
            context: what,
            source,
        }
    };
    match config.objects_url.as_deref().filter(|u| !u.is_empty()) {
        Some(url) => Ok(Arc::new(
            S3Objects::from_env(url, &config.objects_dir)
                .map_err(io_err(format!("cannot use MINITOWER_OBJECTS_URL {url}")))?,
        )),
        None => Ok(Arc::new(LocalObjects::open(&config.objects_dir).map_err(
            io_err(format!(
                "cannot open MINITOWER_OBJECTS_DIR {}",
                config.objects_dir.display()
            )),
        )?)),
    }
}

/// Objects in a bucket under a key prefix.
pub struct S3Objects {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    spool: PathBuf,
    part_size: usize,
}

/// Splits `s3://bucket/some/prefix` into bucket and prefix.
pub fn parse_url(url: &str) -> io::Result<(String, String)> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| invalid(format!("expected s3://BUCKET[/PREFIX], got {url:?}")))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(invalid(format!("no bucket in {url:?}")));
    }
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl S3Objects {
    /// The bucket of `url`, configured from the process's `AWS_*` variables
    /// (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`, ...).
    /// Spool files go to `<spool_root>/tmp`.
    pub fn from_env(url: &str, spool_root: &Path) -> io::Result<Self> {
        let vars = std::env::vars().filter(|(k, _)| k.starts_with("AWS_"));
        Self::with_options(url, vars, spool_root)
    }

    /// Like [`S3Objects::from_env`] with explicit `aws_*` options (any case).
    pub fn with_options<I, K, V>(url: &str, options: I, spool_root: &Path) -> io::Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let (bucket, prefix) = parse_url(url)?;
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&bucket)
            // the bucket verifies what it stores against this
            .with_checksum_algorithm(Checksum::SHA256);
        for (k, v) in options {
            let key = k.as_ref().to_ascii_lowercase();
            if let Ok(key) = key.parse::<AmazonS3ConfigKey>() {
                b = b.with_config(key, v);
            }
        }
        // An explicit http:// endpoint (MinIO on a private network) is a
        // deliberate choice; object_store would otherwise refuse it.
        if b.get_config_value(&AmazonS3ConfigKey::Endpoint)
            .is_some_and(|e| e.starts_with("http://"))
        {
            b = b.with_allow_http(true);
        }
        let store = b.build().map_err(|e| invalid(e.to_string()))?;
        Self::new(Arc::new(store), &prefix, spool_root)
    }

    /// Objects in any [`ObjectStore`] under `prefix`; opens (creating and
    /// clearing) the spool directory `<spool_root>/tmp`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, spool_root: &Path) -> io::Result<Self> {
        let spool = spool_root.join("tmp");
        if spool.exists() {
            std::fs::remove_dir_all(&spool)?;
        }
        std::fs::create_dir_all(&spool)?;
        Ok(S3Objects {
            store,
            prefix: prefix.trim_matches('/').to_string(),
            spool,
            part_size: DEFAULT_PART_SIZE,
        })
    }

    /// Sets the single-PUT limit and multipart part size (tests use small
    /// ones; S3 itself needs at least 5 MiB).
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(1);
        self
    }

    /// The key of an object: `<prefix>/sha256/<2 hex>/<hex>`.
    pub fn key(&self, sha256: &str) -> io::Result<ObjectPath> {
        if !is_sha256(sha256) {
            return Err(invalid("not a sha256 hex digest".into()));
        }
        let key = format!("sha256/{}/{sha256}", &sha256[..2]);
        Ok(if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        })
    }

    /// `<prefix>/sha256`, under which every object lives.
    fn objects_root(&self) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from("sha256")
        } else {
            ObjectPath::from(format!("{}/sha256", self.prefix))
        }
    }

    /// Streams a file to `key` in parts, aborting the upload on failure so
    /// the bucket keeps no orphaned parts.
    async fn upload_parts(&self, file: &mut tokio::fs::File, key: &ObjectPath) -> io::Result<()> {
        let upload = self.store.put_multipart(key).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut buf = vec![0u8; READ_CHUNK];
        let streamed: io::Result<()> = async {
            loop {
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                writer.write(&buf[..n]);
            }
        }
        .await;
        match streamed {
            Ok(()) => writer.finish().await.map(|_| ()).map_err(io::Error::from),
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }
}

#[async_trait]
impl Objects for S3Objects {
    fn spool_dir(&self) -> &Path {
        &self.spool
    }

    async fn commit(&self, spool: &Path, sha256: &str) -> io::Result<()> {
        let key = self.key(sha256)?;
        // Stored and recent enough: nothing to do. Stored long ago: put
        // again, so the collector sees it as committed now.
        let fresh_since = SystemTime::now() - REFRESH_AFTER;
        let fresh = match self.store.head(&key).await {
            Ok(meta) => SystemTime::from(meta.last_modified) >= fresh_since,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        if !fresh {
            let mut file = tokio::fs::File::open(spool).await?;
            let size = file.metadata().await?.len();
            if size <= self.part_size as u64 {
                let mut body = Vec::with_capacity(size as usize);
                file.read_to_end(&mut body).await?;
                self.store.put(&key, PutPayload::from(body)).await?;
            } else {
                self.upload_parts(&mut file, &key).await?;
            }
        }
        tokio::fs::remove_file(spool).await
    }

    async fn open(&self, sha256: &str) -> io::Result<Option<(ByteStream, u64)>> {
        let key = self.key(sha256)?;
        let got = match self.store.get(&key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let size = got.meta.size;
        let body = got.into_stream().map_err(io::Error::from);
        Ok(Some((Box::pin(body), size)))
    }

    async fn list_before(&self, before: SystemTime) -> io::Result<Vec<StoredObject>> {
        let root = self.objects_root();
        let mut listing = self.store.list(Some(&root));
        let mut out = Vec::new();
        while let Some(meta) = listing.try_next().await? {
            let Some(sha256) = sha_of(&root, &meta.location) else {
                continue; // not an object of ours
            };
            let committed = SystemTime::from(meta.last_modified);
            if committed < before {
                out.push(StoredObject {
                    sha256,
                    size: meta.size,
                    committed,
                });
            }
        }
        Ok(out)
    }

    /// Checks the time again just before deleting. A bucket has no
    /// compare-and-delete, so a commit landing between that check and the
    /// delete (a request's length) could still lose its object: only one
    /// that refreshed an object older than the grace period, i.e. content
    /// re-uploaded after its first upload failed and was left over.
    async fn delete_if_before(&self, sha256: &str, before: SystemTime) -> io::Result<bool> {
        let key = self.key(sha256)?;
        match self.store.head(&key).await {
            Ok(meta) if SystemTime::from(meta.last_modified) < before => {}
            Ok(_) | Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        match self.store.delete(&key).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// The hash a listed key names, when it is `<root>/<2 hex>/<hex>`.
fn sha_of(root: &ObjectPath, location: &ObjectPath) -> Option<String> {
    let mut parts = location.prefix_match(root)?;
    let shard = parts.next()?;
    let name = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let (shard, name) = (shard.as_ref(), name.as_ref());
    (is_sha256(name) && shard.len() == 2 && name.starts_with(shard)).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_and_prefix() {
        let p = |u| parse_url(u).unwrap();
        assert_eq!(p("s3://b"), ("b".into(), "".into()));
        assert_eq!(p("s3://b/"), ("b".into(), "".into()));
        assert_eq!(p("s3://b/x/y/"), ("b".into(), "x/y".into()));
        assert!(parse_url("s3:///x").is_err());
        assert!(parse_url("https://b/x").is_err());
    }

    #[test]
    fn listed_keys_name_their_hash() {
        let sha = format!("ab{}", "c".repeat(62));
        let root = ObjectPath::from("pre/sha256");
        let at = |k: &str| sha_of(&root, &ObjectPath::from(k));
        assert_eq!(at(&format!("pre/sha256/ab/{sha}")), Some(sha.clone()));
        assert_eq!(at(&format!("pre/sha256/cd/{sha}")), None, "wrong shard");
        assert_eq!(at("pre/sha256/ab/notahash"), None);
        assert_eq!(at(&format!("pre/sha256/ab/{sha}/x")), None);
        assert_eq!(at(&format!("other/sha256/ab/{sha}")), None);
    }
}
