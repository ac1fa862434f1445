//! The reaper: expires attempts whose lease passed and settles their runs
//! (requeue, dead or cancelled), and marks silent runners offline.

use crate::state::AppState;
use minitower_core::RunStatus;
use minitower_store::StoreResult;
use std::sync::Arc;

/// Attempts handled per store call.
const BATCH: i64 = 500;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReapReport {
    pub retried: usize,
    pub dead: usize,
    pub cancelled: usize,
    pub runners_offline: i64,
}

/// One pass at the clock's current time.
pub async fn reap_once(st: &AppState) -> StoreResult<ReapReport> {
    let now = st.now();
    let mut report = ReapReport::default();
    loop {
        let reaped = st.store.reap_expired(now, BATCH).await?;
        let n = reaped.len();
        for r in reaped {
            match r.run_status {
                RunStatus::Queued => {
                    report.retried += 1;
                    st.metrics.run_retried(&r.labels.team, &r.labels.app);
                }
                RunStatus::Dead => report.dead += 1,
                RunStatus::Cancelled => report.cancelled += 1,
                _ => {}
            }
            tracing::info!(run_id = r.labels.run_id, attempt_no = r.attempt_no, outcome = %r.run_status, "lease expired");
            st.run_transitioned(r.labels.run_id, &r.labels.environment, r.finished.as_ref());
        }
        if (n as i64) < BATCH {
            break;
        }
    }
    let ttl = chrono::Duration::from_std(st.config.lease_ttl)
        .unwrap_or_else(|_| chrono::Duration::seconds(60));
    report.runners_offline = st.store.mark_stale_runners_offline(now - ttl * 3).await?;
    Ok(report)
}

/// Runs passes every `MINITOWER_EXPIRY_CHECK_INTERVAL` until shutdown.
pub async fn run(st: Arc<AppState>) {
    let mut tick = tokio::time::interval(st.config.expiry_check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = st.shutdown.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = reap_once(&st).await {
                    tracing::error!(error = %e, "reaper pass failed");
                }
            }
        }
    }
}
