//! The runner's side of a supervisor: start one, move its fencing deadline,
//! signal or kill the script, and learn how it ended.

use super::protocol::{encode, Command, Event};
use super::{tree, CONTROL_FD, ENTRY_ARG};
use crate::error::SetupError;
use crate::limits::Confine;
use minitower_core::job::PtySize;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::process::{Child, ChildStderr, ChildStdout};
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;

/// How to start a supervised script.
pub struct Launch<'a> {
    /// The supervisor executable (this program, or the runner binary).
    pub exe: &'a Path,
    pub argv: &'a [OsString],
    pub cwd: &'a Path,
    pub env: &'a BTreeMap<OsString, OsString>,
    pub deadline: Option<Instant>,
    pub cgroup: Option<PathBuf>,
    /// uid and gid to run the script as.
    pub user: Option<(u32, u32)>,
}

/// How a supervised script ended.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Ending {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The supervisor killed the tree because the deadline passed.
    pub fenced: bool,
    /// Other processes of the tree that were killed, as `pid (name)`.
    pub killed: Vec<String>,
    /// The supervisor vanished without saying how the script ended.
    pub lost: bool,
    /// The script's peak resident set (`wait4`'s `ru_maxrss`), in bytes.
    pub peak_memory_bytes: Option<u64>,
    /// Why the process was ended, when a resource limit ended it (for the
    /// `finished` event; `None` otherwise).
    pub reason: Option<String>,
}

/// A running supervised script. `control` and `waiter` are separate so a
/// caller can wait for the end while it signals or moves the deadline.
pub struct Supervised {
    /// The script's pid (leader of its own process group).
    pub pid: u32,
    /// Whether the script runs in a cgroup of its own.
    pub in_cgroup: bool,
    /// How its resource limits are enforced, for the `started` event:
    /// "cgroup v1", "cgroup v2", "rlimit" or "none".
    pub limits_mode: &'static str,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
    pub control: Control,
    pub waiter: Waiter,
}

/// Sends commands to a supervisor (a fork server's is shared by its runs).
pub struct Control {
    ctl: Arc<Mutex<OwnedWriteHalf>>,
}

/// Learns how a supervised script ended.
pub struct Waiter {
    pid: u32,
    /// The supervisor process, when it is this script's alone.
    child: Option<Child>,
    events: mpsc::UnboundedReceiver<Event>,
    cgroup: Option<PathBuf>,
    ending: Ending,
}

impl Supervised {
    /// Starts the supervisor and, through it, the script. A deadline that has
    /// already passed starts nothing (`SetupError::LeaseGone`).
    pub async fn start(l: Launch<'_>) -> Result<Supervised, SetupError> {
        Self::start_with_pty(l, None).await
    }

    /// [`Supervised::start`], with the script on a pseudo-terminal of this
    /// size when given (its output then all comes on `stdout`).
    pub async fn start_with_pty(
        l: Launch<'_>,
        pty: Option<PtySize>,
    ) -> Result<Supervised, SetupError> {
        Self::start_confined(l, pty, Confine::default()).await
    }

    /// [`Supervised::start_with_pty`], with the script entering `confine`
    /// (its resource limits, see `crate::limits`) before it execs.
    pub async fn start_confined(
        l: Launch<'_>,
        pty: Option<PtySize>,
        confine: Confine,
    ) -> Result<Supervised, SetupError> {
        let start = Command::Start {
            deadline_ns: l.deadline.map(|d| tree::to_boottime(d.into_std())),
            cgroup: l.cgroup.clone(),
            user: l.user,
            pty,
            confine,
        };
        Self::launch(l, start).await
    }

    /// Starts a fork server's supervisor (`Command::Serve`): `pid` is the
    /// warm interpreter's, and the waiter sees the events of every run.
    pub(crate) async fn serve(l: Launch<'_>) -> Result<Supervised, SetupError> {
        let serve = Command::Serve {
            cgroup: l.cgroup.clone(),
            user: l.user,
        };
        Self::launch(l, serve).await
    }

    async fn launch(l: Launch<'_>, first: Command) -> Result<Supervised, SetupError> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| SetupError::Spawn(format!("control socket: {e}")))?;
        let mut cmd = tokio::process::Command::new(l.exe);
        cmd.arg(ENTRY_ARG)
            .arg("--")
            .args(l.argv)
            .current_dir(l.cwd)
            .env_clear()
            .envs(l.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let fd = theirs.as_raw_fd();
        // SAFETY: dup2/fcntl/setsid are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::setsid()?;
                if fd == CONTROL_FD {
                    nix::fcntl::fcntl(
                        fd,
                        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                    )?;
                } else {
                    nix::unistd::dup2(fd, CONTROL_FD)?;
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            SetupError::Spawn(format!("supervisor {}: {e}", l.exe.to_string_lossy()))
        })?;
        drop(theirs);
        ours.set_nonblocking(true)
            .map_err(|e| SetupError::Spawn(format!("control socket: {e}")))?;
        let sock = tokio::net::UnixStream::from_std(ours)
            .map_err(|e| SetupError::Spawn(format!("control socket: {e}")))?;
        let (read, mut ctl) = sock.into_split();
        let (tx, mut events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(e) = serde_json::from_str::<Event>(&line) {
                    if tx.send(e).is_err() {
                        break;
                    }
                }
            }
        });
        let _ = ctl.write_all(&encode(&first)).await;
        let first = events.recv().await;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        match first {
            Some(Event::Started { pid, cgroup }) => Ok(Supervised {
                pid,
                in_cgroup: cgroup,
                limits_mode: "none",
                stdout,
                stderr,
                control: Control::new(Arc::new(Mutex::new(ctl))),
                waiter: Waiter {
                    pid,
                    child: Some(child),
                    events,
                    cgroup: l.cgroup,
                    ending: Ending::default(),
                },
            }),
            Some(Event::Fenced) => {
                let _ = child.wait().await;
                Err(SetupError::LeaseGone)
            }
            Some(Event::SpawnFailed { error }) => {
                let _ = child.wait().await;
                Err(SetupError::Spawn(error))
            }
            other => {
                let status = child.wait().await;
                Err(SetupError::Spawn(format!(
                    "the supervisor did not start the script ({other:?}, {status:?})"
                )))
            }
        }
    }
}

impl Control {
    pub(crate) fn new(ctl: Arc<Mutex<OwnedWriteHalf>>) -> Control {
        Control { ctl }
    }

    async fn send(&mut self, c: Command) {
        let _ = self.ctl.lock().await.write_all(&encode(&c)).await;
    }

    /// Moves the fencing deadline.
    pub async fn set_deadline(&mut self, deadline: Option<Instant>) {
        let deadline_ns = deadline.map(|d| tree::to_boottime(d.into_std()));
        self.send(Command::Deadline { deadline_ns }).await;
    }

    /// Sends `sig` to the script's process group.
    pub async fn signal(&mut self, sig: nix::sys::signal::Signal) {
        self.send(Command::Signal { signal: sig as i32 }).await;
    }

    /// Kills the whole tree now.
    pub async fn kill(&mut self) {
        self.send(Command::Kill).await;
    }

    /// Sends `c` with `fds` passed on its first byte (SCM_RIGHTS).
    pub(crate) async fn send_with_fds(
        &mut self,
        c: &Command,
        fds: &[std::os::fd::RawFd],
    ) -> std::io::Result<()> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        let line = encode(c);
        let mut ctl = self.ctl.lock().await;
        let raw = AsRef::<tokio::net::UnixStream>::as_ref(&*ctl).as_raw_fd();
        let cmsg = [ControlMessage::ScmRights(fds)];
        let iov = [std::io::IoSlice::new(&line[..1])];
        // One byte on an idle control socket: never blocks.
        let sent = sendmsg::<()>(raw, &iov, &cmsg, MsgFlags::MSG_DONTWAIT, None)?;
        ctl.write_all(&line[sent..]).await
    }

    pub(crate) fn shared(&self) -> Arc<Mutex<OwnedWriteHalf>> {
        self.ctl.clone()
    }
}

impl Waiter {
    /// The supervisor's events and process, taken over by a fork server.
    pub(crate) fn into_parts(self) -> (mpsc::UnboundedReceiver<Event>, Option<Child>) {
        (self.events, self.child)
    }

    /// The waiter of a run forked by a fork server: its events come on
    /// `events`, whose sender is dropped if the server dies.
    pub(crate) fn served(
        pid: u32,
        events: mpsc::UnboundedReceiver<Event>,
        cgroup: Option<PathBuf>,
    ) -> Waiter {
        Waiter {
            pid,
            child: None,
            events,
            cgroup,
            ending: Ending::default(),
        }
    }

    fn absorb(&mut self, e: Event) -> bool {
        match e {
            Event::Exited {
                code,
                signal,
                peak_memory_bytes,
            } => {
                self.ending.code = code;
                self.ending.signal = signal;
                self.ending.peak_memory_bytes = peak_memory_bytes;
            }
            Event::Fenced => self.ending.fenced = true,
            Event::Killed { processes } => self.ending.killed.extend(processes),
            Event::Done => return true,
            _ => {}
        }
        false
    }

    /// Waits until the script and everything it started are gone.
    /// Cancel-safe: events already seen are kept for the next call.
    pub async fn wait(&mut self) -> Ending {
        loop {
            match self.events.recv().await {
                Some(e) => {
                    if self.absorb(e) {
                        break;
                    }
                }
                None => {
                    // The supervisor died without finishing: clean up after it.
                    self.ending.lost = true;
                    if let Some(cg) = &self.cgroup {
                        let killed = tree::kill_cgroup(cg, std::time::Duration::from_secs(2));
                        self.ending.killed.extend(killed);
                        tree::remove_cgroup(cg);
                    }
                    if let Ok(pid) = i32::try_from(self.pid) {
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                    break;
                }
            }
        }
        if let Some(child) = &mut self.child {
            let _ = child.wait().await;
        }
        self.ending.clone()
    }
}
