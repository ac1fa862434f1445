//! PTY mode: the script's stdin, stdout and stderr are the slave side of a
//! pseudo-terminal, and the supervisor relays what the script writes there
//! from the master to its own stdout, the pipe the runner reads as the
//! `stdout` stream (escape sequences untouched; the runner's line splitter
//! drops the `\r` a terminal adds before each `\n`).
//!
//! It lives in the supervisor, not the runner, so nothing of the fencing
//! changes: the supervisor is still the script's parent and subreaper, the
//! script still dies with it (`PR_SET_PDEATHSIG`) and its tree is still
//! killed at a deadline, a kill or its end. The script becomes the leader
//! of a session of its own (`setsid`) with the slave as its controlling
//! terminal (`TIOCSCTTY`): its session and process group ids are its pid,
//! so the runner's signals to its process group reach it as with pipes.
//!
//! Nobody types on the terminal: the relay writes one end-of-file character
//! to it at the start, so a script reading its stdin gets EOF as it would
//! from the pipes' /dev/null rather than waiting for its timeout.
//!
//! The supervisor keeps no descriptor of the slave, so reading the master
//! fails with EIO exactly when every process that had the terminal open is
//! gone: the normal end of the output. The relay never blocks: the master
//! and the pipe are non-blocking and polled with the control socket, so a
//! runner that stops reading only stalls the script's writes (as a full
//! pipe would), never the supervisor's deadline.

use super::server::{poll_timeout, Control};
use minitower_core::job::PtySize;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::signalfd::SignalFd;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Bytes read from the terminal and not yet written to the pipe, at most.
const BUF_BYTES: usize = 64 * 1024;

/// A fresh pseudo-terminal of `size`; both ends close-on-exec (the script
/// gets the slave as copies on 0, 1 and 2 only). With `user` isolation the
/// slave belongs to the script's user, as a login's terminal does, so
/// opening it by name (`/dev/tty`, `ttyname`) works for it too.
pub(super) fn open(
    size: PtySize,
    user: Option<(u32, u32)>,
) -> nix::Result<nix::pty::OpenptyResult> {
    let winsize = nix::pty::Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // openpty sets the window size on the slave (TIOCSWINSZ).
    let p = nix::pty::openpty(&winsize, None::<&nix::sys::termios::Termios>)?;
    for fd in [&p.master, &p.slave] {
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    if let Some((uid, gid)) = user {
        nix::unistd::fchown(
            p.slave.as_raw_fd(),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )?;
    }
    Ok(p)
}

nix::ioctl_write_int_bad!(tiocsctty, nix::libc::TIOCSCTTY);

/// In the script between fork and exec, with the slave already on 0, 1
/// and 2: a new session whose controlling terminal is the slave.
pub(super) fn take_terminal() -> std::io::Result<()> {
    nix::unistd::setsid()?;
    // SAFETY: a plain ioctl on our own stdin; argument 0 = do not steal.
    unsafe { tiocsctty(0, 0) }?;
    Ok(())
}

/// Copies the terminal's output to the supervisor's stdout.
pub(super) struct Relay {
    /// `None` once reading it failed (EIO: no process has the slave open).
    master: Option<OwnedFd>,
    out: Option<OwnedFd>,
    buf: Vec<u8>,
}

impl Relay {
    /// Relays `master` to a copy of our stdout (taken before the
    /// supervisor points its own stdio at /dev/null).
    pub(super) fn new(master: OwnedFd) -> std::io::Result<Relay> {
        // Nobody types: the first read of the terminal sees end-of-file
        // (VEOF at the start of a line), as a read of the pipes' /dev/null
        // would, instead of waiting for the timeout.
        let _ = nix::unistd::write(&master, b"\x04");
        let out = std::io::stdout().as_fd().try_clone_to_owned()?;
        for fd in [&master, &out] {
            fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        }
        Ok(Relay {
            master: Some(master),
            out: Some(out),
            buf: Vec::with_capacity(BUF_BYTES),
        })
    }

    /// Waits like `server::wait_readable`, and also for terminal output
    /// (while there is room for it) and a writable pipe (while bytes wait).
    pub(super) fn wait(&self, ctl: &Control, sfd: &SignalFd, timeout: Option<Duration>) {
        let mut fds = vec![
            PollFd::new(ctl.sock.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(m) = self.master.as_ref().filter(|_| self.buf.len() < BUF_BYTES) {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        if let Some(o) = self.out.as_ref().filter(|_| !self.buf.is_empty()) {
            fds.push(PollFd::new(o.as_fd(), PollFlags::POLLOUT));
        }
        while let Err(Errno::EINTR) = poll(&mut fds, poll_timeout(timeout)) {}
    }

    /// Moves what it can without blocking (a bounded number of rounds, so
    /// a script that writes without pause cannot hold up the deadline).
    /// False once the terminal has no writer left (or failed) and every
    /// byte read was passed on.
    pub(super) fn pump(&mut self) -> bool {
        for _ in 0..16 {
            let read = self.fill();
            let wrote = self.flush();
            if self.out.is_none() {
                // Nobody reads the pipe: keep the script from blocking.
                self.buf.clear();
            }
            if !read && !wrote {
                break;
            }
        }
        self.master.is_some() || (!self.buf.is_empty() && self.out.is_some())
    }

    /// After the script's tree is gone: passes on what is left in the
    /// terminal, for at most `within` (the runner may not be reading).
    pub(super) fn finish(mut self, within: Duration) {
        let until = Instant::now() + within;
        while self.pump() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds = Vec::new();
            if let Some(m) = self.master.as_ref().filter(|_| self.buf.len() < BUF_BYTES) {
                fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            }
            if let Some(o) = self.out.as_ref().filter(|_| !self.buf.is_empty()) {
                fds.push(PollFd::new(o.as_fd(), PollFlags::POLLOUT));
            }
            let _ = poll(&mut fds, poll_timeout(Some(left)));
        }
    }

    /// Reads from the terminal into the buffer; whether anything came.
    fn fill(&mut self) -> bool {
        let Some(m) = &self.master else { return false };
        let room = BUF_BYTES.saturating_sub(self.buf.len());
        if room == 0 {
            return false;
        }
        let start = self.buf.len();
        self.buf.resize(start + room, 0);
        let got = nix::unistd::read(m.as_raw_fd(), &mut self.buf[start..]);
        let n = match got {
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => 0,
            // EIO: the last process with the slave open is gone.
            Err(_) => {
                self.master = None;
                0
            }
        };
        self.buf.truncate(start + n);
        if n == 0 && got == Ok(0) {
            self.master = None;
        }
        n > 0
    }

    /// Writes buffered bytes to the pipe; whether any went.
    fn flush(&mut self) -> bool {
        let Some(o) = &self.out else { return false };
        if self.buf.is_empty() {
            return false;
        }
        match nix::unistd::write(o, &self.buf) {
            Ok(n) => {
                self.buf.drain(..n);
                n > 0
            }
            Err(Errno::EAGAIN | Errno::EINTR) => false,
            // Nobody reads the pipe any more: the output has nowhere to go.
            Err(_) => {
                self.out = None;
                self.buf.clear();
                false
            }
        }
    }
}
