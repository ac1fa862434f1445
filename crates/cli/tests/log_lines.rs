//! How `minitower run` and `logs` print lifecycle events and a PTY run's
//! escape sequences, against a real control plane and runner.

mod common;

use common::*;
use serde_json::Value;

const COLOURS: &str = r#"import sys
print("tty", sys.stdout.isatty())
print("\x1b[31mred\x1b[0m")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_read_as_lines_and_escapes_go_only_to_a_terminal() {
    let stack = Stack::start().await;
    let cli = &stack.cli;
    stack.login().await;
    let app = write_app(stack.dir.path(), "colours", COLOURS);
    let towerfile = std::fs::read_to_string(app.join("Towerfile")).unwrap();
    std::fs::write(app.join("Towerfile"), towerfile + "pty = true\n").unwrap();
    cli.run(&["deploy", app.to_str().unwrap()]).await.expect(0);

    // Piped: no escapes on stdout, events as sentences on stderr.
    let out = cli.run(&["run", "colours"]).await.expect(0);
    assert!(out.stdout.contains("tty True"), "{out:?}");
    assert!(out.stdout.lines().any(|l| l == "red"), "{out:?}");
    assert!(!out.stdout.contains('\x1b'), "{out:?}");
    let started = out
        .stderr
        .lines()
        .find(|l| l.starts_with("▶ started pid "))
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(
        started.contains(" on cli-test-runner (attempt 1"),
        "{started}"
    );
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("■ finished exit 0 in ")),
        "{out:?}"
    );
    assert!(!out.stderr.contains(r#"{"event""#), "{out:?}");

    // --json: events stay log line objects, output keeps its escapes.
    let out = cli.run(&["--json", "run", "colours"]).await.expect(0);
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let events: Vec<Value> = lines
        .iter()
        .filter(|l| l["stream"] == "event")
        .map(|l| serde_json::from_str(l["line"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{}", out.stdout);
    assert_eq!(events[0]["event"], "started");
    assert_eq!(events[1]["event"], "finished");
    assert_eq!(events[1]["exit_code"], 0);
    assert!(
        lines.iter().any(|l| l["line"] == "\x1b[31mred\x1b[0m"),
        "{}",
        out.stdout
    );

    // On a terminal (util-linux `script` gives the CLI one) they pass through.
    let id = lines.last().unwrap()["id"].as_i64().unwrap().to_string();
    let shell_line = format!("{BIN} logs {id}");
    let env = cli.command(&[]);
    let o = std::process::Command::new("script")
        .args(["-qec", &shell_line, "/dev/null"])
        .envs(env.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("util-linux script runs");
    assert!(o.status.success(), "{o:?}");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("\x1b[31mred\x1b[0m"), "{text:?}");
    assert!(text.contains("▶ started pid "), "{text:?}");
    stack.stop().await;
}
