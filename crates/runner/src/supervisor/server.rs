//! The supervisor process itself (see the module note in `supervisor.rs`).
//!
//! Single-threaded and synchronous on purpose: it forks the script, so it
//! must hold no other thread's locks, and its only job is to wait on two
//! file descriptors (the control socket and a signalfd) and a deadline.

use super::protocol::{encode, Command, Event};
use super::{pty, tree, CONTROL_FD};
use crate::limits::Confine;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::WaitStatus;
use nix::unistd::{getpid, Pid};
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

/// The control socket: commands in, events out, never blocking for long.
pub(super) struct Control {
    pub(super) sock: UnixStream,
    buf: Vec<u8>,
    pub(super) eof: bool,
    /// Descriptors passed with commands (a fork server's run stdio), in
    /// the order they came.
    pub(super) fds: std::collections::VecDeque<std::os::fd::OwnedFd>,
}

impl Control {
    pub(super) fn send(&mut self, e: &Event) {
        let line = encode(e);
        let mut off = 0;
        let mut tries = 0;
        while off < line.len() && tries < 1000 {
            match self.sock.write(&line[off..]) {
                Ok(0) => return,
                Ok(n) => off += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // The runner is not reading (frozen): wait a little, never forever.
                    tries += 1;
                    let fd = PollFd::new(self.sock.as_fd(), PollFlags::POLLOUT);
                    let _ = poll(&mut [fd], PollTimeout::from(10u8));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Reads what is available; complete commands come out, EOF is noted.
    /// `recvmsg`, not `read`: a plain read would drop passed descriptors.
    pub(super) fn read(&mut self) -> Vec<Command> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::{AsRawFd, OwnedFd, RawFd};
        let mut chunk = [0u8; 8192];
        loop {
            let mut space = nix::cmsg_space!([RawFd; 4]);
            let mut iov = [std::io::IoSliceMut::new(&mut chunk)];
            let got = recvmsg::<()>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            );
            let n = match got {
                Ok(m) => {
                    for c in m.cmsgs().into_iter().flatten() {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            // SAFETY: the kernel just installed these for us.
                            self.fds.extend(
                                fds.into_iter()
                                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                            );
                        }
                    }
                    m.bytes
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            };
            if n == 0 {
                self.eof = true;
                break;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let mut out = Vec::new();
        while let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            if let Ok(c) = serde_json::from_slice(&line[..line.len() - 1]) {
                out.push(c);
            }
        }
        out
    }
}

/// What the supervisor knows about the script.
pub(super) struct Script {
    pub(super) pid: Pid,
    pub(super) status: Option<WaitStatus>,
    pub(super) cgroup: Option<PathBuf>,
    /// A child that is not part of the script's tree and is left alone (a
    /// fork server's warm interpreter); whether it has ended.
    pub(super) spare: Option<Pid>,
    pub(super) spare_gone: bool,
    /// The script's `ru_maxrss` from `wait4`, in bytes.
    pub(super) peak_memory: Option<u64>,
}

impl Script {
    pub(super) fn new(pid: Pid, cgroup: Option<PathBuf>, spare: Option<Pid>) -> Script {
        Script {
            pid,
            status: None,
            cgroup,
            spare,
            spare_gone: false,
            peak_memory: None,
        }
    }

    /// Reaps every child that has ended, noting the script's status and
    /// peak memory.
    pub(super) fn reap(&mut self) {
        loop {
            match wait_any() {
                None | Some((WaitStatus::StillAlive, _)) => return,
                Some((s, peak)) => {
                    if s.pid() == Some(self.pid) {
                        self.status = Some(s);
                        self.peak_memory = Some(peak);
                    }
                    if s.pid().is_some() && s.pid() == self.spare {
                        self.spare_gone = true;
                    }
                }
            }
        }
    }

    /// Kills the whole tree: the cgroup at once, then every child of ours
    /// (orphans come to us as the subreaper) until none is left but the
    /// spare. Returns the processes other than the script that were alive.
    pub(super) fn kill_all(&mut self) -> Vec<String> {
        let me = getpid().as_raw();
        let mut killed = Vec::new();
        if let Some(cg) = &self.cgroup {
            killed.extend(
                tree::kill_cgroup(cg, Duration::from_secs(3))
                    .into_iter()
                    .filter(|d| !d.starts_with(&format!("{} ", self.pid))),
            );
        }
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        let spare = self.spare.map(|p| p.as_raw());
        let others = || {
            let mut k = tree::children_of(me);
            k.retain(|p| Some(*p) != spare);
            k
        };
        loop {
            let kids = others();
            if kids.is_empty() {
                break;
            }
            for k in &kids {
                if *k != self.pid.as_raw() && !tree::is_zombie(*k) {
                    let d = tree::describe(*k);
                    if !killed.contains(&d) {
                        killed.push(d);
                    }
                }
                let _ = nix::sys::signal::kill(Pid::from_raw(*k), Signal::SIGKILL);
            }
            self.reap();
            if std::time::Instant::now() >= give_up {
                break;
            }
            if !others().is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.reap();
        killed
    }

    pub(super) fn exited(&self) -> Event {
        match self.status {
            Some(WaitStatus::Exited(_, code)) => Event::Exited {
                code: Some(code),
                signal: None,
                peak_memory_bytes: self.peak_memory,
            },
            Some(WaitStatus::Signaled(_, sig, _)) => Event::Exited {
                code: None,
                signal: Some(sig as i32),
                peak_memory_bytes: self.peak_memory,
            },
            _ => Event::Exited {
                code: None,
                signal: Some(Signal::SIGKILL as i32),
                peak_memory_bytes: None,
            },
        }
    }
}

/// Runs the supervisor for `argv`; the process exit code.
pub fn main(argv: Vec<OsString>) -> i32 {
    if argv.is_empty() {
        eprintln!("supervisor: no command given");
        return 2;
    }
    // SAFETY: the runner passes the control socket as fd 3; nothing else owns it.
    let sock = unsafe { UnixStream::from_raw_fd(CONTROL_FD) };
    let _ = nix::fcntl::fcntl(
        CONTROL_FD,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    if sock.set_nonblocking(true).is_err() {
        eprintln!("supervisor: no control socket on fd {CONTROL_FD}");
        return 2;
    }
    let mut ctl = Control {
        sock,
        buf: Vec::new(),
        eof: false,
        fds: Default::default(),
    };
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        mask.add(s);
    }
    let _ = mask.thread_block();
    let Ok(sfd) = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
    else {
        return 2;
    };
    let _ = nix::sys::prctl::set_child_subreaper(true);

    // The first command says how to start.
    let (mut deadline, cgroup, user, pty, confine) = loop {
        if !wait_readable(&ctl, &sfd, None) {
            return 0;
        }
        match ctl.read().into_iter().next() {
            Some(Command::Start {
                deadline_ns,
                cgroup,
                user,
                pty,
                confine,
            }) => break (deadline_ns, cgroup, user, pty, confine),
            Some(Command::Serve { cgroup, user }) => {
                return super::serve::main(ctl, sfd, &argv, cgroup, user);
            }
            _ => {}
        }
        if ctl.eof {
            return 0;
        }
    };
    let cgroup = cgroup.filter(|d| std::fs::create_dir(d).is_ok() || d.is_dir());
    if deadline.is_some_and(|d| tree::boottime_ns() >= d) {
        ctl.send(&Event::Fenced);
        ctl.send(&Event::Done);
        return 0;
    }
    let terminal = match pty.map(|size| pty::open(size, user)).transpose() {
        Ok(t) => t,
        Err(e) => {
            ctl.send(&Event::SpawnFailed {
                error: format!("pseudo-terminal: {e}"),
            });
            ctl.send(&Event::Done);
            return 0;
        }
    };
    let spawned = spawn(
        &argv,
        cgroup.as_ref(),
        user,
        None,
        terminal.as_ref().map(|t| &t.slave),
        &confine,
    );
    // Only the script's tree may hold the slave: its end is the relay's EIO.
    let master = terminal.map(|t| t.master);
    let mut script = match spawned {
        Ok(pid) => Script::new(pid, cgroup, None),
        Err(e) => {
            ctl.send(&Event::SpawnFailed {
                error: format!("{}: {e}", argv[0].to_string_lossy()),
            });
            ctl.send(&Event::Done);
            if let Some(cg) = &cgroup {
                tree::remove_cgroup(cg);
            }
            return 0;
        }
    };
    let mut relay = master.and_then(|m| pty::Relay::new(m).ok());
    ctl.send(&Event::Started {
        pid: script.pid.as_raw() as u32,
        cgroup: script.cgroup.is_some(),
    });
    release_stdio();

    loop {
        let now = tree::boottime_ns();
        if deadline.is_some_and(|d| now >= d) {
            let killed = script.kill_all();
            ctl.send(&Event::Fenced);
            report_killed(&mut ctl, killed);
            ctl.send(&script.exited());
            break;
        }
        let timeout = deadline.map(|d| Duration::from_nanos(d - now));
        match &mut relay {
            Some(r) => {
                r.wait(&ctl, &sfd, timeout);
                r.pump();
            }
            None => {
                wait_readable(&ctl, &sfd, timeout);
            }
        }
        let mut stop = false;
        while let Ok(Some(info)) = sfd.read_signal() {
            if info.ssi_signo as i32 != Signal::SIGCHLD as i32 {
                stop = true;
            }
        }
        script.reap();
        if stop {
            // Asked to go away: take the whole tree along.
            let killed = script.kill_all();
            report_killed(&mut ctl, killed);
            ctl.send(&script.exited());
            break;
        }
        if script.status.is_some() {
            let killed = script.kill_all();
            report_killed(&mut ctl, killed);
            ctl.send(&script.exited());
            break;
        }
        let mut kill_now = false;
        for c in ctl.read() {
            match c {
                Command::Deadline { deadline_ns } => deadline = deadline_ns,
                Command::Signal { signal } => {
                    if let Ok(sig) = Signal::try_from(signal) {
                        let _ = killpg(script.pid, sig);
                    }
                }
                Command::Kill => kill_now = true,
                Command::Start { .. } | Command::Serve { .. } | Command::Run { .. } => {}
            }
        }
        if ctl.eof || kill_now {
            // EOF: the runner is gone, nobody will report this attempt.
            let killed = script.kill_all();
            report_killed(&mut ctl, killed);
            ctl.send(&script.exited());
            break;
        }
    }
    if let Some(r) = relay {
        // The tree is gone: what it wrote last is still in the terminal.
        r.finish(Duration::from_secs(2));
    }
    if let Some(cg) = &script.cgroup {
        for _ in 0..100 {
            if tree::remove_cgroup(cg) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    ctl.send(&Event::Done);
    0
}

/// `waitpid(-1, WNOHANG)` that also returns the child's peak resident set
/// in bytes (`wait4`'s `ru_maxrss`: the largest of the child and of the
/// descendants it waited for). `None` when there is no child to wait for.
fn wait_any() -> Option<(WaitStatus, u64)> {
    use nix::libc;
    let mut status: libc::c_int = 0;
    // SAFETY: a plain rusage struct for the kernel to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals.
        let pid = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, &mut usage) };
        if pid < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        if pid < 0 {
            return None;
        }
        if pid == 0 {
            return Some((WaitStatus::StillAlive, 0));
        }
        let ws = WaitStatus::from_raw(Pid::from_raw(pid), status).ok()?;
        return Some((ws, (usage.ru_maxrss.max(0) as u64).saturating_mul(1024)));
    }
}

pub(super) fn report_killed(ctl: &mut Control, killed: Vec<String>) {
    if !killed.is_empty() {
        ctl.send(&Event::Killed { processes: killed });
    }
}

/// Waits until the control socket or the signalfd is readable, or `timeout`.
/// False when the control socket is closed and nothing else is pending.
pub(super) fn wait_readable(ctl: &Control, sfd: &SignalFd, timeout: Option<Duration>) -> bool {
    let t = poll_timeout(timeout);
    let mut fds = [
        PollFd::new(ctl.sock.as_fd(), PollFlags::POLLIN),
        PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
    ];
    loop {
        match poll(&mut fds, t) {
            Err(Errno::EINTR) => continue,
            Err(_) => return false,
            Ok(_) => return true,
        }
    }
}

/// A poll timeout for `timeout` (none: forever), rounded up to a whole
/// millisecond so a deadline is never polled for just before it passes.
pub(super) fn poll_timeout(timeout: Option<Duration>) -> PollTimeout {
    match timeout {
        None => PollTimeout::NONE,
        Some(d) => {
            PollTimeout::try_from(d.as_millis().min(60_000) as i32 + 1).unwrap_or(PollTimeout::MAX)
        }
    }
}

/// Starts the script: own process group, dies with us, in its cgroup, as
/// its user, never gaining privileges (`no_new_privs`: setuid binaries do
/// not elevate). `fd3` becomes its file descriptor 3 (a fork server's
/// socket); otherwise it has none (the control socket is close-on-exec).
/// With `tty` (a pseudo-terminal's slave) that is its stdin, stdout and
/// stderr and its controlling terminal, in a session of its own (whose
/// process group is the script's, as without). `confine` (resource
/// limits: cgroup v1 directories, rlimits) is entered with the cgroup.
pub(super) fn spawn(
    argv: &[OsString],
    cgroup: Option<&PathBuf>,
    user: Option<(u32, u32)>,
    fd3: Option<std::os::fd::RawFd>,
    tty: Option<&OwnedFd>,
    confine: &Confine,
) -> std::io::Result<Pid> {
    let me = getpid();
    let procs = cgroup.map(|c| c.join("cgroup.procs"));
    let confine = confine.clone();
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    if let Some(t) = tty {
        cmd.stdin(t.try_clone()?)
            .stdout(t.try_clone()?)
            .stderr(t.try_clone()?);
    }
    let in_terminal = tty.is_some();

    // SAFETY: this process is single-threaded, so anything may run between
    // fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if in_terminal {
                pty::take_terminal()?;
            } else {
                nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
            }
            if let Some(fd) = fd3 {
                nix::unistd::dup2(fd, CONTROL_FD)?;
            }
            // Into the cgroup while still privileged enough to write there.
            if let Some(p) = &procs {
                std::fs::write(p, "0")?;
            }
            // Its resource limits, before its first instruction: nothing
            // it forks can be outside them.
            confine.enter()?;
            if let Some((uid, gid)) = user {
                nix::unistd::setgroups(&[])?;
                nix::unistd::setgid(nix::unistd::Gid::from_raw(gid))?;
                nix::unistd::setuid(nix::unistd::Uid::from_raw(uid))?;
            }
            // After the credential change, which clears it.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if nix::unistd::getppid() != me {
                return Err(std::io::Error::other("the supervisor is gone"));
            }
            nix::sys::prctl::set_no_new_privs()?;
            SigSet::empty().thread_set_mask()?;
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    Ok(Pid::from_raw(child.id() as i32))
}

/// Points our own stdin/stdout/stderr at /dev/null, so the script's pipes
/// close exactly when the script's tree is gone.
pub(super) fn release_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
}
