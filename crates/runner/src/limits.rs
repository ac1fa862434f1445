//! Resource limits of an attempt: memory (the whole tree), CPU (cores as a
//! quota), pids (processes and threads of the tree) and workspace disk.
//!
//! # The invariant
//! - Every process of a limited attempt is inside its limits from its
//!   first instruction to its end, and nothing it forks can leave them:
//!   a fork bomb is bounded by `pids`, an allocation spree by `memory`.
//! - An attempt a limit ended fails, and its reason names the limit
//!   ("memory limit 256 MiB exceeded", "pids limit 64 reached", "disk limit
//!   1 GiB exceeded") from what the kernel counted (`oom_kill` in
//!   `memory.events` / `memory.oom_control`, `max` in `pids.events`) or the
//!   runner measured (disk), never guessed from an exit code.
//! - An attempt's cgroup directories do not outlive it, nor a crashed
//!   runner: the next start of the same data dir removes them.
//!
//! # How it is kept
//! The mechanism is chosen once at start ([`probe`]) and logged:
//! - **cgroup v2** when the runner's v2 directory can hand `memory` and
//!   `pids` (and `cpu` when present) to its children: per attempt the
//!   runner creates `<base>/<run>-<attempt>` with `memory.max`,
//!   `memory.swap.max = 0` (swap would bypass the limit),
//!   `memory.oom.group = 1`, `pids.max`, `cpu.max`; the supervisor's
//!   kill cgroup is its child `job`, which enables no controller, so its
//!   usage is charged to the parent and the parent's limits apply.
//! - **cgroup v1** when the `memory` and `pids` hierarchies (and `cpu`,
//!   when present) are writable: one directory per hierarchy with
//!   `memory.limit_in_bytes` (+ `memory.memsw.limit_in_bytes` where swap
//!   accounting exists), `pids.max`, `cpu.cfs_quota_us`/`cfs_period_us`.
//! - **rlimit** otherwise: `RLIMIT_AS` for memory only. `RLIMIT_NPROC`
//!   counts every process of the user and root is exempt, so pids are not
//!   enforced; rlimits cannot share CPU, so cpus are not either; the run's
//!   setup log says so. The kernel counts no limit kill here, so no
//!   reason is given: the script sees its allocations fail.
//!
//! The script enters its cgroups *before it execs*: the supervisor, a
//! single-threaded process, writes `0` to each directory's `cgroup.procs`
//! (and sets `RLIMIT_AS`) between fork and exec, while still privileged
//! ([`Confine`], applied in `supervisor/server.rs`). Children inherit the
//! membership, so there is no moment a fork could escape. The supervisor
//! itself stays outside, so a limit never takes away its power to kill the
//! tree and report. Fork servers' interpreters live outside any attempt's
//! cgroups, so a run with cgroup limits is always started plainly.
//!
//! The disk limit has no kernel mechanism on an ordinary filesystem: a
//! watcher ([`disk`]) measures the workspace every 500 ms and has the tree
//! killed when it is over; a last measurement at the end catches a script
//! that wrote faster than the watcher looked.
//!
//! After the end (the supervisor reports `done` once the tree is gone) the
//! runner reads the counters and the peak memory, then removes the
//! directories; a directory that still holds processes (a supervisor that
//! died) has them killed first. At start the runner sweeps its bases.
//!
//! # Proof
//! `tests/limits.rs` runs real scripts under a real runner: a Python
//! allocation past `memory = "64MiB"` fails with "memory limit 64 MiB
//! exceeded"; a fork bomb under `pids = 32` fails with the pids reason, the
//! next run succeeds, and none of its processes or cgroup directories are
//! left; a run writing past `disk = "8MiB"` fails with the disk reason; a
//! run within its limits succeeds with its peak memory reported. Each test
//! prints why it skips when the machine lacks the mechanism it needs. The
//! parsing of the kernel's files, the choice of the mechanism and the
//! reasons are unit-tested (`limits/tests.rs`).

mod disk;
mod probe;
#[cfg(test)]
mod tests;

use crate::error::SetupError;
use crate::supervisor::client::Ending;
use crate::supervisor::tree;
use minitower_core::job::{human, Limits};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How limits are enforced on this runner.
#[derive(Debug, Clone, PartialEq)]
pub enum Mechanism {
    /// Attempt directories under the runner's cgroup v2 directory; `cpu`
    /// when the cpu controller is handed out too.
    V2 {
        base: PathBuf,
        cpu: bool,
    },
    /// One directory per attempt in each v1 hierarchy, under these bases.
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpu: Option<PathBuf>,
    },
    Rlimit,
}

/// What the supervisor applies to the script between fork and exec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Confine {
    /// cgroup (v1) directories to enter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroups: Vec<PathBuf>,
    /// `RLIMIT_AS` in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_space: Option<u64>,
}

impl Confine {
    pub fn is_empty(&self) -> bool {
        self.cgroups.is_empty() && self.address_space.is_none()
    }

    /// Enters the cgroups and sets the rlimits. Only for the child between
    /// fork and exec of a single-threaded process (the supervisor), before
    /// it gives up privileges.
    pub(crate) fn enter(&self) -> std::io::Result<()> {
        for dir in &self.cgroups {
            std::fs::write(dir.join("cgroup.procs"), "0")?;
        }
        if let Some(bytes) = self.address_space {
            use nix::sys::resource::{setrlimit, Resource};
            setrlimit(Resource::RLIMIT_AS, bytes, bytes)?;
        }
        Ok(())
    }
}

/// The runner's mechanism, chosen once at start.
#[derive(Debug)]
pub struct Limiter {
    mech: Mechanism,
}

/// The period of CPU quotas, µs (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

impl Limiter {
    /// Looks at the machine and picks the mechanism (see the module note).
    /// `v2_base` is the runner's cgroup v2 directory for attempts;
    /// `cgroups_off` is `MINITOWER_CGROUPS=off`.
    pub fn detect(scope: &str, v2_base: Option<&Path>, cgroups_off: bool) -> Limiter {
        let found = if cgroups_off {
            probe::Found::default()
        } else {
            probe::detect(scope, v2_base)
        };
        let mech = probe::choose(&found, cgroups_off);
        // Bases of hierarchies the choice does not use go away again.
        if !matches!(mech, Mechanism::V1 { .. }) {
            for b in [&found.v1_memory, &found.v1_pids, &found.v1_cpu]
                .into_iter()
                .flatten()
            {
                let _ = std::fs::remove_dir(b);
            }
        }
        Limiter { mech }
    }

    /// "cgroup v2", "cgroup v1" or "rlimit".
    pub fn mode(&self) -> &'static str {
        match self.mech {
            Mechanism::V2 { .. } => "cgroup v2",
            Mechanism::V1 { .. } => "cgroup v1",
            Mechanism::Rlimit => "rlimit",
        }
    }

    /// The mode and what it leaves unenforced, for the start log line.
    pub fn describe(&self) -> String {
        let how = match &self.mech {
            Mechanism::V2 { base, cpu } => format!(
                "{} at {}{}",
                self.mode(),
                base.display(),
                if *cpu { "" } else { "; cpus not enforced (no cpu controller)" }
            ),
            Mechanism::V1 { memory, cpu, .. } => format!(
                "{} (memory at {}){}",
                self.mode(),
                memory.display(),
                if cpu.is_some() { "" } else { "; cpus not enforced (no writable cpu hierarchy)" }
            ),
            Mechanism::Rlimit => format!(
                "{}: memory as RLIMIT_AS; pids and cpus not enforced (no writable cgroup with memory and pids)",
                self.mode()
            ),
        };
        format!("{how}; disk by a workspace watcher")
    }

    fn bases(&self) -> Vec<&Path> {
        match &self.mech {
            Mechanism::V2 { base, .. } => vec![base],
            Mechanism::V1 { memory, pids, cpu } => {
                let mut b = vec![memory.as_path(), pids.as_path()];
                b.extend(cpu.as_deref());
                b
            }
            Mechanism::Rlimit => Vec::new(),
        }
    }

    /// Removes what an earlier incarnation of this runner left in its
    /// bases (after a crash): kills what is still inside, then removes the
    /// directories. Returns the processes killed, as `pid (name)`.
    pub fn clean_stale(&self) -> Vec<String> {
        let mut killed = Vec::new();
        for base in self.bases() {
            let Ok(dir) = std::fs::read_dir(base) else {
                continue;
            };
            for e in dir.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    killed.extend(sweep(&e.path()));
                }
            }
        }
        killed
    }

    /// Removes the v1 bases at shutdown (the v2 base is the supervisors').
    pub fn remove_bases(&self) {
        if let Mechanism::V1 { .. } = self.mech {
            for b in self.bases() {
                let _ = std::fs::remove_dir(b);
            }
        }
    }

    /// Sets up the limits of one attempt. `name` names its directories
    /// (`<run>-<attempt>`); `kill_cgroup` is the cgroup v2 directory the
    /// supervisor would kill the tree with; `workspace` is watched for disk.
    pub fn prepare(
        &self,
        name: &str,
        limits: &Limits,
        kill_cgroup: Option<PathBuf>,
        workspace: &Path,
    ) -> Result<AttemptLimits, SetupError> {
        let mut a = AttemptLimits {
            limits: *limits,
            mode: if limits.is_empty() {
                "none"
            } else {
                self.mode()
            },
            confine: Confine::default(),
            cgroup: kill_cgroup,
            made: Vec::new(),
            memory: None,
            pids: None,
            before: Counters::default(),
            notes: Vec::new(),
            disk: None,
        };
        if let Some(d) = limits.disk {
            a.disk = Some(disk::Watch::start(workspace.to_path_buf(), d));
        }
        let kernel = limits.memory.is_some() || limits.pids.is_some() || limits.cpus.is_some();
        if !kernel {
            return Ok(a);
        }
        match &self.mech {
            Mechanism::V2 { base, cpu } => {
                let dir = a.make(base, name)?;
                if let Some(m) = limits.memory {
                    write(&dir, "memory.max", m)?;
                    write_if_present(&dir, "memory.swap.max", 0)?;
                    write_if_present(&dir, "memory.oom.group", 1)?;
                }
                if let Some(p) = limits.pids {
                    write(&dir, "pids.max", p)?;
                }
                match (limits.cpus, cpu) {
                    (Some(c), true) => write(
                        &dir,
                        "cpu.max",
                        format!("{} {CPU_PERIOD_US}", quota_us(c)),
                    )?,
                    (Some(_), false) => a
                        .notes
                        .push("cpus limit not enforced: the cgroup v2 cpu controller is not available to the runner".into()),
                    _ => {}
                }
                a.memory = Some((dir.clone(), Flavor::V2));
                a.pids = Some(dir.clone());
                // Made here, not by the supervisor: a script must never
                // start outside it.
                a.cgroup = Some(a.make(&dir, "job")?);
            }
            Mechanism::V1 { memory, pids, cpu } => {
                let mdir = a.make(memory, name)?;
                if let Some(m) = limits.memory {
                    write(&mdir, "memory.limit_in_bytes", m)?;
                    write_if_present(&mdir, "memory.memsw.limit_in_bytes", m)?;
                }
                let pdir = a.make(pids, name)?;
                if let Some(p) = limits.pids {
                    write(&pdir, "pids.max", p)?;
                }
                match (limits.cpus, cpu) {
                    (Some(c), Some(cpu)) => {
                        let cdir = a.make(cpu, name)?;
                        write(&cdir, "cpu.cfs_period_us", CPU_PERIOD_US)?;
                        write(&cdir, "cpu.cfs_quota_us", quota_us(c))?;
                        a.confine.cgroups.push(cdir);
                    }
                    (Some(_), None) => a.notes.push(
                        "cpus limit not enforced: no writable cgroup v1 cpu hierarchy".into(),
                    ),
                    _ => {}
                }
                a.confine.cgroups.push(mdir.clone());
                a.confine.cgroups.push(pdir.clone());
                a.memory = Some((mdir, Flavor::V1));
                a.pids = Some(pdir);
            }
            Mechanism::Rlimit => {
                a.confine.address_space = limits.memory;
                if limits.pids.is_some() {
                    a.notes.push("pids limit not enforced: no writable cgroup (RLIMIT_NPROC counts every process of the user and does not apply to root)".into());
                }
                if limits.cpus.is_some() {
                    a.notes
                        .push("cpus limit not enforced: no writable cgroup (rlimits cannot share CPU time)".into());
                }
            }
        }
        a.before = a.counters();
        Ok(a)
    }
}

/// `cpus` cores as a quota per [`CPU_PERIOD_US`] (at least 1 ms, the
/// kernel's minimum).
pub(crate) fn quota_us(cpus: f64) -> u64 {
    ((cpus * CPU_PERIOD_US as f64).round() as u64).max(1000)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Flavor {
    V1,
    V2,
}

/// The kernel's counters of an attempt's cgroups.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Counters {
    pub oom_kills: u64,
    pub pids_refused: u64,
}

/// What ended an attempt, as far as the limits go.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Observed {
    /// Processes of the tree the OOM killer ended under the memory limit.
    pub oom_kills: u64,
    /// Forks refused by the pids limit.
    pub pids_refused: u64,
    /// The workspace went over the disk limit.
    pub disk_over: bool,
    /// The script did not exit with 0.
    pub failed: bool,
}

/// The reason a limit gives, when one ended (or failed) the attempt: the
/// OOM killer under a memory limit always fails the attempt (part of the
/// tree was killed), a disk overrun too; refused forks only when the
/// script then failed (a script may handle `EAGAIN`).
pub(crate) fn verdict(l: &Limits, o: &Observed) -> Option<String> {
    match (l.memory, l.disk, l.pids) {
        (Some(m), _, _) if o.oom_kills > 0 => Some(format!("memory limit {} exceeded", human(m))),
        (_, Some(d), _) if o.disk_over => Some(format!("disk limit {} exceeded", human(d))),
        (_, _, Some(p)) if o.failed && o.pids_refused > 0 => {
            Some(format!("pids limit {p} reached"))
        }
        _ => None,
    }
}

/// The value of `key` in a flat keyed cgroup file (`memory.events`,
/// `memory.oom_control`, `pids.events`: `key value` per line).
pub(crate) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.trim().split_once(char::is_whitespace)?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// One attempt's limits, from before its start until its directories are
/// removed (on drop).
pub struct AttemptLimits {
    limits: Limits,
    mode: &'static str,
    confine: Confine,
    cgroup: Option<PathBuf>,
    /// Directories this attempt created, removed on drop.
    made: Vec<PathBuf>,
    memory: Option<(PathBuf, Flavor)>,
    pids: Option<PathBuf>,
    before: Counters,
    notes: Vec<String>,
    disk: Option<disk::Watch>,
}

impl AttemptLimits {
    /// How this attempt's limits are enforced, for the `started` event:
    /// the runner's mode, or "none" when the run sets no limit.
    pub fn mode(&self) -> &'static str {
        self.mode
    }

    /// What the supervisor applies between fork and exec.
    pub fn confine(&self) -> &Confine {
        &self.confine
    }

    /// The cgroup v2 directory the supervisor puts the script in and kills
    /// it with.
    pub fn cgroup(&self) -> Option<&PathBuf> {
        self.cgroup.as_ref()
    }

    /// Whether the script must be started plainly, not by a fork server
    /// (whose interpreter is outside this attempt's cgroups and rlimits).
    pub fn needs_plain_start(&self) -> bool {
        !self.confine.is_empty() || !self.made.is_empty()
    }

    /// Limits the run sets that this runner cannot enforce, for the run's
    /// setup log.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Resolves when the workspace went over the disk limit (never without
    /// one). Cancel-safe.
    pub async fn disk_exceeded(&self) {
        match &self.disk {
            Some(w) => w.exceeded().await,
            None => std::future::pending().await,
        }
    }

    fn counters(&self) -> Counters {
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        let oom_kills = match &self.memory {
            Some((d, Flavor::V2)) => keyed(&read(d.join("memory.events")), "oom_kill"),
            Some((d, Flavor::V1)) => keyed(&read(d.join("memory.oom_control")), "oom_kill"),
            None => None,
        };
        let pids_refused = self
            .pids
            .as_ref()
            .and_then(|d| keyed(&read(d.join("pids.events")), "max"));
        Counters {
            oom_kills: oom_kills.unwrap_or(0),
            pids_refused: pids_refused.unwrap_or(0),
        }
    }

    /// The largest memory use of the tree, bytes (`memory.peak`, or
    /// `memory.max_usage_in_bytes` on v1; none on kernels without it).
    pub fn peak_memory(&self) -> Option<u64> {
        let (dir, flavor) = self.memory.as_ref()?;
        let file = match flavor {
            Flavor::V2 => "memory.peak",
            Flavor::V1 => "memory.max_usage_in_bytes",
        };
        std::fs::read_to_string(dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Reads, once the tree is gone, whether a limit ended the attempt:
    /// sets `ending.reason` and, where a cgroup measured it, the tree's
    /// `ending.peak_memory_bytes`.
    pub async fn finish(&self, ending: &mut Ending) {
        let now = self.counters();
        let disk_over = match &self.disk {
            Some(w) => w.hit() || w.over_now().await,
            None => false,
        };
        let observed = Observed {
            oom_kills: now.oom_kills.saturating_sub(self.before.oom_kills),
            pids_refused: now.pids_refused.saturating_sub(self.before.pids_refused),
            disk_over,
            failed: ending.code != Some(0),
        };
        if let Some(reason) = verdict(&self.limits, &observed) {
            tracing::info!(reason = %reason, disk_seen = ?self.disk.as_ref().and_then(|w| w.seen()), "attempt ended by a limit");
            ending.reason = Some(reason);
        }
        if let Some(peak) = self.peak_memory() {
            ending.peak_memory_bytes = Some(peak);
        }
    }

    /// Creates `<base>/<name>` (clearing a stale one first) and records it.
    fn make(&mut self, base: &Path, name: &str) -> Result<PathBuf, SetupError> {
        let dir = base.join(name);
        if dir.exists() {
            sweep(&dir);
        }
        std::fs::create_dir(&dir).map_err(|e| {
            SetupError::Io(format!(
                "resource limits: cannot create {}: {e}",
                dir.display()
            ))
        })?;
        self.made.push(dir.clone());
        Ok(dir)
    }
}

impl Drop for AttemptLimits {
    fn drop(&mut self) {
        for dir in self.made.iter().rev() {
            sweep(dir);
        }
    }
}

fn write(dir: &Path, file: &str, value: impl ToString) -> Result<(), SetupError> {
    std::fs::write(dir.join(file), value.to_string()).map_err(|e| {
        SetupError::Io(format!(
            "resource limits: cannot write {}: {e}",
            dir.join(file).display()
        ))
    })
}

fn write_if_present(dir: &Path, file: &str, value: impl ToString) -> Result<(), SetupError> {
    if dir.join(file).exists() {
        write(dir, file, value)?;
    }
    Ok(())
}

/// Removes a cgroup directory and those below it, killing what is still
/// inside first (in a directory this runner created, so never a stranger).
/// Returns the processes killed, as `pid (name)`.
fn sweep(dir: &Path) -> Vec<String> {
    let mut killed = Vec::new();
    if let Ok(children) = std::fs::read_dir(dir) {
        for e in children.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                killed.extend(sweep(&e.path()));
            }
        }
    }
    if tree::remove_cgroup(dir) {
        return killed;
    }
    killed.extend(tree::kill_cgroup(dir, Duration::from_secs(2)));
    for _ in 0..100 {
        if tree::remove_cgroup(dir) {
            return killed;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    tracing::warn!(dir = %dir.display(), "could not remove a cgroup directory");
    killed
}
