//! Cached token and runner identities, so a request's authentication is a
//! hash and a map lookup instead of a database read.
//!
//! Design note. The invariant: **a revoked team token, or a runner token
//! replaced by a new registration, is refused by every replica from the
//! moment the change is known to it**, never later because of this cache.
//! - Every entry carries the *generation* that was current when its database
//!   read began; [`AuthCache::invalidate`] bumps the generation, and an entry
//!   from an older generation is a miss. A read racing a revoke therefore
//!   cannot leave a stale identity behind: it either finishes before the bump
//!   (and is then ignored) or begins after it (and sees the revoke).
//! - This replica bumps on its own revokes and registrations; PostgreSQL
//!   replicas also bump when the database NOTIFYs `minitower_auth`
//!   (migration 0007, `events.rs`), so another replica's revoke is seen
//!   within the notification's latency. While notifications are lost the
//!   cache is bypassed ([`AuthCache::distrust`]) until the listener is back.
//! - Expiry is not cached as a verdict: the identity holds `expires_at` and
//!   the extractor compares it with the clock on every request.
//! - Unknown tokens are not cached (no memory for an attacker to fill), and
//!   entries also die after [`TTL`] and past [`ENTRIES`] (least recently used).
//!
//! Proven by `tests/auth_cache.rs`: a revoked token and a replaced runner
//! token are refused at once on the same replica, and on a second PostgreSQL
//! replica that served them from its cache a moment before.

use minitower_store::{RunnerIdentity, StoreResult, TokenIdentity};
use moka::sync::Cache;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Most identities kept, per kind.
const ENTRIES: u64 = 10_000;
/// Longest an identity is kept even without any invalidation.
const TTL: Duration = Duration::from_secs(60);

/// Token and runner identities by token hash.
pub struct AuthCache {
    teams: Cache<String, (u64, TokenIdentity)>,
    runners: Cache<String, (u64, RunnerIdentity)>,
    generation: AtomicU64,
    trusted: AtomicBool,
}

impl Default for AuthCache {
    fn default() -> Self {
        AuthCache::new()
    }
}

impl AuthCache {
    pub fn new() -> AuthCache {
        AuthCache {
            teams: Cache::builder()
                .max_capacity(ENTRIES)
                .time_to_live(TTL)
                .build(),
            runners: Cache::builder()
                .max_capacity(ENTRIES)
                .time_to_live(TTL)
                .build(),
            generation: AtomicU64::new(0),
            trusted: AtomicBool::new(true),
        }
    }

    /// The team token with this hash, from the cache or from `load`.
    pub async fn team<F, Fut>(&self, hash: &str, load: F) -> StoreResult<Option<TokenIdentity>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = StoreResult<Option<TokenIdentity>>>,
    {
        lookup(self, &self.teams, hash, load).await
    }

    /// The runner with this token hash, from the cache or from `load`.
    pub async fn runner<F, Fut>(&self, hash: &str, load: F) -> StoreResult<Option<RunnerIdentity>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = StoreResult<Option<RunnerIdentity>>>,
    {
        lookup(self, &self.runners, hash, load).await
    }

    /// Some identity changed (a token revoked, a runner registered again):
    /// everything cached so far is stale.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.teams.invalidate_all();
        self.runners.invalidate_all();
    }

    /// Changes made elsewhere may go unnoticed (the notification listener is
    /// down): read the database until [`AuthCache::trust`].
    pub fn distrust(&self) {
        self.trusted.store(false, Ordering::SeqCst);
        self.invalidate();
    }

    /// Notifications flow again; what was missed is dropped first.
    pub fn trust(&self) {
        self.invalidate();
        self.trusted.store(true, Ordering::SeqCst);
    }
}

async fn lookup<T, F, Fut>(
    cache: &AuthCache,
    map: &Cache<String, (u64, T)>,
    hash: &str,
    load: F,
) -> StoreResult<Option<T>>
where
    T: Clone + Send + Sync + 'static,
    F: FnOnce() -> Fut,
    Fut: Future<Output = StoreResult<Option<T>>>,
{
    let generation = cache.generation.load(Ordering::SeqCst);
    let trusted = cache.trusted.load(Ordering::SeqCst);
    if trusted {
        if let Some((g, v)) = map.get(hash) {
            if g == generation {
                return Ok(Some(v));
            }
        }
    }
    let found = load().await?;
    if let (true, Some(v)) = (trusted, &found) {
        map.insert(hash.to_string(), (generation, v.clone()));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use minitower_store::RunnerIdentity;
    use std::sync::atomic::AtomicUsize;

    fn runner(env: &str) -> RunnerIdentity {
        RunnerIdentity {
            runner_id: 1,
            name: "r".into(),
            environment: env.into(),
            max_concurrency: 1,
        }
    }

    #[tokio::test]
    async fn hits_after_a_load_and_misses_after_an_invalidation() {
        let c = AuthCache::new();
        let loads = AtomicUsize::new(0);
        let load = |env: &'static str| {
            loads.fetch_add(1, Ordering::SeqCst);
            async move { Ok(Some(runner(env))) }
        };
        assert_eq!(
            c.runner("h", || load("a"))
                .await
                .unwrap()
                .unwrap()
                .environment,
            "a"
        );
        assert_eq!(
            c.runner("h", || load("b"))
                .await
                .unwrap()
                .unwrap()
                .environment,
            "a"
        );
        assert_eq!(
            loads.load(Ordering::SeqCst),
            1,
            "the second lookup was a hit"
        );
        c.invalidate();
        assert_eq!(
            c.runner("h", || load("b"))
                .await
                .unwrap()
                .unwrap()
                .environment,
            "b"
        );
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_read_racing_an_invalidation_leaves_nothing_stale() {
        let c = AuthCache::new();
        // The database read starts, the identity is revoked meanwhile, then
        // the (now stale) answer arrives and is stored.
        let got = c
            .runner("h", || async {
                c.invalidate();
                Ok(Some(runner("stale")))
            })
            .await
            .unwrap();
        assert_eq!(
            got.unwrap().environment,
            "stale",
            "this request saw the old row"
        );
        let next = c.runner("h", || async { Ok(None) }).await.unwrap();
        assert!(
            next.is_none(),
            "the next request reads again and sees the revoke"
        );
    }

    #[tokio::test]
    async fn unknown_tokens_are_not_cached_and_distrust_bypasses() {
        let c = AuthCache::new();
        assert!(c
            .runner("h", || async { Ok(None) })
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            c.runner("h", || async { Ok(Some(runner("new"))) })
                .await
                .unwrap()
                .unwrap()
                .environment,
            "new",
            "a miss is not remembered"
        );
        c.distrust();
        let loads = AtomicUsize::new(0);
        for _ in 0..2 {
            c.runner("h", || {
                loads.fetch_add(1, Ordering::SeqCst);
                async { Ok(Some(runner("db"))) }
            })
            .await
            .unwrap();
        }
        assert_eq!(
            loads.load(Ordering::SeqCst),
            2,
            "untrusted: every lookup reads"
        );
        c.trust();
        c.runner("h", || async { Ok(Some(runner("db"))) })
            .await
            .unwrap();
        let hit = c
            .runner("h", || async { Ok(Some(runner("other"))) })
            .await
            .unwrap();
        assert_eq!(hit.unwrap().environment, "db", "trusted again: cached");
    }
}
