//! Safety checks for uploaded `.tar.gz` artifacts.
//!
//! The server inspects every upload before recording it, and the runner
//! applies the same rules while unpacking, so an archive that could write
//! outside its workspace (absolute paths, `..`, escaping links, devices) or
//! bomb the disk never gets past either side.

use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Bounds on what an archive may unpack to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Sum of the sizes of all files once unpacked.
    pub max_unpacked_bytes: u64,
    /// Number of entries of any kind.
    pub max_entries: u64,
}

impl Limits {
    /// The unpacked size is capped at this multiple of the compressed limit.
    pub const UNPACKED_FACTOR: u64 = 10;

    /// Limits derived from the configured compressed artifact size.
    pub fn for_artifact_size(max_artifact_bytes: u64) -> Limits {
        Limits {
            max_unpacked_bytes: max_artifact_bytes.saturating_mul(Self::UNPACKED_FACTOR),
            max_entries: 100_000,
        }
    }
}

/// What an accepted archive holds.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Relative paths (with `/`) of regular files, links included.
    pub files: Vec<String>,
    /// Contents of a top-level `Towerfile`, when there is one.
    pub towerfile: Option<String>,
    /// Total bytes of file content.
    pub unpacked_bytes: u64,
}

impl Summary {
    /// Whether a file with this relative path is in the archive.
    pub fn contains(&self, path: &str) -> bool {
        let want = normalize_str(path);
        self.files.contains(&want)
    }
}

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("artifact is not a gzip-compressed tar archive: {0}")]
    Corrupt(String),
    #[error("archive entry {0:?} has an absolute path or leaves the archive with '..'")]
    UnsafePath(String),
    #[error("archive link {0:?} points outside the archive")]
    UnsafeLink(String),
    #[error("archive entry {0:?} is a device, fifo or other unsupported kind")]
    Unsupported(String),
    #[error("archive unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("archive has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Largest Towerfile read into memory.
const MAX_TOWERFILE_BYTES: u64 = 1 << 20;

/// Validates an archive without writing anything.
pub fn inspect<R: Read>(reader: R, limits: Limits) -> Result<Summary, ArchiveError> {
    walk(reader, limits, None)
}

/// Validates and unpacks an archive into `dest` (which must exist).
/// On error `dest` may hold a partial tree; callers remove it.
pub fn unpack<R: Read>(reader: R, dest: &Path, limits: Limits) -> Result<Summary, ArchiveError> {
    walk(reader, limits, Some(dest))
}

fn walk<R: Read>(reader: R, limits: Limits, dest: Option<&Path>) -> Result<Summary, ArchiveError> {
    let mut archive = tar::Archive::new(GzDecoder::new(reader));
    archive.set_preserve_permissions(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let mut summary = Summary::default();
    let mut entries_seen = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
        entries_seen += 1;
        if entries_seen > limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let raw_path = entry
            .path()
            .map_err(|e| ArchiveError::Corrupt(e.to_string()))?
            .into_owned();
        let display = raw_path.to_string_lossy().into_owned();
        let rel =
            safe_relative(&raw_path).ok_or_else(|| ArchiveError::UnsafePath(display.clone()))?;
        let kind = entry.header().entry_type();
        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => {
                let size = entry
                    .header()
                    .size()
                    .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
                summary.unpacked_bytes = summary.unpacked_bytes.saturating_add(size);
                if summary.unpacked_bytes > limits.max_unpacked_bytes {
                    return Err(ArchiveError::TooLarge {
                        limit: limits.max_unpacked_bytes,
                    });
                }
                if rel.as_os_str().is_empty() {
                    return Err(ArchiveError::UnsafePath(display));
                }
                let name = to_slash(&rel);
                if name == "Towerfile" && size <= MAX_TOWERFILE_BYTES && dest.is_none() {
                    let mut text = String::new();
                    entry
                        .read_to_string(&mut text)
                        .map_err(|e| ArchiveError::Corrupt(format!("Towerfile: {e}")))?;
                    summary.towerfile = Some(text);
                    summary.files.push(name);
                    continue;
                }
                summary.files.push(name);
            }
            T::Directory => {}
            T::Symlink | T::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| ArchiveError::Corrupt(e.to_string()))?
                    .ok_or_else(|| ArchiveError::UnsafeLink(display.clone()))?
                    .into_owned();
                let resolved = if kind == T::Symlink {
                    if target.is_absolute() {
                        return Err(ArchiveError::UnsafeLink(display));
                    }
                    rel.parent().unwrap_or(Path::new("")).join(&target)
                } else {
                    target.clone()
                };
                if normalize(&resolved).is_none() {
                    return Err(ArchiveError::UnsafeLink(display));
                }
                summary.files.push(to_slash(&rel));
            }
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            _ => return Err(ArchiveError::Unsupported(display)),
        }
        if let Some(dest) = dest {
            entry.unpack_in(dest).map_err(|e| ArchiveError::Io {
                path: display.clone(),
                source: e,
            })?;
            if summary.files.last().map(String::as_str) == Some("Towerfile")
                && summary.towerfile.is_none()
            {
                summary.towerfile = std::fs::read_to_string(dest.join("Towerfile")).ok();
            }
        }
    }
    Ok(summary)
}

/// A path relative to the archive root with `.` removed, or `None` when it is
/// absolute or climbs out with `..`.
fn safe_relative(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Lexically resolves `..` inside the archive; `None` when it would leave the root.
fn normalize(p: &Path) -> Option<PathBuf> {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out.iter().collect())
}

fn normalize_str(p: &str) -> String {
    normalize(Path::new(p))
        .map(|p| to_slash(&p))
        .unwrap_or_default()
}

fn to_slash(p: &Path) -> String {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests;
