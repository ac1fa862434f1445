//! Fenced execution: a supervisor process per attempt.
//!
//! # The invariant
//! Every process an attempt starts, however it detaches (`setsid`, double
//! fork), is dead before the control plane can hand the run to anyone else:
//! whether the runner exits, crashes, is SIGKILLed, hangs, is frozen with
//! SIGSTOP or loses the network.
//!
//! # How it is kept
//! The runner does not start scripts itself. It starts a small supervisor
//! (this same executable, re-executed with [`ENTRY_ARG`]) in a session of its
//! own, so a signal to the runner's process group never reaches it. The
//! supervisor is single-threaded and synchronous, and:
//! - makes itself a *child subreaper* (`PR_SET_CHILD_SUBREAPER`): every
//!   orphan of the script's tree (a `setsid` daemon, a double-forked
//!   grandchild) is re-parented to it, never to init, so it can always find
//!   and kill them;
//! - where the runner may create cgroup v2 directories, puts the script in a
//!   cgroup of its own and ends it with `cgroup.kill` (atomic, even against a
//!   fork bomb), then sweeps its children as above;
//! - starts the script with `PR_SET_PDEATHSIG = SIGKILL`, so the script dies
//!   with its supervisor even if the supervisor itself is SIGKILLed;
//! - holds the **fencing deadline**, an absolute `CLOCK_BOOTTIME` instant
//!   computed by the runner as `send time of the last acknowledged start or
//!   heartbeat + TTL − margin` (see [`crate::lease`]). When it passes without
//!   an extension the supervisor kills the whole tree on its own, so a
//!   frozen or hung runner cannot keep a script alive past the lease;
//! - kills the whole tree at once when its control socket reaches EOF, which
//!   is what happens when the runner dies in any way (the kernel closes the
//!   runner's end);
//! - at the script's exit kills whatever the script left behind, and reports
//!   each killed process so the run's log can say so.
//!
//! In PTY mode the supervisor also owns the script's pseudo-terminal and
//! relays its output without ever blocking (`pty.rs`); none of the above
//! changes.
//!
//! A runner that restarts with the same data dir kills what an earlier
//! incarnation left (its supervisors SIGKILLed too, by an OOM killer or a
//! `kill -9` of everything): by the runner's cgroup directory, and by the
//! scope marker [`SCOPE_VAR`] every supervised process carries in its
//! environment ([`tree::kill_leftovers`]).
//!
//! # The margin and its assumption
//! The server sets `lease_expires_at = time it handled the call + TTL` on its
//! clock (the database's clock on PostgreSQL) and only hands the run out
//! again after that. The runner's fencing deadline starts from the moment it
//! *sent* the call, which is earlier in real time, so no clock agreement is
//! needed; the margin (TTL/10, between 200 ms and 5 s) covers the two hosts'
//! clock *rates* differing (bounded drift: NTP-disciplined clocks differ by
//! well under 0.1 %) and the time the kill itself takes.
//!
//! # Proof
//! `tests/fencing.rs` starts real runner processes and scripts that write
//! ground truth (pid, attempt, start/end), SIGKILLs and SIGSTOPs the runner,
//! and checks that no two attempts overlapped and that `setsid` daemons and
//! double-forked grandchildren are gone after every kind of attempt end.

pub(crate) mod client;
mod protocol;
mod pty;
mod serve;
pub(crate) mod server;
pub(crate) mod tree;

pub use protocol::{Command, Event};

/// The argument that turns this executable into a supervisor.
pub const ENTRY_ARG: &str = "__minitower-supervise";

/// Environment variable naming the runner instance every supervised process
/// belongs to; a restarted runner kills processes that still carry it.
pub const SCOPE_VAR: &str = "MINITOWER_RUNNER_SCOPE";

/// The file descriptor of the supervisor's control socket.
pub(crate) const CONTROL_FD: i32 = 3;

/// Runs the supervisor and exits when this process was started as one;
/// returns at once otherwise. Call it first thing in `main`, before any
/// thread (an async runtime) is started: the supervisor must stay
/// single-threaded.
pub fn run_if_requested() {
    let mut args = std::env::args_os();
    let _exe = args.next();
    if args.next().as_deref() != Some(std::ffi::OsStr::new(ENTRY_ARG)) {
        return;
    }
    let rest: Vec<std::ffi::OsString> = args.collect();
    let argv = match rest.first().map(|a| a.as_os_str()) {
        Some(a) if a == "--" => rest[1..].to_vec(),
        _ => rest,
    };
    std::process::exit(server::main(argv));
}
