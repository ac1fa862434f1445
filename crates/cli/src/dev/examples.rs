//! The example apps embedded at build time (see `build.rs`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/examples.rs"));
}

/// Names of the embedded examples (folders holding a Towerfile).
pub fn names() -> Vec<String> {
    let mut names = BTreeSet::new();
    for (path, _) in embedded::FILES {
        if let Some((name, rest)) = path.split_once('/') {
            if rest == "Towerfile" {
                names.insert(name.to_string());
            }
        }
    }
    names.into_iter().collect()
}

/// Writes every example afresh under `dest/<name>/` and returns their folders.
/// Files get the same modes every time so their archives hash the same.
pub fn extract(dest: &Path) -> std::io::Result<Vec<PathBuf>> {
    if dest.exists() {
        std::fs::remove_dir_all(dest)?;
    }
    let names = names();
    for (path, bytes) in embedded::FILES {
        let Some((name, _)) = path.split_once('/') else {
            continue;
        };
        if !names.iter().any(|n| n == name) {
            continue;
        }
        let target = dest.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, bytes)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(names.iter().map(|n| dest.join(n)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_are_embedded() {
        let names = names();
        for want in ["countdown", "hello", "with-deps"] {
            assert!(names.iter().any(|n| n == want), "{names:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let dirs = extract(&dir.path().join("ex")).unwrap();
        assert_eq!(dirs.len(), names.len());
        assert!(dir.path().join("ex/hello/Towerfile").is_file());
        assert!(dir
            .path()
            .join("ex/with-deps/vendor/greeting/pyproject.toml")
            .is_file());
    }
}
