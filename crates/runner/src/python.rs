//! Finding the Python interpreter and uv once, at start.
//!
//! `python3` may be a pyenv shim that costs tens of milliseconds per call, so
//! the real executable is asked for once and used directly from then on.

use crate::RunnerError;
use std::path::{Path, PathBuf};

/// The resolved base interpreter.
#[derive(Debug, Clone)]
pub struct Interpreter {
    /// Real path of the executable (`sys.executable`), never a shim.
    pub executable: PathBuf,
    /// `major.minor.micro`, part of every environment's cache key.
    pub version: String,
}

impl Interpreter {
    /// Runs `bin` once to learn its real path and version.
    pub async fn resolve(bin: &str) -> Result<Interpreter, RunnerError> {
        let err = |message: String| RunnerError::Python {
            bin: bin.to_string(),
            message,
        };
        let out = tokio::process::Command::new(bin)
            .args([
                "-c",
                "import sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3])",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| err(format!("cannot run it: {e} (set MINITOWER_PYTHON_BIN)")))?;
        if !out.status.success() {
            return Err(err(format!(
                "exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let executable = lines.next().unwrap_or("").trim();
        let version = lines.next().unwrap_or("").trim();
        if executable.is_empty() || version.is_empty() {
            return Err(err("did not report sys.executable".into()));
        }
        if !version.starts_with('3') {
            return Err(err(format!("Python 3 is required, found {version}")));
        }
        Ok(Interpreter {
            executable: PathBuf::from(executable),
            version: version.to_string(),
        })
    }
}

/// The uv binary to use: the configured one, else `uv` on PATH, else none (pip).
pub fn find_uv(configured: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = configured {
        return Some(p.to_path_buf());
    }
    find_on_path("uv")
}

/// First executable named `name` in the directories of PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_the_real_interpreter() {
        let i = Interpreter::resolve("python3").await.unwrap();
        assert!(i.executable.is_absolute());
        assert!(!i.executable.to_string_lossy().contains("shims"));
        assert!(i.version.starts_with("3."));
        let e = Interpreter::resolve("/nonexistent/python")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/python"));
    }
}
