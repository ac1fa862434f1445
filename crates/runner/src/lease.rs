//! Keeping a lease alive, learning about cancel, and self-fencing.
//!
//! Heartbeats start the moment a run is leased (so environment setup is
//! covered) and go every TTL/3 or 5 s, whichever is shorter. A 410 from any
//! call means the lease is gone: the attempt is fenced at once.
//!
//! # The fencing deadline
//! The server answers every lease, start and heartbeat with the TTL as a
//! duration (`ttl_ms`). The runner's deadline is
//! `time the acknowledged call was *sent* + TTL − margin`: the server handled
//! the call after it was sent, so its `lease_expires_at` (its own clock, or
//! the database's) lies later in real time, and no clock agreement between
//! hosts is needed, only bounded clock-rate drift, which the margin covers
//! together with the time a kill takes ([`margin_for`]).
//!
//! Before the first acknowledged start or heartbeat no process of the
//! attempt exists, so the deadline is only enforced once one was
//! acknowledged ([`Fence::acked`]); until then the keeper gives up at
//! `lease answer received + TTL`. The strict deadline is published on a
//! watch channel; the attempt forwards it to its supervisor, which kills the
//! script on its own when the deadline passes (even with the runner frozen).

use crate::registration::Session;
use crate::retry::Delays;
use minitower_core::api::Lease;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the control plane told an attempt, shared by its tasks.
#[derive(Clone)]
pub struct Signals {
    /// The run's cancel was requested (heartbeat or log-batch ack).
    pub cancel: CancellationToken,
    /// The lease is gone or presumed gone: kill everything, report nothing.
    pub fenced: CancellationToken,
    /// The fencing deadline.
    pub fence: Arc<Fence>,
}

impl Signals {
    /// Signals for a lease with this TTL.
    pub fn new(ttl: Duration) -> Signals {
        Signals {
            cancel: CancellationToken::new(),
            fenced: CancellationToken::new(),
            fence: Arc::new(Fence::new(ttl)),
        }
    }
}

/// The strict fencing deadline of one attempt.
pub struct Fence {
    ttl: Duration,
    margin: Duration,
    deadline: watch::Sender<Option<Instant>>,
}

impl Fence {
    fn new(ttl: Duration) -> Fence {
        Fence {
            ttl,
            margin: margin_for(ttl),
            deadline: watch::channel(None).0,
        }
    }

    /// A start or heartbeat sent at `sent` was acknowledged.
    pub fn acked(&self, sent: Instant) {
        let d = sent + self.ttl.saturating_sub(self.margin);
        self.deadline.send_if_modified(|cur| match cur {
            Some(c) if *c >= d => false,
            _ => {
                *cur = Some(d);
                true
            }
        });
    }

    /// The deadline, once a start or heartbeat was acknowledged.
    pub fn deadline(&self) -> Option<Instant> {
        *self.deadline.borrow()
    }

    /// Follows deadline changes.
    pub fn subscribe(&self) -> watch::Receiver<Option<Instant>> {
        self.deadline.subscribe()
    }
}

/// Heartbeats for one attempt until stopped or fenced.
pub struct LeaseKeeper {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Longest pause between heartbeats.
const MAX_INTERVAL: Duration = Duration::from_secs(5);

impl LeaseKeeper {
    /// Starts heartbeating; `answered` is when the lease answer arrived.
    /// `beat_now` sends the first heartbeat at once instead of an interval
    /// later (to set the fencing deadline when nothing else will).
    pub fn start(
        session: Arc<Session>,
        lease: &Lease,
        answered: Instant,
        signals: Signals,
        beat_now: bool,
    ) -> LeaseKeeper {
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep(
            session,
            lease.run_id,
            lease.lease_token.clone(),
            answered,
            beat_now,
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

/// The lease's time to live: `ttl_ms` from the server, or for servers that
/// do not send it, what is left until `lease_expires_at` on our clock.
pub fn lease_ttl(lease: &Lease) -> Duration {
    if let Some(ms) = lease.ttl_ms.filter(|ms| *ms > 0) {
        return Duration::from_millis(ms);
    }
    let ms = (lease.lease_expires_at - chrono::Utc::now()).num_milliseconds();
    Duration::from_millis(ms.max(1000) as u64)
}

/// The safety margin for a TTL: a tenth of it, between 200 ms and 5 s (and
/// never more than a third, so a heartbeat always lands before the deadline).
pub fn margin_for(ttl: Duration) -> Duration {
    (ttl / 10)
        .clamp(Duration::from_millis(200), Duration::from_secs(5))
        .min(ttl / 3)
}

/// Pause between heartbeats for a TTL.
pub fn interval_for(ttl: Duration) -> Duration {
    (ttl / 3).min(MAX_INTERVAL).max(Duration::from_millis(100))
}

async fn keep(
    session: Arc<Session>,
    run_id: i64,
    token: String,
    answered: Instant,
    beat_now: bool,
    signals: Signals,
    stop: CancellationToken,
) {
    let ttl = signals.fence.ttl;
    let interval = interval_for(ttl);
    let lenient = answered + ttl;
    let mut changes = signals.fence.subscribe();
    let mut next = if beat_now {
        answered
    } else {
        answered + interval
    };
    let mut backoff = Delays::new(Duration::from_millis(200), interval);
    loop {
        let deadline = signals.fence.deadline().unwrap_or(lenient);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = signals.fenced.cancelled() => return,
            _ = changes.changed() => continue,
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!(run_id, "lease deadline passed without a successful heartbeat; fencing the attempt");
                signals.fenced.cancel();
                return;
            }
            _ = tokio::time::sleep_until(next) => {}
        }
        let sent = Instant::now();
        let (generation, client) = session.client().await;
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(signals.fence.deadline().unwrap_or(lenient)) => {
                tracing::warn!(run_id, "lease deadline passed while a heartbeat was pending; fencing the attempt");
                signals.fenced.cancel();
                return;
            }
            r = client.heartbeat(run_id, &token) => r,
        };
        match result {
            Ok(state) => {
                backoff.reset();
                signals.fence.acked(sent);
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
            Err(e) if e.status() == Some(401) => {
                // The runner token was rotated: register again, then heartbeat
                // at once with the new token (the deadline still holds meanwhile).
                tracing::warn!(
                    run_id,
                    "runner token refused on heartbeat; registering again"
                );
                let _ = session.reregister(generation, &signals.fenced).await;
                next = Instant::now();
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

    #[test]
    fn margins() {
        assert_eq!(margin_for(Duration::from_secs(60)), Duration::from_secs(5));
        assert_eq!(
            margin_for(Duration::from_secs(3)),
            Duration::from_millis(300)
        );
        assert_eq!(margin_for(Duration::from_secs(600)), Duration::from_secs(5));
        // Never more than a third of a tiny TTL.
        assert_eq!(
            margin_for(Duration::from_millis(300)),
            Duration::from_millis(100)
        );
    }

    #[tokio::test]
    async fn the_deadline_starts_from_the_send_time_and_only_grows() {
        let f = Fence::new(Duration::from_secs(3));
        assert_eq!(f.deadline(), None);
        let t0 = Instant::now();
        f.acked(t0 + Duration::from_secs(1));
        assert_eq!(f.deadline(), Some(t0 + Duration::from_millis(3700)));
        // An older acknowledgement (answers out of order) never shortens it.
        f.acked(t0);
        assert_eq!(f.deadline(), Some(t0 + Duration::from_millis(3700)));
    }
}
