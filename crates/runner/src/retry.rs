//! One retry policy for every call the runner makes to the control plane.
//!
//! Design note. Before this module the runner had five hand-written loops
//! (start, result, release, registration, plus the heartbeat and log loops)
//! that each decided on their own what a transient error was and how long to
//! wait. Now:
//! - *what is worth retrying* is one predicate, [`ClientError::is_transient`]
//!   (a transport failure, a 5xx or a 429); a 410 fences, a 401 means the
//!   runner token was rotated and is answered by registering again, anything
//!   else is a refusal that retrying cannot fix;
//! - *how long to wait* is one policy, [`Delays`], built on `backon`'s
//!   exponential backoff with jitter, so many runners never retry in lockstep;
//! - the request/response calls (start, result, release) go through one
//!   driver, [`call`], which never outlives the attempt's fencing token.
//!
//! The heartbeat and log loops are event loops that schedule their next try
//! rather than block on it, so they use [`Delays`] directly. The invariants
//! (a 410 fences at once, a 401 registers again, a transient failure is
//! retried until fenced) are proven by the runner's integration tests that
//! partition the runner through a pausable proxy and rotate its token.

use crate::registration::Session;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use minitower_client::{Client, ClientError};
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Growing delays between `base` and `max` (doubling, with random jitter
/// of up to one more delay, as `backon` adds it), restartable after a success.
#[derive(Debug)]
pub struct Delays {
    builder: ExponentialBuilder,
    current: ExponentialBackoff,
}

impl Delays {
    /// Starts at `base`, never waits more than `max` before jitter; retries
    /// without limit (each caller bounds retrying by its own deadline or
    /// cancellation, or by [`Delays::limited`]).
    pub fn new(base: Duration, max: Duration) -> Delays {
        let builder = ExponentialBuilder::default()
            .with_min_delay(base)
            .with_max_delay(max.max(base))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Delays {
            builder,
            current: builder.build(),
        }
    }

    /// The same, giving up after `times` delays.
    pub fn limited(base: Duration, max: Duration, times: usize) -> Delays {
        let builder = ExponentialBuilder::default()
            .with_min_delay(base)
            .with_max_delay(max.max(base))
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(times);
        Delays {
            builder,
            current: builder.build(),
        }
    }

    /// The next delay to wait, or `None` when a limited policy is spent.
    pub fn next(&mut self) -> Option<Duration> {
        self.current.next()
    }

    /// The next delay of an unlimited policy (the base delay once a limited
    /// one is spent).
    pub fn next_delay(&mut self) -> Duration {
        self.next()
            .unwrap_or_else(|| self.builder.build().next().unwrap_or_default())
    }

    /// Back to the first delay after a success.
    pub fn reset(&mut self) {
        self.current = self.builder.build();
    }
}

/// Why [`call`] ended without an answer.
#[derive(Debug)]
pub enum CallError {
    /// The lease is gone (410): the caller fences the attempt.
    LeaseGone,
    /// The attempt was fenced, or registering again failed or was
    /// interrupted: nothing more may be sent for it.
    Stopped,
    /// The control plane refused the call for a reason retrying cannot fix,
    /// or a limited policy ran out while it kept failing transiently.
    Refused(ClientError),
}

/// Sends one request until it is answered: a transient failure waits for
/// the next of `delays` and tries again, a 401 registers again and retries
/// with the new token at once, a 410 is [`CallError::LeaseGone`]. Ends as
/// soon as `fenced` is cancelled, even mid-request.
pub async fn call<T, F, Fut>(
    session: &Session,
    fenced: &CancellationToken,
    mut delays: Delays,
    what: &'static str,
    run_id: i64,
    mut send: F,
) -> Result<T, CallError>
where
    F: FnMut(Client) -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    loop {
        let (generation, client) = session.client().await;
        let answer = tokio::select! {
            _ = fenced.cancelled() => return Err(CallError::Stopped),
            r = send(client) => r,
        };
        let e = match answer {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if e.is_lease_gone() {
            return Err(CallError::LeaseGone);
        }
        if e.status() == Some(401) {
            tracing::warn!(run_id, "runner token refused on {what}; registering again");
            if session.reregister(generation, fenced).await.is_err() {
                return Err(CallError::Stopped);
            }
            continue;
        }
        if !e.is_transient() {
            return Err(CallError::Refused(e));
        }
        let Some(d) = delays.next() else {
            return Err(CallError::Refused(e));
        };
        tracing::warn!(run_id, error = %e, retry_in = ?d, "{what} not delivered; will retry");
        tokio::select! {
            _ = fenced.cancelled() => return Err(CallError::Stopped),
            _ = tokio::time::sleep(d) => {}
        }
    }
}

/// Random bits for temp names (not for secrets).
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64 ^ std::process::id() as u64;
    }
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_cap_and_reset() {
        let (base, max) = (Duration::from_millis(100), Duration::from_millis(1000));
        let mut d = Delays::new(base, max);
        let first = d.next_delay();
        assert!(first >= base && first <= base * 2, "{first:?}");
        let mut last = first;
        for _ in 0..20 {
            last = d.next_delay();
            // backon's jitter adds at most one more delay on top of the cap
            assert!(last <= max * 2, "{last:?}");
        }
        assert!(last >= max, "the delay reaches the cap: {last:?}");
        d.reset();
        let again = d.next_delay();
        assert!(again <= base * 2, "reset starts over: {again:?}");
    }

    #[test]
    fn limited_delays_run_out() {
        let mut d = Delays::limited(Duration::from_millis(1), Duration::from_millis(4), 3);
        assert!(d.next().is_some());
        assert!(d.next().is_some());
        assert!(d.next().is_some());
        assert!(d.next().is_none(), "three delays, then give up");
        assert!(d.next_delay() > Duration::ZERO);
        d.reset();
        assert!(d.next().is_some());
    }
}
