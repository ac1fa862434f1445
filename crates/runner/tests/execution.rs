//! Runs end to end: output, exit codes, input, environments.

mod common;

use common::{Harness, RunnerHandle};
use minitower_core::RunStatus;
use serde_json::json;

const HELLO: &str = r#"import os, json
input_data = json.loads(os.environ.get("MINITOWER_INPUT", "{}"))
print(f"Hello, {input_data.get('name', 'World')}!")
"#;

#[tokio::test(flavor = "multi_thread")]
async fn success_with_output() {
    let h = Harness::start().await;
    h.deploy("hello", &[("main.py", HELLO)], "main.py", Some(60))
        .await;
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    let id = h.trigger("hello", json!({"name": "MiniTower"})).await;
    let done = h.finished(id).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{:?}", done.run);
    assert_eq!(done.run.exit_code, Some(0));
    assert_eq!(done.attempts.len(), 1);
    let logs = h.logs(id).await;
    assert!(
        logs.iter()
            .any(|l| l.stream == "stdout" && l.line == "Hello, MiniTower!"),
        "{logs:?}"
    );
    assert!(logs.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(logs[0].seq, 1);
    // A shell entrypoint and a second run of the same version (artifact cache hit).
    h.deploy(
        "shell",
        &[("run.sh", "echo \"from bash $MINITOWER_RUN_NO\"\n")],
        "run.sh",
        None,
    )
    .await;
    let id2 = h.trigger("shell", json!({})).await;
    let done2 = h.finished(id2).await;
    assert_eq!(done2.run.status, RunStatus::Completed);
    assert!(h.logs(id2).await.iter().any(|l| l.line == "from bash 1"));
    let id3 = h.trigger("hello", json!({})).await;
    assert_eq!(h.finished(id3).await.run.status, RunStatus::Completed);
    assert!(h.logs(id3).await.iter().any(|l| l.line == "Hello, World!"));
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_code_three_fails_with_stderr_stored() {
    let h = Harness::start().await;
    let script = "import sys\nprint('about to fail', file=sys.stderr)\nprint('really', file=sys.stderr)\nsys.exit(3)\n";
    h.deploy("fails", &[("main.py", script)], "main.py", None)
        .await;
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    let id = h.trigger("fails", json!({})).await;
    let done = h.finished(id).await;
    assert_eq!(done.run.status, RunStatus::Failed);
    assert_eq!(done.run.exit_code, Some(3));
    let logs = h.logs(id).await;
    let stderr: Vec<&str> = logs
        .iter()
        .filter(|l| l.stream == "stderr")
        .map(|l| l.line.as_str())
        .collect();
    assert_eq!(stderr, ["about to fail", "really"]);
    // An uncaught exception: traceback on stderr, exit code 1, no runner frames.
    h.deploy(
        "raises",
        &[("main.py", "def f():\n    raise ValueError('boom')\nf()\n")],
        "main.py",
        None,
    )
    .await;
    let id = h.trigger("raises", json!({})).await;
    let done = h.finished(id).await;
    assert_eq!(done.run.exit_code, Some(1));
    let lines: Vec<String> = h
        .logs(id)
        .await
        .into_iter()
        .filter(|l| l.stream == "stderr")
        .map(|l| l.line)
        .collect();
    assert_eq!(
        lines.first().map(String::as_str),
        Some("Traceback (most recent call last):"),
        "{lines:?}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("ValueError: boom"));
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("<string>") || l.contains("runpy")),
        "{lines:?}"
    );
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn input_reaches_the_script_both_ways() {
    let h = Harness::start().await;
    let script = r#"import json, os, sys
inp = json.loads(os.environ["MINITOWER_INPUT"])
print("input", json.dumps(inp, sort_keys=True))
for k in ["name", "count", "nested", "flag", "MINITOWER_RUN_ID", "MINITOWER_RUN_NO", "MINITOWER_APP", "MINITOWER_VERSION_NO", "MINITOWER_ATTEMPT_NO", "PYTHONUNBUFFERED"]:
    print(f"{k}={os.environ.get(k)}")
print("bad-key present:", "bad-key" in os.environ)
print("secret:", os.environ.get("MINITOWER_RUNNER_REGISTRATION_TOKEN"))
print("cwd is workspace:", os.path.exists("helper.txt"))
print("venv:", sys.prefix == os.environ["VIRTUAL_ENV"], os.environ["PATH"].startswith(os.environ["VIRTUAL_ENV"]))
print("argv0:", sys.argv[0] == os.path.abspath("main.py"), sys.path[0] == os.getcwd())
import mylib
print("import path:", mylib.X)
"#;
    h.deploy(
        "inputs",
        &[
            ("main.py", script),
            ("helper.txt", "x"),
            (
                "Towerfile",
                "[app]\nname = \"inputs\"\nscript = \"main.py\"\nimport_paths = [\"../lib\"]\n",
            ),
            ("modules/lib/mylib.py", "X = 'from modules'\n"),
        ],
        "main.py",
        None,
    )
    .await;
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    let input =
        json!({"name": "Ada", "count": 3, "nested": {"a": [1, 2]}, "flag": true, "bad-key": "x"});
    let id = h.trigger("inputs", input).await;
    let done = h.finished(id).await;
    let lines: Vec<String> = h.logs(id).await.into_iter().map(|l| l.line).collect();
    let has = |s: &str| lines.iter().any(|l| l == s);
    assert!(
        has(
            r#"input {"bad-key": "x", "count": 3, "flag": true, "name": "Ada", "nested": {"a": [1, 2]}}"#
        ),
        "{lines:?}"
    );
    assert!(has("name=Ada"), "{lines:?}");
    assert!(has("count=3"));
    assert!(has(r#"nested={"a":[1,2]}"#));
    assert!(has("flag=true"));
    assert!(has(&format!("MINITOWER_RUN_ID={id}")));
    assert!(has("MINITOWER_RUN_NO=1"));
    assert!(has("MINITOWER_APP=inputs"));
    assert!(has("MINITOWER_VERSION_NO=1"));
    assert!(has("MINITOWER_ATTEMPT_NO=1"));
    assert!(has("PYTHONUNBUFFERED=1"));
    assert!(has("bad-key present: False"));
    assert!(has("secret: None"));
    assert!(has("cwd is workspace: True"));
    assert!(has("venv: True True"));
    assert!(has("argv0: True True"));
    // The Towerfile's import_paths (packed as modules/lib) are on PYTHONPATH.
    assert!(has("import path: from modules"), "{lines:?}");
    assert_eq!(done.run.status, RunStatus::Completed);
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requirements_are_installed_once_and_reused() {
    let h = Harness::start().await;
    let script = "import tinydep, sys\nprint('value', tinydep.VALUE)\nprint('cached', tinydep.__cached__ is not None)\n";
    h.deploy_with_wheel("deps", "tinydep", "VALUE = 'tiny 42'\n", script)
        .await;
    let config = h.runner_config("r1");
    let envs_dir = config.data_dir.join("envs");
    let runner = RunnerHandle::spawn(config);

    let first = h.trigger("deps", json!({})).await;
    let done = h.finished(first).await;
    let logs = h.logs(first).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{logs:?}");
    assert!(logs.iter().any(|l| l.line == "value tiny 42"));
    assert!(
        logs.iter()
            .any(|l| l.stream == "setup" && l.line.starts_with("building environment")),
        "{logs:?}"
    );
    let marker = std::fs::read_dir(&envs_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path().join(".minitower-complete"))
        .find(|p| p.exists() && !p.to_string_lossy().contains("/empty-"))
        .expect("a built environment");
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&marker).unwrap());

    let second = h.trigger("deps", json!({})).await;
    let done = h.finished(second).await;
    let logs = h.logs(second).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{logs:?}");
    assert!(logs.iter().any(|l| l.line == "value tiny 42"));
    assert!(
        logs.iter()
            .any(|l| l.stream == "setup" && l.line.starts_with("using cached environment")),
        "{logs:?}"
    );
    assert!(!logs
        .iter()
        .any(|l| l.line.starts_with("building environment")));
    assert_eq!(
        inode,
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&marker).unwrap())
    );
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn log_budget_drops_lines_with_one_marker() {
    let h = Harness::start().await;
    let script = "for i in range(200):\n    print(f'line {i:04d}')\n";
    h.deploy("chatty", &[("main.py", script)], "main.py", None)
        .await;
    let mut config = h.runner_config("r1");
    config.max_log_bytes = 100; // ten lines of "line 0000"
    let runner = RunnerHandle::spawn(config);
    let id = h.trigger("chatty", json!({})).await;
    assert_eq!(h.finished(id).await.run.status, RunStatus::Completed);
    let logs = h.logs(id).await;
    let kept: Vec<&str> = logs
        .iter()
        .filter(|l| l.stream == "stdout")
        .map(|l| l.line.as_str())
        .collect();
    // The budget counts every stored byte (the setup line about the download
    // too) but the lifecycle events', which always go.
    let total: usize = logs
        .iter()
        .filter(|l| !l.line.contains("log limit") && l.stream != "event")
        .map(|l| l.line.len())
        .sum();
    assert!(total <= 100, "{total}");
    assert!(!kept.is_empty() && kept.len() < 20, "{kept:?}");
    assert!(kept
        .iter()
        .enumerate()
        .all(|(i, l)| *l == format!("line {i:04}")));
    let markers: Vec<&str> = logs
        .iter()
        .filter(|l| l.line.contains("log limit"))
        .map(|l| l.line.as_str())
        .collect();
    let expected = format!(
        "[minitower] log limit of 100 bytes reached: dropped {} lines ({} bytes)",
        200 - kept.len(),
        (200 - kept.len()) * 9
    );
    assert_eq!(markers, [expected.as_str()]);
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn saved_token_is_reused_and_replaced_when_refused() {
    let h = Harness::start().await;
    h.deploy("hello", &[("main.py", HELLO)], "main.py", None)
        .await;
    let config = h.runner_config("r1");
    let token_file = config.data_dir.join("runners/r1/token.json");
    let runner = RunnerHandle::spawn(config.clone());
    let id = h.trigger("hello", json!({})).await;
    assert_eq!(h.finished(id).await.run.status, RunStatus::Completed);
    runner.stop().await;
    let saved = std::fs::read_to_string(&token_file).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // A restart reuses the token (no registration: the file is unchanged).
    let mut no_reg = config.clone();
    no_reg.registration_token = String::new();
    let runner = RunnerHandle::spawn(no_reg);
    let id = h.trigger("hello", json!({})).await;
    assert_eq!(h.finished(id).await.run.status, RunStatus::Completed);
    runner.stop().await;
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), saved);

    // A refused token (401) leads to a new registration.
    let mut v: serde_json::Value = serde_json::from_str(&saved).unwrap();
    v["token"] = json!("not-a-valid-token");
    std::fs::write(&token_file, v.to_string()).unwrap();
    let runner = RunnerHandle::spawn(config);
    let id = h.trigger("hello", json!({})).await;
    assert_eq!(h.finished(id).await.run.status, RunStatus::Completed);
    runner.stop().await;
    let renewed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&token_file).unwrap()).unwrap();
    assert_ne!(renewed["token"], json!("not-a-valid-token"));
}

/// A script cannot tell a run forked by a fork server from a fresh
/// `python script.py`, and forked runs do not share random state.
#[tokio::test(flavor = "multi_thread")]
async fn prestarted_interpreter_is_indistinguishable() {
    common::probe::forked_and_fresh_runs_compared(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_by_a_signal_fails_naming_it() {
    let h = Harness::start().await;
    h.deploy(
        "selfkill",
        &[(
            "main.py",
            "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
        )],
        "main.py",
        None,
    )
    .await;
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    let id = h.trigger("selfkill", json!({})).await;
    let done = h.finished(id).await;
    assert_eq!(done.run.status, RunStatus::Failed);
    assert_eq!(
        done.run.error_message.as_deref(),
        Some("killed by signal SIGKILL (9)")
    );
    runner.stop().await;
}

/// An app with dependencies is forked by its environment's own fork server
/// once that server is up (its first run starts it in the background),
/// imports its dependency from its environment, and once the environment
/// is not what the server started from (its marker changed), no run is
/// forked by that stale server. A run tells a fork from a plain start by
/// its `/proc/self/cmdline` (`python -c <server>`, documented as shared).
#[tokio::test(flavor = "multi_thread")]
async fn an_app_with_dependencies_is_forked_once_its_server_is_up() {
    let h = Harness::start().await;
    let script = "import forkdep, sys\nprint('value', forkdep.VALUE)\nprint('prefix', sys.prefix)\nprint('forked', open('/proc/self/cmdline', 'rb').read().split(b'\\0')[1] == b'-c')\n";
    h.deploy_with_wheel("deps", "forkdep", "VALUE = 'fork 7'\n", script)
        .await;
    let config = h.runner_config("r1");
    let envs_dir = config.data_dir.join("envs");
    let runner = RunnerHandle::spawn(config);
    // (forked, prefix) of one run, which must import its dependency.
    let run = || async {
        let id = h.trigger("deps", json!({})).await;
        let done = h.finished(id).await;
        let logs = h.logs(id).await;
        assert_eq!(done.run.status, RunStatus::Completed, "{logs:?}");
        assert!(logs.iter().any(|l| l.line == "value fork 7"), "{logs:?}");
        let of = |key: &str| {
            logs.iter()
                .find_map(|l| l.line.strip_prefix(key).map(str::to_string))
                .unwrap_or_default()
        };
        (of("forked ") == "True", of("prefix "))
    };
    let (forked, prefix) = run().await;
    assert!(
        !forked,
        "the first run of an environment starts the ordinary way"
    );
    assert!(
        prefix.starts_with(&envs_dir.to_string_lossy().into_owned()),
        "{prefix}"
    );
    assert!(!prefix.contains("/empty-"), "{prefix}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (forked, again) = run().await;
        assert_eq!(again, prefix, "same environment");
        if forked {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no run of the app was forked"
        );
    }
    // The environment changes under the server: its runs start the
    // ordinary way (and a new server is started for the environment as
    // it is now).
    let marker = std::path::Path::new(&prefix).join(".minitower-complete");
    let mut text = std::fs::read_to_string(&marker).unwrap();
    text.push_str("rebuilt\n");
    std::fs::write(&marker, text).unwrap();
    let (forked, _) = run().await;
    assert!(
        !forked,
        "a run was forked by a server of an older environment"
    );
    runner.stop().await;
}

/// The repository's `examples/with-deps` app: a requirements.txt naming a
/// local source package (relative path, in-tree build backend, no network).
#[tokio::test(flavor = "multi_thread")]
async fn example_with_local_source_dependency() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/with-deps");
    if !root.exists() {
        eprintln!("examples/with-deps not found; skipping");
        return;
    }
    let mut files: Vec<(String, String)> = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let h = Harness::start().await;
    h.deploy("with-deps", &refs, "main.py", None).await;
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    let id = h.trigger("with-deps", json!({"name": "Runner"})).await;
    let done = h.finished(id).await;
    let logs = h.logs(id).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{logs:?}");
    assert!(
        logs.iter()
            .any(|l| l.stream == "stdout" && l.line.contains("Runner")),
        "{logs:?}"
    );
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_takes_the_fast_path_lease_that_starts_and_result_with_logs() {
    let h = Harness::start().await;
    // The line and the exit are microseconds apart, far less than the
    // 200 ms a line may wait for its batch: it can only travel with the result.
    let script = "import os\nos.write(1, b'Hello, fast!\\n')\nos._exit(0)\n";
    h.deploy("hello", &[("main.py", script)], "main.py", Some(60))
        .await;
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    let id = h.trigger("hello", json!({})).await;
    let done = h.finished(id).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{:?}", done.run);
    assert!(h.logs(id).await.iter().any(|l| l.line == "Hello, fast!"));
    let leases = common::route_calls(&h.url, "POST", "/api/v1/runs/lease").await;
    assert!(leases >= 1, "the lease route is counted: {leases}");
    assert_eq!(
        common::route_calls(&h.url, "POST", "/api/v1/runs/{run}/start").await,
        0,
        "the lease started the attempt"
    );
    assert_eq!(
        common::route_calls(&h.url, "POST", "/api/v1/runs/{run}/logs").await,
        0,
        "the only output line went with the result"
    );
    assert_eq!(
        common::route_calls(&h.url, "POST", "/api/v1/runs/{run}/result").await,
        1
    );
    runner.stop().await;
}
