//! `minitower run --retries/--retry-delay`, `show`'s attempt line and
//! `minitower webhooks` through the real binary, server and runner.

mod common;

use common::*;

const TOWERFILE: &str =
    "[app]\nname = \"flaky\"\nscript = \"main.py\"\nretries = 1\nretry_delay = \"200ms\"\n";

/// Fails on its first attempt, succeeds on the next.
const FLAKY: &str = "import os, sys\nn = int(os.environ['MINITOWER_ATTEMPT_NO'])\nprint(f'attempt {n}', flush=True)\nsys.exit(0 if n >= 2 else 1)\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_from_the_towerfile_and_the_command_line() {
    let stack = Stack::start().await;
    let cli = &stack.cli;
    stack.login().await;
    let dir = write_app(stack.dir.path(), "flaky", FLAKY);
    std::fs::write(dir.join("Towerfile"), TOWERFILE).unwrap();
    cli.run(&["deploy", dir.to_str().unwrap()]).await.expect(0);
    let v = cli
        .run(&["--json", "versions", "flaky"])
        .await
        .expect(0)
        .json();
    assert_eq!(v["versions"][0]["retries"], 1, "{v}");
    assert_eq!(v["versions"][0]["retry_delay_ms"], 200);

    // The Towerfile's one retry: attempt 1 fails, attempt 2 completes.
    let out = cli.run(&["run", "flaky"]).await.expect(0);
    assert!(
        out.stdout.contains("attempt 1") && out.stdout.contains("attempt 2"),
        "{}",
        out.stdout
    );
    let runs = cli.run(&["--json", "runs", "flaky"]).await.expect(0).json();
    let id = runs["runs"][0]["id"].as_i64().unwrap().to_string();
    let shown = cli.run(&["--json", "show", &id]).await.expect(0).json();
    assert_eq!(
        (
            shown["failure_retry_count"].as_i64(),
            shown["status"].as_str()
        ),
        (Some(1), Some("completed"))
    );
    assert_eq!(shown["attempts"].as_array().unwrap().len(), 2);
    let human = cli.run(&["show", &id]).await.expect(0);
    assert!(
        human.stdout.contains("2 of 2 (1 of 1 failure retries used"),
        "{}",
        human.stdout
    );

    // --retries 0 overrides it: the run fails at once.
    let out = cli
        .run(&["--json", "run", "flaky", "--retries", "0"])
        .await
        .expect(1);
    let last: serde_json::Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["status"].as_str(), last["failure_retries"].as_i64()),
        (Some("failed"), Some(0))
    );
    // A bad delay is refused by the server naming the field.
    let out = cli
        .run(&["run", "flaky", "--retry-delay", "2h"])
        .await
        .expect(1);
    assert!(out.stderr.contains("retry_delay"), "{}", out.stderr);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_create_list_test_deliveries_delete() {
    let stack = Stack::start().await;
    let cli = &stack.cli;
    stack.login().await;
    // A public address (the test server refuses loopback receivers).
    let url = "http://93.184.216.34/hook";
    let created = cli
        .run(&["--json", "webhooks", "create", url, "--events", "failures"])
        .await
        .expect(0)
        .json();
    assert!(
        created["secret"].as_str().unwrap().starts_with("whsec_"),
        "{created}"
    );
    assert_eq!(created["events"], "failures");
    let id = created["id"].as_i64().unwrap().to_string();
    let human = cli.run(&["webhooks", "create", url]).await.expect(0);
    assert!(
        human.stdout.contains("whsec_") && human.stdout.contains("terminal"),
        "{}",
        human.stdout
    );
    let list = cli
        .run(&["--json", "webhooks", "list"])
        .await
        .expect(0)
        .json();
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 2);
    assert!(
        !list.to_string().contains("whsec_"),
        "secrets are shown once"
    );
    let table = cli.run(&["webhooks", "list"]).await.expect(0);
    assert!(table.stdout.contains(url), "{}", table.stdout);
    let test = cli
        .run(&["--json", "webhooks", "test", &id])
        .await
        .expect(0)
        .json();
    assert_eq!(test["event_type"], "webhook.test");
    let d = cli
        .run(&["--json", "webhooks", "deliveries", &id])
        .await
        .expect(0)
        .json();
    assert!(d["deliveries"].is_array(), "{d}");
    cli.run(&["webhooks", "deliveries", &id]).await.expect(0);
    // Bad input: refused naming the field.
    let out = cli
        .run(&["webhooks", "create", "ftp://x/y"])
        .await
        .expect(1);
    assert!(out.stderr.contains("url"), "{}", out.stderr);
    let out = cli
        .run(&["webhooks", "create", url, "--events", "sometimes"])
        .await
        .expect(1);
    assert!(out.stderr.contains("events"), "{}", out.stderr);
    cli.run(&["--json", "webhooks", "delete", &id])
        .await
        .expect(0);
    let out = cli.run(&["webhooks", "delete", &id]).await.expect(3);
    assert!(out.stderr.contains("not found"), "{}", out.stderr);
    stack.stop().await;
}
