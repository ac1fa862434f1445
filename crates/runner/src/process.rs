//! Starting scripts: their environment, their command line, their process
//! group, and reading their output line by line.
//!
//! Every script runs in its own process group so that cancel, timeout and
//! fencing reach its children too (`killpg`).

use crate::envs::PyEnv;
use crate::error::SetupError;
use crate::logs::LogSink;
use minitower_core::api::Lease;
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Longest log line; longer ones are split.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Variables of the runner that a script must never see.
const SECRET_VARS: &[&str] = &[
    "MINITOWER_RUNNER_REGISTRATION_TOKEN",
    "MINITOWER_RUNNER_TOKEN",
    "MINITOWER_BOOTSTRAP_TOKEN",
    "MINITOWER_TOKEN",
    "MINITOWER_TEAM_TOKEN",
];

fn is_secret(name: &OsStr) -> bool {
    let n = name.to_string_lossy().to_ascii_uppercase();
    SECRET_VARS.contains(&n.as_str())
        || (n.starts_with("MINITOWER_")
            && ["TOKEN", "SECRET", "PASSWORD"]
                .iter()
                .any(|w| n.contains(w)))
}

/// The runner's own environment without its secrets (computed once).
pub fn base_env() -> &'static [(OsString, OsString)] {
    static BASE: OnceLock<Vec<(OsString, OsString)>> = OnceLock::new();
    BASE.get_or_init(|| std::env::vars_os().filter(|(k, _)| !is_secret(k)).collect())
}

/// The environment a script gets: the runner's (minus secrets), the input
/// keys, then the fixed `MINITOWER_*`, Python and PATH variables, which win
/// over input keys of the same name.
pub fn script_env(lease: &Lease, ws: &Path, env: &PyEnv) -> BTreeMap<OsString, OsString> {
    let mut vars: BTreeMap<OsString, OsString> = base_env().iter().cloned().collect();
    vars.remove(OsStr::new("PYTHONHOME"));
    let runner_path = vars.remove(OsStr::new("PATH"));
    let runner_pythonpath = vars.remove(OsStr::new("PYTHONPATH"));
    if let Some(obj) = lease.input.as_object() {
        for (k, v) in obj {
            if minitower_core::validate::env_var_name(k) {
                let s = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                vars.insert(k.into(), s.into());
            }
        }
    }
    let mut set = |k: &str, v: OsString| {
        vars.insert(k.into(), v);
    };
    set("MINITOWER_INPUT", lease.input.to_string().into());
    set("MINITOWER_RUN_ID", lease.run_id.to_string().into());
    set("MINITOWER_RUN_NO", lease.run_no.to_string().into());
    set("MINITOWER_APP", lease.app.clone().into());
    set("MINITOWER_VERSION_NO", lease.version_no.to_string().into());
    set("MINITOWER_ATTEMPT_NO", lease.attempt_no.to_string().into());
    set("PYTHONUNBUFFERED", "1".into());
    set("VIRTUAL_ENV", env.dir.clone().into());
    let mut path = vec![env.bin()];
    if let Some(p) = &runner_path {
        path.extend(std::env::split_paths(p));
    }
    set("PATH", std::env::join_paths(path).unwrap_or_default());
    let mut py_path: Vec<PathBuf> = lease
        .import_paths
        .iter()
        .filter_map(|p| inside(ws, p))
        .collect();
    if let Some(p) = &runner_pythonpath {
        py_path.extend(std::env::split_paths(p).filter(|p| !p.as_os_str().is_empty()));
    }
    if !py_path.is_empty() {
        set(
            "PYTHONPATH",
            std::env::join_paths(py_path).unwrap_or_default(),
        );
    }
    vars
}

/// `rel` joined to `ws` when it stays inside it.
fn inside(ws: &Path, rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    p.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        .then(|| ws.join(p))
}

/// How to start an entrypoint.
#[derive(Debug, Clone, PartialEq)]
pub enum Launch {
    /// `python <script>` with the environment's interpreter.
    Python { script: PathBuf },
    /// `bash <script>`.
    Shell { script: PathBuf },
    /// The file itself.
    Executable { script: PathBuf },
}

impl Launch {
    /// Picks the launcher for `entrypoint` inside `ws`.
    pub fn for_entrypoint(ws: &Path, entrypoint: &str) -> Result<Launch, SetupError> {
        use std::os::unix::fs::PermissionsExt;
        let script = inside(ws, entrypoint)
            .ok_or_else(|| SetupError::MissingEntrypoint(entrypoint.to_string()))?;
        let meta = std::fs::metadata(&script)
            .map_err(|_| SetupError::MissingEntrypoint(entrypoint.to_string()))?;
        if !meta.is_file() {
            return Err(SetupError::MissingEntrypoint(entrypoint.to_string()));
        }
        Ok(match script.extension().and_then(|e| e.to_str()) {
            Some("py") => Launch::Python { script },
            Some("sh") => Launch::Shell { script },
            _ if meta.permissions().mode() & 0o111 != 0 => Launch::Executable { script },
            _ => return Err(SetupError::NotRunnable(entrypoint.to_string())),
        })
    }

    /// The command line (program first).
    pub fn argv(&self, env: &PyEnv) -> Vec<OsString> {
        match self {
            Launch::Python { script } => vec![env.python().into(), script.into()],
            Launch::Shell { script } => vec!["bash".into(), script.into()],
            Launch::Executable { script } => vec![script.into()],
        }
    }
}

/// Starts a script in its own process group with piped output.
pub fn spawn(
    argv: &[OsString],
    cwd: &Path,
    vars: &BTreeMap<OsString, OsString>,
) -> Result<tokio::process::Child, SetupError> {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(cwd)
        .env_clear()
        .envs(vars)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    cmd.spawn()
        .map_err(|e| SetupError::Spawn(format!("{}: {e}", argv[0].to_string_lossy())))
}

/// Sends `sig` to the whole process group `pgid` (ignoring an empty group).
pub fn kill_group(pgid: u32, sig: Signal) {
    if pgid == 0 {
        return;
    }
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid as i32), sig);
}

/// Kills a process group with SIGKILL when dropped, unless disarmed: the
/// owner of a child process may be abandoned at any await point.
pub struct GroupGuard(Option<u32>);

impl GroupGuard {
    /// Guards the group led by `pid`.
    pub fn new(pid: Option<u32>) -> GroupGuard {
        GroupGuard(pid)
    }
    /// The group ended normally.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            kill_group(pid, Signal::SIGKILL);
        }
    }
}

/// Reads `r` line by line into `sink` on `stream`; lines longer than
/// [`MAX_LINE_BYTES`] are split, invalid UTF-8 is replaced.
pub async fn pump_lines<R: AsyncRead + Unpin>(r: Option<R>, stream: &'static str, sink: LogSink) {
    let Some(r) = r else { return };
    let mut reader = BufReader::with_capacity(MAX_LINE_BYTES, r);
    let mut line: Vec<u8> = Vec::new();
    while let Ok(buf) = reader.fill_buf().await {
        if buf.is_empty() {
            break;
        }
        let (take, complete) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let content = if complete {
            &buf[..take - 1]
        } else {
            &buf[..take]
        };
        line.extend_from_slice(content);
        reader.consume(take);
        while line.len() > MAX_LINE_BYTES {
            let cut = char_boundary(&line, MAX_LINE_BYTES);
            let rest = line.split_off(cut);
            emit(&line, stream, &sink);
            line = rest;
        }
        if complete {
            emit(&line, stream, &sink);
            line.clear();
        }
    }
    if !line.is_empty() {
        emit(&line, stream, &sink);
    }
}

/// A cut point at or before `max` that does not split a UTF-8 sequence.
fn char_boundary(b: &[u8], max: usize) -> usize {
    let mut cut = max;
    while cut > max.saturating_sub(3) && cut > 0 && (b[cut] & 0b1100_0000) == 0b1000_0000 {
        cut -= 1;
    }
    if cut == 0 {
        max
    } else {
        cut
    }
}

fn emit(line: &[u8], stream: &'static str, sink: &LogSink) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    sink.send(stream, String::from_utf8_lossy(line).into_owned());
}

/// A readable name for a terminating signal.
pub fn signal_name(sig: i32) -> String {
    match Signal::try_from(sig) {
        Ok(s) => format!("{} ({sig})", s.as_str()),
        Err(_) => format!("signal {sig}"),
    }
}

#[cfg(test)]
mod tests;
