//! Secrets delivered with a lease.
//!
//! Design note. The invariant: a runner receives exactly the secrets the
//! leased version's Towerfile declares (`[app] secrets`), opened from the
//! run's own team and environment, and nothing else; a run whose declared
//! secret is missing (or does not open) never reaches a runner: it fails at
//! lease time with an error naming the secret. Checking at lease time, not
//! at trigger, is what stays correct when secrets change in between: a
//! secret set after the run was queued is used, one deleted meanwhile fails
//! the run instead of starting it without. Proven by
//! `crates/server/tests/secrets.rs` (a real runner and Python process).

use crate::extract::State;
use crate::secrets_crypto::SecretRef;
use minitower_core::api::LeaseSecrets;
use minitower_store::RunSecrets;
use std::collections::BTreeMap;

/// Why a leased run cannot start; the message becomes the run's error.
#[derive(Debug, PartialEq, Eq)]
pub struct Undeliverable(pub String);

/// The declared secrets of a leased run, opened, or why it must fail. `rs`
/// was read in the lease's transaction (`Leased::secrets`).
pub fn for_run(st: &State, rs: &RunSecrets) -> Result<LeaseSecrets, Undeliverable> {
    let declared = match rs.towerfile.as_deref() {
        None => Vec::new(),
        Some(text) => match minitower_core::towerfile::parse(text) {
            Ok(p) => p.towerfile.app.secrets,
            Err(e) => {
                return Err(Undeliverable(format!(
                    "the version's Towerfile does not parse any more: {e}"
                )))
            }
        },
    };
    let env = rs.environment.as_str();
    let missing: Vec<&str> = declared
        .iter()
        .filter(|n| !rs.secrets.iter().any(|s| &s.info.name == *n))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        let list = missing.join(", ");
        let first = missing[0];
        return Err(Undeliverable(format!(
            "secret {list} not set in environment {env:?}; the app's Towerfile declares it \
             (set it with `minitower secrets set {first} --environment {env}`)"
        )));
    }
    let mut out = BTreeMap::new();
    for s in rs
        .secrets
        .iter()
        .filter(|s| declared.contains(&s.info.name))
    {
        let at = SecretRef {
            team_id: rs.team_id,
            environment: env,
            name: &s.info.name,
            version: s.info.version,
        };
        let opened = st
            .keys
            .open(&at, &s.sealed_value)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        match opened {
            Some(v) => {
                out.insert(s.info.name.clone(), v);
            }
            None => {
                // The reason (unknown key, altered value) names no value.
                let why = st
                    .keys
                    .open(&at, &s.sealed_value)
                    .err()
                    .map_or_else(|| "not UTF-8".to_string(), |e| e.to_string());
                tracing::error!(secret = %s.info.name, environment = env, error = %why,
                    "a stored secret does not open");
                return Err(Undeliverable(format!(
                    "secret {} of environment {env:?} cannot be opened by this server: {why}",
                    s.info.name
                )));
            }
        }
    }
    Ok(LeaseSecrets(out))
}
