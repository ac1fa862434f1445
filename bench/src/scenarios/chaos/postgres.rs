//! A private PostgreSQL instance owned by the harness: `initdb` into the
//! scenario's temp dir, the postmaster started in the foreground on a free
//! loopback port as a child of the bench (as the `postgres` OS user when the
//! bench runs as root, which PostgreSQL refuses), crashed and restarted as a
//! fault, stopped at the end. The machine's own PostgreSQL is never touched.

use crate::procs::free_port;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb` and
/// `postgres`, or `explicit` when given.
pub fn find_bin_dir(explicit: Option<&Path>) -> Option<PathBuf> {
    let ok = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(d) = explicit {
        return ok(d).then(|| d.to_path_buf());
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            ok(&bin).then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, d)| d)
}

/// uid and gid of the `postgres` user when we are root (else `None`: run as ourselves).
fn owner() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new("postgres")?;
    // SAFETY: getpwnam with a valid C string; the result is read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!("running as root and there is no `postgres` user to run PostgreSQL as");
    }
    // SAFETY: non-null pointer from getpwnam.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

/// The instance.
pub struct Postgres {
    bin_dir: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    pub port: u16,
    owner: Option<(u32, u32)>,
    child: Option<tokio::process::Child>,
    pub starts: usize,
    /// Extra `-c name=value` settings of every start.
    settings: Vec<String>,
}

impl Postgres {
    /// `initdb` into `dir/data` and start it.
    pub async fn init(bin_dir: &Path, dir: &Path) -> Result<Postgres> {
        Self::init_with(bin_dir, dir, &[]).await
    }

    /// As [`Postgres::init`], with extra `name=value` server settings
    /// (passed as `-c`) on every start.
    pub async fn init_with(bin_dir: &Path, dir: &Path, settings: &[&str]) -> Result<Postgres> {
        std::fs::create_dir_all(dir)?;
        let owner = owner()?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                .with_context(|| format!("handing {} to the postgres user", dir.display()))?;
        }
        let data = dir.join("data");
        let mut pg = Postgres {
            bin_dir: bin_dir.to_path_buf(),
            dir: dir.to_path_buf(),
            data,
            port: free_port()?,
            owner,
            child: None,
            starts: 0,
            settings: settings.iter().map(|s| s.to_string()).collect(),
        };
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(&pg.data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-locale",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .output()
            .await
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        pg.start().await?;
        Ok(pg)
    }

    fn command(&self, program: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self.bin_dir.join(program));
        cmd.current_dir(&self.dir).env("LC_ALL", "C");
        for k in ["PGHOST", "PGPORT", "PGDATA", "PGUSER", "PGDATABASE"] {
            cmd.env_remove(k);
        }
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// The connection URL the servers use.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Process id of the postmaster (0 when down).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(|c| c.id()).unwrap_or(0)
    }

    /// Starts the postmaster on its port and waits until it accepts connections.
    pub async fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("postgres.log"))?;
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(&self.data)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=200",
            ])
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting postgres")?;
        self.child = Some(child);
        self.starts += 1;
        let started = Instant::now();
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.child = None;
                    bail!(
                        "postgres exited during start-up ({st}); see {}",
                        self.dir.join("postgres.log").display()
                    );
                }
            }
            let ready = tokio::process::Command::new(self.bin_dir.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-p"])
                .arg(self.port.to_string())
                .stdin(Stdio::null())
                .status()
                .await
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("postgres did not accept connections within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Immediate shutdown (SIGQUIT: every backend dies at once, no
    /// checkpoint; the next start runs crash recovery), then waits for it.
    pub async fn crash(&mut self) {
        self.shutdown(libc::SIGQUIT, Duration::from_secs(20)).await;
    }

    /// Fast shutdown (SIGINT), SIGKILL after 20 s.
    pub async fn stop(&mut self) {
        self.shutdown(libc::SIGINT, Duration::from_secs(20)).await;
    }

    async fn shutdown(&mut self, sig: i32, grace: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        if let Ok(None) = c.try_wait() {
            if let Some(pid) = c.id() {
                // SAFETY: signalling our own, not yet reaped child by pid.
                unsafe {
                    libc::kill(pid as i32, sig);
                }
            }
            if tokio::time::timeout(grace, c.wait()).await.is_err() {
                let _ = c.kill().await;
            }
        }
    }
}

impl Drop for Postgres {
    /// An error or a panic never leaves the postmaster behind: immediate
    /// shutdown, SIGKILL if it is still there after 10 s.
    fn drop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        if let (Ok(None), Some(pid)) = (c.try_wait(), c.id()) {
            // SAFETY: signalling our own, not yet reaped child by pid.
            unsafe {
                libc::kill(pid as i32, libc::SIGQUIT);
            }
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.start_kill();
        }
    }
}
