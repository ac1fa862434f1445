//! Fenced execution with real processes: no script outlives its lease.
//!
//! Scripts write ground truth (attempt, pid, nanosecond timestamps every
//! 50 ms) to a file; the tests kill, freeze and restart real runner
//! processes and then check from that file that two attempts of one run
//! never ran at the same moment, and that every process an attempt started
//! is gone after each kind of attempt end.

mod common;

use common::{process_gone, wait_for, Harness, Proxy, RunnerHandle};
use minitower_core::{AttemptStatus, RunStatus};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Appends `start`, a `tick` every 50 ms, and `end` lines to `input.gt`.
/// Attempt 1 runs for `input.seconds` (default 600), later attempts 0.3 s.
const GROUND_TRUTH: &str = r#"import json, os, time
inp = json.load(open(os.environ["MINITOWER_INPUT_FILE"]))
att = os.environ["MINITOWER_ATTEMPT_NO"]
def w(kind):
    with open(inp["gt"], "a") as f:
        f.write(f"{kind} {att} {os.getpid()} {time.time_ns()}\n")
w("start")
print(f"pid {os.getpid()} attempt {att} token {os.environ['MINITOWER_FENCING_TOKEN']}", flush=True)
end = time.time() + (float(inp.get("seconds", 600)) if att == "1" else 0.3)
while time.time() < end:
    w("tick")
    time.sleep(0.05)
w("end")
print("finished", flush=True)
"#;

/// Per attempt: first and last time seen in the ground truth.
fn spans(gt: &Path) -> Vec<(u32, u64, u64)> {
    let text = std::fs::read_to_string(gt).unwrap_or_default();
    let mut spans: Vec<(u32, u64, u64)> = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (att, t): (u32, u64) = (f[1].parse().unwrap(), f[3].parse().unwrap());
        match spans.iter_mut().find(|s| s.0 == att) {
            Some(s) => {
                s.1 = s.1.min(t);
                s.2 = s.2.max(t);
            }
            None => spans.push((att, t, t)),
        }
    }
    spans.sort();
    spans
}

/// Panics when two attempts' spans overlap.
fn assert_no_overlap(gt: &Path) {
    let s = spans(gt);
    assert!(
        s.len() >= 2,
        "expected two attempts in the ground truth: {s:?}"
    );
    for w in s.windows(2) {
        assert!(
            w[0].2 < w[1].1,
            "attempt {} was still running {} ms after attempt {} started",
            w[0].0,
            (w[0].2 - w[1].1) / 1_000_000,
            w[1].0
        );
    }
}

fn runner_binary(h: &Harness, name: &str, data_dir: &Path, env: &[(&str, &str)]) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_minitower-runner"));
    c.env("MINITOWER_SERVER_URL", &h.url)
        .env("MINITOWER_RUNNER_NAME", name)
        .env("MINITOWER_RUNNER_REGISTRATION_TOKEN", "reg")
        .env("MINITOWER_DATA_DIR", data_dir)
        .env("MINITOWER_POLL_INTERVAL", "200ms")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

/// The pid that a `pid N attempt A ...` log line of `attempt` names.
async fn script_pid(h: &Harness, id: i64, attempt: u32) -> i32 {
    let suffix = format!("attempt {attempt} ");
    let line = h
        .wait_log(id, |l| {
            l.line.starts_with("pid ") && l.line.contains(&suffix)
        })
        .await;
    line.line.split(' ').nth(1).unwrap().parse().unwrap()
}

fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn gone(what: &str, pid: i32) {
    wait_for(what, || async { process_gone(pid).then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigkilled_runner_takes_its_script_along_before_the_retry() {
    let h = Harness::start_with(|c| c.lease_ttl = Duration::from_secs(3)).await;
    h.deploy("gt", &[("main.py", GROUND_TRUTH)], "main.py", None)
        .await;
    let gt = h.dir.path().join("gt-kill.txt");
    let mut doomed = runner_binary(&h, "doomed", &h.dir.path().join("doomed"), &[]);
    let id = h.trigger("gt", json!({"gt": gt})).await;
    let pid = script_pid(&h, id, 1).await;
    doomed.kill().unwrap(); // SIGKILL
    doomed.wait().unwrap();
    // The supervisor sees its control socket close and kills the tree at
    // once, long before the 3 s lease can expire.
    gone("the dead runner's script", pid).await;
    let rescuer = RunnerHandle::spawn(h.runner_config("rescuer"));
    let done = h.finished(id).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{done:?}");
    assert_eq!(done.attempts[0].status, AttemptStatus::Expired);
    assert_eq!(done.attempts[1].status, AttemptStatus::Completed);
    // A started attempt that expired spends a retry.
    assert_eq!(done.run.retry_count, 1);
    assert!(h
        .logs(id)
        .await
        .iter()
        .any(|l| l.line.ends_with("attempt 2 token 2")));
    assert_no_overlap(&gt);
    rescuer.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_runner_cannot_keep_its_script_past_the_lease() {
    let h = Harness::start_with(|c| c.lease_ttl = Duration::from_secs(3)).await;
    h.deploy("gt", &[("main.py", GROUND_TRUTH)], "main.py", None)
        .await;
    let gt = h.dir.path().join("gt-stop.txt");
    let mut frozen = runner_binary(&h, "frozen", &h.dir.path().join("frozen"), &[]);
    let id = h.trigger("gt", json!({"gt": gt})).await;
    let pid = script_pid(&h, id, 1).await;
    let runner_pid = Pid::from_raw(frozen.id() as i32);
    kill(runner_pid, Signal::SIGSTOP).unwrap();
    // A second runner waits for the run the moment the server lets it go.
    let rescuer = RunnerHandle::spawn(h.runner_config("rescuer"));
    // The supervisor is not stopped with the runner: at the fencing
    // deadline it kills the script by itself.
    gone("the frozen runner's script", pid).await;
    let done = h.finished(id).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{done:?}");
    assert_eq!(done.attempts[0].runner, "frozen");
    assert_eq!(done.attempts[0].status, AttemptStatus::Expired);
    kill(runner_pid, Signal::SIGCONT).unwrap();
    assert_no_overlap(&gt);
    // Thawed, the runner finds its attempt fenced and reports nothing.
    let again = h.team.get_run(id).await.unwrap();
    assert_eq!(again.run.status, RunStatus::Completed);
    assert_eq!(again.attempts[0].status, AttemptStatus::Expired);
    frozen.kill().unwrap();
    frozen.wait().unwrap();
    rescuer.stop().await;
}

/// A clock minutes ahead on the server (or, the same thing, a runner whose
/// clock is minutes behind).
struct Skewed(chrono::Duration);

impl minitower_server::Clock for Skewed {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + self.0
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_skewed_clock_does_not_stretch_the_fencing_deadline() {
    let h = Harness::start_with_clock(
        |c| c.lease_ttl = Duration::from_secs(3),
        std::sync::Arc::new(Skewed(chrono::Duration::minutes(5))),
    )
    .await;
    h.deploy("gt", &[("main.py", GROUND_TRUTH)], "main.py", None)
        .await;
    let gt = h.dir.path().join("gt-skew.txt");
    let proxy = Proxy::start(h.url.trim_start_matches("http://")).await;
    let runner = RunnerHandle::spawn(h.runner_config_for(&proxy.url, "skewed"));
    let id = h.trigger("gt", json!({"gt": gt})).await;
    let pid = script_pid(&h, id, 1).await;
    // Seen from the runner, `lease_expires_at` lies 5 minutes ahead; a
    // deadline taken from it would keep the script that long. The runner
    // uses `ttl_ms` from its own send times instead.
    proxy.partition(true);
    let cut = std::time::Instant::now();
    gone("the partitioned runner's script", pid).await;
    assert!(
        cut.elapsed() < Duration::from_secs(30),
        "the script outlived a 3 s lease by far"
    );
    runner.stop().await;
}

/// Starts a `setsid` daemon and a double-forked grandchild, prints their
/// pids, then ends as `input.mode` says.
const DAEMONS: &str = r#"import json, os, subprocess, sys, time
inp = json.load(open(os.environ["MINITOWER_INPUT_FILE"]))
d = subprocess.Popen(["setsid", "sleep", "600"])
r, w = os.pipe()
if os.fork() == 0:
    if os.fork() == 0:
        os.write(w, f"{os.getpid()}\n".encode())
        time.sleep(600)
        os._exit(0)
    os._exit(0)
os.wait()
gc = int(os.read(r, 64).decode().strip())
print(f"daemons {d.pid} {gc}", flush=True)
mode = inp["mode"]
if mode == "fail":
    sys.exit(1)
if mode in ("timeout", "cancel"):
    time.sleep(600)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn daemons_and_grandchildren_die_at_every_attempt_end() {
    let h = Harness::start().await;
    h.deploy("daemons", &[("main.py", DAEMONS)], "main.py", Some(2))
        .await;
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    for (mode, want) in [
        ("complete", RunStatus::Completed),
        ("fail", RunStatus::Failed),
        ("timeout", RunStatus::Failed),
        ("cancel", RunStatus::Cancelled),
    ] {
        let id = h.trigger("daemons", json!({"mode": mode})).await;
        let line = h.wait_log(id, |l| l.line.starts_with("daemons ")).await;
        let pids: Vec<i32> = line.line["daemons ".len()..]
            .split(' ')
            .map(|p| p.parse().unwrap())
            .collect();
        if mode == "cancel" {
            h.team.cancel_run(id).await.unwrap();
        }
        let done = h.finished(id).await;
        assert_eq!(done.run.status, want, "{mode}: {:?}", done.run);
        for p in &pids {
            gone(&format!("{mode}: process {p}"), *p).await;
        }
        // The log names what was killed: at least the setsid daemon.
        let logs = h.logs(id).await;
        let killed = logs
            .iter()
            .find(|l| l.stream == "system" && l.line.starts_with("killed "))
            .unwrap_or_else(|| panic!("{mode}: no 'killed' line in {logs:?}"));
        assert!(
            killed.line.contains(&format!("{} (sleep)", pids[0])),
            "{mode}: {}",
            killed.line
        );
    }
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_runner_kills_what_its_predecessor_left() {
    for cgroups in ["auto", "off"] {
        let h = Harness::start().await;
        h.deploy("daemons", &[("main.py", DAEMONS)], "main.py", None)
            .await;
        let data = h.dir.path().join("data");
        let env = [("MINITOWER_CGROUPS", cgroups)];
        let mut first = runner_binary(&h, "phoenix", &data, &env);
        let id = h.trigger("daemons", json!({"mode": "cancel"})).await;
        let line = h.wait_log(id, |l| l.line.starts_with("daemons ")).await;
        let pids: Vec<i32> = line.line["daemons ".len()..]
            .split(' ')
            .map(|p| p.parse().unwrap())
            .collect();
        let (daemon, grandchild) = (pids[0], pids[1]);
        // The orphaned grandchild already belongs to the supervisor (subreaper).
        let supervisor = parent_of(grandchild);
        // Everything dies at once, supervisor included (an OOM kill, a
        // `kill -9` of the whole tree): the daemons are orphaned to init.
        kill(Pid::from_raw(first.id() as i32), Signal::SIGSTOP).unwrap();
        kill(Pid::from_raw(supervisor), Signal::SIGKILL).unwrap();
        first.kill().unwrap();
        first.wait().unwrap();
        gone("the supervisor", supervisor).await;
        assert!(
            !process_gone(daemon),
            "{cgroups}: the daemon should be a leftover"
        );
        assert!(
            !process_gone(grandchild),
            "{cgroups}: so should the grandchild"
        );
        let mut second = runner_binary(&h, "phoenix", &data, &env);
        gone(&format!("{cgroups}: the leftover daemon"), daemon).await;
        gone(&format!("{cgroups}: the leftover grandchild"), grandchild).await;
        second.kill().unwrap();
        second.wait().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_lease_answer_spends_no_retry() {
    let h = Harness::start_with(|c| c.lease_ttl = Duration::from_secs(1)).await;
    h.deploy("gt", &[("main.py", GROUND_TRUTH)], "main.py", None)
        .await;
    let gt = h.dir.path().join("gt-lost.txt");
    // No retry budget at all: a lost lease answer used to make it `dead`.
    let id = h
        .trigger_with("gt", json!({"gt": gt, "seconds": 0.2}), Some(0))
        .await;
    // A runner whose lease answer never arrives: leased, never started.
    let anon = minitower_client::Client::new(&h.url, None).unwrap();
    let reg = anon
        .register_runner(
            "reg",
            &minitower_core::api::RegisterRunnerRequest {
                name: "lossy".into(),
                environment: None,
                max_concurrency: None,
            },
        )
        .await
        .unwrap();
    let lossy = anon.with_token(reg.token);
    let lost = lossy.lease(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(lost.run_id, id);
    assert_eq!(lost.ttl_ms, Some(1000));
    assert_eq!(lost.fencing_token, Some(1));
    wait_for("the unstarted attempt to expire", || async {
        let r = h.team.get_run(id).await.unwrap();
        (r.run.status == RunStatus::Queued).then_some(())
    })
    .await;
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    let done = h.finished(id).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{done:?}");
    assert_eq!(done.run.retry_count, 0);
    assert_eq!(done.attempts[0].status, AttemptStatus::Expired);
    assert_eq!(done.attempts[1].status, AttemptStatus::Completed);
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn input_with_nul_and_of_one_mib_arrives_whole_by_file() {
    let script = r#"import json, os
d = json.load(open(os.environ["MINITOWER_INPUT_FILE"]))
assert d["nul"] == "a\x00b", d["nul"]
assert len(d["big"]) == 1024 * 1024
print("nul" in os.environ, "big" in os.environ, "MINITOWER_INPUT" in os.environ, os.environ["small"], flush=True)
print("input ok", flush=True)
"#;
    for prestart in [true, false] {
        let h = Harness::start().await;
        h.deploy("inp", &[("main.py", script)], "main.py", None)
            .await;
        let mut config = h.runner_config("r1");
        config.prestart = prestart;
        let runner = RunnerHandle::spawn(config);
        let input = json!({"nul": "a\u{0}b", "big": "x".repeat(1024 * 1024), "small": "yes"});
        let id = h.trigger("inp", input).await;
        let done = h.finished(id).await;
        assert_eq!(done.run.status, RunStatus::Completed, "{:?}", done.run);
        let logs = h.logs(id).await;
        let lines: Vec<&str> = logs.iter().map(|l| l.line.as_str()).collect();
        assert!(lines.contains(&"False False False yes"), "{lines:?}");
        assert!(lines.contains(&"input ok"));
        assert!(
            logs.iter()
                .any(|l| l.stream == "setup" && l.line.contains("$nul not set")),
            "{lines:?}"
        );
        runner.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_result_after_a_token_rotation_lands() {
    let h = Harness::start().await;
    let script = r#"import json, os, time
inp = json.load(open(os.environ["MINITOWER_INPUT_FILE"]))
print("waiting", flush=True)
while not os.path.exists(inp["flag"]):
    time.sleep(0.02)
print("done", flush=True)
"#;
    h.deploy("flag", &[("main.py", script)], "main.py", None)
        .await;
    let runner = RunnerHandle::spawn(h.runner_config("twin"));
    let flag = h.dir.path().join("flag");
    let id = h.trigger("flag", json!({"flag": flag})).await;
    h.wait_log(id, |l| l.line == "waiting").await;
    // A second process registers under the same name: the running
    // runner's token is rotated away under it.
    let anon = minitower_client::Client::new(&h.url, None).unwrap();
    anon.register_runner(
        "reg",
        &minitower_core::api::RegisterRunnerRequest {
            name: "twin".into(),
            environment: None,
            max_concurrency: None,
        },
    )
    .await
    .unwrap();
    std::fs::write(&flag, "go").unwrap();
    let done = h.finished(id).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{:?}", done);
    assert_eq!(done.attempts.len(), 1);
    assert_eq!(done.attempts[0].status, AttemptStatus::Completed);
    assert!(h.logs(id).await.iter().any(|l| l.line == "done"));
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runner_stopped_cleanly_is_offline_at_once() {
    let h = Harness::start().await;
    let runner = RunnerHandle::spawn(h.runner_config("tidy"));
    let status = || async {
        h.team
            .list_runners()
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.name == "tidy")
            .map(|r| r.status)
    };
    wait_for("the runner to be online", || async {
        (status().await == Some(minitower_core::api::RunnerStatus::Online)).then_some(())
    })
    .await;
    runner.stop().await;
    // No waiting for three lease TTLs: the stop said so.
    assert_eq!(
        status().await,
        Some(minitower_core::api::RunnerStatus::Offline)
    );
}
