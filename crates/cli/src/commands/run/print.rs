//! How `run` and `logs` print a log line: the script's stdout on stdout,
//! everything else on stderr, lifecycle events (stream `event`, one JSON
//! object each) as short readable lines, and in `--json` mode every line as
//! its JSON object, events included, untouched.
//!
//! A PTY run's output holds the terminal's escape sequences (colours,
//! cursor moves). They are passed through when the line goes to a
//! terminal, and stripped when it goes to a file or a pipe, where they
//! would be noise (`console::strip_ansi_codes`).

use minitower_core::api::LogLine;
use serde_json::Value;
use std::borrow::Cow;
use std::io::{IsTerminal, Write};

/// Where a rendered line goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Out {
    Stdout,
    Stderr,
}

/// Prints a log line (see the module note).
pub(super) fn print_line(json: bool, l: &LogLine) {
    if json {
        crate::output::print_json_line(l);
        return;
    }
    let (out, text) = render(l);
    let text = match out {
        Out::Stdout if !std::io::stdout().is_terminal() => console::strip_ansi_codes(&text),
        Out::Stderr if !std::io::stderr().is_terminal() => console::strip_ansi_codes(&text),
        _ => Cow::Borrowed(text.as_str()),
    };
    match out {
        Out::Stdout => {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{text}");
            let _ = o.flush();
        }
        Out::Stderr => {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
    }
}

/// The text of a line and where it goes, escapes still in.
pub(super) fn render(l: &LogLine) -> (Out, String) {
    match l.stream.as_str() {
        "stdout" => (Out::Stdout, l.line.clone()),
        "stderr" => (Out::Stderr, l.line.clone()),
        "event" => (
            Out::Stderr,
            event_text(&l.line).unwrap_or_else(|| format!("[event] {}", l.line)),
        ),
        other => (Out::Stderr, format!("[{other}] {}", l.line)),
    }
}

/// `▶ started pid 1234 on runner-1 (attempt 2)` or
/// `■ finished exit 0 in 1.2s, peak 34 MiB`; `None` for a line that is not
/// an event this CLI knows (printed as it is).
pub(super) fn event_text(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    match v.get("event")?.as_str()? {
        "started" => {
            let mut s = format!("▶ started pid {}", v.get("pid")?.as_u64()?);
            if let Some(r) = v.get("runner").and_then(Value::as_str) {
                s.push_str(&format!(" on {r}"));
            }
            let mut notes = Vec::new();
            if let Some(a) = v.get("attempt").and_then(Value::as_i64) {
                notes.push(format!("attempt {a}"));
            }
            match v.get("limits").and_then(Value::as_str) {
                Some("none") | None => {}
                Some(m) => notes.push(format!("limits by {m}")),
            }
            if !notes.is_empty() {
                s.push_str(&format!(" ({})", notes.join(", ")));
            }
            Some(s)
        }
        "finished" => {
            let how = match (
                v.get("exit_code").and_then(Value::as_i64),
                v.get("signal").and_then(Value::as_str),
            ) {
                (Some(c), _) => format!("exit {c}"),
                (None, Some(sig)) => format!("killed by {sig}"),
                (None, None) => "ended".to_string(),
            };
            let mut s = format!("■ finished {how}");
            if let Some(ms) = v.get("duration_ms").and_then(Value::as_u64) {
                s.push_str(&format!(" in {}", duration(ms)));
            }
            if let Some(b) = v.get("peak_memory_bytes").and_then(Value::as_u64) {
                s.push_str(&format!(", peak {}", size(b)));
            }
            if let Some(r) = v.get("reason").and_then(Value::as_str) {
                s.push_str(&format!(": {r}"));
            }
            Some(s)
        }
        _ => None,
    }
}

/// `850ms`, `1.2s`, `2m 03s`.
fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        let s = ms / 1000;
        format!("{}m {:02}s", s / 60, s % 60)
    }
}

/// `512 KiB`, `34 MiB`, `1.5 GiB`.
fn size(b: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = b as f64;
    if b < KIB * KIB {
        format!("{:.0} KiB", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.0} MiB", b / (KIB * KIB))
    } else {
        format!("{:.1} GiB", b / (KIB * KIB * KIB))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(stream: &str, text: &str) -> LogLine {
        LogLine {
            seq: 1,
            attempt_no: 1,
            stream: stream.into(),
            line: text.into(),
            logged_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn events_read_as_sentences() {
        let started =
            r#"{"event":"started","pid":1234,"runner":"runner-1","attempt":2,"limits":"none"}"#;
        assert_eq!(
            event_text(started).unwrap(),
            "▶ started pid 1234 on runner-1 (attempt 2)"
        );
        let limited =
            r#"{"event":"started","pid":7,"runner":"r","attempt":1,"limits":"cgroup v2"}"#;
        assert_eq!(
            event_text(limited).unwrap(),
            "▶ started pid 7 on r (attempt 1, limits by cgroup v2)"
        );
        let ok = r#"{"event":"finished","exit_code":0,"signal":null,"duration_ms":1234,"peak_memory_bytes":35651584,"reason":null}"#;
        assert_eq!(
            event_text(ok).unwrap(),
            "■ finished exit 0 in 1.2s, peak 34 MiB"
        );
        let oom = r#"{"event":"finished","exit_code":null,"signal":"SIGKILL","duration_ms":125000,"peak_memory_bytes":null,"reason":"memory limit 256 MiB exceeded"}"#;
        assert_eq!(
            event_text(oom).unwrap(),
            "■ finished killed by SIGKILL in 2m 05s: memory limit 256 MiB exceeded"
        );
        // Unknown or malformed events are printed as they came.
        assert_eq!(event_text(r#"{"event":"paused"}"#), None);
        assert_eq!(event_text("not json"), None);
        assert_eq!(
            render(&line("event", "not json")),
            (Out::Stderr, "[event] not json".to_string())
        );
    }

    #[test]
    fn streams_go_where_they_belong_with_escapes_kept_for_a_terminal() {
        let red = "\x1b[31mred\x1b[0m";
        assert_eq!(render(&line("stdout", red)), (Out::Stdout, red.to_string()));
        assert_eq!(render(&line("stderr", "e")), (Out::Stderr, "e".to_string()));
        assert_eq!(
            render(&line("setup", "downloaded")),
            (Out::Stderr, "[setup] downloaded".to_string())
        );
        // What print_line does for a file or a pipe.
        assert_eq!(console::strip_ansi_codes(red), "red");
        assert_eq!(
            console::strip_ansi_codes("\x1b[1;32mok\x1b[0m \x1b[2Kdone"),
            "ok done"
        );
        assert_eq!(size(512 * 1024), "512 KiB");
        assert_eq!(size(3 << 29), "1.5 GiB");
        assert_eq!(duration(850), "850ms");
    }
}
