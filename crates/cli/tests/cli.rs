//! The `minitower` binary against a real control plane and runner.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_run_and_inspect_hello() {
    let stack = Stack::start().await;
    let cli = &stack.cli;
    stack.login().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cli.config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "config file must be private");
    }

    let hello = example("hello");
    let hello = hello.to_str().unwrap();
    let out = cli.run(&["deploy", hello]).await.expect(0);
    assert!(out.stdout.contains("Deployed hello v1"), "{}", out.stdout);
    // Unchanged sources are recognised by their hash.
    let out = cli
        .run(&["--json", "deploy", "--if-changed", hello])
        .await
        .expect(0);
    let v = out.json();
    assert_eq!(v["unchanged"], true);
    assert_eq!(v["version"]["version_no"], 1);
    assert_eq!(
        v["version"]["params_schema"]["properties"]["name"]["default"],
        "World"
    );

    let out = cli
        .run(&["run", "hello", "-p", "name=Tests"])
        .await
        .expect(0);
    assert!(out.stdout.contains("Hello, Tests!"), "{out:?}");
    assert!(out.stderr.contains("completed"), "{}", out.stderr);

    // --json: one object per line, log lines then the final run.
    let out = cli
        .run(&["--json", "run", "hello", "--input", r#"{"name":"Json"}"#])
        .await
        .expect(0);
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert!(
        lines.iter().any(|l| l["line"] == "Hello, Json!"),
        "{}",
        out.stdout
    );
    let last = lines.last().unwrap();
    assert_eq!(last["status"], "completed");
    assert_eq!(last["exit_code"], 0);
    assert!(last["attempts"].is_array());

    let out = cli
        .run(&["--json", "run", "hello", "--detach"])
        .await
        .expect(0);
    let run_id = out.json()["id"].as_i64().unwrap();
    let out = cli
        .run(&["logs", &run_id.to_string(), "--follow"])
        .await
        .expect(0);
    assert!(out.stdout.contains("Hello, World!"), "{out:?}");

    let out = cli.run(&["--json", "runs", "hello"]).await.expect(0);
    assert_eq!(out.json()["runs"].as_array().unwrap().len(), 3);
    let out = cli.run(&["runs", "--status", "completed"]).await.expect(0);
    assert!(out.stdout.starts_with("ID"), "{}", out.stdout);
    let out = cli.run(&["show", "1"]).await.expect(0);
    assert!(
        out.stdout.contains("completed") && out.stdout.contains("cli-test-runner"),
        "{}",
        out.stdout
    );
    let out = cli.run(&["logs", "1"]).await.expect(0);
    assert!(out.stdout.contains("Hello, Tests!"), "{}", out.stdout);
    let out = cli.run(&["--json", "apps"]).await.expect(0);
    assert_eq!(out.json()["apps"][0]["slug"], "hello");
    let out = cli.run(&["versions", "hello"]).await.expect(0);
    assert!(out.stdout.contains("main.py"), "{}", out.stdout);
    let out = cli.run(&["--json", "status"]).await.expect(0);
    assert_eq!(out.json()["me"]["team"]["slug"], "acme");
    let out = cli.run(&["--json", "runners"]).await.expect(0);
    assert_eq!(out.json()["runners"][0]["name"], "cli-test-runner");

    let out = cli
        .run(&["--json", "tokens", "create", "ci", "--role", "member"])
        .await
        .expect(0);
    let created = out.json();
    let (id, secret) = (
        created["id"].as_i64().unwrap(),
        created["token"].as_str().unwrap().to_string(),
    );
    let out = cli.run(&["--token", &secret, "runs"]).await.expect(0);
    assert!(out.stdout.contains("hello"));
    let out = cli.run(&["tokens", "list"]).await.expect(0);
    assert!(out.stdout.contains("ci"), "{}", out.stdout);
    cli.run(&["tokens", "revoke", &id.to_string()])
        .await
        .expect(0);
    let out = cli.run(&["--token", &secret, "runs"]).await.expect(4);
    assert!(out.stderr.contains("HTTP 401"), "{}", out.stderr);

    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_interrupted_runs() {
    let stack = Stack::start().await;
    let cli = &stack.cli;
    stack.login().await;
    let apps = stack.dir.path().join("apps");
    let fails = write_app(
        &apps,
        "fails",
        "import sys\nprint('about to fail')\nprint('oops', file=sys.stderr)\nsys.exit(3)\n",
    );
    cli.run(&["deploy", fails.to_str().unwrap()])
        .await
        .expect(0);
    let out = cli.run(&["run", "fails"]).await.expect(1);
    assert!(out.stdout.contains("about to fail"), "{out:?}");
    assert!(out.stderr.contains("oops"), "{out:?}");
    assert!(
        out.stderr.contains("failed") && out.stderr.contains("exit code 3"),
        "{}",
        out.stderr
    );
    let out = cli.run(&["--json", "run", "fails"]).await.expect(1);
    let last: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "failed");
    assert_eq!(last["exit_code"], 3);

    // Ctrl-C stops following (130) but leaves the run going; cancel ends it.
    let countdown = example("countdown");
    cli.run(&["deploy", countdown.to_str().unwrap()])
        .await
        .expect(0);
    let mut child = cli
        .command(&["run", "countdown", "-p", "seconds=30"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        lines.next().map(|l| l.unwrap())
    });
    let first = tokio::time::timeout(Duration::from_secs(60), first)
        .await
        .expect("a countdown line")
        .unwrap();
    assert_eq!(first.as_deref(), Some("30..."));
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(130));

    let out = cli.run(&["--json", "runs", "countdown"]).await.expect(0);
    let run = &out.json()["runs"][0];
    assert_eq!(run["status"], "running", "{run}");
    let id = run["id"].as_i64().unwrap().to_string();
    let out = cli.run(&["cancel", &id]).await.expect(0);
    assert!(out.stdout.contains("cancelling"), "{}", out.stdout);
    let out = cli.run(&["logs", &id, "-f"]).await.expect(1);
    assert!(out.stdout.contains("30..."), "{}", out.stdout);
    assert!(out.stderr.contains("cancelled"), "{}", out.stderr);

    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_short_and_have_exit_codes() {
    let stack = Stack::start().await;
    let cli = &stack.cli;

    let out = cli.run(&["apps"]).await.expect(4);
    assert!(out.stderr.contains("not logged in"), "{}", out.stderr);
    let out = cli
        .run(&["login", "--server", &stack.url, "--token", "nope"])
        .await
        .expect(4);
    assert!(out.stderr.contains("HTTP 401"), "{}", out.stderr);
    let out = cli
        .run(&[
            "login",
            "--server",
            &stack.url,
            "--team",
            "acme",
            "--password",
            "wrong",
        ])
        .await
        .expect(4);
    assert!(out.stderr.contains("HTTP 401"), "{}", out.stderr);
    // Without --password the password is read from stdin when it is not a terminal.
    let mut login = cli.command(&["login", "--server", &stack.url, "--team", "acme"]);
    login
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = login.spawn().unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"hunter22\n")
            .unwrap();
    }
    let out: Out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
        .into();
    let out = out.expect(0);
    assert!(
        out.stdout.contains("as team acme (admin)"),
        "{}",
        out.stdout
    );

    let out = cli.run(&["run", "nope"]).await.expect(3);
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains("(HTTP 404)"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("Api {"),
        "no debug dumps: {}",
        out.stderr
    );
    let out = cli.run(&["--json", "show", "999"]).await.expect(3);
    let err: Value = serde_json::from_str(out.stderr.trim()).expect("JSON error");
    assert_eq!(err["error"]["http_status"], 404);

    let out = cli.run(&["run", "hello", "-p", "novalue"]).await.expect(2);
    assert!(out.stderr.contains("KEY=VALUE"), "{}", out.stderr);
    cli.run(&["run"]).await.expect(2);
    let out = cli
        .run(&["--server", "http://127.0.0.1:1", "apps"])
        .await
        .expect(5);
    assert!(
        out.stderr.contains("cannot reach the server"),
        "{}",
        out.stderr
    );

    let apps = stack.dir.path().join("apps");
    let bad = write_app(&apps, "bad", "print(1)\n");
    std::fs::write(bad.join("Towerfile"), "[app]\nname = \"bad\"\n").unwrap();
    let out = cli.run(&["deploy", bad.to_str().unwrap()]).await.expect(1);
    assert!(
        out.stderr
            .contains("Towerfile line 1: [app].script is required"),
        "{}",
        out.stderr
    );
    let out = cli
        .run(&["deploy", apps.join("missing").to_str().unwrap()])
        .await
        .expect(1);
    assert!(out.stderr.contains("Towerfile"), "{}", out.stderr);

    let help = cli.run(&["--help"]).await.expect(0);
    assert!(help.stdout.contains("Exit codes"), "{}", help.stdout);

    stack.stop().await;
}

/// `minitower dev`: one process, a saved profile, examples deployed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_serves_runs_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let cli = CliEnv::new(dir.path());
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();

    for round in 0..2 {
        let mut child = cli
            .command(&["dev", "--listen", "127.0.0.1:0", "--data-dir", data])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let banner = tokio::task::spawn_blocking(move || {
            let mut seen = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                let done = line.starts_with("Press Ctrl-C");
                seen.push(line);
                if done {
                    break;
                }
            }
            seen
        });
        let banner = tokio::time::timeout(Duration::from_secs(120), banner)
            .await
            .expect("dev starts")
            .unwrap();
        let text = banner.join("\n");
        assert!(
            text.contains("MiniTower is running at http://127.0.0.1:"),
            "{text}"
        );
        if round == 0 {
            assert!(text.contains("Deployed hello v1"), "{text}");
        } else {
            assert!(text.contains("hello v1 is up to date"), "{text}");
        }

        let out = cli.run(&["run", "hello", "-p", "name=Dev"]).await.expect(0);
        assert!(out.stdout.contains("Hello, Dev!"), "{out:?}");

        std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        let status = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::task::spawn_blocking(move || child.wait().unwrap()),
        )
        .await
        .expect("dev stops on Ctrl-C")
        .unwrap();
        assert_eq!(status.code(), Some(0));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let secrets = std::path::Path::new(data).join("dev-secrets.toml");
        let mode = std::fs::metadata(secrets).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
