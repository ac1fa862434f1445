//! Choosing the mechanism once at start: which cgroup hierarchies this
//! runner may create directories in, read from `/proc/self/mountinfo` and
//! `/proc/self/cgroup`, then probed by creating a directory.
//!
//! The parsing and the choice are pure functions (unit-tested in
//! `tests.rs`); only [`detect`] touches the system.

use super::Mechanism;
use std::path::{Path, PathBuf};

/// Controllers a cgroup mechanism needs; `cpu` is used when present.
pub const NEEDED: [&str; 2] = ["memory", "pids"];

/// One cgroup v1 hierarchy: where it is mounted and which controllers it
/// carries (`cpu,cpuacct` mounts carry two).
#[derive(Debug, Clone, PartialEq)]
pub struct V1Mount {
    pub point: PathBuf,
    /// The mount's root inside the hierarchy (`/` unless a container
    /// bind-mounted a subtree).
    pub root: String,
    pub controllers: Vec<String>,
}

/// The cgroup v1 mounts and the cgroup v2 mount point, from mountinfo.
pub fn parse_mountinfo(text: &str) -> (Vec<V1Mount>, Option<PathBuf>) {
    let mut v1 = Vec::new();
    let mut v2 = None;
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split_whitespace().collect();
        let r: Vec<&str> = right.split_whitespace().collect();
        let (Some(root), Some(point), Some(fstype)) = (l.get(3), l.get(4), r.first()) else {
            continue;
        };
        match *fstype {
            "cgroup2" if v2.is_none() => v2 = Some(PathBuf::from(point)),
            "cgroup" => {
                let known = ["memory", "pids", "cpu", "cpuacct", "cpuset", "blkio"];
                let controllers = r
                    .get(2)
                    .map(|opts| {
                        opts.split(',')
                            .filter(|o| known.contains(o))
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default();
                v1.push(V1Mount {
                    point: PathBuf::from(point),
                    root: root.to_string(),
                    controllers,
                });
            }
            _ => {}
        }
    }
    (v1, v2)
}

/// This process's cgroup in the v1 hierarchy carrying `controller`, from
/// `/proc/self/cgroup` (`4:memory:/a/b`, `2:cpu,cpuacct:/a`).
pub fn own_v1_path(proc_cgroup: &str, controller: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
        names
            .split(',')
            .any(|n| n == controller)
            .then(|| path.trim().to_string())
    })
}

/// Where this process's cgroup of a hierarchy is on disk: the mount point
/// plus the path relative to the mount's root.
pub fn own_dir(mount: &V1Mount, own: &str) -> PathBuf {
    let rel = if mount.root != "/" {
        own.strip_prefix(mount.root.as_str()).unwrap_or(own)
    } else {
        own
    };
    mount.point.join(rel.trim_start_matches('/'))
}

/// What the probes found: cgroup v2 controllers available to an attempt's
/// directory under the v2 base, and the v1 base directories (one per
/// controller) the runner could create a directory in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    pub v2_base: Option<PathBuf>,
    pub v2_controllers: Vec<String>,
    pub v1_memory: Option<PathBuf>,
    pub v1_pids: Option<PathBuf>,
    pub v1_cpu: Option<PathBuf>,
}

/// The mechanism for what was found: a cgroup v2 leaf per attempt when
/// the v2 base hands out `memory` and `pids`; else cgroup v1 when both
/// those hierarchies are writable; else rlimits. `cgroups_off` (the
/// runner's `MINITOWER_CGROUPS=off`) leaves rlimits only.
pub fn choose(found: &Found, cgroups_off: bool) -> Mechanism {
    if cgroups_off {
        return Mechanism::Rlimit;
    }
    let has = |c: &str| found.v2_controllers.iter().any(|x| x == c);
    if let Some(base) = &found.v2_base {
        if NEEDED.iter().all(|c| has(c)) {
            return Mechanism::V2 {
                base: base.clone(),
                cpu: has("cpu"),
            };
        }
    }
    if let (Some(memory), Some(pids)) = (&found.v1_memory, &found.v1_pids) {
        return Mechanism::V1 {
            memory: memory.clone(),
            pids: pids.clone(),
            cpu: found.v1_cpu.clone(),
        };
    }
    Mechanism::Rlimit
}

/// Looks at this machine. `v2_base` is the runner's cgroup v2 directory
/// for attempts (`supervisor::tree::cgroup_base`), when it has one.
pub fn detect(scope: &str, v2_base: Option<&Path>) -> Found {
    let mut found = Found::default();
    if let Some(base) = v2_base {
        found.v2_controllers = enable_v2(base);
        found.v2_base = Some(base.to_path_buf());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let (v1, _) = parse_mountinfo(&mountinfo);
    let base_for = |controller: &str, file: &str| -> Option<PathBuf> {
        let mount = v1
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == controller))?;
        let path = own_v1_path(&own, controller)?;
        let base = own_dir(mount, &path).join(format!("minitower-{scope}"));
        probe_dir(&base, file).then_some(base)
    };
    found.v1_memory = base_for("memory", "memory.limit_in_bytes");
    found.v1_pids = base_for("pids", "pids.max");
    found.v1_cpu = base_for("cpu", "cpu.cfs_quota_us");
    found
}

/// Creates `base` and a child in it, and checks the child has `file`.
fn probe_dir(base: &Path, file: &str) -> bool {
    if std::fs::create_dir_all(base).is_err() {
        return false;
    }
    let probe = base.join("probe");
    let made = std::fs::create_dir(&probe).is_ok() || probe.is_dir();
    let ok = made && probe.join(file).exists();
    let _ = std::fs::remove_dir(&probe);
    if !ok {
        let _ = std::fs::remove_dir(base);
    }
    ok
}

/// Makes the cgroup v2 controllers reach the attempts' directories under
/// `base`: enabled in the parent's `cgroup.subtree_control` (refused when
/// the parent holds processes, e.g. the runner itself, unless it is a
/// root) and then in `base`'s. Returns the controllers `base` hands out.
fn enable_v2(base: &Path) -> Vec<String> {
    let read = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let wanted = ["memory", "pids", "cpu"];
    let mut available = read(&base.join("cgroup.controllers"));
    if let Some(parent) = base.parent() {
        for c in wanted.iter().filter(|c| !available.iter().any(|a| a == *c)) {
            let _ = std::fs::write(parent.join("cgroup.subtree_control"), format!("+{c}"));
        }
        available = read(&base.join("cgroup.controllers"));
    }
    for c in wanted.iter().filter(|c| available.iter().any(|a| a == *c)) {
        let _ = std::fs::write(base.join("cgroup.subtree_control"), format!("+{c}"));
    }
    read(&base.join("cgroup.subtree_control"))
}
