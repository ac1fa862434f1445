//! The probe that compares a run forked by a fork server with a fresh
//! `python script.py` (used by `execution.rs`, and by `fork_twice.rs` for
//! the fork server's fallback).

use super::{Harness, RunnerHandle};
use minitower_core::RunStatus;
use serde_json::json;

/// Runs a probe script twice through a fork server and twice the ordinary
/// way, and asserts a script cannot tell the two apart (but for the random
/// numbers, which differ between the forked runs too).
/// `forks_twice`: whether the fork servers are expected to have taken their
/// fallback (two forks) rather than cloning each run as their supervisor's
/// child.
pub async fn forked_and_fresh_runs_compared(forks_twice: bool) {
    let h = Harness::start().await;
    let probe = r#"import sys
importers = sorted((k, type(v).__name__) for k, v in sys.path_importer_cache.items())
import os, json, signal, random
ws = os.getcwd()
def n(x):
    return json.dumps(x).replace(ws, "<WS>")
print("importers", n(importers))
skip = ("MINITOWER_RUN_ID", "MINITOWER_RUN_NO", "MINITOWER_INPUT", "MINITOWER_ATTEMPT_NO")
print("env", n(sorted((k, v) for k, v in os.environ.items() if k not in skip)))
print("argv", n(sys.argv), n(sys.orig_argv))
print("path", n(sys.path))
print("main", n(__file__), __name__, __spec__, __package__, n(sys.modules["__main__"].__file__))
print("loader", type(__loader__).__name__, __loader__.name, n(__loader__.path))
import typing, re, enum, dataclasses
print("warm", isinstance(re.I, enum.Enum), typing.List[int], json.loads("[1]"))
print("own module first", getattr(dataclasses, "LOCAL", False))
import urllib.parse
print("own package first", getattr(urllib.parse, "LOCAL", False))
print("modules", sorted(sys.modules))
print("globals", sorted(globals()))
print("stdin", repr(sys.stdin.read()))
print("tty", sys.stdout.isatty(), sys.stderr.isatty())
print("exe", n(sys.executable), n(sys.prefix))
print("group leader", os.getpgid(0) == os.getpid())
print("session of the parent", os.getsid(0) == os.getppid())
print("parent", open(f"/proc/{os.getppid()}/comm").read().strip())
print("fds", sorted(os.listdir("/proc/self/fd")))
print("signals", [(int(s), str(signal.getsignal(s))) for s in sorted(signal.valid_signals()) if s < 32])
print("blocked", sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])))
mask = os.umask(0); os.umask(mask)
print("umask", mask)
print("flags", sys.flags)
print("dont_write_bytecode", sys.dont_write_bytecode)
print("random", random.random())
import atexit
atexit.register(lambda: print("atexit ran"))
print("to stderr", file=sys.stderr)
# What the end of the interpreter does: join threads, run atexit, finalize
# what the script left alive and flush what it left unflushed.
import threading, time
# glibc's cached thread id is the process's own (a stale one names another
# process's thread, whose clock is not ours to read)
print("thread id", threading.get_native_id() == os.getpid(), time.clock_gettime(time.pthread_getcpuclockid(threading.get_ident())) > 0)
class Noisy:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("del", self.name)
kept = Noisy("global")
unclosed = open(1, "w", closefd=False)
unclosed.write("unclosed file flushed\n")
threading.Thread(target=lambda: (time.sleep(0.2), print("thread finished"))).start()
sys.exit(5)
"#;
    h.deploy(
        "probe",
        &[
            ("main.py", probe),
            ("dataclasses.py", "LOCAL = True\n"),
            ("urllib/__init__.py", ""),
            ("urllib/parse.py", "LOCAL = True\n"),
        ],
        "main.py",
        None,
    )
    .await;
    // Per mode, the output of two runs.
    let mut outputs: Vec<Vec<Vec<(String, String)>>> = Vec::new();
    for prestart in [true, false] {
        let mut config = h.runner_config("r1");
        config.prestart = prestart;
        let runner = RunnerHandle::spawn(config);
        let mut runs = Vec::new();
        let mut reaped = Vec::new();
        for _ in 0..2 {
            reaped.push(fork_servers_reaped());
            let before = minitower_runner::prestart_launches();
            let id = h.trigger("probe", json!({"k": "v"})).await;
            let done = h.finished(id).await;
            assert_eq!(
                minitower_runner::prestart_launches() > before,
                prestart,
                "forked by a fork server: expected {prestart}"
            );
            assert_eq!(done.run.status, RunStatus::Failed);
            assert_eq!(done.run.exit_code, Some(5));
            let lines: Vec<(String, String)> = h
                .logs(id)
                .await
                .into_iter()
                .filter(|l| l.stream != "setup")
                .map(|l| (l.stream, l.line))
                .collect();
            runs.push(lines);
        }
        outputs.push(runs);
        if prestart {
            reaped.push(fork_servers_reaped());
            assert_forked(&reaped[1], &reaped[2], forks_twice);
        }
        runner.stop().await;
    }
    let forked = &outputs[0];
    let stdout = |o: &Vec<(String, String)>| -> Vec<String> {
        o.iter()
            .filter(|(s, _)| s == "stdout")
            .map(|(_, l)| l.clone())
            .collect()
    };
    // The end of a run, in CPython's order (checked against the fresh
    // interpreter below too).
    assert_eq!(
        stdout(&forked[0])[stdout(&forked[0]).len() - 4..],
        [
            "thread finished",
            "atexit ran",
            "del global",
            "unclosed file flushed"
        ],
        "{:?}",
        forked[0]
    );
    assert!(forked[0]
        .iter()
        .any(|(s, l)| s == "stderr" && l == "to stderr"));
    let random = |o: &Vec<(String, String)>| -> String {
        o.iter()
            .find(|(_, l)| l.starts_with("random "))
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    };
    assert!(!random(&forked[0]).is_empty());
    assert!(
        stdout(&forked[0]).contains(&"warm True typing.List[int] [1]".to_string())
            && stdout(&forked[0]).contains(&"own module first True".to_string())
            && stdout(&forked[0]).contains(&"own package first True".to_string()),
        "{:?}",
        forked[0]
    );
    assert_ne!(
        random(&forked[0]),
        random(&forked[1]),
        "two forked runs drew the same random number"
    );
    // Order within a stream is kept; between stdout and stderr it is a race.
    for stream in ["stdout", "stderr"] {
        let of = |o: &Vec<(String, String)>| -> Vec<String> {
            o.iter()
                .filter(|(s, l)| s == stream && !l.starts_with("random "))
                .map(|(_, l)| l.clone())
                .collect()
        };
        let (warm, cold) = (of(&forked[0]), of(&outputs[1][0]));
        for (w, c) in warm.iter().zip(&cold) {
            assert_eq!(w, c, "forked (left) and fresh (right) interpreters differ");
        }
        assert_eq!(warm.len(), cold.len());
        assert_eq!(of(&forked[1]), warm, "the second forked run differs");
    }
}

/// What each fork server of this process has reaped, as its waited-for
/// children's page faults (`cminflt` in `/proc/<pid>/stat`), by pid.
fn fork_servers_reaped() -> std::collections::BTreeMap<u32, u64> {
    let me = std::process::id();
    let stat = |pid: u32| -> Option<Vec<String>> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &s[s.rfind(')')? + 2..];
        Some(rest.split(' ').map(str::to_string).collect())
    };
    let ours = |pid: u32| {
        let mut p = pid;
        for _ in 0..4 {
            match stat(p).and_then(|f| f[1].parse::<u32>().ok()) {
                Some(pp) if pp == me => return true,
                Some(pp) if pp > 1 => p = pp,
                _ => return false,
            }
        }
        false
    };
    let mut found = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // `python -c <zygote.py>` (its supervisor's command line holds the
        // same text, later)
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<_> = cmdline.split(|&b| b == 0).collect();
        if args.len() > 2
            && args[1] == b"-c"
            && args[2].starts_with(b"# The warm interpreter of a fork server")
            && ours(pid)
        {
            // after the name: state is [0], cminflt is [8]
            if let Some(n) = stat(pid).and_then(|f| f[8].parse::<u64>().ok()) {
                found.insert(pid, n);
            }
        }
    }
    found
}

/// How the fork servers made the run between two readings: a server that
/// forks twice waits for each middle process, so what it reaped grows; a
/// server that clones its runs as its supervisor's children never has a
/// child of its own. (Not the absolute figure: a server started through a
/// wrapper such as pyenv's shim inherits what the wrapper reaped.)
fn assert_forked(
    before: &std::collections::BTreeMap<u32, u64>,
    after: &std::collections::BTreeMap<u32, u64>,
    twice: bool,
) {
    let grew = before
        .iter()
        .filter(|(pid, n)| after.get(pid).is_some_and(|m| m > n))
        .count();
    assert!(!before.is_empty(), "no fork server of this process found");
    if twice {
        assert!(
            grew > 0,
            "no fork server forked twice: {before:?} {after:?}"
        );
    } else if cfg!(all(target_arch = "x86_64", target_env = "gnu")) {
        assert_eq!(grew, 0, "a fork server forked twice: {before:?} {after:?}");
    }
}
