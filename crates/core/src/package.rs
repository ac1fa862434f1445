//! Turns an app folder into the `.tar.gz` artifact a version is made of.
//!
//! Packing is deterministic (sorted entries, zeroed times and owners, fixed
//! modes, no gzip timestamp) so the same sources always give the same
//! SHA-256: deploys of unchanged code can be recognised and skipped, and a
//! hash identifies content rather than the moment it was packed. Selection is
//! refused outright when it would pull in anything outside the app folder.

use crate::towerfile::{self, Towerfile};
use flate2::{Compression, GzBuilder};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

/// One file of the artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive, `/`-separated, relative.
    pub archive_path: String,
    /// File on disk the content is read from (symlinks are packed as the file they name).
    pub source: PathBuf,
}

/// What [`pack`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackInfo {
    /// Hex SHA-256 of the compressed archive, as the server computes it.
    pub sha256: String,
    /// Bytes of the compressed archive.
    pub size: u64,
    /// Number of files packed.
    pub files: usize,
}

/// Why an app folder could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("[app].source pattern {pattern:?} is invalid: {message}")]
    BadPattern { pattern: String, message: String },
    #[error("[app].source pattern {0:?} points outside the app folder (absolute or with '..'); refusing it")]
    PatternOutside(String),
    #[error("{path} is a symlink to {target}, which is outside {root}; refusing to pack it")]
    LinkOutside {
        path: String,
        target: PathBuf,
        root: PathBuf,
    },
    #[error("no Towerfile in {0}")]
    MissingTowerfile(PathBuf),
    #[error("[app].script {0:?} does not exist in the app folder")]
    MissingScript(String),
    #[error("[app].import_paths {path:?}: {message}")]
    ImportPath { path: String, message: String },
    #[error("{0:?} is both an app file and part of an import path")]
    Collision(String),
    #[error("file name {0:?} is not valid UTF-8")]
    NonUtf8(PathBuf),
}

/// Folder and file names never packed: VCS data, caches, virtualenvs and
/// MiniTower's own local state.
const EXCLUDED_NAMES: &[&str] = &[".git", "__pycache__", ".venv", ".minitower"];

/// Entries walked under a symlinked folder outside the app before giving up
/// the search for selected files (a link to `/` must not hang a deploy).
const OUTSIDE_PROBE_LIMIT: usize = 10_000;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PackageError + '_ {
    move |source| PackageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether a file or folder name is left out of every artifact.
pub fn is_excluded(name: &str) -> bool {
    EXCLUDED_NAMES.contains(&name) || name.ends_with(".pyc")
}

/// Which files of the app folder `[app].source` selects.
struct Selector {
    globs: Option<GlobSet>,
}

impl Selector {
    fn new(patterns: &[String]) -> Result<Selector, PackageError> {
        if patterns.is_empty() {
            return Ok(Selector { globs: None });
        }
        let mut b = GlobSetBuilder::new();
        for raw in patterns {
            let pat = raw.trim();
            let pat = pat.strip_prefix("./").unwrap_or(pat);
            let escapes = pat.starts_with('/')
                || pat.starts_with('\\')
                || Path::new(pat).is_absolute()
                || pat.split(['/', '\\']).any(|c| c == "..");
            if escapes {
                return Err(PackageError::PatternOutside(raw.clone()));
            }
            let glob = GlobBuilder::new(pat.trim_end_matches('/'))
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| PackageError::BadPattern {
                    pattern: raw.clone(),
                    message: e.kind().to_string(),
                })?;
            b.add(glob);
        }
        let set = b.build().map_err(|e| PackageError::BadPattern {
            pattern: patterns.join(", "),
            message: e.to_string(),
        })?;
        Ok(Selector { globs: Some(set) })
    }

    /// A file is selected when a pattern matches it or one of its folders
    /// (so `lib` means everything under `lib/`).
    fn selects(&self, rel: &str) -> bool {
        let Some(set) = &self.globs else {
            return true;
        };
        let mut path = rel;
        loop {
            if set.is_match(path) {
                return true;
            }
            match path.rfind('/') {
                Some(i) => path = &path[..i],
                None => return false,
            }
        }
    }
}

/// One tree being walked: its canonical root (for containment checks) and
/// the archive prefix its files get.
struct Tree<'a> {
    root: &'a Path,
    prefix: &'a str,
    selector: &'a Selector,
}

impl Tree<'_> {
    fn walk(
        &self,
        dir: &Path,
        rel: &str,
        out: &mut BTreeMap<String, PathBuf>,
    ) -> Result<(), PackageError> {
        for (name, path) in sorted_children(dir)? {
            if is_excluded(&name) {
                continue;
            }
            let child_rel = join_rel(rel, &name);
            let archive = format!("{}{}", self.prefix, child_rel);
            let meta = std::fs::symlink_metadata(&path).map_err(io_err(&path))?;
            let ft = meta.file_type();
            if ft.is_dir() {
                self.walk(&path, &child_rel, out)?;
            } else if ft.is_file() {
                if self.selector.selects(&child_rel) {
                    out.insert(archive, path);
                }
            } else if ft.is_symlink() {
                self.symlink(&path, &child_rel, archive, out)?;
            }
            // Sockets, fifos and devices are never packed.
        }
        Ok(())
    }

    fn symlink(
        &self,
        path: &Path,
        rel: &str,
        archive: String,
        out: &mut BTreeMap<String, PathBuf>,
    ) -> Result<(), PackageError> {
        let target = match path.canonicalize() {
            Ok(t) => t,
            // A dangling link only matters when it is asked for.
            Err(e) if self.selector.selects(rel) => return Err(io_err(path)(e)),
            Err(_) => return Ok(()),
        };
        let inside = target.starts_with(self.root);
        let outside_err = || PackageError::LinkOutside {
            path: archive.clone(),
            target: target.clone(),
            root: self.root.to_path_buf(),
        };
        if target.is_dir() {
            // Inside links are already packed through their real path (and
            // following them could loop); outside ones are refused as soon
            // as anything under them would be selected.
            if !inside
                && (self.selector.selects(rel) || self.outside_selects(&target, rel, &mut 0)?)
            {
                return Err(outside_err());
            }
        } else if self.selector.selects(rel) {
            if !inside {
                return Err(outside_err());
            }
            out.insert(archive, path.to_path_buf());
        }
        Ok(())
    }

    /// Whether any file under an outside folder (seen at `rel`) is selected.
    fn outside_selects(
        &self,
        dir: &Path,
        rel: &str,
        seen: &mut usize,
    ) -> Result<bool, PackageError> {
        for (name, path) in sorted_children(dir)? {
            *seen += 1;
            if *seen > OUTSIDE_PROBE_LIMIT {
                return Ok(false);
            }
            if is_excluded(&name) {
                continue;
            }
            let child_rel = join_rel(rel, &name);
            let ft = std::fs::symlink_metadata(&path)
                .map_err(io_err(&path))?
                .file_type();
            if ft.is_dir() {
                if self.outside_selects(&path, &child_rel, seen)? {
                    return Ok(true);
                }
            } else if self.selector.selects(&child_rel) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn join_rel(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

fn sorted_children(dir: &Path) -> Result<Vec<(String, PathBuf)>, PackageError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| PackageError::NonUtf8(path.clone()))?;
        out.push((name, path));
    }
    out.sort();
    Ok(out)
}

/// Lexically normalised `/` path of a relative path (`./a//b` → `a/b`).
fn normalize_rel(p: &str) -> String {
    Path::new(p)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Lists the files an artifact of `dir` holds, sorted by archive path.
pub fn resolve(dir: &Path, tf: &Towerfile) -> Result<Vec<Entry>, PackageError> {
    let root = dir.canonicalize().map_err(io_err(dir))?;
    let selector = Selector::new(&tf.app.source)?;
    let mut files = BTreeMap::new();
    Tree {
        root: &root,
        prefix: "",
        selector: &selector,
    }
    .walk(&root, "", &mut files)?;

    // The manifest and the entrypoint go in whatever the globs say.
    // Only an archive script must be in the folder: a command, a shell
    // line, a git checkout or a binary bring their own program.
    let mut required = vec![(
        towerfile::FILE_NAME.to_string(),
        PackageError::MissingTowerfile(dir.to_path_buf()),
    )];
    if let Some(path) = tf.app.job.script_in_archive() {
        if !towerfile::is_safe_relative(path) {
            return Err(PackageError::MissingScript(path.to_string()));
        }
        required.push((
            normalize_rel(path),
            PackageError::MissingScript(path.to_string()),
        ));
    }
    for (rel, missing) in required {
        let path = root.join(&rel);
        let target = match path.canonicalize() {
            Ok(t) if t.is_file() => t,
            _ => return Err(missing),
        };
        if !target.starts_with(&root) {
            return Err(PackageError::LinkOutside {
                path: rel,
                target,
                root: root.clone(),
            });
        }
        files.insert(rel, path);
    }

    let all = Selector { globs: None };
    for ip in &tf.app.import_paths {
        let bad = |message: String| PackageError::ImportPath {
            path: ip.clone(),
            message,
        };
        let base =
            towerfile::import_basename(ip).ok_or_else(|| bad("must name a folder".into()))?;
        let ip_root = root
            .join(ip)
            .canonicalize()
            .map_err(|e| bad(format!("{e}")))?;
        if !ip_root.is_dir() {
            return Err(bad("is not a folder".into()));
        }
        let prefix = format!("{}/{}/", towerfile::MODULES_DIR, base);
        if let Some(clash) = files.keys().find(|k| k.starts_with(&prefix)) {
            return Err(PackageError::Collision(clash.clone()));
        }
        Tree {
            root: &ip_root,
            prefix: &prefix,
            selector: &all,
        }
        .walk(&ip_root, "", &mut files)?;
    }

    Ok(files
        .into_iter()
        .map(|(archive_path, source)| Entry {
            archive_path,
            source,
        })
        .collect())
}

/// Counts and hashes what goes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    false
}

/// Writes the deterministic `.tar.gz` of `dir` to `out`.
pub fn pack(dir: &Path, tf: &Towerfile, out: impl Write) -> Result<PackInfo, PackageError> {
    let entries = resolve(dir, tf)?;
    pack_entries(&entries, out)
}

/// Writes an archive of already resolved entries (lets callers show the
/// file list before packing).
pub fn pack_entries(entries: &[Entry], out: impl Write) -> Result<PackInfo, PackageError> {
    let hashing = HashingWriter {
        inner: out,
        hasher: Sha256::new(),
        size: 0,
    };
    // No file name, mtime 0: the gzip header carries nothing time-dependent.
    let gz = GzBuilder::new()
        .mtime(0)
        .write(hashing, Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(true);
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.archive_path.cmp(&b.archive_path));
    for e in &sorted {
        let file = std::fs::File::open(&e.source).map_err(io_err(&e.source))?;
        let meta = file.metadata().map_err(io_err(&e.source))?;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(meta.len());
        header.set_mode(if is_executable(&meta) { 0o755 } else { 0o644 });
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header
            .set_username("")
            .and_then(|_| header.set_groupname(""))
            .map_err(io_err(&e.source))?;
        // `take` guards against a file growing while it is packed.
        tar.append_data(
            &mut header,
            &e.archive_path,
            io::Read::take(file, meta.len()),
        )
        .map_err(io_err(&e.source))?;
    }
    let gz = tar.into_inner().map_err(io_err(Path::new("archive")))?;
    let mut hashing = gz.finish().map_err(io_err(Path::new("archive")))?;
    hashing.flush().map_err(io_err(Path::new("archive")))?;
    Ok(PackInfo {
        sha256: hex::encode(hashing.hasher.finalize()),
        size: hashing.size,
        files: sorted.len(),
    })
}

/// Hex SHA-256 of a byte stream, the way artifacts are identified.
pub fn sha256_hex(mut r: impl io::Read) -> io::Result<String> {
    let mut h = Sha256::new();
    io::copy(&mut r, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests;
