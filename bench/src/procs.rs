//! Real `minitowerd` and `minitower-runner` processes: finding the binaries,
//! starting them on free ports with their `MINITOWER_*` variables, reading
//! their CPU time and memory from `/proc`, and stopping them (always: a
//! dropped handle kills its process).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Bootstrap secret of every server the bench starts.
pub const BOOTSTRAP_TOKEN: &str = "bench-bootstrap-secret";
/// Runner registration secret of every server the bench starts.
pub const REGISTRATION_TOKEN: &str = "bench-registration-secret";
/// Default `RUST_LOG` of the processes under test: logging must not be the bottleneck.
pub const PROCESS_RUST_LOG: &str = "warn";

/// Paths of the two binaries under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub server: PathBuf,
    pub runner: PathBuf,
}

impl Binaries {
    /// Looks in `bin_dir`, else next to the running executable (and, for
    /// test executables in `deps/`, one level up).
    pub fn locate(bin_dir: Option<&Path>) -> Result<Binaries> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        match bin_dir {
            Some(d) => dirs.push(d.to_path_buf()),
            None => {
                let exe = std::env::current_exe().context("cannot find the bench executable")?;
                if let Some(d) = exe.parent() {
                    dirs.push(d.to_path_buf());
                    if d.file_name().is_some_and(|n| n == "deps") {
                        if let Some(up) = d.parent() {
                            dirs.push(up.to_path_buf());
                        }
                    }
                }
            }
        }
        for d in &dirs {
            let server = d.join("minitowerd");
            let runner = d.join("minitower-runner");
            if server.is_file() && runner.is_file() {
                return Ok(Binaries { server, runner });
            }
        }
        bail!(
            "minitowerd and minitower-runner not found in {}; build them first with \
             `cargo build --release -p minitower-server -p minitower-runner` \
             (same target directory as the bench) or pass --bin-dir",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        )
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; a tiny race remains,
/// which [`Server::start`] covers by retrying).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a free port")?;
    Ok(l.local_addr()?.port())
}

/// CPU time and memory of a process, from `/proc`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ProcSample {
    /// User + system CPU seconds since the process started.
    pub cpu_seconds: f64,
    /// Resident set size now, in MiB.
    pub rss_mib: f64,
    /// Peak resident set size (VmHWM), in MiB.
    pub hwm_mib: f64,
    /// CPU seconds of its descendants: the children it waited for, plus
    /// every live descendant's own and waited-for time ([`sample`] only).
    /// Live ones count because a runner's fork servers and their
    /// supervisors live as long as the runner: the runs they fork are
    /// waited for by the supervisor, never by the runner.
    pub children_cpu_seconds: f64,
    /// Context switches of all its threads (voluntary + involuntary).
    pub context_switches: u64,
    /// Write syscalls (`syscw` of `/proc/<pid>/io`) and bytes passed to them (`wchar`).
    pub write_syscalls: u64,
    pub write_bytes: u64,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Reads `/proc/<pid>/stat` (utime, stime) and `/proc/<pid>/status` (VmRSS,
/// VmHWM), and the CPU time of its live descendants.
pub fn sample(pid: u32) -> Result<ProcSample> {
    let mut s = sample_path(&format!("/proc/{pid}"))?;
    let mut stack = children(pid);
    while let Some(c) = stack.pop() {
        if let Ok((own, waited)) = cpu_ticks(&format!("/proc/{c}")) {
            s.children_cpu_seconds += (own + waited) / clock_ticks();
        }
        stack.extend(children(c));
    }
    Ok(s)
}

/// utime + stime and cutime + cstime, in clock ticks.
fn cpu_ticks(base: &str) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("{base}/stat"))
        .with_context(|| format!("reading {base}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed stat")?;
    let f: Vec<&str> = after.split_whitespace().collect();
    let n = |i: usize| -> Result<f64> { Ok(f.get(i).context("short stat")?.parse()?) };
    Ok((n(11)? + n(12)?, n(13)? + n(14)?))
}

/// The same for the bench process itself.
pub fn sample_self() -> Result<ProcSample> {
    sample_path("/proc/self")
}

fn sample_path(base: &str) -> Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("{base}/stat"))
        .with_context(|| format!("reading {base}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed stat")?;
    let f: Vec<&str> = after.split_whitespace().collect();
    // field 3 (state) is f[0]; utime is field 14, stime field 15
    let utime: f64 = f.get(11).context("no utime")?.parse()?;
    let stime: f64 = f.get(12).context("no stime")?.parse()?;
    let cutime: f64 = f.get(13).context("no cutime")?.parse()?;
    let cstime: f64 = f.get(14).context("no cstime")?.parse()?;
    let status = std::fs::read_to_string(format!("{base}/status"))
        .with_context(|| format!("reading {base}/status"))?;
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let mut context_switches = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("{base}/task")) {
        for t in tasks.flatten() {
            if let Ok(st) = std::fs::read_to_string(t.path().join("status")) {
                context_switches += st
                    .lines()
                    .filter(|l| l.contains("ctxt_switches:"))
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum::<u64>();
            }
        }
    }
    let io = std::fs::read_to_string(format!("{base}/io")).unwrap_or_default();
    let io_field = |key: &str| -> u64 {
        io.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcSample {
        cpu_seconds: (utime + stime) / clock_ticks(),
        rss_mib: kib("VmRSS:") / 1024.0,
        hwm_mib: kib("VmHWM:") / 1024.0,
        children_cpu_seconds: (cutime + cstime) / clock_ticks(),
        context_switches,
        write_syscalls: io_field("syscw:"),
        write_bytes: io_field("wchar:"),
    })
}

/// Per-run cost between two samples of the same process.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct PerRun {
    pub cpu_ms: f64,
    pub children_cpu_ms: f64,
    pub context_switches: f64,
    pub write_syscalls: f64,
    pub write_kib: f64,
}

impl ProcSample {
    /// What happened between `self` and a later sample, divided by `runs`.
    pub fn per_run(&self, later: &ProcSample, runs: usize) -> PerRun {
        let n = runs.max(1) as f64;
        PerRun {
            cpu_ms: (later.cpu_seconds - self.cpu_seconds) * 1000.0 / n,
            children_cpu_ms: (later.children_cpu_seconds - self.children_cpu_seconds) * 1000.0 / n,
            context_switches: later.context_switches.saturating_sub(self.context_switches) as f64
                / n,
            write_syscalls: later.write_syscalls.saturating_sub(self.write_syscalls) as f64 / n,
            write_kib: later.write_bytes.saturating_sub(self.write_bytes) as f64 / 1024.0 / n,
        }
    }
}

/// Resets the peak RSS (VmHWM) of a process to its current RSS.
pub fn reset_peak(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .with_context(|| format!("resetting the peak RSS of {pid}"))
}

/// Direct children of a process (every thread's `children` list).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Busy and total jiffies of the whole machine (`/proc/stat`, all CPUs).
pub fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// Percent of the machine's CPU time that was busy between two readings.
pub fn busy_percent(before: (u64, u64), after: (u64, u64)) -> f64 {
    let busy = after.0.saturating_sub(before.0) as f64;
    let total = after.1.saturating_sub(before.1) as f64;
    if total > 0.0 {
        busy / total * 100.0
    } else {
        f64::NAN
    }
}

/// `/proc/loadavg`'s first three fields.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// A child process that is killed when dropped.
pub struct Managed {
    name: String,
    child: tokio::process::Child,
    log: PathBuf,
}

impl Managed {
    fn spawn(name: &str, bin: &Path, envs: &[(&str, String)], log: PathBuf) -> Result<Managed> {
        // Appended to: a process restarted with the same log (chaos) keeps
        // what its earlier incarnations wrote.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = tokio::process::Command::new(bin);
        // Nothing of the caller's own MiniTower setup may leak in.
        for (k, _) in std::env::vars_os() {
            if let Some(k) = k.to_str() {
                if k.starts_with("MINITOWER_") || k == "RUST_LOG" {
                    cmd.env_remove(k);
                }
            }
        }
        cmd.envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Managed {
            name: name.to_string(),
            child,
            log,
        })
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// CPU and memory now.
    pub fn sample(&self) -> Result<ProcSample> {
        sample(self.pid()).with_context(|| format!("sampling {}", self.name))
    }

    /// The last lines of its output, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Sends `sig` (e.g. `libc::SIGSTOP`) to the process, unless it has
    /// already been reaped.
    pub fn signal(&mut self, sig: i32) {
        if self.exited() {
            return;
        }
        if let Some(pid) = self.child.id() {
            // SAFETY: signalling our own, not yet reaped child by pid.
            unsafe {
                libc::kill(pid as i32, sig);
            }
        }
    }

    /// Waits up to `limit` for the process to exit (reaping it); whether it did.
    pub async fn wait_exit(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.child.wait()).await.is_ok()
    }

    /// SIGKILL, and reap it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            // SAFETY: signalling our own child by pid.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
            if tokio::time::timeout(grace, self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.kill().await;
            }
        }
    }
}

/// A running control plane.
pub struct Server {
    pub proc: Managed,
    pub url: String,
    pub dir: PathBuf,
}

impl Server {
    /// Starts `minitowerd` with its data in `dir` (database at `db`, default
    /// `dir/minitower.db`) on a free port and waits until `/health` answers.
    pub async fn start(
        bins: &Binaries,
        dir: &Path,
        db: Option<&Path>,
        rust_log: &str,
        extra: &[(String, String)],
    ) -> Result<Server> {
        Self::start_on(bins, dir, db, rust_log, extra, None, "minitowerd").await
    }

    /// [`Server::start`] on a given port (a restart keeps its address, so
    /// runners find it again; `None`: a free one) with its output in
    /// `dir/<log_stem>-<try>.log` (appended to).
    pub async fn start_on(
        bins: &Binaries,
        dir: &Path,
        db: Option<&Path>,
        rust_log: &str,
        extra: &[(String, String)],
        port: Option<u16>,
        log_stem: &str,
    ) -> Result<Server> {
        std::fs::create_dir_all(dir)?;
        let db = db
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.join("minitower.db"));
        let mut last_err = None;
        for attempt in 0..3 {
            let port = match port {
                Some(p) => p,
                None => free_port()?,
            };
            let mut envs: Vec<(&str, String)> = vec![
                ("MINITOWER_LISTEN_ADDR", format!("127.0.0.1:{port}")),
                ("MINITOWER_DB_PATH", db.display().to_string()),
                (
                    "MINITOWER_OBJECTS_DIR",
                    dir.join("objects").display().to_string(),
                ),
                ("MINITOWER_BOOTSTRAP_TOKEN", BOOTSTRAP_TOKEN.into()),
                (
                    "MINITOWER_RUNNER_REGISTRATION_TOKEN",
                    REGISTRATION_TOKEN.into(),
                ),
                ("MINITOWER_LOG_FORMAT", "text".into()),
                ("RUST_LOG", rust_log.into()),
            ];
            envs.extend(extra.iter().map(|(k, v)| (k.as_str(), v.clone())));
            let log = dir.join(format!("{log_stem}-{attempt}.log"));
            let mut proc = Managed::spawn("minitowerd", &bins.server, &envs, log)?;
            let url = format!("http://127.0.0.1:{port}");
            match wait_healthy(&mut proc, &url, Duration::from_secs(60)).await {
                Ok(()) => {
                    return Ok(Server {
                        proc,
                        url,
                        dir: dir.to_path_buf(),
                    })
                }
                Err(e) => {
                    last_err = Some(e.context(format!(
                        "minitowerd did not become healthy; its log:\n{}",
                        proc.log_tail()
                    )));
                    proc.stop(Duration::from_secs(2)).await;
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("minitowerd did not start")))
    }

    /// Stops it gracefully (SIGTERM; SIGKILL after 10 s).
    pub async fn stop(self) {
        self.proc.stop(Duration::from_secs(10)).await;
    }
}

async fn wait_healthy(proc: &mut Managed, url: &str, limit: Duration) -> Result<()> {
    let client = minitower_client::Client::new(url, None)?;
    let started = Instant::now();
    loop {
        if proc.exited() {
            bail!("minitowerd exited during start-up");
        }
        if client.health().await.is_ok() {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!("no answer on {url}/health after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A running runner process.
pub struct Runner {
    pub proc: Managed,
    pub name: String,
}

impl Runner {
    /// Starts `minitower-runner` against `server` with its data in `dir`.
    /// Registration is checked by the caller (it needs an admin token).
    pub fn start(
        bins: &Binaries,
        server: &Server,
        dir: &Path,
        name: &str,
        concurrency: usize,
        rust_log: &str,
        extra: &[(String, String)],
    ) -> Result<Runner> {
        Self::start_url(bins, &server.url, dir, name, concurrency, rust_log, extra)
    }

    /// [`Runner::start`] against a server URL (which may be down just now).
    pub fn start_url(
        bins: &Binaries,
        server_url: &str,
        dir: &Path,
        name: &str,
        concurrency: usize,
        rust_log: &str,
        extra: &[(String, String)],
    ) -> Result<Runner> {
        std::fs::create_dir_all(dir)?;
        let mut envs: Vec<(&str, String)> = vec![
            ("MINITOWER_SERVER_URL", server_url.to_string()),
            ("MINITOWER_RUNNER_NAME", name.to_string()),
            (
                "MINITOWER_RUNNER_REGISTRATION_TOKEN",
                REGISTRATION_TOKEN.into(),
            ),
            ("MINITOWER_DATA_DIR", dir.display().to_string()),
            ("MINITOWER_RUNNER_CONCURRENCY", concurrency.to_string()),
            ("MINITOWER_LOG_FORMAT", "text".into()),
            ("RUST_LOG", rust_log.into()),
        ];
        envs.extend(extra.iter().map(|(k, v)| (k.as_str(), v.clone())));
        let proc = Managed::spawn(
            "minitower-runner",
            &bins.runner,
            &envs,
            dir.join("runner.log"),
        )?;
        Ok(Runner {
            proc,
            name: name.to_string(),
        })
    }

    /// Stops it: SIGTERM lets it drain (nothing is running by then).
    pub async fn stop(self) {
        self.proc.stop(Duration::from_secs(10)).await;
    }
}
