//! Login throttling and the Argon2 budget.
//!
//! `POST /api/v1/teams/login` is a password guess and an Argon2 hash (about
//! 19 MiB of memory each). Guesses are limited per client address, per
//! team and address, and per team (GCRA limiters of the `governor` crate,
//! keyed; a refused guess gets 429 with `Retry-After` and costs no hash), and
//! at most [`ARGON2_PERMITS`] hashes run at once whatever the traffic (a
//! semaphore in front of that many dedicated threads: on the shared blocking
//! pool every new thread's malloc arena would keep its own 19 MiB after the
//! hash, so memory would grow with the number of threads ever used), so
//! memory stays flat under a flood.
//!
//! The address is the TCP peer: behind a reverse proxy every client shares
//! the proxy's address, and the per-address limits then act as a global
//! login limit (the proxy should throttle by client address itself).

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Login attempts per minute (and burst) for one team from one address.
pub const PER_TEAM_AND_ADDRESS: u32 = 10;
/// Login attempts per minute (and burst) from one address, any team.
pub const PER_ADDRESS: u32 = 30;
/// Login attempts per minute (and burst) for one team, any address.
pub const PER_TEAM: u32 = 60;
/// Argon2 hashes (login and team creation) running at once.
pub const ARGON2_PERMITS: usize = 2;
/// Limiter keys kept before fully replenished ones are dropped.
const PRUNE_ABOVE: usize = 4096;

/// Limiters and the hash budget of one control plane.
pub struct LoginGuard {
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    by_team_address: DefaultKeyedRateLimiter<(String, IpAddr)>,
    by_team: DefaultKeyedRateLimiter<String>,
    argon2: Semaphore,
    pool: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
}

type Job = Box<dyn FnOnce() + Send>;

/// Why a hash did not run.
#[derive(Debug, thiserror::Error)]
#[error("the Argon2 workers are gone")]
pub struct PoolGone;

/// Starts `n` threads that run jobs from one queue until it is dropped.
fn hash_threads(n: usize) -> std::sync::mpsc::Sender<Job> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    for i in 0..n {
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("argon2-{i}"))
            .spawn(move || loop {
                let job = match rx.lock() {
                    Ok(guard) => guard.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            })
            .expect("start an Argon2 thread");
    }
    tx
}

fn per_minute(n: u32) -> Quota {
    let n = NonZeroU32::new(n).expect("a positive quota");
    Quota::per_minute(n).allow_burst(n)
}

/// The part of an address that identifies a client: IPv6 clients usually
/// hold a whole /64, so they are counted by it.
pub fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

fn check<K: Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), Duration> {
    if limiter.len() > PRUNE_ABOVE {
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
    limiter
        .check_key(key)
        .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
}

impl LoginGuard {
    /// Fresh limiters with the built-in quotas.
    pub fn new() -> Self {
        LoginGuard {
            by_address: RateLimiter::keyed(per_minute(PER_ADDRESS)),
            by_team_address: RateLimiter::keyed(per_minute(PER_TEAM_AND_ADDRESS)),
            by_team: RateLimiter::keyed(per_minute(PER_TEAM)),
            argon2: Semaphore::new(ARGON2_PERMITS),
            pool: std::sync::Mutex::new(hash_threads(ARGON2_PERMITS)),
        }
    }

    /// Runs a password hash or check on one of the Argon2 threads, waiting
    /// for a permit first.
    pub async fn hash<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolGone> {
        let _permit = self.argon2.acquire().await.map_err(|_| PoolGone)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.pool
            .lock()
            .map_err(|_| PoolGone)?
            .send(job)
            .map_err(|_| PoolGone)?;
        rx.await.map_err(|_| PoolGone)
    }

    /// Counts an attempt from `addr` (any team, also malformed ones); `Err`
    /// holds how long to wait.
    pub fn check_address(&self, addr: IpAddr) -> Result<(), Duration> {
        check(&self.by_address, &client_key(addr))
    }

    /// Counts an attempt at `team` (a valid slug) from `addr`.
    pub fn check_team(&self, team: &str, addr: IpAddr) -> Result<(), Duration> {
        check(&self.by_team_address, &(team.to_string(), client_key(addr)))?;
        check(&self.by_team, &team.to_string())
    }
}

impl Default for LoginGuard {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_team_from_one_address_gets_its_burst_then_waits() {
        let g = LoginGuard::new();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..PER_TEAM_AND_ADDRESS {
            g.check_address(a).unwrap();
            g.check_team("acme", a).unwrap();
        }
        let wait = g.check_team("acme", a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        // Another team from the same address, or the same team from another
        // address, still goes through.
        g.check_team("beta", a).unwrap();
        g.check_team("acme", b).unwrap();
    }

    #[test]
    fn one_address_is_limited_across_teams() {
        let g = LoginGuard::new();
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::ffff".parse().unwrap();
        for _ in 0..PER_ADDRESS {
            g.check_address(a).unwrap();
        }
        assert!(g.check_address(same_64).is_err(), "a /64 is one client");
        g.check_address("2001:db8:0:1::1".parse().unwrap()).unwrap();
    }

    #[test]
    fn a_team_is_limited_across_addresses() {
        let g = LoginGuard::new();
        for i in 0..PER_TEAM {
            let addr = IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]);
            g.check_team("acme", addr).unwrap();
        }
        assert!(g.check_team("acme", "10.9.9.9".parse().unwrap()).is_err());
        g.check_team("beta", "10.9.9.9".parse().unwrap()).unwrap();
    }
}
