//! Input rules shared by server and CLI (slugs, names, durations).

use std::time::Duration;

/// Slugs that would collide with routes or confuse users.
const RESERVED_SLUGS: &[&str] = &[
    "admin",
    "api",
    "apps",
    "runs",
    "runners",
    "tokens",
    "teams",
    "me",
    "new",
    "login",
    "logout",
    "bootstrap",
    "health",
    "ready",
    "metrics",
    "summary",
    "stats",
    "lease",
    "static",
    "assets",
];

/// Why a slug was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    #[error("slug must match ^[a-z][a-z0-9-]{{0,62}}$, got {0:?}")]
    Format(String),
    #[error("slug {0:?} is reserved")]
    Reserved(String),
}

/// Checks a team or app slug: `^[a-z][a-z0-9-]{0,62}$` and not reserved.
pub fn slug(s: &str) -> Result<(), SlugError> {
    let mut chars = s.chars();
    let ok_first = matches!(chars.next(), Some('a'..='z'));
    let ok_rest = chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'));
    if !ok_first || !ok_rest || s.len() > 63 {
        return Err(SlugError::Format(s.to_string()));
    }
    if RESERVED_SLUGS.contains(&s) {
        return Err(SlugError::Reserved(s.to_string()));
    }
    Ok(())
}

/// Parses durations written like `60s`, `500ms`, `2m`, `1h 30m`; a bare number means seconds.
pub fn duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("invalid duration {t:?}: {e} (write e.g. 60s, 500ms, 2m)"))
}

/// Whether a name may be exported as an environment variable to a script.
pub fn env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["a", "hello", "hello-world", "a1", &"a".repeat(63)] {
            assert_eq!(slug(ok), Ok(()), "{ok}");
        }
        for bad in ["", "1a", "-a", "Hello", "a_b", "a b", "é", &"a".repeat(64)] {
            assert!(matches!(slug(bad), Err(SlugError::Format(_))), "{bad}");
        }
        assert!(matches!(slug("admin"), Err(SlugError::Reserved(_))));
    }

    #[test]
    fn durations() {
        assert_eq!(duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("15").unwrap(), Duration::from_secs(15));
        assert!(duration("soon").is_err());
        assert!(duration("").is_err());
    }

    #[test]
    fn env_names() {
        assert!(env_var_name("name"));
        assert!(env_var_name("_X1"));
        assert!(!env_var_name("1x"));
        assert!(!env_var_name("a-b"));
        assert!(!env_var_name(""));
    }
}
