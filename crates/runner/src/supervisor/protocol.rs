//! Messages between the runner and a supervisor: one JSON object per line on
//! the control socket (file descriptor 3 of the supervisor).

use crate::limits::Confine;
use minitower_core::job::PtySize;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Runner → supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// The first message: start the script. `deadline_ns` is an absolute
    /// `CLOCK_BOOTTIME` time (none: no deadline); `cgroup` a cgroup v2
    /// directory to create for the script.
    Start {
        deadline_ns: Option<u64>,
        cgroup: Option<PathBuf>,
        /// uid and gid to run the script as (`user` isolation).
        #[serde(default)]
        user: Option<(u32, u32)>,
        /// Give the script a pseudo-terminal of this size instead of the
        /// supervisor's pipes (see `supervisor/pty.rs`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pty: Option<PtySize>,
        /// Resource limits the script enters between fork and exec (cgroup
        /// v1 directories, rlimits; see `crate::limits`).
        #[serde(default, skip_serializing_if = "Confine::is_empty")]
        confine: Confine,
    },
    /// The first message of a fork server (see `crate::forkserver`): start
    /// the warm interpreter in `cgroup`, as `user`, and wait for runs.
    Serve {
        cgroup: Option<PathBuf>,
        #[serde(default)]
        user: Option<(u32, u32)>,
    },
    /// Fork server: fork one run. `request` is handed to the interpreter;
    /// the run's stdout and stderr come with the first byte of this line as
    /// SCM_RIGHTS. Like `Start`, a deadline already passed starts nothing.
    Run {
        deadline_ns: Option<u64>,
        cgroup: Option<PathBuf>,
        request: String,
    },
    /// A new fencing deadline (after a heartbeat was acknowledged).
    Deadline { deadline_ns: Option<u64> },
    /// A signal for the script's process group (SIGTERM on cancel/timeout).
    Signal { signal: i32 },
    /// Kill the whole tree now.
    Kill,
}

/// Supervisor → runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The script runs with this pid (its own process group).
    Started { pid: u32, cgroup: bool },
    /// The script could not be started.
    SpawnFailed { error: String },
    /// The fencing deadline passed: the tree was killed.
    Fenced,
    /// Processes killed after the script's end or at a kill, as `pid (name)`.
    Killed { processes: Vec<String> },
    /// The script ended: exit code or terminating signal, and the largest
    /// resident set of the script or a descendant it waited for (`wait4`'s
    /// `ru_maxrss`), in bytes.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
        #[serde(default)]
        peak_memory_bytes: Option<u64>,
    },
    /// Nothing of the tree is left; the supervisor exits next (a fork
    /// server: the run is over, the server waits for the next one).
    Done,
}

/// One message as a line.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(msg).unwrap_or_default();
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let c = Command::Start {
            deadline_ns: Some(5),
            cgroup: Some("/sys/fs/cgroup/x".into()),
            user: Some((100_000, 100_000)),
            pty: Some(PtySize {
                cols: 120,
                rows: 40,
            }),
            confine: Confine {
                cgroups: vec!["/sys/fs/cgroup/pids/m/1-1".into()],
                address_space: Some(64 << 20),
            },
        };
        let line = encode(&c);
        assert_eq!(line.last(), Some(&b'\n'));
        let back: Command = serde_json::from_slice(&line).unwrap();
        assert_eq!(back, c);
        let e = Event::Exited {
            code: None,
            signal: Some(9),
            peak_memory_bytes: Some(1 << 20),
        };
        let back: Event = serde_json::from_slice(&encode(&e)).unwrap();
        assert_eq!(back, e);
        // An older supervisor's messages still read.
        let old: Command =
            serde_json::from_str(r#"{"op":"start","deadline_ns":null,"cgroup":null}"#).unwrap();
        assert!(matches!(old, Command::Start { pty: None, ref confine, .. } if confine.is_empty()));
        let old: Event =
            serde_json::from_str(r#"{"event":"exited","code":0,"signal":null}"#).unwrap();
        assert!(matches!(
            old,
            Event::Exited {
                peak_memory_bytes: None,
                ..
            }
        ));
    }
}
