//! Isolation under the default settings of `minitower-runner` (run as root,
//! with a system-wide interpreter): a script that tries to read the runner's
//! token and environment, plant code in the shared caches, or look into a
//! run beside it fails at each step, and later runs see unmodified caches.

mod common;

use common::{Harness, DEADLINE};
use minitower_core::RunStatus;
use serde_json::json;
use std::path::Path;
use std::process::{Command, Stdio};

const SNOOP: &str = r#"import json, os, sys
inp = json.load(open(os.environ["MINITOWER_INPUT_FILE"]))
def attempt(what, fn):
    try:
        fn()
        print(f"ALLOWED: {what}", flush=True)
    except Exception as e:
        print(f"denied: {what}: {type(e).__name__}", flush=True)
attempt("read the runner token", lambda: open(inp["token"]).read())
attempt("list the runner's state dir", lambda: os.listdir(inp["state"]))
attempt("plant code in the environment cache", lambda: open(os.path.join(sys.prefix, "planted.py"), "w").write("x"))
attempt("change the environment cache", lambda: open(os.path.join(sys.prefix, "pyvenv.cfg"), "a").write("x"))
attempt("plant a file in the artifact cache", lambda: open(os.path.join(inp["artifacts"], "planted"), "w").write("x"))
attempt("read the artifact cache", lambda: os.listdir(inp["artifacts"]))
attempt("read another run's workspace", lambda: os.listdir(inp["other"]))
attempt("read the runner's environment", lambda: open(f"/proc/{inp['runner']}/environ", "rb").read())
print(f"uid {os.getuid()} home {os.environ['HOME'] == os.getcwd()}", flush=True)
"#;

/// Kills the runner process when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const SLEEPER: &str = r#"import os, time
print(f"cwd {os.getcwd()}", flush=True)
time.sleep(600)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_script_cannot_touch_the_runner_the_caches_or_other_runs() {
    let python = Path::new("/usr/bin/python3");
    if !nix::unistd::geteuid().is_root() || !python.exists() {
        eprintln!("skipped: needs root and /usr/bin/python3 to run scripts as other users");
        return;
    }
    let h = Harness::start().await;
    h.deploy("snoop", &[("main.py", SNOOP)], "main.py", None)
        .await;
    h.deploy("sleeper", &[("main.py", SLEEPER)], "main.py", None)
        .await;
    h.deploy("hello", &[("main.py", "print('hello')\n")], "main.py", None)
        .await;
    let data = h.dir.path().join("iso");
    let runner = Command::new(env!("CARGO_BIN_EXE_minitower-runner"))
        .env("MINITOWER_SERVER_URL", &h.url)
        .env("MINITOWER_RUNNER_NAME", "iso")
        .env("MINITOWER_RUNNER_REGISTRATION_TOKEN", "reg")
        .env("MINITOWER_DATA_DIR", &data)
        .env("MINITOWER_RUNNER_CONCURRENCY", "2")
        .env("MINITOWER_PYTHON_BIN", python)
        .env("MINITOWER_POLL_INTERVAL", "200ms")
        .env("AWS_SECRET_ACCESS_KEY", "must-not-leak")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let runner = KillOnDrop(runner);
    let sleeper = h.trigger("sleeper", json!({})).await;
    let cwd = h.wait_log(sleeper, |l| l.line.starts_with("cwd ")).await;
    let other = cwd.line["cwd ".len()..].to_string();
    let state = data.join("runners").join("iso");
    let id = h
        .trigger(
            "snoop",
            json!({
                "token": state.join("token.json"),
                "state": state,
                "artifacts": data.join("artifacts"),
                "other": other,
                "runner": runner.0.id(),
            }),
        )
        .await;
    let done = h.finished(id).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{:?}", done.run);
    let lines: Vec<String> = h.logs(id).await.into_iter().map(|l| l.line).collect();
    let tries: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("denied:") || l.starts_with("ALLOWED:"))
        .collect();
    assert_eq!(tries.len(), 8, "{lines:?}");
    assert!(
        tries.iter().all(|l| l.starts_with("denied:")),
        "a script got through: {tries:#?}"
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("uid ") && l.ends_with("home True")));
    assert!(!lines.iter().any(|l| l.contains("must-not-leak")));

    // Nothing was planted, and a later run of another app runs from intact caches.
    let envs = data.join("envs");
    for e in std::fs::read_dir(&envs).unwrap().flatten() {
        assert!(!e.path().join("planted.py").exists());
    }
    assert!(!data.join("artifacts").join("planted").exists());
    let later = h.trigger("hello", json!({})).await;
    let done = h.finished(later).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{:?}", done.run);
    assert!(h.logs(later).await.iter().any(|l| l.line == "hello"));

    let s = h.team.get_run(sleeper).await.unwrap();
    assert_eq!(s.run.status, RunStatus::Running, "{:?}", s);
    h.team.cancel_run(sleeper).await.unwrap();
    let _ = tokio::time::timeout(DEADLINE, h.finished(sleeper)).await;
}
