//! Shared state of the control plane: store, objects, metrics, wake-ups,
//! schema cache and the injectable clock.

use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::objects::Objects;
use chrono::{DateTime, Utc};
use minitower_store::Store;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// Source of "now". Production reads the system clock; tests move a manual
/// clock forward to expire leases without sleeping.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock tests set by hand; it starts at the real time and moves only
/// when told to.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// A manual clock reading the current time.
    pub fn new() -> Self {
        ManualClock(Mutex::new(Utc::now()))
    }
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap();
        *t += chrono::Duration::from_std(by).unwrap_or_default();
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// In-process wake-ups: waiting lease calls per environment, and log
/// streams per run. Waiters re-read the store after a wake, so a missed or
/// spurious wake only costs a query, never correctness.
///
/// A queue wake reaches every lease call waiting on the environment (a
/// call may be waiting for a run, for a slot of its runner to free up, or
/// for a retry to come due, and only it can tell). The woken calls then
/// take turns ([`Notifier::lease_turn`]) and read the queue before writing,
/// so sixteen waiting runners cost one lease transaction per queued run
/// instead of sixteen. A wake sent while a call holds its turn changes the
/// watched value, so that call looks again: none is lost.
pub struct Notifier {
    queues: Mutex<HashMap<String, watch::Sender<u64>>>,
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    runs: broadcast::Sender<i64>,
}

impl Notifier {
    fn new() -> Self {
        Notifier {
            queues: Mutex::new(HashMap::new()),
            turns: Mutex::new(HashMap::new()),
            runs: broadcast::channel(4096).0,
        }
    }

    /// The turn of a woken lease call on `env` (see [`Notifier`]); held
    /// until dropped.
    pub async fn lease_turn(&self, env: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let turn = self
            .turns
            .lock()
            .unwrap()
            .entry(env.to_string())
            .or_default()
            .clone();
        turn.lock_owned().await
    }

    fn queue_sender(&self, env: &str) -> watch::Sender<u64> {
        let mut map = self.queues.lock().unwrap();
        map.entry(env.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .clone()
    }

    /// Subscribes to "a run became leasable in `env`".
    pub fn watch_queue(&self, env: &str) -> watch::Receiver<u64> {
        self.queue_sender(env).subscribe()
    }

    /// Wakes lease calls waiting on `env`.
    pub fn queue_changed(&self, env: &str) {
        self.queue_sender(env)
            .send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Subscribes to "this run has new logs or a new status".
    pub fn watch_runs(&self) -> broadcast::Receiver<i64> {
        self.runs.subscribe()
    }

    /// Wakes streams following `run_id`.
    pub fn run_changed(&self, run_id: i64) {
        let _ = self.runs.send(run_id);
    }
}

/// Compiled JSON Schemas by version id: each version's schema is compiled
/// once and shared by every run created against it. Bounded: a control plane
/// with many versions keeps the most used ones (moka's TinyLFU), so memory
/// stays flat however many versions are ever triggered.
pub struct SchemaCache(moka::sync::Cache<i64, Arc<jsonschema::Validator>>);

/// Compiled schemas kept at most.
pub const SCHEMA_CACHE_ENTRIES: u64 = 1024;

impl Default for SchemaCache {
    fn default() -> Self {
        SchemaCache(moka::sync::Cache::new(SCHEMA_CACHE_ENTRIES))
    }
}

impl SchemaCache {
    /// The compiled validator for a version, compiling on first use.
    pub fn get(
        &self,
        version_id: i64,
        schema: &serde_json::Value,
    ) -> Result<Arc<jsonschema::Validator>, String> {
        self.0
            .try_get_with(version_id, || {
                jsonschema::validator_for(schema)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| e.to_string())
    }

    /// Entries held now (after pending evictions ran), for tests.
    pub fn len(&self) -> u64 {
        self.0.run_pending_tasks();
        self.0.entry_count()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Everything a handler needs.
pub struct AppState {
    pub config: ServerConfig,
    pub store: Arc<dyn Store>,
    pub objects: Arc<dyn Objects>,
    pub metrics: Metrics,
    pub notifier: Notifier,
    pub schemas: SchemaCache,
    /// Token and runner identities by token hash (see `auth_cache.rs`).
    pub auth: crate::auth_cache::AuthCache,
    /// Login limiters and the Argon2 budget.
    pub login: crate::throttle::LoginGuard,
    pub clock: Arc<dyn Clock>,
    /// Cancelled at shutdown so long-polls and streams end promptly.
    pub shutdown: CancellationToken,
    /// Seals and opens secret values (`MINITOWER_SECRETS_KEY` or key file).
    pub keys: Arc<crate::secrets_crypto::KeyRing>,
    bootstrap_hash: [u8; 32],
    registration_hash: [u8; 32],
    touched: Mutex<HashMap<i64, Instant>>,
    refused: Mutex<HashMap<i64, (Instant, String)>>,
}

/// How often the same refusal of a token is written at most.
const REFUSAL_EVERY: Duration = Duration::from_secs(1);

/// How often a token's `last_used_at` is written at most.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

impl AppState {
    /// What follows a run's transition, in one place for results,
    /// hand-backs, the reaper's expiries and cancels: the finished-run
    /// metrics, and wake-ups for the lease calls that may now take the freed
    /// slot (or the requeued run) and for the run's watchers.
    pub fn run_transitioned(
        &self,
        run_id: i64,
        environment: &str,
        finished: Option<&minitower_store::Finished>,
    ) {
        if let Some(f) = finished {
            self.metrics.run_finished(f);
        }
        self.notifier.queue_changed(environment);
        self.notifier.run_changed(run_id);
    }
}

impl AppState {
    /// Assembles the state.
    pub fn new(
        config: ServerConfig,
        store: Arc<dyn Store>,
        objects: Arc<dyn Objects>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
        keys: Arc<crate::secrets_crypto::KeyRing>,
    ) -> Self {
        let bootstrap_hash = sha256(config.bootstrap_token.as_bytes());
        let registration_hash = sha256(config.registration_token().as_bytes());
        AppState {
            config,
            store,
            objects,
            metrics: Metrics::new(),
            notifier: Notifier::new(),
            schemas: SchemaCache::default(),
            auth: crate::auth_cache::AuthCache::new(),
            login: crate::throttle::LoginGuard::new(),
            clock,
            shutdown,
            keys,
            bootstrap_hash,
            registration_hash,
            touched: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
        }
    }

    /// Current time from the injected clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Constant-time check of the bootstrap secret.
    pub fn is_bootstrap_token(&self, presented: &str) -> bool {
        ct_eq(&sha256(presented.as_bytes()), &self.bootstrap_hash)
    }

    /// Constant-time check of the runner registration secret.
    pub fn is_registration_token(&self, presented: &str) -> bool {
        ct_eq(&sha256(presented.as_bytes()), &self.registration_hash)
    }

    /// Records a refused use of a token in its audit (`last_refused_at`,
    /// `last_refusal`). Throttled like uses, except that a new reason is
    /// always written, so a flood of refusals is not a flood of writes.
    pub async fn token_refused(&self, token_id: i64, reason: &str) {
        let write = {
            let mut map = self.refused.lock().unwrap();
            let now = Instant::now();
            match map.get(&token_id) {
                Some((t, r)) if now.duration_since(*t) < REFUSAL_EVERY && r == reason => false,
                _ => {
                    map.insert(token_id, (now, reason.to_string()));
                    true
                }
            }
        };
        if write {
            if let Err(e) = self.store.refuse_token(token_id, reason, self.now()).await {
                tracing::warn!(error = %e, "could not record a token refusal");
            }
        }
    }

    /// Whether this token's last use should be written now (throttled so
    /// reads do not turn into writes on every request).
    pub fn should_touch(&self, token_id: i64) -> bool {
        let mut map = self.touched.lock().unwrap();
        let now = Instant::now();
        match map.get(&token_id) {
            Some(t) if now.duration_since(*t) < TOUCH_EVERY => false,
            _ => {
                map.insert(token_id, now);
                true
            }
        }
    }
}

/// SHA-256 digest.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Hex SHA-256, the form token hashes are stored in.
pub fn hash_token(token: &str) -> String {
    hex::encode(sha256(token.as_bytes()))
}

/// A new random secret: 256 bits, hex, with a prefix that says what it is.
pub fn new_secret(prefix: &str) -> String {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).expect("the OS random source failed");
    format!("{prefix}_{}", hex::encode(buf))
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod schema_cache_tests {
    use super::*;

    #[test]
    fn the_schema_cache_stays_bounded_and_compiles_once() {
        let cache = SchemaCache::default();
        let schema = serde_json::json!({"type": "object"});
        let first = cache.get(1, &schema).unwrap();
        assert!(Arc::ptr_eq(&first, &cache.get(1, &schema).unwrap()));
        for id in 0..(SCHEMA_CACHE_ENTRIES as i64 + 500) {
            cache.get(id, &schema).unwrap();
        }
        let held = cache.len();
        assert!(held <= SCHEMA_CACHE_ENTRIES, "{held} entries held");
        assert!(held > 0);
        // a schema that does not compile is an error, and is not cached
        let bad = serde_json::json!({"type": 12});
        assert!(cache.get(-1, &bad).is_err());
        assert!(cache.get(-1, &schema).is_ok());
    }
}
