//! Wire types of failure retries (issue 12): the trigger's `retry_delay`.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;

/// A first failure-retry delay in a request: seconds (`2`, `0.5`) or a
/// duration with the Towerfile's syntax (`"2s"`, `"500ms"`, `"1m"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum RetryDelaySpec {
    Seconds(f64),
    Text(String),
}

impl RetryDelaySpec {
    /// The delay, more than 0 and at most 1 h, or why not (the message
    /// names `retry_delay`).
    pub fn duration(&self) -> Result<Duration, String> {
        let d = match self {
            RetryDelaySpec::Seconds(s) => {
                if !s.is_finite() || *s < 0.0 {
                    return Err(format!("retry_delay must be a positive duration, got {s}"));
                }
                Duration::try_from_secs_f64(*s).map_err(|e| format!("retry_delay: {e}"))?
            }
            RetryDelaySpec::Text(t) => {
                if t.trim_start().starts_with('-') {
                    return Err("retry_delay must not be negative".into());
                }
                crate::validate::duration(t).map_err(|e| format!("retry_delay: {e}"))?
            }
        };
        crate::retry::validate_retry_delay(d).map_err(|e| e.to_string())
    }

    /// The delay in whole milliseconds (at least 1), as stored.
    pub fn millis(&self) -> Result<i64, String> {
        let d = self.duration()?;
        Ok((d.as_millis() as i64).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_parse_as_seconds_or_durations() {
        assert_eq!(RetryDelaySpec::Seconds(2.0).millis(), Ok(2000));
        assert_eq!(RetryDelaySpec::Seconds(0.25).millis(), Ok(250));
        assert_eq!(RetryDelaySpec::Text("2s".into()).millis(), Ok(2000));
        assert_eq!(RetryDelaySpec::Text("500ms".into()).millis(), Ok(500));
        assert_eq!(RetryDelaySpec::Text("3".into()).millis(), Ok(3000));
        for bad in [
            RetryDelaySpec::Seconds(-1.0),
            RetryDelaySpec::Seconds(0.0),
            RetryDelaySpec::Seconds(f64::NAN),
            RetryDelaySpec::Seconds(7200.0),
            RetryDelaySpec::Text("-2s".into()),
            RetryDelaySpec::Text("0s".into()),
            RetryDelaySpec::Text("soon".into()),
            RetryDelaySpec::Text("2h".into()),
        ] {
            let e = bad.millis().unwrap_err();
            assert!(e.contains("retry_delay"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn both_forms_deserialize() {
        let n: RetryDelaySpec = serde_json::from_str("1.5").unwrap();
        assert_eq!(n, RetryDelaySpec::Seconds(1.5));
        let t: RetryDelaySpec = serde_json::from_str("\"2s\"").unwrap();
        assert_eq!(t, RetryDelaySpec::Text("2s".into()));
    }
}
