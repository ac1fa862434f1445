//! Resource limits on real scripts under a real runner (see `src/limits.rs`):
//! the reason a limit gives is read from the kernel, a fork bomb leaves
//! nothing behind, and a run within its limits succeeds with its peak
//! memory reported.

mod common;

use common::{process_gone, Harness, RunnerHandle};
use minitower_core::api::LogLine;
use minitower_core::RunStatus;
use serde_json::json;
use std::path::PathBuf;

fn towerfile(name: &str, limits: &str) -> String {
    format!("[app]\nname = \"{name}\"\nscript = \"main.py\"\n\n[app.limits]\n{limits}\n")
}

/// The mechanism the runner picks on this machine, or `None` (after
/// saying why the test skips) when it is not a cgroup one.
fn cgroups_or_skip(test: &str) -> Option<&'static str> {
    let mode = minitower_runner::limits_mode();
    if mode.starts_with("cgroup") {
        Some(mode)
    } else {
        eprintln!(
            "skipped {test}: the runner uses {mode} here (no writable cgroup with memory and pids), \
             so the kernel counts no limit kill"
        );
        None
    }
}

async fn deploy(h: &Harness, slug: &str, script: &str, limits: &str) {
    let tf = towerfile(slug, limits);
    h.deploy(
        slug,
        &[("main.py", script), ("Towerfile", &tf)],
        "main.py",
        None,
    )
    .await;
}

/// The script's cgroup directories this runner created for it, from the
/// `cgroup <line of /proc/self/cgroup>` lines it printed.
fn attempt_cgroups(logs: &[LogLine]) -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mount_of = |controller: &str| -> Option<PathBuf> {
        mountinfo.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split_whitespace().nth(4)?;
            let mut r = right.split_whitespace();
            let fstype = r.next()?;
            let opts = r.nth(1)?;
            let hit = match controller {
                "" => fstype == "cgroup2",
                c => fstype == "cgroup" && opts.split(',').any(|o| o == c),
            };
            hit.then(|| PathBuf::from(point))
        })
    };
    logs.iter()
        .filter_map(|l| l.line.strip_prefix("cgroup "))
        .filter(|l| l.contains("/minitower-"))
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
            let controller = names.split(',').next().unwrap_or("");
            Some(mount_of(controller)?.join(path.trim_start_matches('/')))
        })
        .collect()
}

const PRINT_CGROUPS: &str =
    "for line in open('/proc/self/cgroup'):\n    print('cgroup', line.strip(), flush=True)\n";

#[tokio::test(flavor = "multi_thread")]
async fn allocating_past_the_memory_limit_fails_with_the_memory_reason() {
    let Some(_) = cgroups_or_skip("memory limit") else {
        return;
    };
    let h = Harness::start().await;
    let script = format!(
        "{PRINT_CGROUPS}chunks = []\nfor i in range(64):\n    chunks.append(b'x' * (8 << 20))\n    print('allocated', (i + 1) * 8, 'MiB', flush=True)\nprint('survived', flush=True)\n"
    );
    deploy(&h, "hog", &script, "memory = \"64MiB\"").await;
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    let id = h.trigger("hog", json!({})).await;
    let done = h.finished(id).await;
    let logs = h.logs(id).await;
    assert_eq!(done.run.status, RunStatus::Failed, "{logs:?}");
    assert_eq!(
        done.attempts[0].error_message.as_deref(),
        Some("memory limit 64 MiB exceeded"),
        "{logs:?}"
    );
    assert!(!logs.iter().any(|l| l.line == "survived"), "{logs:?}");
    // It got some way (the limit is the tree's, not something smaller).
    assert!(logs.iter().any(|l| l.line == "allocated 8 MiB"), "{logs:?}");
    let dirs = attempt_cgroups(&logs);
    assert!(
        !dirs.is_empty(),
        "the script ran in no limit cgroup: {logs:?}"
    );
    for d in dirs {
        assert!(!d.exists(), "{} was left behind", d.display());
    }
    runner.stop().await;
}

const BOMB: &str = r#"import json, os, sys, time
for line in open('/proc/self/cgroup'):
    print('cgroup', line.strip(), flush=True)
inp = json.loads(os.environ["MINITOWER_INPUT"])
out = open(inp["pids"], "a")
for i in range(200):
    try:
        pid = os.fork()
    except OSError as e:
        print(f"fork {i} refused: {e}", flush=True)
        sys.exit(1)
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    out.write(f"{pid}\n")
    out.flush()
print("all forks succeeded", flush=True)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_bomb_is_stopped_by_the_pids_limit_and_the_runner_stays_healthy() {
    let Some(_) = cgroups_or_skip("pids limit") else {
        return;
    };
    let h = Harness::start().await;
    deploy(&h, "bomb", BOMB, "pids = 32").await;
    deploy(&h, "calm", "print('calm and fine')\n", "pids = 32").await;
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    let pids_file = h.dir.path().join("bomb-pids");
    let id = h
        .trigger("bomb", json!({"pids": pids_file.to_str().unwrap()}))
        .await;
    let done = h.finished(id).await;
    let logs = h.logs(id).await;
    assert_eq!(done.run.status, RunStatus::Failed, "{logs:?}");
    assert_eq!(
        done.attempts[0].error_message.as_deref(),
        Some("pids limit 32 reached"),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.line.starts_with("fork ") && l.line.contains("refused")),
        "{logs:?}"
    );
    let forked: Vec<i32> = std::fs::read_to_string(&pids_file)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    // The script itself is one of the 32.
    assert!(
        !forked.is_empty() && forked.len() < 32,
        "{} children",
        forked.len()
    );
    // Every sleeper is dead by the time the result is in.
    let alive: Vec<&i32> = forked.iter().filter(|p| !process_gone(**p)).collect();
    assert!(alive.is_empty(), "left running: {alive:?}");
    let dirs = attempt_cgroups(&logs);
    assert!(
        !dirs.is_empty(),
        "the script ran in no limit cgroup: {logs:?}"
    );
    for d in &dirs {
        assert!(!d.exists(), "{} was left behind", d.display());
    }
    // The runner goes on: the next run, under the same limit, succeeds.
    let next = h.trigger("calm", json!({})).await;
    let done = h.finished(next).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{:?}", done.attempts);
    assert!(h.logs(next).await.iter().any(|l| l.line == "calm and fine"));
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writing_past_the_disk_limit_fails_with_the_disk_reason() {
    // The disk watcher needs no kernel support: never skipped.
    let h = Harness::start().await;
    let script = "import time\nwith open('fill.bin', 'wb') as f:\n    for i in range(512):\n        f.write(b'x' * (1 << 20))\n        f.flush()\n        time.sleep(0.01)\nprint('wrote 512 MiB', flush=True)\n";
    deploy(&h, "filler", script, "disk = \"8MiB\"").await;
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    let id = h.trigger("filler", json!({})).await;
    let done = h.finished(id).await;
    let logs = h.logs(id).await;
    assert_eq!(done.run.status, RunStatus::Failed, "{logs:?}");
    assert_eq!(
        done.attempts[0].error_message.as_deref(),
        Some("disk limit 8 MiB exceeded"),
        "{logs:?}"
    );
    // Killed on the way, not at its end.
    assert!(!logs.iter().any(|l| l.line == "wrote 512 MiB"), "{logs:?}");
    runner.stop().await;
}

const WITHIN: &str = r#"import os, time
for line in open('/proc/self/cgroup'):
    print('cgroup', line.strip(), flush=True)
data = b'y' * (24 << 20)
open('small.bin', 'wb').write(b'z' * (1 << 20))
start, cpu0 = time.monotonic(), time.process_time()
while time.monotonic() - start < 1.5:
    pass
ratio = (time.process_time() - cpu0) / (time.monotonic() - start)
print(f"cpu ratio {ratio:.2f}", flush=True)
print("held", len(data) >> 20, "MiB", flush=True)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_run_within_its_limits_succeeds_and_reports_its_peak_memory() {
    let h = Harness::start().await;
    deploy(
        &h,
        "modest",
        WITHIN,
        "memory = \"256MiB\"\ncpus = 0.5\npids = 64\ndisk = \"64MiB\"",
    )
    .await;
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    let id = h.trigger("modest", json!({})).await;
    let done = h.finished(id).await;
    let logs = h.logs(id).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{logs:?}");
    assert!(logs.iter().any(|l| l.line == "held 24 MiB"), "{logs:?}");
    let event = |name: &str| -> serde_json::Value {
        logs.iter()
            .filter(|l| l.stream == "event")
            .map(|l| serde_json::from_str::<serde_json::Value>(&l.line).unwrap())
            .find(|e| e["event"] == name)
            .unwrap_or_else(|| panic!("no {name} event in {logs:?}"))
    };
    let mode = minitower_runner::limits_mode();
    assert_eq!(event("started")["limits"], mode, "{logs:?}");
    let finished = event("finished");
    assert_eq!(finished["reason"], serde_json::Value::Null, "{finished}");
    let peak = finished["peak_memory_bytes"].as_u64().expect("a peak");
    assert!(
        (24 << 20..256 << 20).contains(&peak),
        "peak {peak} bytes: {finished}"
    );
    let cpu_enforced = !logs
        .iter()
        .any(|l| l.line.starts_with("cpus limit not enforced"));
    if mode.starts_with("cgroup") && cpu_enforced {
        // Half a core: the busy loop got about half of the wall time.
        let ratio: f64 = logs
            .iter()
            .find_map(|l| l.line.strip_prefix("cpu ratio "))
            .expect("cpu ratio line")
            .parse()
            .unwrap();
        assert!(ratio < 0.75, "cpu ratio {ratio} under cpus = 0.5");
        let dirs = attempt_cgroups(&logs);
        assert!(!dirs.is_empty(), "{logs:?}");
        for d in dirs {
            assert!(!d.exists(), "{} was left behind", d.display());
        }
    } else {
        eprintln!("cpu quota not checked: the runner enforces no cpus limit here ({mode})");
    }
    runner.stop().await;
}
