//! A fork server per concurrency slot for the shared empty environment, and
//! for the cached environments of apps with dependencies (`slots.rs`): a
//! warm interpreter that has done its start-up once and forks a child per
//! run, so a hello-world run costs a fork instead of an interpreter start.
//!
//! # The invariant
//! A forked run keeps every guarantee of fenced execution (see
//! [`crate::supervisor`]) and, as far as a script can tell, is a fresh
//! `python script.py`.
//!
//! # How it is kept
//! - *Fencing.* The warm interpreter (`forkserver/zygote.py`) is the child
//!   of a supervisor in serve mode (`supervisor/serve.rs`), started per slot
//!   and serving one run at a time. For a run it clones itself with
//!   `CLONE_PARENT`, so the run is born the supervisor's child (CPython's
//!   fork hooks run around the raw `clone`, and glibc's cached thread id is
//!   written by the kernel at its verified place: `_clone_for_parent`).
//!   Where that cannot be done (not x86-64 with glibc), it forks twice: the
//!   middle process exits at once, so the run is orphaned and re-parented
//!   to the supervisor, a subreaper, before the server answers with its
//!   pid; the middle's fork, faults and exit were 40% of a hello-world's
//!   CPU. From
//!   then on the run is that supervisor's child exactly as a script is its
//!   attempt supervisor's: it waits for it, holds its fencing deadline
//!   (`CLOCK_BOOTTIME`), signals its process group, kills
//!   its whole tree at its end, at the deadline, at a kill and when the
//!   runner's end of the control socket closes, and reports the same
//!   events. The run sets `PR_SET_PDEATHSIG` once it is the supervisor's
//!   child, so it dies with the supervisor even on a SIGKILL. Its cgroup is
//!   entered by moving the warm interpreter into the run's cgroup for the
//!   fork (and back), so the run is born inside it.
//! - *Users.* Under `user` isolation each slot has its own uid, and its
//!   fork server runs as that uid, so a run never runs as another slot's
//!   user. (Scripts of one slot could already reach that slot's waiting
//!   interpreter before fork servers; that is unchanged.)
//! - *Fresh state.* The child gets its own process group (in the
//!   supervisor's session, as a plainly started script),
//!   stdin from /dev/null, its own stdout/stderr pipes (passed per run over
//!   the control socket as SCM_RIGHTS), cwd, environment (`os.environ`
//!   replaced, so `putenv` reaches C code), `sys.argv`/`sys.orig_argv`,
//!   `sys.path` rebuilt as `python script.py` builds it, a new `__main__`
//!   module the script runs in (traceback trimmed to the script's frames),
//!   and `sys.modules` cut back to what a fresh interpreter has: modules the
//!   server imported for itself (json, socket, ctypes) are not there.
//!   `random` is re-seeded by `os.fork` itself (its `register_at_fork`).
//!   Signal handlers are the interpreter's defaults (the server sets none).
//! - *Warm modules.* A few stdlib modules scripts commonly import (json,
//!   re, collections, functools, enum, typing, dataclasses, datetime,
//!   pathlib, and what they import) are imported once by the server and
//!   cut from `sys.modules` like the rest. A finder first in
//!   `sys.meta_path` (`minitower.WarmModules`) hands a run importing one
//!   the server's pristine copy (forked, so no other run touched it) and
//!   puts into `sys.modules` the same modules a fresh import would, in
//!   the server's import order rather than the run's. A module of the
//!   run's own by that name (in its directory or `PYTHONPATH`) still comes
//!   first. Importing json went from ~8 ms of CPU to nothing. What a
//!   script can see: the extra finder, the modules' private caches
//!   (`re`'s compiled patterns) holding what the other warm imports put
//!   there, and that their code ran before the run started. Modules that
//!   read the environment or the clock at import (logging, random,
//!   tempfile, threading) are not warm.
//! - *The end.* A run ends as `Py_FinalizeEx` ends a script, step by step
//!   (`_finish` in `zygote.py`): `SystemExit` read as CPython reads it,
//!   non-daemon threads joined, atexit callbacks, the modules the run made
//!   (`__main__` and what it imported) cleared as CPython clears them, so
//!   its objects get their `__del__` and its unclosed files their flush, a
//!   collection, the standard streams flushed (120 when that fails), then
//!   `_exit`. What it skips is tearing down the objects inherited from the
//!   server, which would decref, and so copy, every page the fork shared:
//!   that teardown was 60% of a forked hello-world's CPU on this VM, where
//!   a page fault costs ~8 µs. Objects a run hangs on an inherited module
//!   (`sys.foo = obj`) are therefore not finalized, which CPython does not
//!   promise either.
//! - *Shared.* What the interpreter fixes at start-up is the server's: the
//!   hash seed (`PYTHONHASHSEED` randomisation: every run of a slot sees the
//!   same `hash("x")`), the start-up variables (`PYTHON*` but `PYTHONPATH`,
//!   locale; a run whose values differ is started the ordinary way), and
//!   `/proc/self/cmdline` (`python -c …`; `sys.orig_argv` is the script's),
//!   and the server's objects frozen in the collector's permanent generation
//!   (`gc.freeze()` before forking, so a run's collections do not copy the
//!   server's pages: `gc.get_freeze_count()` is not 0 in a run).
//!
//! `MINITOWER_PRESTART=false` turns fork servers off: every run starts its
//! own interpreter.
//!
//! # Proof
//! `tests/execution.rs` (`prestarted_interpreter_is_indistinguishable`)
//! runs a probe script through a fork server and through a plain start and
//! compares everything it prints (environment, argv, path, `__main__`,
//! modules, open descriptors, parent process, flags, exit code, atexit),
//! and checks two forked runs get different random numbers and that the
//! servers cloned their runs (they reaped no middle process);
//! `tests/fork_twice.rs` runs the same probe through the double fork
//! (`MINITOWER_FORK_TWICE`, read by the server for that test); the fencing
//! tests in `tests/fencing.rs` run their scripts through fork servers (the
//! default), so a SIGKILLed or frozen runner, daemons and double forks and
//! the fencing deadline are proven for forked runs too.

mod slots;
pub use slots::{SlotForks, StartArgs};

use crate::supervisor::client::{self as sup, Control, Supervised, Waiter};
use crate::supervisor::{Command, Event};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The warm interpreter's program (`python -c`).
const ZYGOTE: &str = include_str!("forkserver/zygote.py");

/// Runs forked by a fork server in this process.
pub static LAUNCHES: AtomicU64 = AtomicU64::new(0);

/// Numbers the fork servers' cgroups.
static SERIAL: AtomicU64 = AtomicU64::new(0);

/// Where a server's events go: the run in progress, if any.
struct Route {
    current: Option<mpsc::UnboundedSender<Event>>,
    alive: bool,
}

/// A running server.
struct Conn {
    control: Control,
    route: Arc<Mutex<Route>>,
}

/// One slot's fork server for one environment.
pub struct ForkServer {
    python: PathBuf,
    cwd: PathBuf,
    startup_env: BTreeMap<OsString, OsString>,
    supervisor: PathBuf,
    cgroups: Option<PathBuf>,
    user: Option<(u32, u32)>,
    conn: tokio::sync::Mutex<Option<Conn>>,
    restarting: AtomicBool,
}

impl ForkServer {
    /// Starts a fork server with `env_dir`'s Python.
    pub async fn start(
        env_dir: &Path,
        cwd: PathBuf,
        supervisor: PathBuf,
        cgroups: Option<PathBuf>,
        scope: &str,
        user: Option<(u32, u32)>,
    ) -> Arc<ForkServer> {
        let mut startup_env: BTreeMap<OsString, OsString> =
            crate::process::base_env().iter().cloned().collect();
        startup_env.insert("PYTHONUNBUFFERED".into(), "1".into());
        startup_env.insert("VIRTUAL_ENV".into(), env_dir.into());
        startup_env.insert(crate::supervisor::SCOPE_VAR.into(), scope.into());
        let f = Arc::new(ForkServer {
            python: env_dir.join("bin").join("python"),
            cwd,
            startup_env,
            supervisor,
            cgroups,
            user,
            conn: tokio::sync::Mutex::new(None),
            restarting: AtomicBool::new(false),
        });
        let conn = f.connect().await;
        *f.conn.lock().await = conn;
        f
    }

    async fn connect(&self) -> Option<Conn> {
        let argv: Vec<OsString> = vec![self.python.clone().into(), "-c".into(), ZYGOTE.into()];
        let n = SERIAL.fetch_add(1, Ordering::Relaxed);
        let started = Supervised::serve(sup::Launch {
            exe: &self.supervisor,
            argv: &argv,
            cwd: &self.cwd,
            env: &self.startup_env,
            deadline: None,
            cgroup: self.cgroups.as_ref().map(|b| b.join(format!("fork-{n}"))),
            user: self.user,
        })
        .await;
        let s = match started {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not start a fork server");
                return None;
            }
        };
        // The server prints nothing; its runs get pipes of their own.
        let (mut events, child) = s.waiter.into_parts();
        let route = Arc::new(Mutex::new(Route {
            current: None,
            alive: true,
        }));
        let r = route.clone();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                let mut r = r.lock().unwrap_or_else(|p| p.into_inner());
                let done = matches!(e, Event::Done);
                if let Some(tx) = &r.current {
                    let _ = tx.send(e);
                }
                if done {
                    r.current = None;
                }
            }
            // The supervisor is gone: the run in progress learns it from its
            // closed channel (and cleans up after it, see `Waiter::wait`).
            {
                let mut g = r.lock().unwrap_or_else(|p| p.into_inner());
                g.alive = false;
                g.current = None;
            }
            if let Some(mut c) = child {
                let _ = c.wait().await;
            }
        });
        Some(Conn {
            control: s.control,
            route,
        })
    }

    /// Whether a run with these variables may be forked by the server.
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

    /// Starts a server again in the background after it died.
    fn restart(self: &Arc<Self>) {
        if self.restarting.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let conn = me.connect().await;
            *me.conn.lock().await = conn;
            me.restarting.store(false, Ordering::Release);
        });
    }

    /// Forks `script` for a run with fencing `deadline`, in `cgroup` when
    /// given; `None` when the server cannot take it (the caller starts the
    /// script the ordinary way).
    pub async fn launch(
        self: &Arc<Self>,
        script: &Path,
        cwd: &Path,
        vars: &BTreeMap<OsString, OsString>,
        deadline: Instant,
        cgroup: Option<PathBuf>,
    ) -> Option<Supervised> {
        if !self.compatible(vars) {
            return None;
        }
        let mut guard = self.conn.lock().await;
        let dead = match guard.as_ref() {
            None => true,
            Some(c) => !c.route.lock().unwrap_or_else(|p| p.into_inner()).alive,
        };
        if dead {
            *guard = None;
            drop(guard);
            self.restart();
            return None;
        }
        let conn = guard.as_mut()?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        {
            let mut r = conn.route.lock().unwrap_or_else(|p| p.into_inner());
            if r.current.is_some() {
                return None;
            }
            r.current = Some(tx);
        }
        let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok();
        let ((out_r, out_w), (err_r, err_w)) = (pipe()?, pipe()?);
        let env: serde_json::Map<String, serde_json::Value> = vars
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned().into(),
                )
            })
            .collect();
        let request = serde_json::json!({
            "cwd": cwd.to_string_lossy(),
            "env": env,
            "script": script.to_string_lossy(),
        })
        .to_string();
        let run = Command::Run {
            deadline_ns: Some(crate::supervisor::tree::to_boottime(deadline.into_std())),
            cgroup: cgroup.clone(),
            request,
        };
        let mut control = Control::new(conn.control.shared());
        let sent = control
            .send_with_fds(&run, &[out_w.as_raw_fd(), err_w.as_raw_fd()])
            .await;
        drop((out_w, err_w));
        drop(guard);
        if let Err(e) = sent {
            tracing::warn!(error = %e, "fork server unreachable");
            return None;
        }
        match rx.recv().await {
            Some(Event::Started {
                pid,
                cgroup: inside,
            }) => {
                let stdout = std::process::ChildStdout::from(out_r);
                let stderr = std::process::ChildStderr::from(err_r);
                LAUNCHES.fetch_add(1, Ordering::Relaxed);
                Some(Supervised {
                    pid,
                    in_cgroup: inside,
                    limits_mode: "none",
                    stdout: tokio::process::ChildStdout::from_std(stdout).ok(),
                    stderr: tokio::process::ChildStderr::from_std(stderr).ok(),
                    control,
                    waiter: Waiter::served(pid, rx, cgroup.filter(|_| inside)),
                })
            }
            other => {
                tracing::warn!(answer = ?other, "the fork server did not fork the run");
                None
            }
        }
    }
}
