//! A pre-started interpreter of the shared empty environment.
//!
//! Interpreter start-up is most of a hello-world run, so one interpreter is
//! kept started and waiting on stdin, in its own process group. A `.py` run
//! without dependencies hands it one JSON line (cwd, environment, script);
//! the bootstrap then makes itself indistinguishable from `python <script>`:
//! it changes directory, replaces `os.environ`, rebuilds `sys.path` (script
//! directory, then `PYTHONPATH`, then the interpreter's own paths), sets
//! `sys.argv`, points stdin at /dev/null and executes the script as the real
//! `__main__` module, trimming its own frame from tracebacks. Exit status,
//! pid/process group and piped stdout/stderr are the script's own. A fresh
//! interpreter is started as soon as one is handed over.
//!
//! Variables read only at interpreter start-up (`PYTHON*` except
//! `PYTHONPATH`, the locale) must be equal to those the waiting interpreter
//! started with; when a run differs it is started the ordinary way.
//! The waiting interpreter runs under a supervisor like every script, so it
//! dies with the runner (the supervisor's control socket reaches EOF) and
//! takes the run's fencing deadline when a run takes it.

use crate::supervisor::client::{self as sup, Supervised};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

const BOOTSTRAP: &str = r#"
import sys, os, json
_paths = sys.path[1:]
_line = sys.stdin.buffer.readline()
if not _line:
    os._exit(0)
_req = json.loads(_line)
_fd = os.open(os.devnull, os.O_RDONLY)
os.dup2(_fd, 0)
os.close(_fd)
os.chdir(_req["cwd"])
os.environ.clear()
os.environ.update(_req["env"])
_script = _req["script"]
_dir = os.path.dirname(_script)
if os.path.islink(_script):
    _dir = os.path.dirname(os.path.join(_dir, os.readlink(_script)))
sys.path[:] = [_dir] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p] + _paths
sys.argv[:] = [_script]
sys.orig_argv[:] = [sys.executable, _script]
import builtins, importlib.machinery, io, types
_main = types.ModuleType("__main__")
_main.__file__ = _script
_main.__cached__ = None
_main.__builtins__ = builtins
_main.__loader__ = importlib.machinery.SourceFileLoader("__main__", _script)
_main.__annotations__ = {}
sys.modules["__main__"] = _main
del _paths, _line, _req, _fd, _dir
try:
    with io.open_code(_script) as _f:
        _code = compile(_f.read(), _script, "exec", dont_inherit=True)
    exec(_code, _main.__dict__)
except SystemExit:
    raise
except BaseException as _e:
    _tb = _e.__traceback__
    while _tb is not None and _tb.tb_frame.f_code.co_filename != _script:
        _tb = _tb.tb_next
    if _tb is None:
        _tb = _e.__traceback__
    _e.__traceback__ = _tb
    sys.excepthook(type(_e), _e, _tb)
    if isinstance(_e, KeyboardInterrupt):
        import signal
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    sys.stdout.flush()
    sys.exit(1)
"#;

/// Scripts started through a pre-started interpreter by this process.
pub static LAUNCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Numbers the pre-started interpreters' cgroups.
static SERIAL: AtomicU64 = AtomicU64::new(0);

/// Keeps one interpreter waiting, under a supervisor of its own (with no
/// fencing deadline until a run takes it; it dies with the runner).
pub struct Prestarter {
    python: PathBuf,
    cwd: PathBuf,
    startup_env: BTreeMap<OsString, OsString>,
    supervisor: PathBuf,
    cgroups: Option<PathBuf>,
    user: Option<(u32, u32)>,
    slot: tokio::sync::Mutex<Option<Supervised>>,
}

impl Prestarter {
    /// Starts the first waiting interpreter of `env_dir`'s Python.
    pub async fn start(
        env_dir: &Path,
        cwd: PathBuf,
        supervisor: PathBuf,
        cgroups: Option<PathBuf>,
        scope: &str,
        user: Option<(u32, u32)>,
    ) -> Arc<Prestarter> {
        let mut startup_env: BTreeMap<OsString, OsString> =
            crate::process::base_env().iter().cloned().collect();
        startup_env.insert("PYTHONUNBUFFERED".into(), "1".into());
        startup_env.insert("VIRTUAL_ENV".into(), env_dir.into());
        startup_env.insert(crate::supervisor::SCOPE_VAR.into(), scope.into());
        let p = Arc::new(Prestarter {
            python: env_dir.join("bin").join("python"),
            cwd,
            startup_env,
            supervisor,
            cgroups,
            user,
            slot: tokio::sync::Mutex::new(None),
        });
        p.refill().await;
        p
    }

    async fn refill(&self) {
        let argv: Vec<OsString> = vec![self.python.clone().into(), "-c".into(), BOOTSTRAP.into()];
        // Unique across every prestarter of this process: a cgroup is killed
        // whole when its interpreter's run ends.
        let n = SERIAL.fetch_add(1, Ordering::Relaxed);
        let started = Supervised::start(sup::Launch {
            exe: &self.supervisor,
            argv: &argv,
            cwd: &self.cwd,
            env: &self.startup_env,
            stdin_piped: true,
            deadline: None,
            cgroup: self.cgroups.as_ref().map(|b| b.join(format!("pre-{n}"))),
            user: self.user,
        })
        .await;
        match started {
            Ok(s) => *self.slot.lock().await = Some(s),
            Err(e) => tracing::warn!(error = %e, "could not pre-start an interpreter"),
        }
    }

    /// Whether a run with these variables may use the waiting interpreter.
    fn compatible(&self, vars: &BTreeMap<OsString, OsString>) -> bool {
        let startup_only = |k: &OsStr| {
            let k = k.to_string_lossy();
            (k.starts_with("PYTHON") && k != "PYTHONPATH")
                || k.starts_with("LC_")
                || k == "LANG"
                || k == "LANGUAGE"
        };
        let pick = |m: &BTreeMap<OsString, OsString>| -> Vec<(OsString, OsString)> {
            m.iter()
                .filter(|(k, _)| startup_only(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        pick(vars) == pick(&self.startup_env)
            && vars
                .iter()
                .all(|(k, v)| k.to_str().is_some() && v.to_str().is_some())
    }

    /// Hands `script` to the waiting interpreter with the run's fencing
    /// `deadline`; `None` when there is none usable (the caller starts the
    /// script the ordinary way).
    pub async fn launch(
        self: &Arc<Self>,
        script: &Path,
        cwd: &Path,
        vars: &BTreeMap<OsString, OsString>,
        deadline: Instant,
    ) -> Option<Supervised> {
        if !self.compatible(vars) {
            return None;
        }
        let taken = self.slot.lock().await.take();
        let me = self.clone();
        // Refilled after the run has been handed over, not while it starts.
        tokio::spawn(async move { me.refill().await });
        let mut child = taken?;
        if child.waiter.ended_early() {
            return None;
        }
        child.control.set_deadline(Some(deadline)).await;
        let env: serde_json::Map<String, serde_json::Value> = vars
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned().into(),
                )
            })
            .collect();
        let req = serde_json::json!({
            "cwd": cwd.to_string_lossy(),
            "env": env,
            "script": script.to_string_lossy(),
        });
        let mut line = req.to_string().into_bytes();
        line.push(b'\n');
        let mut stdin = child.stdin.take()?;
        if stdin.write_all(&line).await.is_err() {
            child.control.kill().await;
            return None;
        }
        drop(stdin);
        LAUNCHES.fetch_add(1, Ordering::Relaxed);
        Some(child)
    }
}
