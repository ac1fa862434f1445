//! Job kinds through the CLI (issue 14): a Towerfile `command` with
//! `[app.limits]` and a named priority deploys without a script file, the
//! versions table says what it runs, and `run`'s job flags reach the run
//! or are refused naming the flag before any request.

mod common;

use common::*;

const TOWERFILE: &str = "[app]\nname = \"build\"\ncommand = [\"sh\", \"-c\", \"echo built\"]\npriority = \"foreground\"\n\n[app.limits]\nmemory = \"256MiB\"\npids = 128\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_app_deploys_and_runs_take_job_flags() {
    let stack = Stack::start().await;
    let cli = &stack.cli;
    stack.login().await;
    let dir = stack.dir.path().join("build");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Towerfile"), TOWERFILE).unwrap();
    cli.run(&["deploy", dir.to_str().unwrap()]).await.expect(0);
    let v = cli
        .run(&["--json", "versions", "build"])
        .await
        .expect(0)
        .json();
    let job = &v["versions"][0]["job"];
    assert_eq!(job["entry"]["argv"][2], "echo built", "{v}");
    assert_eq!(job["limits"]["memory"], 256u64 << 20);
    assert_eq!(v["versions"][0]["priority_name"], "foreground");
    let table = cli.run(&["versions", "build"]).await.expect(0);
    assert!(
        table
            .stdout
            .contains("command sh -c echo built, mem 256 MiB, pids 128")
            && table.stdout.contains("foreground"),
        "{}",
        table.stdout
    );

    // Flags checked locally: the message names the flag, nothing is created.
    for (args, want) in [
        (vec!["--priority", "urgent"], "--priority"),
        (vec!["--pty", "wide"], "--pty"),
        (vec!["--memory", "lots"], "--memory"),
        (vec!["--pids", "0"], "--pids"),
    ] {
        let mut all = vec!["run", "build", "--detach"];
        all.extend(args.iter());
        let out = cli.run(&all).await.expect(2);
        assert!(out.stderr.contains(want), "{args:?}: {}", out.stderr);
    }
    // Refused by the server: a ref on a version without a git source.
    let out = cli
        .run(&["run", "build", "--detach", "--ref", "v1"])
        .await
        .expect(1);
    assert!(out.stderr.contains("ref"), "{}", out.stderr);
    let runs = cli.run(&["--json", "runs", "build"]).await.expect(0).json();
    assert!(runs["runs"].as_array().unwrap().is_empty(), "{runs}");

    let run = cli
        .run(&[
            "--json",
            "run",
            "build",
            "--detach",
            "--priority",
            "best-effort",
            "--pty",
            "100x30",
            "--memory",
            "64MiB",
            "--cpus",
            "0.5",
        ])
        .await
        .expect(0)
        .json();
    assert_eq!(
        (run["priority"].as_i64(), run["priority_name"].as_str()),
        (Some(-100), Some("best_effort"))
    );
    assert_eq!(
        run["job_overrides"]["pty"],
        serde_json::json!({"cols":100,"rows":30})
    );
    assert_eq!(run["job_overrides"]["limits"]["memory"], "64MiB");
    let id = run["id"].as_i64().unwrap().to_string();
    let shown = cli.run(&["show", &id]).await.expect(0);
    assert!(
        shown.stdout.contains("best_effort (-100)"),
        "{}",
        shown.stdout
    );
    // Without a priority the version's applies.
    let plain = cli
        .run(&["--json", "run", "build", "--detach"])
        .await
        .expect(0)
        .json();
    assert_eq!(plain["priority_name"], "foreground");
    stack.stop().await;
}
