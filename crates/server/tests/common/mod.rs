//! Shared harness of the black-box HTTP tests: a real `minitowerd` on
//! 127.0.0.1:0 with its data in a temp dir and a manual clock, plus helpers
//! that drive it through the typed client (or raw HTTP for malformed calls).
#![allow(dead_code)]

mod archive;
mod sse;

#[allow(unused_imports)]
pub use archive::*;
#[allow(unused_imports)]
pub use sse::*;

use minitower_client::{Client, ClientError, ClientResult};
use minitower_core::api::*;
use minitower_server::{AppState, Application, ManualClock, ServerConfig, StartupError};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const BOOTSTRAP: &str = "boot";
pub const REGISTRATION: &str = "reg";
/// Upper bound for anything that should happen "at once": a hang detector,
/// never a timing assertion.
pub const HANG: Duration = Duration::from_secs(20);

/// A running control plane.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub clock: Arc<ManualClock>,
    pub state: Arc<AppState>,
    /// Client without a token.
    pub anon: Client,
    pub db_path: PathBuf,
    pub objects_dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), StartupError>>>,
    // Last so the server is stopped before the directory goes.
    pub dir: TempDir,
}

/// A server with the test configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A server with the test configuration adjusted by `f`.
pub async fn spawn_app_with(f: impl FnOnce(&mut ServerConfig)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ServerConfig::for_tests(dir.path());
    // The background reaper only runs its first (immediate) pass; tests run
    // passes themselves with `reap` after moving the manual clock.
    config.expiry_check_interval = Duration::from_secs(3600);
    f(&mut config);
    let db_path = config.sqlite_path();
    let objects_dir = config.objects_dir.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let clock = Arc::new(ManualClock::new());
    let app = Application::build_with_clock(config, listener, clock.clone())
        .await
        .expect("server builds");
    let addr = app.local_addr();
    let state = app.state();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    let base = format!("http://{addr}");
    TestApp {
        addr,
        anon: Client::new(&base, None).unwrap(),
        base,
        clock,
        state,
        db_path,
        objects_dir,
        shutdown: Some(tx),
        handle: Some(handle),
        dir,
    }
}

impl TestApp {
    /// A client using `token`.
    pub fn client(&self, token: &str) -> Client {
        self.anon.with_token(token)
    }

    /// Resolves the shutdown future; returns the server task to await.
    pub fn begin_shutdown(&mut self) -> JoinHandle<Result<(), StartupError>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.handle.take().expect("server still running")
    }

    /// Creates a team and returns an admin client for it.
    pub async fn team(&self, slug: &str) -> Client {
        let t = self
            .anon
            .bootstrap_team(
                BOOTSTRAP,
                &BootstrapTeamRequest {
                    slug: slug.into(),
                    name: format!("Team {slug}"),
                    password: None,
                },
            )
            .await
            .expect("bootstrap");
        self.client(&t.token)
    }

    /// Registers a runner (default environment) and returns its client.
    pub async fn runner(&self, name: &str, max_concurrency: Option<i64>) -> Client {
        let r = self
            .anon
            .register_runner(
                REGISTRATION,
                &RegisterRunnerRequest {
                    name: name.into(),
                    environment: None,
                    max_concurrency,
                },
            )
            .await
            .expect("register runner");
        self.client(&r.token)
    }

    /// Moves the manual clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// One reaper pass at the manual clock's time.
    pub async fn reap(&self) -> minitower_server::reaper::ReapReport {
        minitower_server::reaper::reap_once(&self.state)
            .await
            .expect("reaper pass")
    }

    /// The lease TTL of this server.
    pub fn lease_ttl(&self) -> Duration {
        self.state.config.lease_ttl
    }

    /// Every file under the objects dir (relative paths), the spool dir excluded
    /// only when empty.
    pub fn object_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.objects_dir, &self.objects_dir, &mut out);
        out.sort();
        out
    }

    /// Raw request with a token.
    pub fn raw(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        match token {
            Some(t) => self.client(t).raw(method, path),
            None => self.anon.raw(method, path),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        }
    }
}

/// Creates a team `acme` with an app `hello` that has no version yet.
pub async fn team_with_app(app: &TestApp) -> Client {
    let team = app.team("acme").await;
    team.create_app("hello", None).await.expect("create app");
    team
}

/// Queues a run of `app` with default settings.
pub async fn queue_run(team: &Client, app: &str, input: Option<Value>) -> Run {
    let (run, created) = team
        .create_run(
            app,
            &CreateRunRequest {
                input,
                ..Default::default()
            },
            None,
        )
        .await
        .expect("create run");
    assert!(created);
    run
}

/// Leases at once (no wait) and expects a lease.
pub async fn lease_now(runner: &Client) -> Lease {
    runner
        .lease(Duration::ZERO)
        .await
        .expect("lease call")
        .expect("a lease")
}

/// A lease asked for with `start: true` (the fast path: started in the
/// lease's own transaction).
pub async fn fast_lease(runner: &Client) -> Lease {
    runner
        .lease_and_start(Duration::ZERO)
        .await
        .expect("lease call")
        .expect("a lease")
}

/// A lease that was acknowledged with `start` (its script "ran": an expiry
/// spends a retry, unlike one of an attempt that never started).
pub async fn lease_started(runner: &Client) -> Lease {
    let l = lease_now(runner).await;
    runner.start(l.run_id, &l.lease_token).await.expect("start");
    l
}

/// Everything a runner-protocol test starts from: a team with app `hello`,
/// a runner, a queued run and its lease.
pub struct Leased {
    pub team: Client,
    pub runner: Client,
    pub run: Run,
    pub lease: Lease,
}

pub async fn leased_run(app: &TestApp) -> Leased {
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let runner = app.runner("runner-1", None).await;
    let run = queue_run(&team, "hello", None).await;
    let lease = lease_now(&runner).await;
    assert_eq!(lease.run_id, run.id);
    Leased {
        team,
        runner,
        run,
        lease,
    }
}

pub fn line(seq: i64, text: &str) -> NewLogLine {
    NewLogLine {
        seq,
        stream: "stdout".into(),
        line: text.into(),
        logged_at: None,
    }
}

pub fn result_req(status: minitower_core::ResultStatus, exit_code: Option<i32>) -> ResultRequest {
    ResultRequest {
        status,
        exit_code,
        error_message: None,
    }
}

// ---- error assertions ----

/// Asserts a client call failed with `status` and `code`; returns the message.
#[track_caller]
pub fn expect_api_err<T: std::fmt::Debug>(r: ClientResult<T>, status: u16, code: &str) -> String {
    match r {
        Err(ClientError::Api {
            status: s,
            code: c,
            message,
        }) => {
            assert_eq!((s, c.as_str()), (status, code), "message: {message}");
            message
        }
        other => panic!("expected HTTP {status} {code}, got {other:?}"),
    }
}

/// Reads a raw response that must be an error envelope with `status`;
/// returns (code, message).
pub async fn envelope(resp: reqwest::Response, status: u16) -> (String, String) {
    let got = resp.status().as_u16();
    let ct = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.bytes().await.unwrap();
    let text = String::from_utf8_lossy(&body);
    assert_eq!(got, status, "body: {text}");
    assert!(
        ct.starts_with("application/json"),
        "content-type {ct:?}, body {text}"
    );
    let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {text}"));
    let code = v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code: {text}"));
    let message = v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {text}"));
    assert!(!code.is_empty() && !message.is_empty(), "{text}");
    (code.to_string(), message.to_string())
}

/// Sends a raw request and returns it as JSON with its status.
pub async fn send_json(rb: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = rb.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap();
    let v = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)))
    };
    (status, v)
}

/// Polls `f` until it returns `Some`, failing after [`HANG`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
