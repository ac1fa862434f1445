//! `minitower schedules` and `run --timeout` through the real binary and
//! server: a deploy applies the Towerfile's schedule, create (with `-p`
//! typed by the version), list, pause, resume, delete, all with `--json`;
//! a bad cron refused naming the field; a run started by a schedule shows
//! its schedule id.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const TOWERFILE: &str = r#"[app]
name = "nightly"
script = "main.py"
schedule = "0 0 * * *"

[[parameters]]
name = "count"
type = "integer"
default = "1"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_from_the_towerfile_and_the_command_line() {
    let stack = Stack::start().await;
    let cli = &stack.cli;
    stack.login().await;
    let dir = write_app(stack.dir.path(), "nightly", "print('tick', flush=True)\n");
    std::fs::write(dir.join("Towerfile"), TOWERFILE).unwrap();
    cli.run(&["deploy", dir.to_str().unwrap()]).await.expect(0);

    // The Towerfile's short form became a schedule.
    let list = cli
        .run(&["--json", "schedules", "list", "nightly"])
        .await
        .expect(0)
        .json();
    let all = list["schedules"].as_array().unwrap();
    assert_eq!(all.len(), 1, "{list}");
    assert_eq!(all[0]["cron"], "0 0 * * *");
    assert_eq!(all[0]["source"], "towerfile");
    assert_eq!(all[0]["next_runs"].as_array().unwrap().len(), 5);

    // Create with a typed -p; human output lists the next times.
    let out = cli
        .run(&[
            "schedules",
            "create",
            "nightly",
            "--cron",
            "0 9 1 1 *",
            "--timezone",
            "Europe/Berlin",
            "-p",
            "count=3",
        ])
        .await
        .expect(0);
    assert!(out.stdout.contains("09:00:00+01:00"), "{}", out.stdout);
    let list = cli
        .run(&["--json", "schedules", "list", "nightly"])
        .await
        .expect(0)
        .json();
    let created = list["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "api")
        .cloned()
        .unwrap();
    assert_eq!(created["input"], json!({"count": 3}), "typed by the schema");
    assert_eq!(created["timezone"], "Europe/Berlin");
    let id = created["id"].as_i64().unwrap().to_string();

    let paused = cli
        .run(&["--json", "schedules", "pause", &id])
        .await
        .expect(0)
        .json();
    assert_eq!(paused["enabled"], false);
    assert_eq!(paused["next_runs"], json!([]));
    let resumed = cli
        .run(&["--json", "schedules", "resume", &id])
        .await
        .expect(0)
        .json();
    assert_eq!(resumed["enabled"], true);
    let table = cli.run(&["schedules", "list", "nightly"]).await.expect(0);
    assert!(table.stdout.contains("Europe/Berlin"), "{}", table.stdout);
    cli.run(&["--json", "schedules", "delete", &id])
        .await
        .expect(0);
    cli.run(&["schedules", "delete", &id]).await.expect(3);

    // Refused naming the field; nothing created.
    let out = cli
        .run(&["schedules", "create", "nightly", "--cron", "61 * * * *"])
        .await
        .expect(1);
    assert!(out.stderr.contains("cron:"), "{}", out.stderr);
    let out = cli
        .run(&[
            "schedules",
            "create",
            "nightly",
            "--cron",
            "@daily",
            "--timezone",
            "Mars/Base",
        ])
        .await
        .expect(1);
    assert!(out.stderr.contains("timezone:"), "{}", out.stderr);

    // A run's own timeout.
    let run = cli
        .run(&["--json", "run", "nightly", "--timeout", "30s", "--detach"])
        .await
        .expect(0)
        .json();
    assert_eq!(run["timeout_seconds"], 30);
    assert_eq!(run["schedule_id"], Value::Null);

    // Every second: a run carrying the schedule's id shows up.
    let every = cli
        .run(&[
            "--json",
            "schedules",
            "create",
            "nightly",
            "--cron",
            "* * * * * *",
        ])
        .await
        .expect(0)
        .json();
    let every_id = every["id"].as_i64().unwrap();
    let started = Instant::now();
    let scheduled = loop {
        let runs = cli
            .run(&["--json", "runs", "nightly", "--limit", "50"])
            .await
            .expect(0)
            .json();
        let found = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["schedule_id"] == every_id)
            .cloned();
        if let Some(r) = found {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no scheduled run"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    cli.run(&["schedules", "delete", &every_id.to_string()])
        .await
        .expect(0);
    assert!(scheduled["scheduled_for"].is_string());
    let shown = cli
        .run(&["show", &scheduled["id"].as_i64().unwrap().to_string()])
        .await
        .expect(0);
    assert!(
        shown
            .stdout
            .contains(&format!("Schedule     {every_id} (tick")),
        "{}",
        shown.stdout
    );
    stack.stop().await;
}
