//! `-p key=value` typed by the version's schema, through the real binary,
//! server, runner and Python: an integer reaches the script as an integer,
//! and a bad value or an unknown name is refused before any run exists.

mod common;

use common::*;
use serde_json::Value;

const TOWERFILE: &str = r#"[app]
name = "typed"
script = "main.py"

[[parameters]]
name = "count"
type = "integer"
default = "1"

[[parameters]]
name = "name"
default = "World"

[[parameters]]
name = "ratio"
type = "number"
required = false

[[parameters]]
name = "loud"
type = "boolean"
required = false

[[parameters]]
name = "mode"
enum = ["fast", "slow"]
default = "fast"
"#;

/// Prints each input value with its Python type name.
const MAIN_PY: &str = r#"import json, os
params = json.loads(os.environ["MINITOWER_INPUT"])
print("TYPES " + json.dumps({k: [v, type(v).__name__] for k, v in sorted(params.items())}))
"#;

fn types_line(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("TYPES "))
        .unwrap_or_else(|| panic!("no TYPES line in {stdout:?}"));
    serde_json::from_str(line).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_values_reach_the_script_and_bad_ones_are_refused() {
    let stack = Stack::start().await;
    let cli = &stack.cli;
    stack.login().await;
    let dir = write_app(stack.dir.path(), "typed", MAIN_PY);
    std::fs::write(dir.join("Towerfile"), TOWERFILE).unwrap();
    cli.run(&["deploy", dir.to_str().unwrap()]).await.expect(0);

    let out = cli
        .run(&[
            "run",
            "typed",
            "-p",
            "count=3",
            "-p",
            "ratio=0.5",
            "-p",
            "loud=true",
            "-p",
            "name=007",
        ])
        .await
        .expect(0);
    let t = types_line(&out.stdout);
    assert_eq!(t["count"], serde_json::json!([3, "int"]), "{t}");
    assert_eq!(t["ratio"], serde_json::json!([0.5, "float"]), "{t}");
    assert_eq!(t["loud"], serde_json::json!([true, "bool"]), "{t}");
    assert_eq!(t["name"], serde_json::json!(["007", "str"]), "{t}");
    assert_eq!(t["mode"], serde_json::json!(["fast", "str"]), "{t}");

    // Refused before anything is created, naming the parameter.
    let out = cli.run(&["run", "typed", "-p", "count=x"]).await.expect(2);
    assert!(
        out.stderr
            .contains(r#"parameter count must be an integer (integer), got "x""#),
        "{}",
        out.stderr
    );
    let out = cli.run(&["run", "typed", "-p", "cout=3"]).await.expect(2);
    assert!(
        out.stderr.contains(
            "unknown parameter cout; valid: count, loud, mode, name, ratio (did you mean count?)"
        ),
        "{}",
        out.stderr
    );
    let out = cli
        .run(&["run", "typed", "-p", "mode=medium"])
        .await
        .expect(2);
    assert!(
        out.stderr
            .contains(r#"parameter mode must be one of fast, slow, got "medium""#),
        "{}",
        out.stderr
    );
    let out = cli
        .run(&["--json", "run", "typed", "-p", "loud=maybe"])
        .await
        .expect(2);
    let err: Value = serde_json::from_str(out.stderr.trim()).expect("JSON error");
    assert_eq!(err["error"]["exit_code"], 2);
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("parameter loud must be true or false"),
        "{msg}"
    );
    // A typo in the app name still gets its hint.
    let out = cli.run(&["run", "typd", "-p", "count=3"]).await.expect(3);
    assert!(
        out.stderr.contains("did you mean \"typed\""),
        "{}",
        out.stderr
    );

    let out = cli.run(&["--json", "runs", "typed"]).await.expect(0);
    assert_eq!(
        out.json()["runs"].as_array().unwrap().len(),
        1,
        "only the good run"
    );
    stack.stop().await;
}
