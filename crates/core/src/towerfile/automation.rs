//! The Towerfile's automation keys: `retries`, `retry_delay`, `timeout` and
//! `schedule` under `[app]`, and `[[schedules]]` tables.
//!
//! ```toml
//! [app]
//! retries = 3              # failure retries, 0..=100 (default 0)
//! retry_delay = "2s"       # first delay; later ones double, capped at 1h
//! timeout = "10m"          # per attempt; 1s..=7d, whole seconds
//! schedule = "0 0 * * *"   # Tower.dev short form of one [[schedules]] entry
//!
//! [[schedules]]
//! cron = "*/15 * * * *"
//! timezone = "Europe/Berlin"   # default UTC
//! input = { region = "eu" }    # default {}
//! enabled = true               # default true
//! ```
//!
//! Design note. Every value is checked here with the same rules the API
//! applies ([`crate::schedule::CronSchedule`], [`crate::retry`]), so a file
//! that parses deploys, and an error names the key (`[app].retry_delay`,
//! `schedules[2].timezone`) and its line. The short form and
//! `[[schedules]]` together are refused rather than merged: with both, the
//! reader cannot tell whether the short form was meant to be replaced, and
//! a silently doubled schedule runs every job twice. `towerfile/tests.rs`
//! covers each key, each refusal and the short form.

use super::{Cx, Res};
use crate::retry;
use crate::schedule::{CronSchedule, DEFAULT_TIMEZONE};
use serde_json::{Map, Value as J};
use std::time::Duration;
use toml_edit::{Item, TableLike, Value};

const SCHEDULE_KEYS: &[&str] = &["cron", "timezone", "input", "enabled"];

/// Longest `timeout` (7 days, the server's bound on a version's timeout).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most `[[schedules]]` entries in one Towerfile.
pub const MAX_SCHEDULES: usize = 50;
/// Largest schedule `input`, as compact JSON.
pub const MAX_INPUT_BYTES: usize = 64 * 1024;

/// Automation settings of a Towerfile; all empty when none are written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Automation {
    /// Failure retries (`[app].retries`); `None` when not written.
    pub retries: Option<u32>,
    /// First failure-retry delay (`[app].retry_delay`).
    pub retry_delay: Option<Duration>,
    /// Attempt timeout (`[app].timeout`), whole seconds.
    pub timeout: Option<Duration>,
    /// `[[schedules]]`, or the one entry of the `[app].schedule` short form.
    pub schedules: Vec<ScheduleSpec>,
}

impl Automation {
    /// The first failure-retry delay in force: the written one, else
    /// [`retry::DEFAULT_RETRY_DELAY`].
    pub fn first_retry_delay(&self) -> Duration {
        self.retry_delay.unwrap_or(retry::DEFAULT_RETRY_DELAY)
    }
}

/// One schedule as declared; already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    pub cron: String,
    /// IANA zone name, `UTC` when not written.
    pub timezone: String,
    /// Input of every run the schedule starts (a JSON object).
    pub input: Map<String, J>,
    pub enabled: bool,
}

impl ScheduleSpec {
    /// The schedule, ready to compute ticks. Cannot fail for a spec that
    /// came out of the parser, which validated both fields.
    pub fn schedule(&self) -> Result<CronSchedule, crate::schedule::ScheduleError> {
        CronSchedule::new(&self.cron, &self.timezone)
    }
}

/// TOML value as JSON: datetimes become strings, non-finite floats are
/// refused (JSON has none).
pub(super) fn toml_to_json(v: &Value) -> Result<J, String> {
    Ok(match v {
        Value::String(s) => J::String(s.value().clone()),
        Value::Integer(i) => J::from(*i.value()),
        Value::Float(f) => serde_json::Number::from_f64(*f.value())
            .map(J::Number)
            .ok_or_else(|| format!("{} cannot be written in JSON", f.value()))?,
        Value::Boolean(b) => J::Bool(*b.value()),
        Value::Datetime(d) => J::String(d.value().to_string()),
        Value::Array(a) => J::Array(a.iter().map(toml_to_json).collect::<Result<_, _>>()?),
        Value::InlineTable(t) => J::Object(table_to_json(t)?),
    })
}

pub(super) fn table_to_json(t: &dyn TableLike) -> Result<Map<String, J>, String> {
    let mut out = Map::new();
    for (k, item) in t.iter() {
        let v = match item {
            Item::Value(v) => toml_to_json(v)?,
            Item::Table(t) => J::Object(table_to_json(t)?),
            _ => return Err(format!("{k} cannot be written in JSON")),
        };
        out.insert(k.to_string(), v);
    }
    Ok(out)
}

impl Cx<'_> {
    /// Reads the automation keys of `[app]` (table `t`, first line
    /// `app_line`) and the root's `schedules` item.
    pub(super) fn automation(
        &mut self,
        t: &dyn TableLike,
        app_line: usize,
        schedules: Option<&Item>,
    ) -> Res<Automation> {
        let retries = match t.get("retries") {
            None => None,
            Some(v) => {
                let line = self.key_line_at(t, app_line, "retries");
                let Some(n) = v.as_integer() else {
                    return self.err(
                        line,
                        "[app].retries",
                        "[app].retries must be a whole number (e.g. retries = 3)".into(),
                    );
                };
                match retry::validate_retries(n) {
                    Ok(n) => Some(n),
                    Err(e) => return self.err(line, "[app].retries", format!("[app].{e}")),
                }
            }
        };
        let retry_delay = match self.duration_key(t, app_line, "retry_delay", "2s")? {
            None => None,
            Some(d) => match retry::validate_retry_delay(d) {
                Ok(d) => Some(d),
                Err(e) => {
                    let line = self.key_line_at(t, app_line, "retry_delay");
                    return self.err(line, "[app].retry_delay", format!("[app].{e}"));
                }
            },
        };
        if retry_delay.is_some() && retries.unwrap_or(0) == 0 {
            let line = self.key_line_at(t, app_line, "retry_delay");
            self.warn(
                line,
                "[app].retry_delay has no effect without [app].retries".into(),
            );
        }
        let timeout = match self.duration_key(t, app_line, "timeout", "10m")? {
            None => None,
            Some(d) => {
                let line = self.key_line_at(t, app_line, "timeout");
                if d < Duration::from_secs(1) || d > MAX_TIMEOUT || d.subsec_nanos() != 0 {
                    return self.err(
                        line,
                        "[app].timeout",
                        format!(
                            "[app].timeout must be a whole number of seconds from 1s to 7d, got {}",
                            humantime::format_duration(d)
                        ),
                    );
                }
                Some(d)
            }
        };
        let short = match t.get("schedule") {
            None => None,
            Some(v) => {
                let line = self.key_line_at(t, app_line, "schedule");
                let Some(cron) = v.as_str() else {
                    return self.err(
                        line,
                        "[app].schedule",
                        "[app].schedule must be a cron expression string (e.g. \"0 0 * * *\")"
                            .into(),
                    );
                };
                if schedules.is_some() {
                    return self.err(
                        line,
                        "[app].schedule",
                        "[app].schedule and [[schedules]] cannot both be written; move the \
                         expression into a [[schedules]] entry"
                            .into(),
                    );
                }
                if let Err(e) = CronSchedule::new(cron, DEFAULT_TIMEZONE) {
                    return self.err(
                        line,
                        "[app].schedule",
                        format!("[app].schedule: {}", e.message()),
                    );
                }
                Some(ScheduleSpec {
                    cron: cron.trim().to_string(),
                    timezone: DEFAULT_TIMEZONE.into(),
                    input: Map::new(),
                    enabled: true,
                })
            }
        };
        let schedules = match (short, schedules) {
            (Some(s), _) => vec![s],
            (None, Some(item)) => self.schedules(item)?,
            (None, None) => Vec::new(),
        };
        Ok(Automation {
            retries,
            retry_delay,
            timeout,
            schedules,
        })
    }

    /// A duration written as a string (`"2s"`, `"10m"`, `"1h 30m"`).
    fn duration_key(
        &self,
        t: &dyn TableLike,
        app_line: usize,
        key: &str,
        example: &str,
    ) -> Res<Option<Duration>> {
        let Some(v) = t.get(key) else { return Ok(None) };
        let line = self.key_line_at(t, app_line, key);
        let name = format!("[app].{key}");
        let Some(s) = v.as_str() else {
            return self.err(
                line,
                &name,
                format!("{name} must be a duration string (e.g. {key} = \"{example}\")"),
            );
        };
        if s.trim_start().starts_with('-') {
            return self.err(line, &name, format!("{name} must not be negative"));
        }
        match crate::validate::duration(s) {
            Ok(d) => Ok(Some(d)),
            Err(e) => self.err(line, &name, format!("{name}: {e}")),
        }
    }

    fn schedules(&mut self, item: &Item) -> Res<Vec<ScheduleSpec>> {
        let line = self.line(item.span());
        let tables = self.tables_of(item, "schedules")?;
        if tables.len() > MAX_SCHEDULES {
            return self.err(
                line,
                "[[schedules]]",
                format!(
                    "at most {MAX_SCHEDULES} [[schedules]] entries, got {}",
                    tables.len()
                ),
            );
        }
        let mut out = Vec::with_capacity(tables.len());
        for (i, (t, span)) in tables.into_iter().enumerate() {
            let table_line = self.line(span);
            let prefix = format!("schedules[{}]", i + 1);
            self.warn_unknown_at(t, table_line, SCHEDULE_KEYS, &prefix);
            let key_err = |key: &'static str, msg: String| -> EntryErr<'_> {
                (t, table_line, prefix.as_str(), key, msg)
            };
            let cron = match t.get("cron").map(|v| v.as_str()) {
                Some(Some(s)) => s.to_string(),
                Some(None) => return self.entry_err(key_err("cron", "must be a string".into())),
                None => return self.entry_err(key_err("cron", "is required".into())),
            };
            let timezone = match t.get("timezone").map(|v| v.as_str()) {
                None => DEFAULT_TIMEZONE.to_string(),
                Some(Some(s)) => s.to_string(),
                Some(None) => {
                    return self.entry_err(key_err("timezone", "must be a string".into()))
                }
            };
            if let Err(e) = CronSchedule::new(&cron, &timezone) {
                return self.entry_err(key_err(e.field(), format!(": {}", e.message())));
            }
            let input = match t.get("input") {
                None => Map::new(),
                Some(item) => {
                    let table: Option<&dyn TableLike> = item.as_table_like();
                    let Some(table) = table else {
                        return self.entry_err(key_err(
                            "input",
                            "must be a table (input = { key = \"value\" })".into(),
                        ));
                    };
                    let map = match table_to_json(table) {
                        Ok(m) => m,
                        Err(e) => return self.entry_err(key_err("input", format!(": {e}"))),
                    };
                    let size = J::Object(map.clone()).to_string().len();
                    if size > MAX_INPUT_BYTES {
                        return self.entry_err(key_err(
                            "input",
                            format!("is {size} bytes as JSON; at most {MAX_INPUT_BYTES}"),
                        ));
                    }
                    map
                }
            };
            let enabled = match t.get("enabled").map(|v| v.as_bool()) {
                None => true,
                Some(Some(b)) => b,
                Some(None) => {
                    return self.entry_err(key_err("enabled", "must be true or false".into()))
                }
            };
            out.push(ScheduleSpec {
                cron: cron.trim().to_string(),
                timezone,
                input,
                enabled,
            });
        }
        Ok(out)
    }

    /// An error at `key` of one `[[schedules]]` entry: `schedules[2].cron is
    /// required`, `schedules[1].timezone: unknown time zone ...`.
    fn entry_err<T>(&self, (t, table_line, prefix, key, msg): EntryErr<'_>) -> Res<T> {
        let sep = if msg.starts_with(':') { "" } else { " " };
        self.err(
            self.key_line_at(t, table_line, key),
            &format!("{prefix}.{key}"),
            format!("{prefix}.{key}{sep}{msg}"),
        )
    }
}

type EntryErr<'a> = (&'a dyn TableLike, usize, &'a str, &'a str, String);

#[cfg(test)]
mod tests;
