//! Job kinds end to end: command and shell entries, PTY mode, and the
//! lifecycle events in the stored logs.

mod common;

use common::{process_gone, wait_for, Harness, RunnerHandle};
use minitower_core::api::LogLine;
use minitower_core::RunStatus;
use serde_json::{json, Value};

/// Uploads `files` (with a Towerfile saying what to run) as a new version
/// of `slug`: no entrypoint field, so the Towerfile's entry is taken.
async fn deploy_job(h: &Harness, slug: &str, app: &str, files: &[(&str, &str)]) {
    let towerfile = format!("[app]\nname = \"{slug}\"\n{app}\n");
    let mut all: Vec<(&str, &str)> = files.to_vec();
    all.push(("Towerfile", &towerfile));
    h.upload(slug, &all, None, None).await.unwrap();
}

fn lines(logs: &[LogLine], stream: &str) -> Vec<String> {
    logs.iter()
        .filter(|l| l.stream == stream)
        .map(|l| l.line.clone())
        .collect()
}

/// The lifecycle events of a run, parsed, with their seqs.
fn events(logs: &[LogLine]) -> Vec<(i64, Value)> {
    logs.iter()
        .filter(|l| l.stream == "event")
        .map(|l| {
            let v: Value = serde_json::from_str(&l.line)
                .unwrap_or_else(|e| panic!("event line {:?} is not JSON: {e}", l.line));
            (l.seq, v)
        })
        .collect()
}

const ARGS: &str = r#"import os, sys
print("argv", sys.argv[1:])
print("name", os.environ.get("name"))
print("tty", sys.stdout.isatty())
print("venv", sys.prefix == os.environ["VIRTUAL_ENV"])
import tinydep
print("dep", tinydep.VALUE)
print("to stderr", file=sys.stderr)
sys.exit(int(os.environ.get("code", "0")))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn command_and_shell_entries_run_without_a_script() {
    let h = Harness::start().await;
    let wheels = h.dir.path().join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    let wheel = common::write_wheel(&wheels, "tinydep", "VALUE = 'tiny 7'\n");
    let requirements = format!("{}\n", wheel.display());
    // `python` is the app's environment's: its requirements import.
    deploy_job(
        &h,
        "cmd",
        r#"command = ["python", "args.py", "one two", "$name"]"#,
        &[("args.py", ARGS), ("requirements.txt", &requirements)],
    )
    .await;
    deploy_job(
        &h,
        "sh",
        r#"shell = "echo \"hi $name from $0\" && ls | sort | tr '\n' ' ' && echo && echo oops >&2 && exit $code""#,
        &[("data.txt", "x")],
    )
    .await;
    // A program in the workspace (a '/' in argv[0]) and one nowhere.
    deploy_job(
        &h,
        "local",
        r#"command = ["bin/tool", "a"]"#,
        &[(
            "bin/tool",
            "#!/bin/sh\necho \"tool $1 in $(basename $PWD)\"\n",
        )],
    )
    .await;
    deploy_job(&h, "missing", r#"command = ["no-such-program-xyz"]"#, &[]).await;
    let runner = RunnerHandle::spawn(h.runner_config("r1"));

    let id = h.trigger("cmd", json!({"name": "Ada", "code": 3})).await;
    let done = h.finished(id).await;
    let logs = h.logs(id).await;
    assert_eq!(done.run.status, RunStatus::Failed, "{logs:?}");
    assert_eq!(done.run.exit_code, Some(3));
    let out = lines(&logs, "stdout");
    // No shell: nothing was split or expanded.
    assert!(
        out.contains(&"argv ['one two', '$name']".to_string()),
        "{out:?}"
    );
    assert!(out.contains(&"name Ada".to_string()), "{out:?}");
    assert!(out.contains(&"tty False".to_string()), "{out:?}");
    assert!(out.contains(&"venv True".to_string()), "{out:?}");
    assert!(out.contains(&"dep tiny 7".to_string()), "{out:?}");
    assert_eq!(lines(&logs, "stderr"), ["to stderr"]);

    let id = h.trigger("sh", json!({"name": "Bo", "code": 4})).await;
    let done = h.finished(id).await;
    let logs = h.logs(id).await;
    assert_eq!(done.run.exit_code, Some(4), "{logs:?}");
    let out = lines(&logs, "stdout");
    assert_eq!(out[0], "hi Bo from /bin/sh", "{out:?}");
    assert!(
        out[1].contains("Towerfile") && out[1].contains("data.txt"),
        "{out:?}"
    );
    assert_eq!(lines(&logs, "stderr"), ["oops"]);
    let id = h.trigger("sh", json!({"name": "Cy", "code": 0})).await;
    assert_eq!(h.finished(id).await.run.status, RunStatus::Completed);

    let id = h.trigger("local", json!({})).await;
    let done = h.finished(id).await;
    let logs = h.logs(id).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{logs:?}");
    assert!(
        lines(&logs, "stdout")[0].starts_with("tool a in "),
        "{logs:?}"
    );

    let id = h.trigger("missing", json!({})).await;
    let done = h.finished(id).await;
    assert_eq!(done.run.status, RunStatus::Failed);
    let msg = done.run.error_message.clone().unwrap_or_default();
    assert!(
        msg.contains("\"no-such-program-xyz\" was not found on PATH"),
        "{msg}"
    );
    runner.stop().await;
}

const TERMINAL: &str = r#"import os, sys
print("isatty", sys.stdin.isatty(), sys.stdout.isatty(), sys.stderr.isatty())
size = os.get_terminal_size()
print("size", size.columns, size.lines)
print("term", os.environ.get("TERM"))
print("\x1b[31mred\x1b[0m and \x1b[1;32mbold green\x1b[0m")
print("also to the terminal", file=sys.stderr)
print("progress 50%\rprogress 100%")
print("ctty", os.getsid(0) == os.getpid(), os.tcgetpgrp(1) == os.getpgrp())
print("stdin", repr(sys.stdin.read()))
for i in range(3000):
    print(f"line {i:04} " + "x" * 60)
print("the end")
sys.exit(5)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_pty_run_sees_a_terminal_and_its_escapes_arrive_intact() {
    let h = Harness::start().await;
    deploy_job(
        &h,
        "tty",
        "script = \"main.py\"\npty = { cols = 123, rows = 45 }",
        &[("main.py", TERMINAL)],
    )
    .await;
    deploy_job(
        &h,
        "ttycmd",
        "shell = \"test -t 0 && test -t 1 && stty size && printf 'a\\\\tb\\\\n'\"\npty = true",
        &[],
    )
    .await;
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    let id = h.trigger("tty", json!({})).await;
    let done = h.finished(id).await;
    let logs = h.logs(id).await;
    assert_eq!(done.run.status, RunStatus::Failed, "{logs:?}");
    assert_eq!(done.run.exit_code, Some(5));
    let out = lines(&logs, "stdout");
    let has = |s: &str| out.iter().any(|l| l == s);
    assert!(has("isatty True True True"), "{out:?}");
    assert!(has("size 123 45"), "{out:?}");
    assert!(has("term xterm-256color"), "{out:?}");
    assert!(
        has("\x1b[31mred\x1b[0m and \x1b[1;32mbold green\x1b[0m"),
        "{out:?}"
    );
    // stderr is the terminal too; a lone \r is kept, the tty's \r\n is not.
    assert!(has("also to the terminal"), "{out:?}");
    assert!(has("progress 50%\rprogress 100%"), "{out:?}");
    assert!(has("ctty True True"), "{out:?}");
    // Nobody types: reading the terminal ends at once, nothing echoed.
    assert!(has("stdin ''"), "{out:?}");
    assert!(lines(&logs, "stderr").is_empty(), "{logs:?}");
    // Everything written before the exit arrives, in order.
    let numbered: Vec<&String> = out.iter().filter(|l| l.starts_with("line ")).collect();
    assert_eq!(numbered.len(), 3000);
    assert!(numbered
        .iter()
        .enumerate()
        .all(|(i, l)| l.starts_with(&format!("line {i:04} "))));
    assert_eq!(out.last().map(String::as_str), Some("the end"));
    assert!(!out.iter().any(|l| l.ends_with('\r')));

    let id = h.trigger("ttycmd", json!({})).await;
    let done = h.finished(id).await;
    let logs = h.logs(id).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{logs:?}");
    assert_eq!(lines(&logs, "stdout"), ["24 80", "a\tb"]);
    runner.stop().await;
}

const PID: &str = r#"import os, sys
print("pid", os.getpid())
print("x" * 300)
data = b"x" * (64 * 1024 * 1024)
print("bye", file=sys.stderr)
sys.exit(int(os.environ.get("code", "0")))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn started_and_finished_events_frame_the_output() {
    let h = Harness::start().await;
    h.deploy("plain", &[("main.py", PID)], "main.py", None)
        .await;
    deploy_job(
        &h,
        "cmd",
        r#"command = ["python", "main.py"]"#,
        &[("main.py", PID)],
    )
    .await;
    deploy_job(
        &h,
        "tty",
        "script = \"main.py\"\npty = true",
        &[("main.py", PID)],
    )
    .await;
    deploy_job(&h, "killed", r#"shell = "kill -9 $$""#, &[]).await;
    let mut config = h.runner_config("r1");
    // A budget the output overruns: the events still come.
    config.max_log_bytes = 200;
    let runner = RunnerHandle::spawn(config);
    // A plain script (the fork server's when it takes it), a command, a PTY run.
    for (slug, code) in [("plain", 0), ("cmd", 2), ("tty", 7)] {
        let id = h.trigger(slug, json!({"code": code})).await;
        let done = h.finished(id).await;
        let logs = h.logs(id).await;
        assert_eq!(done.run.exit_code, Some(code), "{slug}: {logs:?}");
        let ev = events(&logs);
        assert_eq!(ev.len(), 2, "{slug}: {logs:?}");
        let (s_seq, started) = &ev[0];
        let (f_seq, finished) = &ev[1];
        assert_eq!(started["event"], "started", "{slug}");
        assert_eq!(finished["event"], "finished", "{slug}");
        let pid_line = logs
            .iter()
            .find(|l| l.line.starts_with("pid "))
            .unwrap_or_else(|| panic!("{slug}: {logs:?}"));
        let pid: u64 = pid_line.line[4..].parse().unwrap();
        assert_eq!(started["pid"], pid, "{slug}");
        assert_eq!(started["runner"], "r1");
        assert_eq!(started["attempt"], 1);
        let limits = started["limits"].as_str().unwrap();
        assert!(
            ["none", "rlimit", "cgroup v1", "cgroup v2"].contains(&limits),
            "{limits}"
        );
        // started before any output, finished after all of it (the
        // shipper's own budget marker comes at the very end).
        let output: Vec<i64> = logs
            .iter()
            .filter(|l| l.stream == "stdout" || l.stream == "stderr")
            .filter(|l| !l.line.starts_with("[minitower]"))
            .map(|l| l.seq)
            .collect();
        assert!(!output.is_empty(), "{slug}: {logs:?}");
        assert!(
            output.iter().all(|s| s_seq < s && s < f_seq),
            "{slug}: {logs:?}"
        );
        assert!(logs.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(finished["exit_code"], code, "{slug}");
        assert_eq!(finished["signal"], Value::Null);
        assert_eq!(finished["reason"], Value::Null);
        assert!(finished["duration_ms"].as_u64().is_some(), "{finished}");
        // The 64 MiB buffer shows in the peak.
        let peak = finished["peak_memory_bytes"].as_u64().unwrap_or(0);
        assert!(peak > 64 << 20, "{slug}: peak {peak}");
        // The budget cut the output, not the events.
        assert!(
            logs.iter()
                .any(|l| l.line.contains("log limit of 200 bytes")),
            "{slug}: {logs:?}"
        );
    }
    let id = h.trigger("killed", json!({})).await;
    let done = h.finished(id).await;
    let logs = h.logs(id).await;
    assert_eq!(done.run.status, RunStatus::Failed, "{logs:?}");
    let ev = events(&logs);
    assert_eq!(ev[1].1["exit_code"], Value::Null, "{logs:?}");
    assert_eq!(ev[1].1["signal"], "SIGKILL", "{logs:?}");
    runner.stop().await;
}

/// A PTY script that starts a `setsid` daemon and a double-forked
/// grandchild (both keeping the terminal open), prints their pids and
/// keeps printing until it is killed.
const PTY_DAEMONS: &str = r#"import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
d = subprocess.Popen(["setsid", "sleep", "600"])
r, w = os.pipe()
if os.fork() == 0:
    if os.fork() == 0:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        os.write(w, f"{os.getpid()}\n".encode())
        while True:
            print("grandchild still here", flush=True)
            time.sleep(0.2)
    os._exit(0)
os.wait()
gc = int(os.read(r, 64).decode().strip())
print(f"daemons {os.getpid()} {d.pid} {gc}", flush=True)
while True:
    time.sleep(0.05)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_pty_run_leaves_no_process_behind() {
    let h = Harness::start().await;
    deploy_job(
        &h,
        "ptyd",
        "script = \"main.py\"\npty = true",
        &[("main.py", PTY_DAEMONS)],
    )
    .await;
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    let id = h.trigger("ptyd", json!({})).await;
    // Two processes share the terminal: the grandchild's line may run into
    // this one on either side ("…heredaemons 1 2 3grandchild…"), so look
    // for it inside a line and read each pid's digits only.
    let line = h.wait_log(id, |l| l.line.contains("daemons ")).await;
    let at = line.line.find("daemons ").unwrap() + "daemons ".len();
    let pids: Vec<i32> = line.line[at..]
        .split(' ')
        .take(3)
        .map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits
                .parse()
                .unwrap_or_else(|e| panic!("{:?}: {e}", line.line))
        })
        .collect();
    assert_eq!(pids.len(), 3, "{:?}", line.line);
    assert!(pids.iter().all(|p| !process_gone(*p)));
    h.team.cancel_run(id).await.unwrap();
    let done = h.finished(id).await;
    assert_eq!(done.run.status, RunStatus::Cancelled, "{:?}", done.run);
    for p in &pids {
        wait_for(&format!("process {p} to die"), || async {
            process_gone(*p).then_some(())
        })
        .await;
    }
    let logs = h.logs(id).await;
    let killed = logs
        .iter()
        .find(|l| l.stream == "system" && l.line.starts_with("killed "))
        .unwrap_or_else(|| panic!("no 'killed' line in {logs:?}"));
    assert!(
        killed.line.contains(&format!("{} (sleep)", pids[1])),
        "{}",
        killed.line
    );
    // Ignoring SIGTERM, the script died of the SIGKILL after the grace period.
    let ev = events(&logs);
    assert_eq!(ev.last().unwrap().1["signal"], "SIGKILL", "{logs:?}");
    runner.stop().await;
}

const OWN_TERMINAL: &str = r#"import os, sys
print("uid", os.getuid())
with open(os.ttyname(1), "w") as t:
    t.write("by name\n")
with open("/dev/tty", "w") as t:
    t.write("by /dev/tty\n")
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_pty_run_under_user_isolation_owns_its_terminal() {
    let python = "/usr/bin/python3";
    if !nix::unistd::geteuid().is_root() || !std::path::Path::new(python).exists() {
        eprintln!("skipped: needs root and /usr/bin/python3 to run scripts as other users");
        return;
    }
    let h = Harness::start().await;
    deploy_job(
        &h,
        "own",
        "script = \"main.py\"\npty = true",
        &[("main.py", OWN_TERMINAL)],
    )
    .await;
    let mut config = h.runner_config("iso");
    config.isolation = "user".into();
    config.python_bin = python.into();
    let runner = RunnerHandle::spawn(config);
    let id = h.trigger("own", json!({})).await;
    let done = h.finished(id).await;
    let logs = h.logs(id).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{logs:?}");
    let out = lines(&logs, "stdout");
    let uid: u32 = out[0]["uid ".len()..].parse().unwrap();
    assert_ne!(uid, 0, "{out:?}");
    assert_eq!(out[1..], ["by name", "by /dev/tty"], "{out:?}");
    runner.stop().await;
}
