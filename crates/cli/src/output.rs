//! Human output: aligned tables and friendly times. Machine output
//! (`--json`) bypasses all of this and prints the wire objects as they are.

use chrono::{DateTime, Local, Utc};
use serde::Serialize;

/// A table printed with columns padded to their widest cell.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, no trailing spaces.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(c.chars().count());
                }
            }
        }
        let line = |cells: Vec<&str>| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                s.push_str(c);
                if i + 1 < cells.len() {
                    let pad = widths[i].saturating_sub(c.chars().count());
                    s.extend(std::iter::repeat_n(' ', pad));
                }
            }
            s.trim_end().to_string()
        };
        let mut out = line(self.headers.clone());
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
            out.push('\n');
        }
        out
    }

    /// Prints the table, or a note when it has no rows.
    pub fn print_or(&self, empty: &str) {
        if self.rows.is_empty() {
            println!("{empty}");
        } else {
            print!("{}", self.render());
        }
    }
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot encode output: {e}"),
    }
}

/// Prints a value as one compact JSON line (for streams of events).
pub fn print_json_line<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot encode output: {e}"),
    }
}

/// `3m ago`, `just now`, `in 5s`.
pub fn ago(ts: &DateTime<Utc>) -> String {
    ago_from(ts, Utc::now())
}

fn ago_from(ts: &DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - *ts).num_seconds();
    if secs.abs() < 2 {
        return "just now".into();
    }
    let d = human_secs(secs.unsigned_abs());
    if secs > 0 {
        format!("{d} ago")
    } else {
        format!("in {d}")
    }
}

/// A coarse duration: `45s`, `3m`, `2h`, `4d`.
fn human_secs(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// A precise duration: `850ms`, `12.3s`, `4m05s`, `2h03m`.
pub fn duration(d: chrono::Duration) -> String {
    let ms = d.num_milliseconds().max(0);
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// Local wall-clock time, e.g. `2026-11-22 10:00:00`.
pub fn local(ts: &DateTime<Utc>) -> String {
    ts.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Local time plus how long ago.
pub fn local_ago(ts: &DateTime<Utc>) -> String {
    format!("{} ({})", local(ts), ago(ts))
}

/// `-` for missing values in tables.
pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// Bytes as `512 B`, `1.2 KiB`, `3.4 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Cuts a string to `max` characters with an ellipsis.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["ID", "NAME"]);
        t.row(vec!["1".into(), "hello".into()]);
        t.row(vec!["100".into(), "x".into()]);
        assert_eq!(t.render(), "ID   NAME\n1    hello\n100  x\n");
    }

    #[test]
    fn times() {
        let now = Utc::now();
        assert_eq!(ago_from(&now, now), "just now");
        assert_eq!(
            ago_from(&(now - chrono::Duration::seconds(90)), now),
            "1m ago"
        );
        assert_eq!(ago_from(&(now + chrono::Duration::hours(3)), now), "in 3h");
        assert_eq!(duration(chrono::Duration::milliseconds(1234)), "1.2s");
        assert_eq!(duration(chrono::Duration::seconds(245)), "4m05s");
        assert_eq!(bytes(2048), "2.0 KiB");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
