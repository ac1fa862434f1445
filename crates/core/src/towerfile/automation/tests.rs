use super::super::{parse, TowerfileError};
use super::*;
use serde_json::json;

const HEAD: &str = "[app]\nname = \"a\"\nscript = \"m.py\"\n";

fn ok(extra: &str) -> (Automation, Vec<String>) {
    let p = parse(&format!("{HEAD}{extra}")).unwrap_or_else(|e| panic!("{extra}: {e}"));
    (p.towerfile.automation, p.warnings)
}

/// The refusal's key, line and message.
fn refused(extra: &str) -> (String, usize, String) {
    refused_text(&format!("{HEAD}{extra}"))
}

/// Root-level keys (`schedules = [...]`) must come before `[app]`.
fn refused_root(root: &str) -> (String, usize, String) {
    refused_text(&format!("{root}{HEAD}"))
}

fn refused_text(text: &str) -> (String, usize, String) {
    match parse(text) {
        Err(TowerfileError::Invalid { key, line, message }) => (key, line, message),
        other => panic!("{text}: expected a refusal, got {other:?}"),
    }
}

#[test]
fn nothing_written_means_nothing_set() {
    let (a, w) = ok("");
    assert_eq!(a, Automation::default());
    assert!(w.is_empty());
    assert_eq!(a.first_retry_delay(), Duration::from_secs(2));
}

#[test]
fn app_keys() {
    let (a, w) = ok("retries = 3\nretry_delay = \"2s\"\ntimeout = \"10m\"\n");
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(a.retries, Some(3));
    assert_eq!(a.retry_delay, Some(Duration::from_secs(2)));
    assert_eq!(a.timeout, Some(Duration::from_secs(600)));
    let (a, _) = ok("retries = 0\ntimeout = \"1h 30m\"\n");
    assert_eq!(a.retries, Some(0));
    assert_eq!(a.timeout, Some(Duration::from_secs(5400)));
    let (a, _) = ok("retries = 100\nretry_delay = \"1h\"\ntimeout = \"7d\"\n");
    assert_eq!(a.retries, Some(100));
    assert_eq!(a.retry_delay, Some(Duration::from_secs(3600)));
    assert_eq!(a.timeout, Some(MAX_TIMEOUT));
    let (a, _) = ok("retries = 1\nretry_delay = \"250ms\"\n");
    assert_eq!(a.first_retry_delay(), Duration::from_millis(250));
}

#[test]
fn retry_delay_without_retries_warns() {
    let (a, w) = ok("retry_delay = \"5s\"\n");
    assert_eq!(a.retry_delay, Some(Duration::from_secs(5)));
    assert_eq!(
        w,
        vec!["Towerfile line 4: [app].retry_delay has no effect without [app].retries"]
    );
}

#[test]
fn app_key_refusals_name_key_and_line() {
    for (extra, key, needle) in [
        ("retries = -1\n", "[app].retries", "between 0 and 100"),
        ("retries = 101\n", "[app].retries", "between 0 and 100"),
        ("retries = \"3\"\n", "[app].retries", "whole number"),
        ("retries = 2.5\n", "[app].retries", "whole number"),
        ("retry_delay = \"0s\"\n", "[app].retry_delay", "more than 0"),
        ("retry_delay = \"-2s\"\n", "[app].retry_delay", "negative"),
        ("retry_delay = \"2h\"\n", "[app].retry_delay", "at most 1h"),
        ("retry_delay = 2\n", "[app].retry_delay", "duration string"),
        (
            "retry_delay = \"soon\"\n",
            "[app].retry_delay",
            "invalid duration",
        ),
        ("timeout = \"0s\"\n", "[app].timeout", "from 1s to 7d"),
        ("timeout = \"500ms\"\n", "[app].timeout", "from 1s to 7d"),
        (
            "timeout = \"1500ms\"\n",
            "[app].timeout",
            "whole number of seconds",
        ),
        ("timeout = \"8d\"\n", "[app].timeout", "from 1s to 7d"),
        ("timeout = \"-1m\"\n", "[app].timeout", "negative"),
        ("timeout = 600\n", "[app].timeout", "duration string"),
        ("schedule = 5\n", "[app].schedule", "cron expression string"),
        (
            "schedule = \"0 0 30 2 *\"\n",
            "[app].schedule",
            "never fires",
        ),
        ("schedule = \"* * *\"\n", "[app].schedule", "fields"),
    ] {
        let (k, line, msg) = refused(extra);
        assert_eq!(k, key, "{extra}");
        assert_eq!(line, 4, "{extra}");
        assert!(msg.contains(key), "{extra}: {msg}");
        assert!(msg.contains(needle), "{extra}: {msg}");
    }
}

#[test]
fn short_form_schedule() {
    let (a, w) = ok("schedule = \"0 0 * * *\"\n");
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        a.schedules,
        vec![ScheduleSpec {
            cron: "0 0 * * *".into(),
            timezone: "UTC".into(),
            input: Map::new(),
            enabled: true,
        }]
    );
    assert_eq!(a.schedules[0].schedule().unwrap().expr(), "0 0 * * *");
}

#[test]
fn short_form_and_tables_together_are_refused() {
    let (k, line, msg) = refused("schedule = \"@daily\"\n[[schedules]]\ncron = \"@hourly\"\n");
    assert_eq!(k, "[app].schedule");
    assert_eq!(line, 4);
    assert!(msg.contains("cannot both be written"), "{msg}");
}

#[test]
fn schedule_tables() {
    let text = r#"
[[schedules]]
cron = "*/15 * * * *"
timezone = "Europe/Berlin"
input = { region = "eu", count = 3, ratio = 0.5, on = true, tags = ["a", "b"], nested = { x = 1 } }
enabled = false

[[schedules]]
cron = "@hourly"

[[schedules]]
cron = "30 * * * * *"
[schedules.input]
when = 1979-05-27T07:32:00Z
"#;
    let (a, w) = ok(text);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(a.schedules.len(), 3);
    let s = &a.schedules[0];
    assert_eq!(s.cron, "*/15 * * * *");
    assert_eq!(s.timezone, "Europe/Berlin");
    assert!(!s.enabled);
    assert_eq!(
        serde_json::Value::Object(s.input.clone()),
        json!({"region": "eu", "count": 3, "ratio": 0.5, "on": true, "tags": ["a", "b"], "nested": {"x": 1}})
    );
    assert_eq!(a.schedules[1].timezone, "UTC");
    assert!(a.schedules[1].enabled);
    assert!(a.schedules[1].input.is_empty());
    assert_eq!(
        serde_json::Value::Object(a.schedules[2].input.clone()),
        json!({"when": "1979-05-27T07:32:00Z"})
    );
    for s in &a.schedules {
        s.schedule().unwrap();
    }
    // The inline-array form reads the same.
    let b = parse(&format!("schedules = [{{ cron = \"@hourly\" }}]\n{HEAD}"))
        .unwrap()
        .towerfile
        .automation;
    assert_eq!(b.schedules, vec![a.schedules[1].clone()]);
}

#[test]
fn schedule_table_refusals() {
    for (extra, key, line, needle) in [
        (
            "[[schedules]]\ntimezone = \"UTC\"\n",
            "schedules[1].cron",
            4,
            "is required",
        ),
        (
            "[[schedules]]\ncron = 5\n",
            "schedules[1].cron",
            5,
            "must be a string",
        ),
        (
            "[[schedules]]\ncron = \"61 * * * *\"\n",
            "schedules[1].cron",
            5,
            "invalid expression",
        ),
        (
            "[[schedules]]\ncron = \"@hourly\"\n[[schedules]]\ncron = \"0 0 30 2 *\"\n",
            "schedules[2].cron",
            7,
            "never fires",
        ),
        (
            "[[schedules]]\ncron = \"@hourly\"\ntimezone = \"Mars/Base\"\n",
            "schedules[1].timezone",
            6,
            "unknown time zone",
        ),
        (
            "[[schedules]]\ncron = \"@hourly\"\ntimezone = 1\n",
            "schedules[1].timezone",
            6,
            "must be a string",
        ),
        (
            "[[schedules]]\ncron = \"@hourly\"\ninput = \"x\"\n",
            "schedules[1].input",
            6,
            "must be a table",
        ),
        (
            "[[schedules]]\ncron = \"@hourly\"\ninput = { x = nan }\n",
            "schedules[1].input",
            6,
            "JSON",
        ),
        (
            "[[schedules]]\ncron = \"@hourly\"\nenabled = \"yes\"\n",
            "schedules[1].enabled",
            6,
            "true or false",
        ),
    ] {
        let (k, l, msg) = refused(extra);
        assert_eq!(k, key, "{extra}: {msg}");
        assert_eq!(l, line, "{extra}: {msg}");
        assert!(msg.contains(needle), "{extra}: {msg}");
        assert!(msg.contains(key), "{extra}: {msg}");
    }
}

#[test]
fn schedules_must_be_tables() {
    for (root, needle) in [
        ("schedules = 3\n", "[[schedules]] tables"),
        ("schedules = [1]\n", "must be a table"),
    ] {
        let (k, l, msg) = refused_root(root);
        assert_eq!(k, "[[schedules]]", "{root}: {msg}");
        assert_eq!(l, 1, "{root}: {msg}");
        assert!(msg.contains(needle), "{root}: {msg}");
    }
}

#[test]
fn schedule_bounds() {
    let many = "[[schedules]]\ncron = \"@hourly\"\n".repeat(MAX_SCHEDULES);
    assert_eq!(ok(&many).0.schedules.len(), MAX_SCHEDULES);
    let too_many = "[[schedules]]\ncron = \"@hourly\"\n".repeat(MAX_SCHEDULES + 1);
    let (k, _, msg) = refused(&too_many);
    assert_eq!(k, "[[schedules]]");
    assert!(msg.contains("at most 50"), "{msg}");
    let big = format!(
        "[[schedules]]\ncron = \"@hourly\"\ninput = {{ x = \"{}\" }}\n",
        "a".repeat(MAX_INPUT_BYTES)
    );
    let (k, _, msg) = refused(&big);
    assert_eq!(k, "schedules[1].input");
    assert!(msg.contains("bytes as JSON"), "{msg}");
}

#[test]
fn unknown_schedule_keys_warn() {
    let (a, w) = ok("[[schedules]]\ncron = \"@hourly\"\nversion = 3\n");
    assert_eq!(a.schedules.len(), 1);
    assert_eq!(
        w,
        vec!["Towerfile line 6: unknown key schedules[1].version (ignored)"]
    );
}
