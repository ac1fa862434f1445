//! Secrets end to end: a real control plane, a real `minitower-runner`
//! process and a real Python script. A run in `prod` sees prod's
//! `DB_PASSWORD` (not staging's), and the value is found nowhere it must not
//! be: the SQLite database file and its WAL, the server's logs (captured at
//! TRACE in this process), the runner process's stdout and stderr, any API
//! answer this test fetched, and the run's stored log lines (the script
//! prints it; it comes back masked).

mod common;

use common::{wait_for, Harness};
use minitower_core::api::{CreateRunRequest, Role};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

const PROD: &str = "prod-S3cr3t-value-91x";
const STAGING: &str = "staging-S3cr3t-value-42y";

const TOWERFILE: &str = "[app]\nname = \"db\"\nscript = \"main.py\"\nsecrets = [\"DB_PASSWORD\"]\n";
const SCRIPT: &str = r#"
import os, sys
v = os.environ["DB_PASSWORD"]
print("reversed:" + v[::-1])
print("raw:" + v)
sys.stdout.write("split:" + v[:4]); sys.stdout.flush()
sys.stdout.write(v[4:] + ":end\n"); sys.stdout.flush()
print("stderr:" + v, file=sys.stderr)
"#;

/// Everything the server logs in this process, at every level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// API answers as this test received them.
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
    seen: Mutex<Vec<String>>,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        self.seen.lock().unwrap().push(text.clone());
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }
    async fn get(&self, path: &str) -> serde_json::Value {
        let (status, v) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }
}

fn runner_process(h: &Harness, env: &str, out: &std::path::Path) -> Child {
    let log = std::fs::File::create(out).unwrap();
    Command::new(env!("CARGO_BIN_EXE_minitower-runner"))
        .env("MINITOWER_SERVER_URL", &h.url)
        .env("MINITOWER_RUNNER_NAME", format!("runner-{env}"))
        .env("MINITOWER_RUNNER_REGISTRATION_TOKEN", "reg")
        .env("MINITOWER_RUNNER_ENVIRONMENT", env)
        .env(
            "MINITOWER_DATA_DIR",
            h.dir.path().join(format!("runner-{env}")),
        )
        .env("MINITOWER_POLL_INTERVAL", "200ms")
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// App `db`: the Towerfile declaring `DB_PASSWORD`, and `main` as its script.
async fn deploy_db(h: &Harness, main: &str) {
    let files = [("Towerfile", TOWERFILE), ("main.py", main)];
    h.upload("db", &files, None, None).await.unwrap();
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn prod_secret_reaches_the_script_and_nowhere_else() {
    let captured = Captured::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .init();
    let h = Harness::start().await;
    let admin = h.team.create_token("e2e", Some(Role::Admin)).await.unwrap();
    let api = Api {
        http: reqwest::Client::new(),
        base: h.url.clone(),
        token: admin.token,
        seen: Mutex::new(Vec::new()),
    };
    use reqwest::Method;
    for env in ["prod", "staging"] {
        let (s, _) = api
            .call(
                Method::POST,
                "/api/v1/environments",
                Some(serde_json::json!({"name": env})),
            )
            .await;
        assert_eq!(s, 201);
    }
    for (env, value) in [("prod", PROD), ("staging", STAGING)] {
        let (s, v) = api
            .call(
                Method::PUT,
                &format!("/api/v1/secrets/DB_PASSWORD?environment={env}"),
                Some(serde_json::json!({"value": value})),
            )
            .await;
        assert_eq!((s, v["version"].as_i64()), (201, Some(1)), "{v}");
    }
    deploy_db(&h, SCRIPT).await;

    // Nobody serves staging: a run there is reported as waiting.
    let (s, staged) = api
        .call(
            Method::POST,
            "/api/v1/apps/db/runs",
            Some(serde_json::json!({"environment": "staging"})),
        )
        .await;
    assert_eq!(s, 201);
    let staged_id = staged["id"].as_i64().unwrap();
    let detail = api.get(&format!("/api/v1/runs/{staged_id}")).await;
    assert_eq!(detail["waiting_for_runner"], true, "{detail}");

    let runner_log = h.dir.path().join("runner-prod.log");
    let mut runner = runner_process(&h, "prod", &runner_log);
    let (s, run) = api
        .call(
            Method::POST,
            "/api/v1/apps/db/runs",
            Some(serde_json::json!({"environment": "prod"})),
        )
        .await;
    assert_eq!(s, 201);
    let id = run["id"].as_i64().unwrap();
    let done = h.finished(id).await;
    assert_eq!(
        done.run.status,
        minitower_core::RunStatus::Completed,
        "{done:?}"
    );
    let lines: Vec<String> = api.get(&format!("/api/v1/runs/{id}/logs")).await["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap().to_string())
        .collect();
    let reversed: String = PROD.chars().rev().collect();
    assert!(
        lines.contains(&format!("reversed:{reversed}")),
        "prod's value, not staging's: {lines:?}"
    );
    assert!(lines.contains(&"raw:***".to_string()), "{lines:?}");
    assert!(lines.contains(&"split:***:end".to_string()), "{lines:?}");
    assert!(lines.contains(&"stderr:***".to_string()), "{lines:?}");
    // Still waiting: the prod runner does not take staging's run.
    let detail = api.get(&format!("/api/v1/runs/{staged_id}")).await;
    assert_eq!(
        (
            detail["status"].as_str(),
            detail["waiting_for_runner"].as_bool()
        ),
        (Some("queued"), Some(true))
    );

    // The reads a user would make, all recorded.
    api.get("/api/v1/secrets?environment=prod").await;
    api.get("/api/v1/secrets?environment=staging").await;
    let envs = api.get("/api/v1/environments").await;
    let prod = envs["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "prod")
        .unwrap()
        .clone();
    assert_eq!(
        prod["runner_names"],
        serde_json::json!(["runner-prod"]),
        "{envs}"
    );
    api.get(&format!("/api/v1/runs/{id}")).await;
    api.get("/api/v1/runs").await;
    api.get("/api/v1/apps/db/versions").await;

    // Stop the runner cleanly so its output is complete.
    let pid = runner.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    wait_for("runner to exit", || {
        let exited = runner.try_wait().unwrap().is_some();
        async move { exited.then_some(()) }
    })
    .await;

    let server_dir = h.dir.path().join("server");
    let mut db = Vec::new();
    for f in ["minitower.db", "minitower.db-wal", "minitower.db-shm"] {
        if let Ok(b) = std::fs::read(server_dir.join(f)) {
            db.extend(b);
        }
    }
    assert!(db.len() > 10_000, "read the database files");
    let runner_out = std::fs::read(&runner_log).unwrap();
    assert!(!runner_out.is_empty(), "the runner logged at debug");
    let server_logs = captured.0.lock().unwrap().clone();
    assert!(
        holds(&server_logs, "/api/v1/secrets"),
        "the server's request log was captured"
    );
    let answers = api.seen.lock().unwrap().join("\n");
    for value in [PROD, STAGING] {
        assert!(!holds(&db, value), "{value} in the database files");
        assert!(!holds(&runner_out, value), "{value} in the runner's output");
        assert!(!holds(&server_logs, value), "{value} in the server's logs");
        assert!(
            !holds(answers.as_bytes(), value),
            "{value} in an API answer"
        );
        assert!(
            !lines.iter().any(|l| l.contains(value)),
            "{value} in the stored log lines"
        );
    }
    // The key file was made at first start, readable by its owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(server_dir.join("secrets.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_declared_secret_fails_the_run_at_lease_naming_it() {
    let h = Harness::start().await;
    deploy_db(&h, "print('never runs')\n").await;
    // Queued before the secret exists, set before a runner comes: it runs.
    let first = h
        .team
        .create_run("db", &CreateRunRequest::default(), None)
        .await
        .unwrap()
        .0
        .id;
    h.team
        .put_secret("DB_PASSWORD", "default", "set-later-value")
        .await
        .unwrap();
    let runner = common::RunnerHandle::spawn(h.runner_config("r1"));
    let done = h.finished(first).await;
    assert_eq!(
        done.run.status,
        minitower_core::RunStatus::Completed,
        "{done:?}"
    );
    // Deleted again: the next run fails at once, naming it, and no line ran.
    h.team
        .delete_secret("DB_PASSWORD", "default")
        .await
        .unwrap();
    let second = h
        .team
        .create_run("db", &CreateRunRequest::default(), None)
        .await
        .unwrap()
        .0
        .id;
    let done = h.finished(second).await;
    assert_eq!(done.run.status, minitower_core::RunStatus::Failed);
    let why = done.run.error_message.clone().unwrap_or_default();
    assert!(
        why.contains("DB_PASSWORD") && why.contains("\"default\""),
        "{why}"
    );
    assert!(h.logs(second).await.iter().all(|l| l.line != "never runs"));
    runner.drain.cancel();
}
