//! Backoff before a failure retry: how long a failed run waits, queued with
//! a not-before time, before its next attempt.
//!
//! Design note. [`failure_retry_delay`] is a pure function of the first
//! delay (the Towerfile's `retry_delay`), the retry number and the run id:
//!
//! - the base doubles with each retry, `first × 2^(n-1)`, and is capped at
//!   [`MAX_RETRY_DELAY`] (one hour: past that a schedule, not a retry, is
//!   the right tool, and "retried with backoff for hours" stays bounded);
//! - jitter takes off up to a quarter of the base, so the delay lies in
//!   `[¾·base, base]`. Spreading retries keeps a burst of runs that failed
//!   together (a dead database) from coming back in lockstep; taking off
//!   rather than adding keeps the cap a hard ceiling and, before the cap,
//!   keeps every delay longer than the one before (`¾·2b > b`);
//! - the jitter fraction is a SHA-256 of the run id and retry number, not a
//!   random draw, so the same run's retries wait the same on every replica
//!   and every replay, as the product promises deterministic retries.
//!
//! `retry/tests.rs` checks those bounds exhaustively over retry numbers,
//! many run ids and first delays from 1 ms to the cap.

use sha2::{Digest, Sha256};
use std::time::Duration;

/// Ceiling on any failure-retry delay and on the Towerfile's first delay.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
/// Most failure retries a version or run may ask for.
pub const MAX_RETRIES: u32 = 100;
/// First delay when the Towerfile gives `retries` but no `retry_delay`.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(2);
/// Largest share of the base delay that jitter takes off: 1/4.
pub const JITTER_DIVISOR: u32 = 4;

/// The un-jittered delay before failure retry `retry` (1-based):
/// `first × 2^(retry-1)`, capped at [`MAX_RETRY_DELAY`]. Retry 0 is
/// treated as retry 1.
pub fn base_delay(first: Duration, retry: u32) -> Duration {
    let first = first.min(MAX_RETRY_DELAY);
    let doublings = retry.saturating_sub(1);
    // first ≤ 1 h < 2^42 ns and the shift is ≤ 64, so the product fits a
    // u128 (< 2^106) for any retry number; then clamp to the cap.
    let shift = doublings.min(64);
    let nanos = first.as_nanos().saturating_mul(1u128 << shift);
    let cap = MAX_RETRY_DELAY.as_nanos();
    Duration::from_nanos(nanos.min(cap) as u64)
}

/// Jitter fraction in `[0, 1)` for this run and retry, from a hash so it is
/// the same wherever and whenever it is computed.
pub fn jitter_fraction(run_id: i64, retry: u32) -> f64 {
    let mut h = Sha256::new();
    h.update(b"minitower-retry-jitter\0");
    h.update(run_id.to_be_bytes());
    h.update(retry.to_be_bytes());
    let digest = h.finalize();
    let mut word = [0u8; 8];
    word.copy_from_slice(&digest[..8]);
    // 53 bits fill an f64 mantissa exactly: the result is < 1.
    (u64::from_be_bytes(word) >> 11) as f64 / (1u64 << 53) as f64
}

/// The delay before failure retry `retry` (1-based) of run `run_id`, given
/// the first delay. Always within `[¾·base, base]` where `base` is
/// [`base_delay`], hence never above [`MAX_RETRY_DELAY`].
pub fn failure_retry_delay(first: Duration, retry: u32, run_id: i64) -> Duration {
    let base = base_delay(first, retry);
    let max_off = base.as_nanos() / u128::from(JITTER_DIVISOR);
    let off = (max_off as f64 * jitter_fraction(run_id, retry)) as u128;
    Duration::from_nanos((base.as_nanos() - off.min(max_off)) as u64)
}

/// Why a Towerfile or API retry setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryError {
    #[error("retries must be between 0 and {MAX_RETRIES}, got {0}")]
    Retries(i64),
    #[error("retry_delay must be more than 0")]
    ZeroDelay,
    #[error("retry_delay must be at most 1h, got {0:?}")]
    DelayTooLong(Duration),
}

/// Checks a failure-retry count (`retries`).
pub fn validate_retries(n: i64) -> Result<u32, RetryError> {
    if (0..=i64::from(MAX_RETRIES)).contains(&n) {
        Ok(n as u32)
    } else {
        Err(RetryError::Retries(n))
    }
}

/// Checks a first retry delay (`retry_delay`): more than zero, at most
/// [`MAX_RETRY_DELAY`].
pub fn validate_retry_delay(d: Duration) -> Result<Duration, RetryError> {
    if d.is_zero() {
        Err(RetryError::ZeroDelay)
    } else if d > MAX_RETRY_DELAY {
        Err(RetryError::DelayTooLong(d))
    } else {
        Ok(d)
    }
}

#[cfg(test)]
mod tests;
