//! A supervisor in serve mode: the supervisor of a fork server (see
//! `crate::forkserver` for the design and its proof).
//!
//! It keeps everything an attempt's supervisor keeps, for one run at a time:
//! the warm interpreter is its child, every run is forked by that
//! interpreter twice over so that it is orphaned at once and re-parented to
//! this process (a subreaper), which then waits for it, holds its fencing
//! deadline, signals its process group, kills its whole tree at its end or
//! at the deadline, and reports exactly what an attempt's supervisor
//! reports. The warm interpreter is the one child a run's end leaves alone.
//! A run's cgroup is entered by moving the interpreter into it for the
//! fork, so the run is born inside it (nothing it starts can escape before
//! a move), then the interpreter is moved back into its own.

use super::protocol::{Command, Event};
use super::server::{release_stdio, report_killed, spawn, wait_readable, Control, Script};
use super::tree;
use crate::limits::Confine;
use nix::sys::signal::{killpg, Signal};
use nix::sys::signalfd::SignalFd;
use nix::unistd::{getpid, Pid};
use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The longest a fork may take before the server is considered broken.
const FORK_TIMEOUT: Duration = Duration::from_secs(10);

/// The warm interpreter and the socket to it.
struct Zygote {
    pid: Pid,
    sock: UnixStream,
    replies: std::io::BufReader<UnixStream>,
    /// Its own cgroup (runs get theirs only when this exists).
    home: Option<PathBuf>,
}

/// Runs the fork server's supervisor; the process exit code.
pub(super) fn main(
    mut ctl: Control,
    sfd: SignalFd,
    argv: &[OsString],
    cgroup: Option<PathBuf>,
    user: Option<(u32, u32)>,
) -> i32 {
    let home = cgroup.filter(|d| std::fs::create_dir(d).is_ok() || d.is_dir());
    let (ours, theirs) = match UnixStream::pair() {
        Ok(p) => p,
        Err(e) => return spawn_failed(&mut ctl, format!("socket: {e}")),
    };
    let pid = match spawn(
        argv,
        home.as_ref(),
        user,
        Some(theirs.as_raw_fd()),
        None,
        &Confine::default(),
    ) {
        Ok(pid) => pid,
        Err(e) => {
            if let Some(cg) = &home {
                tree::remove_cgroup(cg);
            }
            return spawn_failed(&mut ctl, format!("{}: {e}", argv[0].to_string_lossy()));
        }
    };
    drop(theirs);
    let _ = ours.set_read_timeout(Some(FORK_TIMEOUT));
    let _ = ours.set_write_timeout(Some(FORK_TIMEOUT));
    let Ok(reader) = ours.try_clone() else {
        return 2;
    };
    let mut z = Zygote {
        pid,
        sock: ours,
        replies: std::io::BufReader::new(reader),
        home,
    };
    ctl.send(&Event::Started {
        pid: pid.as_raw() as u32,
        cgroup: z.home.is_some(),
    });
    release_stdio();

    // The run in progress (at most one) and its fencing deadline.
    let mut run: Option<Script> = None;
    let mut deadline: Option<u64> = None;
    // Only the warm interpreter: its `spare_gone` says when it died.
    let mut idle = Script::new(Pid::from_raw(-2), None, Some(z.pid));
    loop {
        let now = tree::boottime_ns();
        if run.is_some() && deadline.is_some_and(|d| now >= d) {
            let mut s = run.take().unwrap_or_else(|| unreachable!());
            let killed = s.kill_all();
            ctl.send(&Event::Fenced);
            finish(&mut ctl, s, killed, &mut idle);
        }
        let timeout = deadline
            .filter(|_| run.is_some())
            .map(|d| Duration::from_nanos(d.saturating_sub(now)));
        wait_readable(&ctl, &sfd, timeout);
        let mut stop = false;
        while let Ok(Some(info)) = sfd.read_signal() {
            if info.ssi_signo as i32 != Signal::SIGCHLD as i32 {
                stop = true;
            }
        }
        match run.as_mut() {
            Some(s) => {
                s.reap();
                idle.spare_gone |= s.spare_gone;
            }
            None => idle.reap(),
        }
        if run.as_ref().is_some_and(|s| s.status.is_some()) {
            let mut s = run.take().unwrap_or_else(|| unreachable!());
            let killed = s.kill_all();
            finish(&mut ctl, s, killed, &mut idle);
        }
        let mut kill_now = false;
        for c in ctl.read() {
            match c {
                Command::Run {
                    deadline_ns,
                    cgroup,
                    request,
                } => {
                    let out = ctl.fds.pop_front();
                    let err = ctl.fds.pop_front();
                    let (Some(out), Some(err)) = (out, err) else {
                        spawn_failed(&mut ctl, "the run's stdio did not arrive".into());
                        continue;
                    };
                    if run.is_some() || idle.spare_gone {
                        spawn_failed(&mut ctl, "the fork server is busy or gone".into());
                        continue;
                    }
                    if deadline_ns.is_some_and(|d| tree::boottime_ns() >= d) {
                        ctl.send(&Event::Fenced);
                        ctl.send(&Event::Done);
                        continue;
                    }
                    let cg = cgroup
                        .filter(|_| z.home.is_some())
                        .filter(|d| std::fs::create_dir(d).is_ok() || d.is_dir());
                    match fork_run(&mut z, cg.as_deref(), &request, [out, err]) {
                        Ok(pid) => {
                            deadline = deadline_ns;
                            ctl.send(&Event::Started {
                                pid: pid.as_raw() as u32,
                                cgroup: cg.is_some(),
                            });
                            run = Some(Script::new(pid, cg, Some(z.pid)));
                        }
                        Err(e) => {
                            if let Some(cg) = &cg {
                                tree::remove_cgroup(cg);
                            }
                            // A server that failed a fork serves no more.
                            let _ = nix::sys::signal::kill(z.pid, Signal::SIGKILL);
                            spawn_failed(&mut ctl, format!("fork server: {e}"));
                        }
                    }
                }
                Command::Deadline { deadline_ns } => deadline = deadline_ns,
                Command::Signal { signal } => {
                    if let (Some(s), Ok(sig)) = (&run, Signal::try_from(signal)) {
                        let _ = killpg(s.pid, sig);
                    }
                }
                Command::Kill => kill_now = true,
                Command::Start { .. } | Command::Serve { .. } => {}
            }
        }
        if kill_now {
            if let Some(mut s) = run.take() {
                let killed = s.kill_all();
                finish(&mut ctl, s, killed, &mut idle);
            }
        }
        if ctl.eof || stop || (idle.spare_gone && run.is_none()) {
            // The runner is gone or asked us to go, or nothing is left to
            // serve: the run (if any) and the interpreter go along.
            if let Some(mut s) = run.take() {
                let killed = s.kill_all();
                finish(&mut ctl, s, killed, &mut idle);
            }
            let _ = nix::sys::signal::kill(z.pid, Signal::SIGKILL);
            let mut all = Script::new(z.pid, z.home.take(), None);
            all.kill_all();
            if let Some(cg) = &all.cgroup {
                tree::remove_cgroup(cg);
            }
            return 0;
        }
    }
}

/// Reports the end of a run (its tree already killed) and removes its cgroup.
fn finish(ctl: &mut Control, s: Script, killed: Vec<String>, idle: &mut Script) {
    idle.spare_gone |= s.spare_gone;
    report_killed(ctl, killed);
    ctl.send(&s.exited());
    if let Some(cg) = &s.cgroup {
        for _ in 0..100 {
            if tree::remove_cgroup(cg) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    ctl.send(&Event::Done);
}

fn spawn_failed(ctl: &mut Control, error: String) -> i32 {
    ctl.send(&Event::SpawnFailed { error });
    ctl.send(&Event::Done);
    0
}

/// Has the warm interpreter fork one run (inside `cgroup` when given) and
/// returns its pid; by then it is our child.
fn fork_run(
    z: &mut Zygote,
    cgroup: Option<&Path>,
    request: &str,
    stdio: [OwnedFd; 2],
) -> Result<Pid, String> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let procs = |dir: &Path| std::fs::write(dir.join("cgroup.procs"), z.pid.to_string());
    if let Some(cg) = cgroup {
        procs(cg).map_err(|e| format!("into the run's cgroup: {e}"))?;
    }
    let result = (|| {
        let header = (request.len() as u64).to_be_bytes();
        let fds = [stdio[0].as_raw_fd(), stdio[1].as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let iov = [std::io::IoSlice::new(&header)];
        let sent = sendmsg::<()>(z.sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
            .map_err(|e| format!("send: {e}"))?;
        (&z.sock)
            .write_all(&header[sent..])
            .and_then(|_| (&z.sock).write_all(request.as_bytes()))
            .map_err(|e| format!("send: {e}"))?;
        let mut line = String::new();
        z.replies
            .read_line(&mut line)
            .map_err(|e| format!("no answer: {e}"))?;
        let reply: serde_json::Value =
            serde_json::from_str(&line).map_err(|_| format!("answer {line:?}"))?;
        match reply["pid"].as_i64().and_then(|p| i32::try_from(p).ok()) {
            Some(pid) => Ok(Pid::from_raw(pid)),
            None => Err(format!("answer {}", line.trim())),
        }
    })();
    if cgroup.is_some() {
        if let Some(home) = &z.home {
            procs(home).map_err(|e| format!("back into its cgroup: {e}"))?;
        }
    }
    drop(stdio);
    let pid = result?;
    // The middle process is gone before the answer, so the run is ours
    // (a zombie stays our child until reaped).
    if tree::children_of(getpid().as_raw()).contains(&pid.as_raw()) {
        Ok(pid)
    } else {
        Err(format!("the forked run {pid} is not our child"))
    }
}
