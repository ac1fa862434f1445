//! Finding and killing process trees: cgroup v2 directories, the children of
//! a subreaper, and what an earlier runner incarnation left running.
//!
//! Everything here reads `/proc` and `/sys/fs/cgroup` directly; a pid is
//! only ever signalled when it is a child of the caller (so it cannot be a
//! recycled pid: an unreaped child's pid is never reused), sits in a cgroup
//! we created, or carries our scope marker in its environment.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Now on `CLOCK_BOOTTIME` (counts suspend, unlike `CLOCK_MONOTONIC`), in ns.
pub fn boottime_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| (t.tv_sec() as u64).saturating_mul(1_000_000_000) + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// `deadline` (a tokio/std instant) on `CLOCK_BOOTTIME`.
pub fn to_boottime(deadline: std::time::Instant) -> u64 {
    let now = std::time::Instant::now();
    let left = deadline.saturating_duration_since(now);
    boottime_ns().saturating_add(left.as_nanos().min(u64::MAX as u128) as u64)
}

/// The children of process `pid` (a single-threaded one, such as the
/// supervisor), from `/proc/<pid>/task/<pid>/children`, or by scanning
/// `/proc` where the kernel lacks that file.
pub fn children_of(pid: i32) -> Vec<i32> {
    if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        return s
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
    }
    all_pids()
        .into_iter()
        .filter(|p| stat_field(*p).map(|(ppid, _)| ppid) == Some(pid))
        .collect()
}

fn all_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect()
}

/// Parent pid and state letter of `pid`.
fn stat_field(pid: i32) -> Option<(i32, char)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold spaces: parse after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Whether `pid` is a zombie (already dead, waiting to be reaped).
pub fn is_zombie(pid: i32) -> bool {
    matches!(stat_field(pid), Some((_, 'Z')) | None)
}

/// `pid (name)` for logs.
pub fn describe(pid: i32) -> String {
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    format!("{pid} ({name})")
}

/// The cgroup v2 directory under which this runner may create one cgroup per
/// attempt, or `None` when cgroup v2 is absent or not writable by us.
/// `<cgroup2 mount><our own cgroup>/minitower-<scope>`; created and probed.
pub fn cgroup_base(scope: &str) -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))
            .flatten()
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let base = mount
        .join(own.trim_start_matches('/'))
        .join(format!("minitower-{scope}"));
    std::fs::create_dir_all(&base).ok()?;
    let probe = base.join("probe");
    let ok = std::fs::create_dir(&probe).is_ok() || probe.is_dir();
    let usable = ok && probe.join("cgroup.procs").exists();
    let _ = std::fs::remove_dir(&probe);
    usable.then_some(base)
}

/// Kills every process of the cgroup at `dir` (`cgroup.kill`, or each listed
/// pid on kernels before 5.14) and waits up to `wait` for it to empty.
/// Returns the processes that were alive, as `pid (name)`.
pub fn kill_cgroup(dir: &Path, wait: Duration) -> Vec<String> {
    let procs = || -> Vec<i32> {
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    };
    let alive: Vec<String> = procs()
        .into_iter()
        .filter(|p| !is_zombie(*p))
        .map(describe)
        .collect();
    let deadline = Instant::now() + wait;
    let has_kill = std::fs::write(dir.join("cgroup.kill"), "1").is_ok();
    loop {
        let left = procs();
        if left.is_empty() || Instant::now() >= deadline {
            break;
        }
        if !has_kill {
            for p in left {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    alive
}

/// Removes a cgroup directory (after it is empty); false when it is not.
pub fn remove_cgroup(dir: &Path) -> bool {
    std::fs::remove_dir(dir).is_ok() || !dir.exists()
}

/// Kills what an earlier runner of the same scope left running: every
/// cgroup under `cgroup_base`, then every process whose environment carries
/// `SCOPE_VAR=scope`. Returns what was killed, as `pid (name)`.
pub fn kill_leftovers(scope: &str, cgroup_base: Option<&Path>) -> Vec<String> {
    let mut killed = Vec::new();
    if let Some(base) = cgroup_base {
        if let Ok(dir) = std::fs::read_dir(base) {
            for e in dir.flatten() {
                let p = e.path();
                if p.is_dir() {
                    killed.extend(kill_cgroup(&p, Duration::from_secs(2)));
                    remove_cgroup(&p);
                }
            }
        }
    }
    let me = std::process::id() as i32;
    let marker = format!("{}={scope}", super::SCOPE_VAR).into_bytes();
    // Two passes: a process forked while the first pass ran is caught by the second.
    for _ in 0..2 {
        for pid in all_pids() {
            if pid == me || pid <= 1 || is_zombie(pid) {
                continue;
            }
            let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            if env.split(|b| *b == 0).any(|kv| kv == marker.as_slice()) {
                let d = describe(pid);
                if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                    killed.push(d);
                }
            }
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_children_are_listed() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        // A multi-threaded test process: scan every thread's children file.
        let found = std::fs::read_dir(format!("/proc/{me}/task"))
            .unwrap()
            .flatten()
            .any(|t| {
                std::fs::read_to_string(t.path().join("children"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .any(|p| p == child.id().to_string())
            })
            || stat_field(child.id() as i32).map(|s| s.0) == Some(me);
        assert!(found);
        let pid = child.id() as i32;
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        while !describe(pid).contains("sleep") && std::time::Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(describe(pid).contains("sleep"), "{}", describe(pid));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn boottime_moves_forward() {
        let a = boottime_ns();
        let b = to_boottime(std::time::Instant::now() + Duration::from_secs(10));
        assert!(a > 0);
        assert!(b >= a + 9_000_000_000);
    }
}
