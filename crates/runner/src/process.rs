//! Starting scripts: their environment, their command line, their process
//! group, and reading their output line by line.
//!
//! Every script runs in its own process group so that cancel, timeout and
//! fencing reach its children too (`killpg`).

use crate::envs::PyEnv;
use crate::error::SetupError;
use crate::logs::LogSink;
use crate::mask::Masker;
use minitower_core::api::Lease;
use minitower_core::job::Entry;
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest log line; longer ones are split.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Variables of the runner's own environment a script sees. Everything else
/// (cloud credentials, the runner's tokens, `PYTHON*` start-up settings) is
/// withheld: an allowlist, so a variable nobody thought of does not leak.
/// `MINITOWER_PASS_ENV` (comma-separated names) adds to it.
const ALLOWED_VARS: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
];

/// Names the runner never passes, even when `MINITOWER_PASS_ENV` names them.
fn is_secret(name: &OsStr) -> bool {
    let n = name.to_string_lossy().to_ascii_uppercase();
    n.starts_with("MINITOWER_")
        && ["TOKEN", "SECRET", "PASSWORD", "KEY"]
            .iter()
            .any(|w| n.contains(w))
}

fn is_allowed(name: &OsStr, extra: &[String]) -> bool {
    let n = name.to_string_lossy();
    !is_secret(name)
        && (ALLOWED_VARS.contains(&n.as_ref())
            || n.starts_with("LC_")
            || extra.iter().any(|e| e == n.as_ref()))
}

/// The part of the runner's environment scripts see (computed once).
pub fn base_env() -> &'static [(OsString, OsString)] {
    static BASE: OnceLock<Vec<(OsString, OsString)>> = OnceLock::new();
    BASE.get_or_init(|| {
        let extra: Vec<String> = std::env::var("MINITOWER_PASS_ENV")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        std::env::vars_os()
            .filter(|(k, _)| is_allowed(k, &extra))
            .collect()
    })
}

/// Linux refuses an `execve` whose single environment string is longer than
/// this (`MAX_ARG_STRLEN`, 32 pages), with "Argument list too long".
const MAX_ENV_STRING: usize = 128 * 1024;
/// Budget for all variables made from the input together (the kernel's total
/// limit for argv + environment is a quarter of the stack limit, 2 MiB by
/// default; the rest stays for the runner's own variables and argv).
const MAX_INPUT_ENV_TOTAL: usize = 1024 * 1024;

/// How the input reaches a script: always the file, and the variables that
/// fit (`notes` say which were skipped and why, for the setup log).
#[derive(Debug, Default)]
pub struct InputDelivery {
    pub file: PathBuf,
    pub vars: Vec<(String, String)>,
    pub notes: Vec<String>,
}

/// Writes the whole input to `<ws>/.minitower/input.json` (mode 0600) and
/// picks the variables that can be passed safely: `MINITOWER_INPUT` and one
/// per top-level key, each only when it holds no NUL and fits the kernel's
/// limits. The run never fails because of how its input was delivered.
pub fn write_input(ws: &Path, input: &serde_json::Value) -> Result<InputDelivery, SetupError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = ws.join(".minitower");
    let _ = std::fs::remove_dir_all(&dir).or_else(|_| std::fs::remove_file(&dir));
    std::fs::create_dir(&dir).map_err(|e| SetupError::Io(format!("{}: {e}", dir.display())))?;
    let file = dir.join("input.json");
    let text = input.to_string();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| SetupError::Io(format!("{}: {e}", file.display())))?;
    let mut d = InputDelivery {
        file,
        ..Default::default()
    };
    let mut total = 0usize;
    let mut offer = |d: &mut InputDelivery, name: &str, value: String| {
        let size = name.len() + 1 + value.len() + 1;
        let why = if value.contains('\0') {
            Some("it holds a NUL character")
        } else if size > MAX_ENV_STRING {
            Some("it is longer than the kernel allows for one variable (128 KiB)")
        } else if total + size > MAX_INPUT_ENV_TOTAL {
            Some("the input's variables together would pass 1 MiB")
        } else {
            None
        };
        match why {
            Some(why) => d.notes.push(format!(
                "input: ${name} not set because {why}; read $MINITOWER_INPUT_FILE for the whole input"
            )),
            None => {
                total += size;
                d.vars.push((name.to_string(), value));
            }
        }
    };
    offer(&mut d, "MINITOWER_INPUT", text);
    if let Some(obj) = input.as_object() {
        for (k, v) in obj {
            if minitower_core::validate::env_var_name(k) {
                let s = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                offer(&mut d, k, s);
            }
        }
    }
    Ok(d)
}

/// The environment a script gets: the allowlisted part of the runner's, the
/// input keys, then the fixed `MINITOWER_*`, Python and PATH variables,
/// which win over input keys of the same name.
pub fn script_env(
    lease: &Lease,
    ws: &Path,
    env: &PyEnv,
    input: &InputDelivery,
) -> BTreeMap<OsString, OsString> {
    let mut vars: BTreeMap<OsString, OsString> = base_env().iter().cloned().collect();
    let runner_path = vars.remove(OsStr::new("PATH"));
    for (k, v) in &input.vars {
        vars.insert(k.into(), v.into());
    }
    if !input.vars.iter().any(|(k, _)| k == "MINITOWER_INPUT") {
        vars.remove(OsStr::new("MINITOWER_INPUT"));
    }
    // The secrets the version declares, before the runner's own variables
    // so none of those can be replaced by one.
    for (k, v) in &lease.secrets.0 {
        vars.insert(k.into(), v.into());
    }
    let mut set = |k: &str, v: OsString| {
        vars.insert(k.into(), v);
    };
    set("MINITOWER_INPUT_FILE", input.file.clone().into());
    set("MINITOWER_RUN_ID", lease.run_id.to_string().into());
    set("MINITOWER_RUN_NO", lease.run_no.to_string().into());
    set("MINITOWER_APP", lease.app.clone().into());
    set("MINITOWER_VERSION_NO", lease.version_no.to_string().into());
    set("MINITOWER_ATTEMPT_NO", lease.attempt_no.to_string().into());
    set(
        "MINITOWER_FENCING_TOKEN",
        lease
            .fencing_token
            .unwrap_or(lease.attempt_no)
            .to_string()
            .into(),
    );
    set("PYTHONUNBUFFERED", "1".into());
    set("VIRTUAL_ENV", env.dir.clone().into());
    set("PATH", script_path(env, runner_path.as_deref()));
    let py_path: Vec<PathBuf> = lease
        .import_paths
        .iter()
        .filter_map(|p| inside(ws, p))
        .collect();
    if !py_path.is_empty() {
        set(
            "PYTHONPATH",
            std::env::join_paths(py_path).unwrap_or_default(),
        );
    }
    vars
}

/// The `PATH` a process gets: the environment's `bin` (its `python`, and
/// the console scripts of its requirements) before the runner's own.
fn script_path(env: &PyEnv, runner_path: Option<&OsStr>) -> OsString {
    let mut path = vec![env.bin()];
    if let Some(p) = runner_path {
        path.extend(std::env::split_paths(p));
    }
    std::env::join_paths(path).unwrap_or_default()
}

/// Adds what a program on a terminal expects: `TERM` (unless the input or
/// a secret set it; the runner's own describes some other terminal).
pub fn terminal_env(vars: &mut BTreeMap<OsString, OsString>, lease: &Lease, input: &InputDelivery) {
    let chosen =
        lease.secrets.0.contains_key("TERM") || input.vars.iter().any(|(k, _)| k == "TERM");
    if !chosen {
        vars.insert("TERM".into(), "xterm-256color".into());
    }
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
    /// A program with arguments, no shell: a command's resolved `argv[0]`,
    /// `/bin/sh -c <line>`, or a binary source's downloaded file.
    Exec {
        program: PathBuf,
        args: Vec<OsString>,
    },
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

    /// Picks the launcher for a job's entry inside `ws`, once the app's
    /// environment is ready (a command's program is looked up on the `PATH`
    /// the process gets, which starts with the environment's `bin`).
    /// `binary` is the program of a binary source, when it was fetched.
    pub fn for_entry(
        entry: &Entry,
        ws: &Path,
        env: &PyEnv,
        binary: Option<&Path>,
    ) -> Result<Launch, SetupError> {
        match entry {
            Entry::Script { path } => Launch::for_entrypoint(ws, path),
            Entry::Command { argv } => {
                let Some((name, args)) = argv.split_first() else {
                    return Err(SetupError::Spawn("command is empty".into()));
                };
                let runner_path = base_env()
                    .iter()
                    .find(|(k, _)| k == "PATH")
                    .map(|(_, v)| v.as_os_str());
                let path = script_path(env, runner_path);
                let program = find_program(name, ws, &path).ok_or_else(|| {
                    SetupError::Spawn(if name.contains('/') {
                        format!("command[0] {name:?} is not an executable file")
                    } else {
                        format!("command[0] {name:?} was not found on PATH")
                    })
                })?;
                Ok(Launch::Exec {
                    program,
                    args: args.iter().map(OsString::from).collect(),
                })
            }
            Entry::Shell { script } => Ok(Launch::Exec {
                program: "/bin/sh".into(),
                args: vec!["-c".into(), script.into()],
            }),
            Entry::Binary { args } => match binary {
                Some(program) => Ok(Launch::Exec {
                    program: program.to_path_buf(),
                    args: args.iter().map(OsString::from).collect(),
                }),
                None => Err(SetupError::Spawn(
                    "a binary entry needs its binary source fetched first".into(),
                )),
            },
        }
    }

    /// The command line (program first).
    pub fn argv(&self, env: &PyEnv) -> Vec<OsString> {
        match self {
            Launch::Python { script } => vec![env.python().into(), script.into()],
            Launch::Shell { script } => vec!["bash".into(), script.into()],
            Launch::Executable { script } => vec![script.into()],
            Launch::Exec { program, args } => std::iter::once(program.into())
                .chain(args.iter().cloned())
                .collect(),
        }
    }
}

/// Where a command's `argv[0]` is: with a `/`, that path (relative to the
/// workspace); otherwise the first executable file of that name in `path`'s
/// directories (relative ones taken from the workspace, the process's
/// working directory), as `execvp` would pick it.
pub fn find_program(name: &str, ws: &Path, path: &OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.is_empty() {
        return None;
    }
    if name.contains('/') {
        let p = ws.join(name);
        return runnable(&p).then_some(p);
    }
    std::env::split_paths(path)
        .map(|dir| ws.join(dir).join(name))
        .find(|p| runnable(p))
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
    pump_masked(r, stream, sink, Masker::default()).await
}

/// [`pump_lines`] with secret values masked in the bytes before they are
/// split into lines (see [`crate::mask`]), so a value cut by a pipe read or
/// spanning lines is still masked.
pub async fn pump_masked<R: AsyncRead + Unpin>(
    r: Option<R>,
    stream: &'static str,
    sink: LogSink,
    mut masker: Masker,
) {
    let Some(mut r) = r else { return };
    let mut buf = vec![0u8; MAX_LINE_BYTES];
    let mut masked: Vec<u8> = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        masker.feed(&buf[..n], &mut masked);
        split_lines(&mut line, &masked, stream, &sink);
        masked.clear();
    }
    masker.finish(&mut masked);
    split_lines(&mut line, &masked, stream, &sink);
    if !line.is_empty() {
        emit(&line, stream, &sink);
    }
}

/// Appends `data` to the partial `line`, sending every complete line and
/// every [`MAX_LINE_BYTES`] piece of an overlong one.
fn split_lines(line: &mut Vec<u8>, mut data: &[u8], stream: &'static str, sink: &LogSink) {
    while !data.is_empty() {
        let (take, complete) = match data.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (data.len(), false),
        };
        let content = if complete {
            &data[..take - 1]
        } else {
            &data[..take]
        };
        line.extend_from_slice(content);
        data = &data[take..];
        while line.len() > MAX_LINE_BYTES {
            let cut = char_boundary(line, MAX_LINE_BYTES);
            let rest = line.split_off(cut);
            emit(line, stream, sink);
            *line = rest;
        }
        if complete {
            emit(line, stream, sink);
            line.clear();
        }
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
