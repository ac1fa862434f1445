//! Cached Python environments.
//!
//! An environment is keyed by a hash of the dependency files, the installer
//! (uv or pip) and the interpreter (path and version), so every app with the
//! same dependencies shares one, built once. Apps without dependencies all
//! use one shared empty environment made at start: no per-run venv at all.
//!
//! Virtualenvs are not relocatable (console scripts carry the absolute path
//! of the venv's Python in their shebang, `activate` hard-codes the path), so
//! building in a temp dir and renaming would break them. Instead an
//! environment is built directly at its final path `envs/<hash>/`, guarded by
//! an exclusive `flock` on `envs/<hash>.lock` (which also serialises runner
//! processes sharing the data dir) plus an in-process mutex; the marker file
//! `.minitower-complete` is written (and fsynced) last. A directory without
//! the marker is a build that died half-way: the next builder deletes it
//! under the lock and starts over, and nobody ever runs in it.
//!
//! Each use touches the environment's directory (its time is not in the
//! manifest), and `collect_unused` removes those not used for the runner's
//! cache max age (see `cache_gc`): never the shared empty one, one being
//! built (its lock is held), or one a live workspace of this process was
//! given; an `ensure` that meets an environment being removed waits for the
//! lock and builds it again.

use crate::error::SetupError;
use crate::logs::LogSink;
use crate::process::{pump_lines, GroupGuard};
use crate::python::Interpreter;
use crate::RunnerError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::process::Command;

const MARKER: &str = ".minitower-complete";
const SETUP: &str = "setup";

/// What an app asks to have installed.
#[derive(Debug, Clone, PartialEq)]
pub enum Deps {
    /// Nothing: the shared empty environment will do.
    None,
    /// A `requirements.txt` with at least one requirement.
    Requirements(String),
    /// `[project].dependencies` of a `pyproject.toml`, with `uv.lock` when present.
    Project {
        pyproject: String,
        deps: Vec<String>,
        lock: Option<String>,
    },
}

/// Reads the dependency files of an unpacked artifact.
pub fn detect(ws: &Path) -> Result<Deps, SetupError> {
    let read = |name: &str| match std::fs::read_to_string(ws.join(name)) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SetupError::EnvBuild(format!("cannot read {name}: {e}"))),
    };
    if let Some(req) = read("requirements.txt")? {
        let has_any = req.lines().any(|l| {
            let l = l.trim();
            !l.is_empty() && !l.starts_with('#')
        });
        return Ok(if has_any {
            Deps::Requirements(req)
        } else {
            Deps::None
        });
    }
    if let Some(pyproject) = read("pyproject.toml")? {
        let doc: toml::Value = toml::from_str(&pyproject)
            .map_err(|e| SetupError::EnvBuild(format!("pyproject.toml is not valid TOML: {e}")))?;
        let deps: Vec<String> = doc
            .get("project")
            .and_then(|p| p.get("dependencies"))
            .and_then(|d| d.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if deps.is_empty() {
            return Ok(Deps::None);
        }
        let lock = read("uv.lock")?;
        return Ok(Deps::Project {
            pyproject,
            deps,
            lock,
        });
    }
    Ok(Deps::None)
}

/// A ready environment.
#[derive(Debug, Clone)]
pub struct PyEnv {
    /// The venv root (`VIRTUAL_ENV`).
    pub dir: PathBuf,
}

impl PyEnv {
    /// Its `bin/` directory (first on the script's PATH).
    pub fn bin(&self) -> PathBuf {
        self.dir.join("bin")
    }
    /// Its interpreter.
    pub fn python(&self) -> PathBuf {
        self.dir.join("bin").join("python")
    }
}

/// All environments of one data dir.
pub struct EnvCache {
    root: PathBuf,
    interp: Interpreter,
    uv: Option<PathBuf>,
    empty: PyEnv,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    base_pip: tokio::sync::OnceCell<bool>,
    users: Mutex<gc::Users>,
}

impl EnvCache {
    /// Opens the cache and makes sure the shared empty environment exists.
    pub async fn open(
        root: PathBuf,
        interp: Interpreter,
        uv: Option<PathBuf>,
    ) -> Result<EnvCache, RunnerError> {
        std::fs::create_dir_all(&root).map_err(|e| RunnerError::io(&root, e))?;
        let empty_key = format!(
            "empty-{}",
            &hash_key(&[
                "empty",
                &interp.executable.to_string_lossy(),
                &interp.version
            ])[..16]
        );
        let mut cache = EnvCache {
            empty: PyEnv {
                dir: root.join(&empty_key),
            },
            root,
            interp,
            uv,
            locks: Mutex::default(),
            base_pip: tokio::sync::OnceCell::new(),
            users: Mutex::default(),
        };
        let sink = LogSink::discard();
        cache.empty = cache
            .get_or_build(&empty_key, &Deps::None, cache.root.as_path(), &sink)
            .await
            .map_err(|e| RunnerError::Python {
                bin: cache.interp.executable.display().to_string(),
                message: format!("cannot create the shared empty environment: {e}"),
            })?;
        Ok(cache)
    }

    /// The shared environment for apps without dependencies.
    pub fn empty(&self) -> &PyEnv {
        &self.empty
    }

    /// Which installer builds environments.
    pub fn installer(&self) -> &'static str {
        if self.uv.is_some() {
            "uv"
        } else {
            "pip"
        }
    }

    /// The environment for `deps`, built (once) when it is not cached yet.
    /// Setup output goes to `sink` on the `setup` stream.
    pub async fn ensure(
        &self,
        deps: &Deps,
        ws: &Path,
        sink: &LogSink,
    ) -> Result<PyEnv, SetupError> {
        if *deps == Deps::None {
            // Shared by every app without dependencies: checked on every
            // use. It is a venv without packages (~15 entries, ~50 µs to
            // walk), checked in place: a blocking thread's hand-over and
            // wake-up cost more than the walk.
            if !manifest_matches(&self.empty.dir) {
                return Err(SetupError::EnvBuild(
                    "the shared empty environment was changed since it was built; the runner rebuilds it at its next start".into(),
                ));
            }
            return Ok(self.empty.clone());
        }
        let key = self.key_for(deps);
        self.get_or_build(&key, deps, ws, sink).await
    }

    fn key_for(&self, deps: &Deps) -> String {
        let exe = self.interp.executable.to_string_lossy();
        let base = [
            "minitower-env-v1",
            self.installer(),
            &exe,
            &self.interp.version,
        ];
        let h = match deps {
            Deps::None => hash_key(&[&base[..], &["none"]].concat()),
            Deps::Requirements(r) => hash_key(&[&base[..], &["requirements", r]].concat()),
            Deps::Project {
                pyproject,
                deps,
                lock,
            } => {
                let joined = deps.join("\n");
                // With uv and a lock, the lock (and the project it locks) decides;
                // otherwise only the dependency list matters.
                match (lock, &self.uv) {
                    (Some(l), Some(_)) => {
                        hash_key(&[&base[..], &["uv.lock", l, pyproject]].concat())
                    }
                    _ => hash_key(&[&base[..], &["project", &joined]].concat()),
                }
            }
        };
        h[..32].to_string()
    }

    async fn get_or_build(
        &self,
        key: &str,
        deps: &Deps,
        ws: &Path,
        sink: &LogSink,
    ) -> Result<PyEnv, SetupError> {
        let env = PyEnv {
            dir: self.root.join(key),
        };
        let short = &key[..key.len().min(12)];
        let fast = self.note_use(key, ws);
        if fast && env.dir.join(MARKER).exists() && verified(&env.dir).await {
            crate::cache_gc::touch(&env.dir);
            sink.send(SETUP, format!("using cached environment {short}"));
            return Ok(env);
        }
        let mutex = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(key.to_string()).or_default().clone()
        };
        let _in_process = mutex.lock().await;
        let lock_path = self.root.join(format!("{key}.lock"));
        let _flock = tokio::task::spawn_blocking(
            move || -> std::io::Result<nix::fcntl::Flock<std::fs::File>> {
                let f = std::fs::File::options()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lock_path)?;
                nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
                    .map_err(|(_, e)| std::io::Error::from(e))
            },
        )
        .await
        .map_err(|e| SetupError::Io(e.to_string()))??;
        let complete = env.dir.join(MARKER).exists();
        if complete && verified(&env.dir).await {
            crate::cache_gc::touch(&env.dir);
            sink.send(
                SETUP,
                format!("using cached environment {short} (built by another run)"),
            );
            return Ok(env);
        }
        if env.dir.exists() {
            let why = if complete {
                "was changed since it was built"
            } else {
                "is incomplete"
            };
            sink.send(SETUP, format!("environment {short} {why}: rebuilding it"));
            let d = env.dir.clone();
            tokio::task::spawn_blocking(move || std::fs::remove_dir_all(d))
                .await
                .map_err(|e| SetupError::Io(e.to_string()))??;
        }
        sink.send(
            SETUP,
            format!("building environment {short} with {}", self.installer()),
        );
        let started = Instant::now();
        self.build(&env, deps, ws, sink).await?;
        let dir = env.dir.clone();
        let head = format!(
            "{}\n{}\n",
            self.interp.executable.display(),
            self.interp.version
        );
        tokio::task::spawn_blocking(move || {
            let marker = format!("{head}manifest {}\n", manifest(&dir)?);
            write_synced(&dir.join(MARKER), marker.as_bytes())
        })
        .await
        .map_err(|e| SetupError::Io(e.to_string()))??;
        sink.send(
            SETUP,
            format!(
                "environment {short} ready in {:.1}s",
                started.elapsed().as_secs_f64()
            ),
        );
        Ok(env)
    }

    /// Whether the base interpreter has a pip that supports `--python` (22.3+); asked once.
    async fn base_pip(&self) -> bool {
        *self
            .base_pip
            .get_or_init(|| async {
                let out = Command::new(&self.interp.executable)
                    .args(["-m", "pip", "--version"])
                    .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
                    .stdin(std::process::Stdio::null())
                    .output()
                    .await;
                match out {
                    Ok(o) if o.status.success() => {
                        pip_supports_python_flag(&String::from_utf8_lossy(&o.stdout))
                    }
                    _ => false,
                }
            })
            .await
    }

    async fn build(
        &self,
        env: &PyEnv,
        deps: &Deps,
        ws: &Path,
        sink: &LogSink,
    ) -> Result<(), SetupError> {
        let exe = &self.interp.executable;
        let py = env.python();
        let dir = env.dir.as_os_str();
        match (&self.uv, deps) {
            (_, Deps::None) => {
                run(
                    Command::new(exe)
                        .args(["-m", "venv", "--without-pip"])
                        .arg(dir),
                    ws,
                    sink,
                    "venv",
                )
                .await?;
            }
            (Some(uv), deps) => {
                run(
                    Command::new(uv)
                        .arg("venv")
                        .arg("--python")
                        .arg(exe)
                        .arg(dir),
                    ws,
                    sink,
                    "uv venv",
                )
                .await?;
                let mut cmd = Command::new(uv);
                match deps {
                    Deps::Requirements(_) => {
                        cmd.args(["pip", "install", "--compile-bytecode", "--python"])
                            .arg(&py)
                            .args(["-r", "requirements.txt"]);
                    }
                    Deps::Project { lock: Some(_), .. } => {
                        cmd.args([
                            "sync",
                            "--frozen",
                            "--no-install-project",
                            "--no-dev",
                            "--compile-bytecode",
                            "--python",
                        ])
                        .arg(&py)
                        .env("UV_PROJECT_ENVIRONMENT", dir);
                    }
                    Deps::Project { deps, .. } => {
                        cmd.args(["pip", "install", "--compile-bytecode", "--python"])
                            .arg(&py)
                            .args(deps);
                    }
                    Deps::None => unreachable!(),
                }
                run(&mut cmd, ws, sink, "uv install").await?;
            }
            (None, deps) => {
                // The base interpreter's pip (22.3+) can install into another
                // interpreter, which spares seeding pip into every venv.
                let mut cmd = if self.base_pip().await {
                    run(
                        Command::new(exe)
                            .args(["-m", "venv", "--without-pip"])
                            .arg(dir),
                        ws,
                        sink,
                        "venv",
                    )
                    .await?;
                    let mut c = Command::new(exe);
                    c.args(["-m", "pip", "--python"]).arg(&py);
                    c
                } else {
                    run(
                        Command::new(exe).args(["-m", "venv"]).arg(dir),
                        ws,
                        sink,
                        "venv",
                    )
                    .await?;
                    let mut c = Command::new(&py);
                    c.args(["-m", "pip"]);
                    c
                };
                cmd.args(["install", "--disable-pip-version-check", "--no-input"]);
                match deps {
                    Deps::Requirements(_) => {
                        cmd.args(["-r", "requirements.txt"]);
                    }
                    Deps::Project { deps, lock, .. } => {
                        if lock.is_some() {
                            sink.send(SETUP, "uv.lock found but uv is not available; installing [project].dependencies with pip".into());
                        }
                        cmd.args(deps);
                    }
                    Deps::None => unreachable!(),
                }
                run(&mut cmd, ws, sink, "pip install").await?;
                let mut compile = Command::new(&py);
                compile
                    .args(["-m", "compileall", "-q", "-j", "0"])
                    .arg(env.dir.join("lib"));
                run(&mut compile, ws, sink, "compileall").await?;
            }
        }
        Ok(())
    }
}

/// Runs one build step in its own process group (killed if the attempt is
/// abandoned), its output on the `setup` stream.
async fn run(cmd: &mut Command, cwd: &Path, sink: &LogSink, what: &str) -> Result<(), SetupError> {
    cmd.current_dir(cwd)
        .env_clear()
        .envs(crate::process::base_env().iter().map(|(k, v)| (k, v)))
        // The machine may disable bytecode writing; environments are built once
        // and should carry compiled bytecode so runs start fast.
        .env_remove("PYTHONDONTWRITEBYTECODE")
        .env_remove("PYTHONPATH")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_NO_INPUT", "1")
        .env("UV_PYTHON_DOWNLOADS", "never")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| SetupError::EnvBuild(format!("{what}: cannot start: {e}")))?;
    let guard = GroupGuard::new(child.id());
    let out = pump_lines(child.stdout.take(), SETUP, sink.clone());
    let err = pump_lines(child.stderr.take(), SETUP, sink.clone());
    let (status, _, _) = tokio::join!(child.wait(), out, err);
    guard.disarm();
    let status = status.map_err(|e| SetupError::EnvBuild(format!("{what}: {e}")))?;
    if !status.success() {
        return Err(SetupError::EnvBuild(format!(
            "{what} failed ({status}); see the setup log lines"
        )));
    }
    Ok(())
}

/// Parses `pip X.Y.Z from ...` and checks for 22.3 or later.
fn pip_supports_python_flag(version_line: &str) -> bool {
    let v = version_line.split_whitespace().nth(1).unwrap_or("");
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (22, 3)
}

fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(data)?;
    f.sync_all()?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn hash_key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

mod gc;
#[cfg(test)]
mod tests;

/// A hash over an environment's files (path, type, size, mode, mtime, link
/// target), recorded in its marker when it is built and compared on every
/// use: an environment changed since (a script that could write into it, a
/// half-finished manual edit) is never used again. `__pycache__` folders
/// are left out: bytecode is compiled at build time, and a stale one is not
/// loaded by Python anyway.
pub fn manifest(dir: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    fn walk(root: &Path, dir: &Path, h: &mut Sha256) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let name = e.file_name();
            if name == "__pycache__" || (dir == root && name == MARKER) {
                continue;
            }
            let m = std::fs::symlink_metadata(&p)?;
            let rel = p.strip_prefix(root).unwrap_or(&p);
            h.update(rel.as_os_str().as_encoded_bytes());
            // A folder's own size and mtime change when Python adds a
            // `__pycache__` to it; its entries are hashed one by one instead.
            let (len, mtime, nsec) = if m.is_dir() {
                (0, 0, 0)
            } else {
                (m.len(), m.mtime(), m.mtime_nsec())
            };
            h.update(format!("\0{}:{len}:{}:{mtime}.{nsec}\0", m.mode(), m.uid()).as_bytes());
            if m.file_type().is_symlink() {
                h.update(std::fs::read_link(&p)?.as_os_str().as_encoded_bytes());
            } else if m.is_dir() {
                walk(root, &p, h)?;
            }
        }
        Ok(())
    }
    let mut h = Sha256::new();
    walk(dir, dir, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// The marker of the complete environment at `dir` (its interpreter and
/// manifest), or `None` when it is not complete.
pub fn marker(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(MARKER)).ok()
}

/// Whether the environment at `dir` still matches the manifest in its marker.
pub fn manifest_matches(dir: &Path) -> bool {
    let Ok(marker) = std::fs::read_to_string(dir.join(MARKER)) else {
        return false;
    };
    let Some(want) = marker.lines().find_map(|l| l.strip_prefix("manifest ")) else {
        return false;
    };
    manifest(dir).is_ok_and(|got| got == want)
}

async fn verified(dir: &Path) -> bool {
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || manifest_matches(&d))
        .await
        .unwrap_or(false)
}
