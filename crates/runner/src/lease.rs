//! Keeping a lease alive, learning about cancel, and self-fencing.
//!
//! Heartbeats start the moment a run is leased (so environment setup is
//! covered) and go every TTL/3 or 5 s, whichever is shorter. A 410 from any
//! call means the lease is gone: the attempt is fenced at once. When the
//! control plane cannot be reached the keeper retries with backoff and fences
//! the attempt itself once the lease would have expired without a successful
//! heartbeat, so two runners never run the same attempt for long.
//!
//! The local deadline is `time the last successful heartbeat was sent + TTL`,
//! which needs no clock agreement with the server and errs on the early side.

use crate::backoff::Backoff;
use minitower_client::Client;
use minitower_core::api::Lease;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the control plane told an attempt, shared by its tasks.
#[derive(Clone, Default)]
pub struct Signals {
    /// The run's cancel was requested (heartbeat or log-batch ack).
    pub cancel: CancellationToken,
    /// The lease is gone or presumed gone: kill everything, report nothing.
    pub fenced: CancellationToken,
}

/// Heartbeats for one attempt until stopped or fenced.
pub struct LeaseKeeper {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Longest pause between heartbeats.
const MAX_INTERVAL: Duration = Duration::from_secs(5);

impl LeaseKeeper {
    /// Starts heartbeating; `leased_at` is when the lease answer arrived.
    pub fn start(
        client: Client,
        lease: &Lease,
        leased_at: Instant,
        signals: Signals,
    ) -> LeaseKeeper {
        let ttl = lease_ttl(lease);
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep(
            client,
            lease.run_id,
            lease.lease_token.clone(),
            ttl,
            leased_at,
            signals,
            stop.clone(),
        ));
        LeaseKeeper { stop, task }
    }

    /// Stops heartbeating (after the result was acknowledged or the attempt was fenced).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The lease's time to live as seen at lease time (at least one second).
pub fn lease_ttl(lease: &Lease) -> Duration {
    let ms = (lease.lease_expires_at - chrono::Utc::now()).num_milliseconds();
    Duration::from_millis(ms.max(1000) as u64)
}

/// Pause between heartbeats for a TTL.
pub fn interval_for(ttl: Duration) -> Duration {
    (ttl / 3).min(MAX_INTERVAL).max(Duration::from_millis(100))
}

async fn keep(
    client: Client,
    run_id: i64,
    token: String,
    ttl: Duration,
    leased_at: Instant,
    signals: Signals,
    stop: CancellationToken,
) {
    let interval = interval_for(ttl);
    let mut deadline = leased_at + ttl;
    let mut next = leased_at + interval;
    let mut backoff = Backoff::new(Duration::from_millis(200), interval);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = signals.fenced.cancelled() => return,
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!(run_id, "lease expired without a successful heartbeat; fencing the attempt");
                signals.fenced.cancel();
                return;
            }
            _ = tokio::time::sleep_until(next) => {}
        }
        let sent = Instant::now();
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!(run_id, "lease expired while a heartbeat was pending; fencing the attempt");
                signals.fenced.cancel();
                return;
            }
            r = client.heartbeat(run_id, &token) => r,
        };
        match result {
            Ok(state) => {
                backoff.reset();
                deadline = sent + ttl;
                next = Instant::now() + interval;
                if state.cancel_requested && !signals.cancel.is_cancelled() {
                    tracing::info!(run_id, "cancel requested");
                    signals.cancel.cancel();
                }
            }
            Err(e) if e.is_lease_gone() => {
                tracing::warn!(run_id, "lease gone (410); fencing the attempt");
                signals.fenced.cancel();
                return;
            }
            Err(e) => {
                let d = backoff.next_delay();
                tracing::warn!(run_id, error = %e, retry_in = ?d, "heartbeat failed");
                next = Instant::now() + d;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(
            interval_for(Duration::from_secs(60)),
            Duration::from_secs(5)
        );
        assert_eq!(interval_for(Duration::from_secs(3)), Duration::from_secs(1));
    }
}
