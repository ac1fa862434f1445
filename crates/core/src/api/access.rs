//! Wire types of environments, secrets and token scopes (issue 13).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Body of `POST /api/v1/environments`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateEnvironmentRequest {
    #[schema(pattern = "^[a-z][a-z0-9-]{0,62}$")]
    pub name: String,
}

/// A team's environment with the runners that serve it now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Environment {
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// How many online runners carry this environment's label.
    #[serde(default)]
    pub online_runners: i64,
    /// Their names, sorted.
    #[serde(default)]
    pub runner_names: Vec<String>,
}

/// `GET /api/v1/environments`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentList {
    pub environments: Vec<Environment>,
}

/// A secret as listed: never its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SecretInfo {
    pub name: String,
    pub environment: String,
    /// 1 when first set, one more with every set.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `GET /api/v1/secrets?environment=E`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SecretList {
    pub environment: String,
    pub secrets: Vec<SecretInfo>,
}

/// Body of `PUT /api/v1/secrets/{name}`. The value is write-only.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct PutSecretRequest {
    #[schema(min_length = 1, max_length = 65536)]
    pub value: String,
}

impl std::fmt::Debug for PutSecretRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutSecretRequest")
            .field("value", &"<redacted>")
            .finish()
    }
}

/// What a scoped token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScopeAction {
    /// Read apps, versions, runs and logs (and environments).
    Read,
    /// Create runs.
    Trigger,
    /// Cancel runs.
    Cancel,
    /// Upload versions.
    Deploy,
}

impl ScopeAction {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeAction::Read => "read",
            ScopeAction::Trigger => "trigger",
            ScopeAction::Cancel => "cancel",
            ScopeAction::Deploy => "deploy",
        }
    }
}

/// A scope narrower than the member role, for CI systems: only these
/// actions, and only on this app when one is named. Tokens, secrets,
/// environments' changes and runners are never in a scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenScope {
    /// The one app the token may touch; absent for every app of the team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[a-z][a-z0-9-]{0,62}$")]
    pub app: Option<String>,
    /// At least one action.
    pub actions: Vec<ScopeAction>,
}

impl TokenScope {
    /// How the scope reads in messages: `app "etl", actions read, trigger`.
    pub fn describe(&self) -> String {
        let actions: Vec<&str> = self.actions.iter().map(|a| a.as_str()).collect();
        match &self.app {
            Some(app) => format!("app {app:?}, actions {}", actions.join(", ")),
            None => format!("every app, actions {}", actions.join(", ")),
        }
    }
}

/// Secrets a lease delivers: environment variable name to value. Its
/// `Debug` shows names only, so a logged lease never shows a value.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct LeaseSecrets(pub BTreeMap<String, String>);

impl LeaseSecrets {
    /// Whether there is none (then the field is left out of the lease).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for LeaseSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_values() {
        let s = LeaseSecrets([("DB_PASSWORD".to_string(), "hunter22".to_string())].into());
        let shown = format!("{s:?}");
        assert!(shown.contains("DB_PASSWORD") && !shown.contains("hunter22"));
        let p = PutSecretRequest {
            value: "hunter22".into(),
        };
        assert!(!format!("{p:?}").contains("hunter22"));
    }

    #[test]
    fn scope_refuses_unknown_fields_and_actions() {
        let ok: TokenScope =
            serde_json::from_str(r#"{"app":"etl","actions":["trigger","read"]}"#).unwrap();
        assert_eq!(ok.describe(), "app \"etl\", actions trigger, read");
        assert!(serde_json::from_str::<TokenScope>(r#"{"actions":["admin"]}"#).is_err());
        assert!(serde_json::from_str::<TokenScope>(r#"{"actions":[],"x":1}"#).is_err());
    }
}
