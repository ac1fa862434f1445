//! What a new user meets: honest run progress, usage errors with the fix,
//! completions, `init`, and `dev` surviving a closed pipe.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

/// Waits for a child to exit, polling against a generous deadline.
fn wait_exit(child: &mut std::process::Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("still running after {within:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reports_real_progress_and_waiting_without_runner() {
    let stack = Stack::start().await;
    let cli = &stack.cli;
    stack.login().await;
    let hello = example("hello");
    cli.run(&["deploy", hello.to_str().unwrap()])
        .await
        .expect(0);
    // The runner has registered and is heard from.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = cli.run(&["--json", "runners"]).await.expect(0);
        if out.json()["runners"][0]["status"] == "online" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "runner never online: {}",
            out.stdout
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let out = cli.run(&["run", "hello", "-p", "name=P"]).await.expect(0);
    assert!(out.stdout.contains("Hello, P!"), "{out:?}");
    let queued = out.stderr.find("queued: hello v1").expect(&out.stderr);
    let started = out.stderr.find(" started").expect(&out.stderr);
    let done = out.stderr.find(" completed in ").expect(&out.stderr);
    assert!(queued < started && started < done, "{}", out.stderr);
    assert!(!out.stderr.contains("no runner online"), "{}", out.stderr);

    // No runner serves environment `gpu`: say so instead of waiting silently.
    cli.run(&["environments", "create", "gpu"]).await.expect(0);
    let mut child = cli
        .command(&["run", "hello", "--environment", "gpu"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let notice = tokio::task::spawn_blocking(move || {
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.contains("no runner online") {
                return Some(line);
            }
        }
        None
    });
    let notice = tokio::time::timeout(Duration::from_secs(60), notice)
        .await
        .expect("a notice while the run waits")
        .unwrap()
        .expect("the notice");
    assert!(notice.contains("\"gpu\""), "{notice}");
    assert!(notice.contains("waits in the queue"), "{notice}");
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(code, Some(130));

    // A typo gets the nearest app.
    let out = cli.run(&["run", "helo"]).await.expect(3);
    assert!(
        out.stderr.contains("did you mean \"hello\""),
        "{}",
        out.stderr
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_say_how_to_fix_them() {
    let stack = Stack::start().await;
    let cli = &stack.cli;
    let out = cli
        .run(&["--server", "localhost:8080", "--token", "t", "apps"])
        .await
        .expect(2);
    assert!(
        out.stderr.contains("http://localhost:8080"),
        "{}",
        out.stderr
    );
    let out = cli
        .run(&["login", "--server", "localhost:8080", "--token", "t"])
        .await
        .expect(2);
    assert!(
        out.stderr.contains("http://localhost:8080"),
        "{}",
        out.stderr
    );

    let out = cli.run(&["--profile", "nope", "apps"]).await.expect(2);
    assert!(
        out.stderr.contains("no such profile \"nope\""),
        "{}",
        out.stderr
    );
    stack.login().await;
    let out = cli.run(&["--profile", "nope", "runs"]).await.expect(2);
    assert!(out.stderr.contains("existing: default"), "{}", out.stderr);

    // Completions for each shell.
    for shell in ["bash", "zsh", "fish"] {
        let out = cli.run(&["completions", shell]).await.expect(0);
        assert!(out.stdout.contains("minitower"), "{shell}");
        assert!(out.stdout.contains("deploy"), "{shell}");
    }

    // `init` writes an app that deploys and runs as it is, and never overwrites.
    let dir = stack.dir.path().join("My App");
    let d = dir.to_str().unwrap();
    let out = cli.run(&["init", d]).await.expect(0);
    assert!(out.stdout.contains("Created app my-app"), "{}", out.stdout);
    let main_py = std::fs::read_to_string(dir.join("main.py")).unwrap();
    cli.run(&["deploy", d]).await.expect(0);
    let out = cli
        .run(&["run", "my-app", "-p", "name=Init"])
        .await
        .expect(0);
    assert!(out.stdout.contains("Hello, Init!"), "{out:?}");
    let out = cli.run(&["init", d]).await.expect(2);
    assert!(out.stderr.contains("not overwriting"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("main.py")).unwrap(),
        main_py
    );
    stack.stop().await;
}

/// `minitower dev 2>&1 | tee log`, then Ctrl-C: `tee` is gone before `dev`
/// writes its goodbye; `dev` must neither panic nor hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_survives_a_closed_stdout_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let cli = CliEnv::new(dir.path());
    let data = dir.path().join("data");
    let mut child = cli
        .command(&[
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--no-examples",
        ])
        .env("MINITOWER_LOG", "info")
        .env_remove("CARGO")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let banner = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let done = line.starts_with("Press Ctrl-C");
            seen.push(line);
            if done {
                break;
            }
        }
        drop(lines); // the reader is gone, like a killed `tee`
        seen.join("\n")
    });
    let banner = tokio::time::timeout(Duration::from_secs(120), banner)
        .await
        .expect("dev starts")
        .unwrap();
    // The suggested command works from another terminal: here it is the
    // binary's own path (it is not on PATH and not run through cargo).
    assert!(banner.contains(&format!("{BIN} run hello")), "{banner}");
    drop(stderr);
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "a clean stop, not a panic");
}
