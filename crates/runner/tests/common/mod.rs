//! Shared harness for the runner's integration tests: a real control plane on
//! loopback, real runners, real Python processes.

#![allow(dead_code)]

pub mod probe;

use minitower_client::{Client, VersionUpload};
use minitower_core::api::{BootstrapTeamRequest, CreateRunRequest, LogLine, RunDetail, Version};
use minitower_runner::RunnerConfig;
use minitower_server::{Application, ServerConfig};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How long any condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// One control plane with a team.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub team: Client,
    pub objects_dir: PathBuf,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Harness {
    /// A server with the test defaults.
    pub async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    /// A server with adjusted settings (e.g. a short lease TTL).
    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> Harness {
        Self::start_with_clock(adjust, std::sync::Arc::new(minitower_server::SystemClock)).await
    }

    /// A server with adjusted settings and its own idea of the time.
    pub async fn start_with_clock(
        adjust: impl FnOnce(&mut ServerConfig),
        clock: std::sync::Arc<dyn minitower_server::Clock>,
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::for_tests(&dir.path().join("server"));
        std::fs::create_dir_all(dir.path().join("server")).unwrap();
        adjust(&mut config);
        let objects_dir = config.objects_dir.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = Application::build_with_clock(config, listener, clock)
            .await
            .unwrap();
        let url = format!("http://{}", app.local_addr());
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move { app.run_until(async move { s.cancelled().await }).await });
        let anon = Client::new(&url, None).unwrap();
        let created = anon
            .bootstrap_team(
                "boot",
                &BootstrapTeamRequest {
                    slug: "acme".into(),
                    name: "Acme".into(),
                    password: None,
                },
            )
            .await
            .unwrap();
        let team = anon.with_token(created.token);
        Harness {
            dir,
            url,
            team,
            objects_dir,
            shutdown,
        }
    }

    /// A runner configuration for this server with a data dir of its own.
    pub fn runner_config(&self, name: &str) -> RunnerConfig {
        self.runner_config_for(&self.url, name)
    }

    /// A runner configuration pointing at `url` (e.g. a proxy).
    pub fn runner_config_for(&self, url: &str, name: &str) -> RunnerConfig {
        let mut c = RunnerConfig::new(
            url.into(),
            name.into(),
            "reg".into(),
            self.dir.path().join(format!("runner-{name}")),
        );
        c.poll_interval = Duration::from_millis(200);
        c.kill_grace_period = Duration::from_secs(1);
        c.drain_timeout = Duration::from_secs(10);
        // The test binary is not a runner: supervisors run from the real one.
        c.supervisor_bin = Some(env!("CARGO_BIN_EXE_minitower-runner").into());
        // The git tests serve repositories from the local file system.
        c.git_allow_local = true;
        c
    }

    /// Creates an app and uploads one version made of `files`.
    /// Deploys app `slug` whose `requirements.txt` names a local wheel of
    /// package `package` (its `__init__.py` being `code`), with `script`
    /// as `main.py`.
    pub async fn deploy_with_wheel(&self, slug: &str, package: &str, code: &str, script: &str) {
        let wheels = self.dir.path().join("wheels");
        std::fs::create_dir_all(&wheels).unwrap();
        let wheel = write_wheel(&wheels, package, code);
        let requirements = format!("{}\n", wheel.display());
        self.deploy(
            slug,
            &[("main.py", script), ("requirements.txt", &requirements)],
            "main.py",
            None,
        )
        .await;
    }

    pub async fn deploy(
        &self,
        slug: &str,
        files: &[(&str, &str)],
        entrypoint: &str,
        timeout_seconds: Option<i64>,
    ) -> Version {
        self.upload(slug, files, Some(entrypoint), timeout_seconds)
            .await
            .unwrap()
    }

    /// Uploads `files` as a new version of `slug` (created when missing);
    /// without `entrypoint` the archive's Towerfile says what runs. The
    /// answer, so a test can check a refusal.
    pub async fn upload(
        &self,
        slug: &str,
        files: &[(&str, &str)],
        entrypoint: Option<&str>,
        timeout_seconds: Option<i64>,
    ) -> Result<Version, minitower_client::ClientError> {
        if self.team.get_app(slug).await.unwrap().is_none() {
            self.team.create_app(slug, None).await.unwrap();
        }
        let bytes = targz(files);
        self.team
            .upload_version(
                slug,
                VersionUpload {
                    artifact_len: Some(bytes.len() as u64),
                    artifact: bytes.into(),
                    entrypoint: entrypoint.map(str::to_string),
                    timeout_seconds,
                    params_schema: None,
                },
            )
            .await
    }

    /// Queues a run and returns its id.
    pub async fn trigger(&self, slug: &str, input: serde_json::Value) -> i64 {
        self.trigger_with(slug, input, None).await
    }

    /// Queues a run with a retry budget.
    pub async fn trigger_with(
        &self,
        slug: &str,
        input: serde_json::Value,
        max_retries: Option<i64>,
    ) -> i64 {
        let req = CreateRunRequest {
            input: Some(input),
            max_retries,
            ..Default::default()
        };
        self.team.create_run(slug, &req, None).await.unwrap().0.id
    }

    /// Waits until the run is terminal.
    pub async fn finished(&self, run_id: i64) -> RunDetail {
        let team = self.team.clone();
        wait_for("run to finish", || {
            let team = team.clone();
            async move {
                let r = team.get_run(run_id).await.ok()?;
                r.run.status.is_terminal().then_some(r)
            }
        })
        .await
    }

    /// Every stored log line of a run.
    pub async fn logs(&self, run_id: i64) -> Vec<LogLine> {
        self.team.logs(run_id, 0).await.unwrap()
    }

    /// Waits until a log line satisfies `pred` and returns it.
    pub async fn wait_log(&self, run_id: i64, pred: impl Fn(&LogLine) -> bool) -> LogLine {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let logs = self.team.logs(run_id, 0).await.unwrap_or_default();
            if let Some(l) = logs.iter().find(|l| pred(l)) {
                return l.clone();
            }
            // Say what did arrive, and how the run stands, when it never comes.
            if tokio::time::Instant::now() >= deadline {
                let run = self.team.get_run(run_id).await.ok().map(|d| d.run);
                panic!("timed out waiting for a log line of run {run_id}: {run:?}, lines {logs:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A runner running in this process.
pub struct RunnerHandle {
    pub drain: CancellationToken,
    pub force: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunnerHandle {
    /// Starts `config` in the background.
    pub fn spawn(config: RunnerConfig) -> RunnerHandle {
        let drain = CancellationToken::new();
        let force = CancellationToken::new();
        let task = tokio::spawn(minitower_runner::run_with(
            config,
            drain.clone(),
            force.clone(),
        ));
        RunnerHandle { drain, force, task }
    }

    /// Stops it at once and waits for it.
    pub async fn stop(self) {
        self.drain.cancel();
        self.force.cancel();
        let _ = self.task.await;
    }
}

/// Polls `check` until it yields a value; panics after [`DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `.tar.gz` of `(path, contents)`; `.sh` files and files starting with
/// `#!` are executable.
pub fn targz(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, text) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(if text.starts_with("#!") { 0o755 } else { 0o644 });
        h.set_cksum();
        b.append_data(&mut h, path, text.as_bytes()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// A `.tar.gz` of `(path, bytes)` for binary files.
pub fn targz_bytes(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// Whether a process is gone (or only a zombie waiting to be reaped).
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'))
            .unwrap_or(false),
    }
}

/// Writes a minimal wheel `<name>-0.1-py3-none-any.whl` into `dir` using Python.
pub fn write_wheel(dir: &Path, name: &str, code: &str) -> PathBuf {
    const PY: &str = r#"
import base64, hashlib, os, sys, zipfile
out_dir, name, code = sys.argv[1], sys.argv[2], sys.argv[3]
files = {
    f"{name}/__init__.py": code,
    f"{name}-0.1.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
    f"{name}-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: minitower-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
for path, text in files.items():
    data = text.encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record.append(f"{path},sha256={digest},{len(data)}")
record.append(f"{name}-0.1.dist-info/RECORD,,")
files[f"{name}-0.1.dist-info/RECORD"] = "\n".join(record) + "\n"
path = os.path.join(out_dir, f"{name}-0.1-py3-none-any.whl")
with zipfile.ZipFile(path, "w") as z:
    for p, text in files.items():
        z.writestr(p, text)
print(path)
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", PY])
        .arg(dir)
        .args([name, code])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A TCP proxy that can cut the runner off from the control plane, or lose
/// the answer to one request.
pub struct Proxy {
    pub url: String,
    partition: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    lose: LoseArmed,
}

/// The bytes whose request's answer the proxy loses next, if armed.
type LoseArmed = std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>;

impl Proxy {
    /// Forwards a loopback port to `target` (`host:port`).
    pub async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let target = target.to_string();
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = refused.clone();
        let lose = LoseArmed::default();
        let armed = lose.clone();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                if *rx.borrow() {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    drop(inbound);
                    continue;
                }
                let mut rx = rx.clone();
                let target = target.clone();
                let armed = armed.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = relay(inbound, outbound, armed) => {}
                        _ = rx.wait_for(|p| *p) => {}
                    }
                });
            }
        });
        Proxy {
            url,
            partition: std::sync::Arc::new(tx),
            refused,
            lose,
        }
    }

    /// Loses the answer to the next request whose bytes hold `needle`: the
    /// request reaches the server, which does its work, and the connection
    /// is closed as the answer starts to come back.
    pub fn lose_answer_to(&self, needle: &str) {
        *self.lose.lock().unwrap() = Some(needle.as_bytes().to_vec());
    }

    /// Whether the armed answer was lost.
    pub fn answer_lost(&self) -> bool {
        self.lose.lock().unwrap().is_none()
    }

    /// Connections refused while partitioned.
    pub fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Cuts every connection and refuses new ones (`true`), or heals (`false`).
    pub fn partition(&self, on: bool) {
        self.partition.send_replace(on);
    }
}

/// Copies both ways between a client and the server; after a request that
/// holds the armed bytes, the answer is dropped with the connection.
async fn relay(inbound: TcpStream, outbound: TcpStream, armed: LoseArmed) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut ar, mut aw) = inbound.into_split();
    let (mut br, mut bw) = outbound.into_split();
    let doomed = std::sync::atomic::AtomicBool::new(false);
    let up = async {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match ar.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            {
                let mut a = armed.lock().unwrap();
                let hit = a
                    .as_ref()
                    .is_some_and(|needle| buf[..n].windows(needle.len()).any(|w| w == &needle[..]));
                if hit {
                    *a = None;
                    doomed.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
            if bw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match br.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if doomed.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            if aw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // Either side ending ends both: the halves drop and both connections close.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// Requests the server counted for `method` on a route template, from
/// `/metrics` (all statuses).
pub async fn route_calls(url: &str, method: &str, path: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("minitower_http_requests_total{") || l.starts_with("http_requests_total{")
        })
        .filter(|l| {
            l.contains(&format!("method=\"{method}\"")) && l.contains(&format!("path=\"{path}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
