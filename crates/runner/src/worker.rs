//! The lease loop: one per concurrency slot.
//!
//! Each loop long-polls for a lease (so a waiting runner gets new work at
//! once), runs the attempt to its end, and asks again; while the queue has
//! work, the attempt's result brings the next lease and the loop runs it
//! without a lease call of its own. The poll interval is
//! only the pause after a failed call. A 401 means the runner token was
//! rotated or revoked: register again and carry on.

use crate::attempt::{self, Shared};
use crate::registration::Session;
use crate::RunnerError;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long one lease call waits for work on the server.
pub const LEASE_WAIT: Duration = Duration::from_secs(25);

/// Leases and runs attempts until `stop` is cancelled; the attempt in hand is
/// always finished first (its own cancellation comes from `shared.force`).
pub async fn lease_loop(
    slot: usize,
    shared: Arc<Shared>,
    session: Arc<Session>,
    stop: CancellationToken,
) -> Result<(), RunnerError> {
    // A run leased with the previous one's result is run even when the
    // stop came meanwhile, as one leased just before it would be.
    let mut next: attempt::Next = None;
    loop {
        if let Some((lease, call)) = next.take() {
            next = attempt::run(shared.clone(), session.clone(), slot, lease, call, &stop).await;
            continue;
        }
        if stop.is_cancelled() {
            break;
        }
        let (generation, client) = session.client().await;
        // A lease granted while this call is abandoned is not lost for good:
        // it expires and the run is retried.
        let sent = Instant::now();
        let result = tokio::select! {
            _ = stop.cancelled() => break,
            r = client.lease_and_start(LEASE_WAIT) => r,
        };
        match result {
            Ok(Some(lease)) => {
                let call = attempt::LeaseCall {
                    sent,
                    answered: Instant::now(),
                };
                next =
                    attempt::run(shared.clone(), session.clone(), slot, lease, call, &stop).await;
            }
            Ok(None) => {}
            Err(e) if e.status() == Some(401) => {
                tracing::warn!(slot, "runner token refused (401)");
                match session.reregister(generation, &stop).await {
                    Ok(()) => {}
                    Err(RunnerError::Interrupted) => break,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => {
                tracing::warn!(slot, error = %e, retry_in = ?shared.config.poll_interval, "lease call failed");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(shared.config.poll_interval) => {}
                }
            }
        }
    }
    Ok(())
}
