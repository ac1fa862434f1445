//! Lifecycle events in a run's log: a line on stream [`STREAM`] whose text
//! is one compact JSON object, `started` when the process runs and
//! `finished` when it and its tree are gone (before the result is sent).
//!
//! They go through the attempt's log shipper like output lines, so they get
//! seqs in the same order (replay and live streaming need nothing new), and
//! they are never masked: the runner writes them from numbers and its own
//! name, no secret can be in them, and masking could break the JSON.

use crate::process;
use crate::supervisor::client::Ending;
use serde::Serialize;
use std::time::Duration;

/// The log stream of lifecycle events.
pub const STREAM: &str = "event";

/// One event, as it is serialized into the line (field order kept).
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Lifecycle<'a> {
    Started {
        pid: u32,
        runner: &'a str,
        attempt: i64,
        limits: &'a str,
    },
    Finished {
        exit_code: Option<i32>,
        signal: Option<String>,
        duration_ms: u64,
        peak_memory_bytes: Option<u64>,
        reason: Option<&'a str>,
    },
}

fn line(e: &Lifecycle<'_>) -> String {
    serde_json::to_string(e).unwrap_or_default()
}

/// `{"event":"started","pid":…,"runner":…,"attempt":…,"limits":…}`.
pub fn started(pid: u32, runner: &str, attempt: i64, limits: &str) -> String {
    line(&Lifecycle::Started {
        pid,
        runner,
        attempt,
        limits,
    })
}

/// `{"event":"finished","exit_code":…,"signal":…,"duration_ms":…,
/// "peak_memory_bytes":…,"reason":…}`; `signal` is a name like `SIGKILL`.
pub fn finished(e: &Ending, took: Duration) -> String {
    line(&Lifecycle::Finished {
        exit_code: e.code,
        signal: e.signal.map(signal_name),
        duration_ms: took.as_millis().min(u64::MAX as u128) as u64,
        peak_memory_bytes: e.peak_memory_bytes,
        reason: e.reason.as_deref(),
    })
}

/// `SIGKILL` for 9; `signal 64` for a number without a name.
fn signal_name(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => process::signal_name(sig),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn started_is_compact_json_in_the_documented_shape() {
        let l = started(1234, "runner-1", 2, "none");
        assert!(!l.contains(' ') && !l.contains('\n'), "{l}");
        assert!(l.starts_with(r#"{"event":"started","#), "{l}");
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(
            v,
            json!({"event": "started", "pid": 1234, "runner": "runner-1", "attempt": 2, "limits": "none"})
        );
    }

    #[test]
    fn finished_names_the_signal_and_keeps_nulls() {
        let ok = Ending {
            code: Some(0),
            peak_memory_bytes: Some(34 << 20),
            ..Default::default()
        };
        let v: Value = serde_json::from_str(&finished(&ok, Duration::from_millis(1234))).unwrap();
        assert_eq!(
            v,
            json!({"event": "finished", "exit_code": 0, "signal": null, "duration_ms": 1234,
                   "peak_memory_bytes": 35651584, "reason": null})
        );
        let killed = Ending {
            signal: Some(9),
            reason: Some("memory limit 256 MiB exceeded".into()),
            ..Default::default()
        };
        let v: Value = serde_json::from_str(&finished(&killed, Duration::ZERO)).unwrap();
        assert_eq!(v["exit_code"], Value::Null);
        assert_eq!(v["signal"], "SIGKILL");
        assert_eq!(v["peak_memory_bytes"], Value::Null);
        assert_eq!(v["reason"], "memory limit 256 MiB exceeded");
        assert_eq!(signal_name(64), "signal 64");
    }
}
