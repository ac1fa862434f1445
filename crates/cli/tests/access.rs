//! `minitower environments`, `secrets` (value from stdin, never argv) and
//! `tokens create --expires-in/--app/--actions` against a real stack.

mod common;

use common::*;
use std::io::Write;
use std::process::Stdio;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_secrets_and_scoped_tokens_from_the_cli() {
    let stack = Stack::start().await;
    let cli = &stack.cli;
    stack.login().await;

    cli.run(&["environments", "create", "prod"]).await.expect(0);
    let out = cli.run(&["--json", "environments", "list"]).await.expect(0);
    let names: Vec<String> = out.json()["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["default", "prod"]);
    let out = cli.run(&["environments", "create", "prod"]).await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("already exists"), "{out:?}");

    // The value comes from stdin; it is on no command line.
    let value = "cli-S3cr3t-value-77";
    let mut child = cli
        .command(&[
            "--json",
            "secrets",
            "set",
            "DB_PASSWORD",
            "--environment",
            "prod",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{value}").unwrap();
    let out: Out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
        .into();
    let out = out.expect(0);
    assert_eq!(out.json()["version"], 1);
    assert!(!out.stdout.contains(value) && !out.stderr.contains(value));
    let out = cli
        .run(&["--json", "secrets", "list", "--environment", "prod"])
        .await
        .expect(0);
    assert_eq!(out.json()["secrets"][0]["name"], "DB_PASSWORD");
    assert!(!out.stdout.contains(value));
    let out = cli.run(&["secrets", "list", "-e", "prod"]).await.expect(0);
    assert!(out.stdout.contains("DB_PASSWORD") && !out.stdout.contains(value));
    // An empty stdin is refused before anything is sent.
    let out = cli.run(&["secrets", "set", "EMPTY_ONE"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    cli.run(&["secrets", "delete", "DB_PASSWORD", "--environment", "prod"])
        .await
        .expect(0);
    let out = cli
        .run(&["--json", "secrets", "list", "--environment", "prod"])
        .await
        .expect(0);
    assert_eq!(out.json()["secrets"], serde_json::json!([]));

    // A scoped, expiring CI token; the list shows scope and expiry.
    let out = cli
        .run(&[
            "--json",
            "tokens",
            "create",
            "ci",
            "--expires-in",
            "30d",
            "--app",
            "hello",
            "--actions",
            "trigger,read",
        ])
        .await
        .expect(0);
    let created = out.json();
    assert_eq!(created["role"], "member");
    assert_eq!(created["scope"]["app"], "hello");
    assert!(created["expires_at"].is_string());
    let ci_token = created["token"].as_str().unwrap().to_string();
    let out = cli
        .command(&["tokens", "list"])
        .env("MINITOWER_TOKEN", &ci_token)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "refused: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("out of scope"),
        "{out:?}"
    );
    let out = cli.run(&["tokens", "list"]).await.expect(0);
    assert!(
        out.stdout.contains("LAST REFUSED") && out.stdout.contains("out of scope"),
        "{}",
        out.stdout
    );

    cli.run(&["environments", "delete", "prod"]).await.expect(0);
    let out = cli.run(&["environments", "delete", "default"]).await;
    assert_ne!(out.code, 0);
    stack.stop().await;
}
