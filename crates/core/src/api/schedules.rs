//! Wire types of schedules (issue 12) and of the per-run timeout.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Where a schedule was declared. Deploying a Towerfile replaces the app's
/// `towerfile` schedules with the file's set; `api` ones are never touched
/// by a deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleSource {
    Towerfile,
    Api,
}

impl ScheduleSource {
    /// Wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleSource::Towerfile => "towerfile",
            ScheduleSource::Api => "api",
        }
    }
    /// Parses the database spelling.
    pub fn parse(s: &str) -> Option<ScheduleSource> {
        match s {
            "towerfile" => Some(ScheduleSource::Towerfile),
            "api" => Some(ScheduleSource::Api),
            _ => None,
        }
    }
}

/// A schedule with its next fire times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Schedule {
    pub id: i64,
    pub app: String,
    /// 5 fields, 6 with a leading seconds field, or an alias (`@hourly`).
    pub cron: String,
    /// IANA zone the expression is read in.
    pub timezone: String,
    /// Input of every run the schedule starts.
    #[schema(value_type = Object)]
    pub input: Value,
    /// The version its runs use; `null`: the latest when the tick fires.
    pub version_no: Option<i64>,
    pub environment: String,
    pub enabled: bool,
    pub source: ScheduleSource,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Ticks at or before this instant are done (fired, skipped as missed,
    /// or before the schedule was created or last resumed).
    pub last_tick_at: DateTime<Utc>,
    /// The next five fire times (UTC); empty while paused.
    pub next_runs: Vec<DateTime<Utc>>,
    /// The same instants on the schedule's wall clock (RFC 3339 with the
    /// zone's offset).
    pub next_runs_local: Vec<String>,
}

/// `GET /api/v1/apps/{app}/schedules`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<Schedule>,
}

/// Body of `POST /api/v1/apps/{app}/schedules`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateScheduleRequest {
    #[schema(max_length = 256)]
    pub cron: String,
    /// Default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64)]
    pub timezone: Option<String>,
    /// A JSON object (default `{}`), checked against the version's parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    /// Pin a version; absent or `null`: the latest when the tick fires.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::integral::opt_i64"
    )]
    #[schema(minimum = 1)]
    pub version_no: Option<i64>,
    /// Runner environment of its runs (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[a-z][a-z0-9-]{0,62}$")]
    pub environment: Option<String>,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Body of `PATCH /api/v1/schedules/{id}`: absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UpdateScheduleRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64)]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    /// A version number to pin, or `null` to run the latest again.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_i64"
    )]
    #[schema(value_type = Option<i64>, minimum = 1)]
    pub version_no: Option<Option<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[a-z][a-z0-9-]{0,62}$")]
    pub environment: Option<String>,
    /// `false` pauses, `true` resumes (from now: ticks missed while paused
    /// never fire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// A field that may be absent (outer `None`), `null` (`Some(None)`) or an
/// integer.
fn present_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    super::integral::opt_i64(d).map(Some)
}

/// A run's timeout in a request: whole seconds (`30`) or a duration string
/// with the Towerfile's syntax (`"30s"`, `"10m"`, `"1h 30m"`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum TimeoutSpec {
    Seconds(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for TimeoutSpec {
    /// A number or a string; anything else is refused naming the field
    /// (serde's untagged error would not say which field or why).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wrong = |got: &dyn std::fmt::Display| {
            serde::de::Error::custom(format!(
                "timeout must be whole seconds or a duration such as \"30s\", got {got}"
            ))
        };
        match Value::deserialize(d)? {
            Value::String(s) => Ok(TimeoutSpec::Text(s)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Ok(TimeoutSpec::Seconds(i)),
                None => Err(wrong(&n)),
            },
            other => Err(wrong(&other)),
        }
    }
}

impl TimeoutSpec {
    /// Whole seconds from 1 s to 7 days, or why not.
    pub fn seconds(&self) -> Result<i64, String> {
        const MAX: i64 = crate::towerfile::MAX_TIMEOUT.as_secs() as i64;
        let secs = match self {
            TimeoutSpec::Seconds(n) => *n,
            TimeoutSpec::Text(s) => {
                if s.trim_start().starts_with('-') {
                    return Err("timeout must not be negative".into());
                }
                let d = crate::validate::duration(s).map_err(|e| format!("timeout: {e}"))?;
                if d.subsec_nanos() != 0 {
                    return Err(format!(
                        "timeout must be a whole number of seconds, got {s:?}"
                    ));
                }
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
            }
        };
        if !(1..=MAX).contains(&secs) {
            return Err(format!(
                "timeout must be from 1 second to 7 days ({MAX} seconds)"
            ));
        }
        Ok(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_as_seconds_or_durations() {
        assert_eq!(TimeoutSpec::Seconds(30).seconds(), Ok(30));
        assert_eq!(TimeoutSpec::Text("10m".into()).seconds(), Ok(600));
        assert_eq!(TimeoutSpec::Text("45".into()).seconds(), Ok(45));
        assert!(TimeoutSpec::Seconds(0).seconds().is_err());
        assert!(TimeoutSpec::Seconds(-5).seconds().is_err());
        assert!(TimeoutSpec::Text("-5s".into()).seconds().is_err());
        assert!(TimeoutSpec::Text("1500ms".into()).seconds().is_err());
        assert!(TimeoutSpec::Text("8d".into()).seconds().is_err());
        assert!(TimeoutSpec::Text("soon".into()).seconds().is_err());
        let t: TimeoutSpec = serde_json::from_str("\"30s\"").unwrap();
        assert_eq!(t.seconds(), Ok(30));
        let t: TimeoutSpec = serde_json::from_str("12").unwrap();
        assert_eq!(t.seconds(), Ok(12));
        for bad in ["1.5", "true", "[]", "null"] {
            let e = serde_json::from_str::<TimeoutSpec>(bad).unwrap_err();
            assert!(e.to_string().contains("timeout must be"), "{bad}: {e}");
        }
    }

    #[test]
    fn version_no_in_a_patch_tells_absent_from_null() {
        let p: UpdateScheduleRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(p.version_no, None);
        let p: UpdateScheduleRequest = serde_json::from_str(r#"{"version_no": null}"#).unwrap();
        assert_eq!(p.version_no, Some(None));
        let p: UpdateScheduleRequest = serde_json::from_str(r#"{"version_no": 3}"#).unwrap();
        assert_eq!(p.version_no, Some(Some(3)));
    }
}
