//! Safety checks for uploaded `.tar.gz` artifacts.
//!
//! The server inspects every upload before recording it, and the runner
//! applies the same rules while unpacking, so an archive that could write
//! outside its workspace (absolute paths, `..`, escaping links, devices) or
//! bomb the disk never gets past either side.
//!
//! Reading is bounded in memory and time whatever the input: decompressed
//! bytes are capped as they are read (past the cap the read fails, it never
//! ends the stream quietly), the records the tar crate buffers whole (GNU
//! long names and links, PAX and sparse records) may take at most
//! [`MAX_HEADER_BYTES`] per entry, and every such record counts against the
//! entry and size limits like an entry of its own.

use flate2::read::GzDecoder;
use std::cell::RefCell;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

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
    #[error(
        "archive headers (GNU long names or links, PAX or sparse records) of one entry \
         exceed {limit} bytes"
    )]
    HeadersTooLarge { limit: u64 },
    #[error("archive entry path or link target is longer than {limit} bytes")]
    PathTooLong { limit: usize },
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

/// Most bytes the tar reader may consume to reach one entry: the padding of
/// the entry before, its 512-byte header, and every GNU long-name, long-link,
/// PAX and sparse record in front of or after it. The tar crate reads these
/// records whole into memory, so this is what bounds the memory a hostile
/// archive can make the reader allocate.
pub const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Longest path or link target accepted (Linux's `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;

/// Tar framing (headers, padding, extension records) allowed per entry on
/// top of the file contents when capping the total decompressed stream.
const FRAMING_PER_ENTRY: u64 = 4096;

/// Validates an archive without writing anything.
pub fn inspect<R: Read>(reader: R, limits: Limits) -> Result<Summary, ArchiveError> {
    walk(reader, limits, None)
}

/// Validates and unpacks an archive into `dest` (which must exist).
/// On error `dest` may hold a partial tree; callers remove it.
pub fn unpack<R: Read>(reader: R, dest: &Path, limits: Limits) -> Result<Summary, ArchiveError> {
    walk(reader, limits, Some(dest))
}

/// Which cap the reader hit.
#[derive(Debug, Clone, Copy)]
enum Trip {
    /// The decompressed stream is longer than any accepted archive can be.
    Total(u64),
    /// Reaching one entry took more than [`MAX_HEADER_BYTES`].
    Headers(u64),
}

impl Trip {
    fn error(self) -> ArchiveError {
        match self {
            Trip::Total(limit) => ArchiveError::TooLarge { limit },
            Trip::Headers(limit) => ArchiveError::HeadersTooLarge { limit },
        }
    }
}

/// Counts decompressed bytes as the tar reader pulls them.
#[derive(Debug)]
struct Meter {
    read: u64,
    total_cap: u64,
    /// Set while the tar reader looks for the next entry: where it started.
    window_start: Option<u64>,
    tripped: Option<Trip>,
}

type SharedMeter = Rc<RefCell<Meter>>;

/// A reader that refuses (with an error, never a silent end of stream) to
/// hand out more than the meter allows.
struct Capped<R> {
    inner: R,
    meter: SharedMeter,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut m = self.meter.borrow_mut();
        if let Some(t) = m.tripped {
            return Err(limit_error(t));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let mut room = m.total_cap.saturating_sub(m.read);
        let mut trip = Trip::Total(m.total_cap);
        if let Some(start) = m.window_start {
            let left = start
                .saturating_add(MAX_HEADER_BYTES)
                .saturating_sub(m.read);
            if left < room {
                room = left;
                trip = Trip::Headers(MAX_HEADER_BYTES);
            }
        }
        if room == 0 {
            // At the cap: one more byte means the archive is over it.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            m.tripped = Some(trip);
            return Err(limit_error(trip));
        }
        let want = usize::try_from(room).unwrap_or(usize::MAX).min(buf.len());
        let n = self.inner.read(&mut buf[..want])?;
        m.read += n as u64;
        Ok(n)
    }
}

fn limit_error(t: Trip) -> std::io::Error {
    std::io::Error::other(t.error().to_string())
}

/// Maps a read error to the archive error: a tripped cap wins over however
/// the tar crate wrapped it.
fn fail(meter: &SharedMeter, e: std::io::Error) -> ArchiveError {
    match meter.borrow().tripped {
        Some(t) => t.error(),
        None => ArchiveError::Corrupt(e.to_string()),
    }
}

fn walk<R: Read>(reader: R, limits: Limits, dest: Option<&Path>) -> Result<Summary, ArchiveError> {
    let total_cap = limits
        .max_unpacked_bytes
        .saturating_add(limits.max_entries.saturating_mul(FRAMING_PER_ENTRY))
        .saturating_add(MAX_HEADER_BYTES);
    let meter: SharedMeter = Rc::new(RefCell::new(Meter {
        read: 0,
        total_cap,
        window_start: None,
        tripped: None,
    }));
    let capped = Capped {
        inner: GzDecoder::new(reader),
        meter: meter.clone(),
    };
    let mut archive = tar::Archive::new(capped);
    archive.set_preserve_permissions(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let mut summary = Summary::default();
    let mut entries_seen = 0u64;
    // File contents plus extension records, against `max_unpacked_bytes`.
    let mut counted_bytes = 0u64;
    let mut entries = archive.entries().map_err(|e| fail(&meter, e))?;
    loop {
        {
            let mut m = meter.borrow_mut();
            m.window_start = Some(m.read);
        }
        let next = entries.next();
        let window = {
            let mut m = meter.borrow_mut();
            let start = m.window_start.take().unwrap_or(m.read);
            m.read - start
        };
        let Some(entry) = next else { break };
        let mut entry = entry.map_err(|e| fail(&meter, e))?;
        // Every GNU long-name/long-link and PAX record in front of this entry
        // counts as an entry of its own, and its bytes count as content.
        entries_seen = entries_seen.saturating_add(1 + extension_records(&mut entry));
        if entries_seen > limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        // Header and padding of a plain entry never exceed 1023 bytes.
        counted_bytes = counted_bytes.saturating_add(window.saturating_sub(1023));
        let size = entry.size().max(entry.header().size().unwrap_or(0));
        counted_bytes = counted_bytes.saturating_add(size);
        if counted_bytes > limits.max_unpacked_bytes {
            return Err(ArchiveError::TooLarge {
                limit: limits.max_unpacked_bytes,
            });
        }
        visit(&mut entry, &meter, dest, &mut summary)?;
        // Read what is left of the entry here, so the next header search
        // only ever reads headers.
        std::io::copy(&mut entry, &mut std::io::sink()).map_err(|e| fail(&meter, e))?;
    }
    // Read to the end of the gzip member (within the cap) so a truncated or
    // damaged stream fails its length and CRC check instead of passing as a
    // shorter archive.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(|e| fail(&meter, e))?;
    Ok(summary)
}

/// GNU long-name, long-link and PAX records that described this entry.
fn extension_records<R: Read>(entry: &mut tar::Entry<'_, R>) -> u64 {
    let mut pax_path = false;
    let mut pax_link = false;
    let mut n = 0;
    if let Ok(Some(pax)) = entry.pax_extensions() {
        n += 1;
        for ext in pax.flatten() {
            match ext.key_bytes() {
                b"path" => pax_path = true,
                b"linkpath" => pax_link = true,
                _ => {}
            }
        }
    }
    if !pax_path && entry.path_bytes() != entry.header().path_bytes() {
        n += 1;
    }
    if !pax_link && entry.link_name_bytes() != entry.header().link_name_bytes() {
        n += 1;
    }
    n
}

/// Checks one entry and records (or unpacks) it.
fn visit<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    meter: &SharedMeter,
    dest: Option<&Path>,
    summary: &mut Summary,
) -> Result<(), ArchiveError> {
    let raw_path = entry.path().map_err(|e| fail(meter, e))?.into_owned();
    let display = raw_path.to_string_lossy().into_owned();
    if raw_path.as_os_str().len() > MAX_PATH_BYTES {
        return Err(ArchiveError::PathTooLong {
            limit: MAX_PATH_BYTES,
        });
    }
    let rel = safe_relative(&raw_path).ok_or_else(|| ArchiveError::UnsafePath(display.clone()))?;
    let kind = entry.header().entry_type();
    use tar::EntryType as T;
    match kind {
        T::Regular | T::Continuous | T::GNUSparse => {
            let size = entry.size();
            summary.unpacked_bytes = summary.unpacked_bytes.saturating_add(size);
            if rel.as_os_str().is_empty() {
                return Err(ArchiveError::UnsafePath(display));
            }
            let name = to_slash(&rel);
            if name == "Towerfile" && size <= MAX_TOWERFILE_BYTES && dest.is_none() {
                let mut text = String::new();
                entry
                    .read_to_string(&mut text)
                    .map_err(|e| match meter.borrow().tripped {
                        Some(t) => t.error(),
                        None => ArchiveError::Corrupt(format!("Towerfile: {e}")),
                    })?;
                summary.towerfile = Some(text);
                summary.files.push(name);
                return Ok(());
            }
            summary.files.push(name);
        }
        T::Directory => {}
        T::Symlink | T::Link => {
            // A link named `.` would replace the archive root itself.
            if rel.as_os_str().is_empty() {
                return Err(ArchiveError::UnsafePath(display));
            }
            let target = entry
                .link_name()
                .map_err(|e| fail(meter, e))?
                .ok_or_else(|| ArchiveError::UnsafeLink(display.clone()))?
                .into_owned();
            if target.as_os_str().len() > MAX_PATH_BYTES {
                return Err(ArchiveError::PathTooLong {
                    limit: MAX_PATH_BYTES,
                });
            }
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
        T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => return Ok(()),
        _ => return Err(ArchiveError::Unsupported(display)),
    }
    if let Some(dest) = dest {
        entry
            .unpack_in(dest)
            .map_err(|e| match meter.borrow().tripped {
                Some(t) => t.error(),
                None => ArchiveError::Io {
                    path: display.clone(),
                    source: e,
                },
            })?;
        if summary.files.last().map(String::as_str) == Some("Towerfile")
            && summary.towerfile.is_none()
        {
            summary.towerfile = std::fs::read_to_string(dest.join("Towerfile")).ok();
        }
    }
    Ok(())
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
mod props;
#[cfg(test)]
mod tests;
