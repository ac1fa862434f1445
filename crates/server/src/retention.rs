//! Retention: deletes finished runs older than `MINITOWER_RETENTION` and
//! collects stored artifacts no version references, on every replica.
//!
//! Design note. Invariant: only a terminal run whose `finished_at` is
//! older than the retention is ever deleted, together with everything that
//! refers to it (attempts, log lines, webhook events and their deliveries);
//! a live run (queued, leased, running, cancelling) and its logs are never
//! touched, nor is a run whose webhook event is still pending for an
//! enabled endpoint or the newest run of an app (so no id or run number is
//! handed out twice), and the
//! writer is never held for long: a pass is a series of transactions of at
//! most `MINITOWER_RETENTION_BATCH` runs and 100000 log lines, with a
//! pause between them in which queued writes go first. The store decides
//! what goes (`Store::purge_finished_runs`, one SQL text for SQLite and
//! PostgreSQL, `SKIP LOCKED` between replicas). Afterwards SQLite returns
//! the freed pages to the file system in bounded steps
//! (`Store::reclaim_space`: incremental vacuum); PostgreSQL's autovacuum
//! makes them reusable by itself. An artifact is deleted only when no
//! version references it and it was last committed more than
//! `MINITOWER_ARTIFACT_GC_GRACE` ago, checked again at the moment of
//! deleting: an upload commits its artifact before its version row, and a
//! commit of content already stored counts as a new commit
//! (`objects.rs`). Time comes from the injected clock. Proven by the
//! conformance tests `retention` (both backends: what goes and what stays,
//! bounded batches, numbers never reused, racing purges),
//! `store-sqlite/tests/retention.rs` (thousands of old runs: the file
//! shrinks, live runs and their logs are intact) and
//! `server/tests/retention.rs` (through the API and metrics, writes during
//! a purge, the collector against an upload of the same content).

use crate::objects::StoredObject;
use crate::state::AppState;
use minitower_store::{PurgeLimits, Purged, StoreError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Log lines per purge transaction at most.
pub const MAX_LOG_LINES_PER_BATCH: i64 = 100_000;
/// Pause between two purge transactions (and vacuum steps): writers that
/// queued behind one go before the next.
const PAUSE: Duration = Duration::from_millis(10);
/// Hashes checked against the versions per store call.
const HASHES_PER_CALL: usize = 500;

/// What one retention pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    pub purged: Purged,
    /// Transactions that deleted something.
    pub batches: usize,
    /// Calls to `Store::reclaim_space` afterwards (each a bounded step).
    pub reclaim_steps: usize,
}

/// What one collector pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ArtifactReport {
    /// Objects older than the grace period.
    pub candidates: usize,
    /// Of those, referenced by a version (kept).
    pub referenced: usize,
    pub collected: usize,
    pub bytes: u64,
}

/// Why the collector stopped.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("artifact store: {0}")]
    Objects(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One retention pass at the clock's time: purges batch after batch until
/// nothing is left (or shutdown), then reclaims the space. A no-op without
/// `MINITOWER_RETENTION`.
pub async fn purge_once(st: &AppState) -> Result<RetentionReport, StoreError> {
    let mut report = RetentionReport::default();
    let Some(keep) = st.config.retention else {
        return Ok(report);
    };
    let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    let Some(cutoff) = st.now().checked_sub_signed(keep) else {
        return Ok(report); // nothing finished that long ago
    };
    let limits = PurgeLimits {
        max_runs: st.config.retention_batch.clamp(1, i64::MAX as u64) as i64,
        max_log_lines: MAX_LOG_LINES_PER_BATCH,
    };
    loop {
        let purged = st.store.purge_finished_runs(cutoff, limits).await?;
        if purged.runs == 0 {
            break;
        }
        st.metrics.retention_purged(purged.runs, purged.log_lines);
        report.purged.add(&purged);
        report.batches += 1;
        if !pause(st).await {
            return Ok(report);
        }
    }
    if report.batches > 0 {
        tracing::info!(
            runs = report.purged.runs,
            log_lines = report.purged.log_lines,
            batches = report.batches,
            cutoff = %cutoff,
            "retention deleted old runs"
        );
    }
    let mut left = st.store.reclaim_space().await?;
    let mut steps = 1;
    while left > 0 && pause(st).await {
        let now = st.store.reclaim_space().await?;
        steps += 1;
        if now >= left {
            break; // no progress: leave the rest to the next pass
        }
        left = now;
    }
    report.reclaim_steps = steps;
    Ok(report)
}

/// One collector pass: deletes the artifacts no version references that
/// were last committed before the clock's time minus the grace period.
pub async fn collect_artifacts_once(st: &AppState) -> Result<ArtifactReport, CollectError> {
    let grace =
        chrono::Duration::from_std(st.config.artifact_gc_grace).unwrap_or(chrono::Duration::MAX);
    let Some(cutoff) = st.now().checked_sub_signed(grace) else {
        return Ok(ArtifactReport::default());
    };
    let cutoff = SystemTime::from(cutoff);
    let old = st.objects.list_before(cutoff).await?;
    let mut report = ArtifactReport {
        candidates: old.len(),
        ..Default::default()
    };
    for chunk in old.chunks(HASHES_PER_CALL) {
        if st.shutdown.is_cancelled() {
            break;
        }
        let hashes: Vec<String> = chunk
            .iter()
            .map(|o| o.sha256.to_ascii_lowercase())
            .collect();
        let used = st.store.referenced_artifacts(&hashes).await?;
        for o in chunk {
            if used.contains(&o.sha256.to_ascii_lowercase()) {
                report.referenced += 1;
            } else if collect(st, o, cutoff).await? {
                report.collected += 1;
                report.bytes += o.size;
            }
        }
    }
    if report.collected > 0 {
        tracing::info!(
            artifacts = report.collected,
            bytes = report.bytes,
            "deleted artifacts no version references"
        );
    }
    Ok(report)
}

/// Deletes one unreferenced object unless it was committed since `cutoff`.
async fn collect(st: &AppState, o: &StoredObject, cutoff: SystemTime) -> std::io::Result<bool> {
    let deleted = st.objects.delete_if_before(&o.sha256, cutoff).await?;
    if deleted {
        st.metrics.artifact_collected(o.size);
        tracing::debug!(sha256 = %o.sha256, bytes = o.size, "collected artifact");
    }
    Ok(deleted)
}

/// Sleeps [`PAUSE`]; false when shutdown began.
async fn pause(st: &AppState) -> bool {
    tokio::select! {
        _ = st.shutdown.cancelled() => false,
        _ = tokio::time::sleep(PAUSE) => true,
    }
}

/// Runs both passes every `MINITOWER_RETENTION_INTERVAL` (the first at
/// start) until shutdown; returns at once when neither is enabled.
pub async fn run(st: Arc<AppState>) {
    if st.config.retention.is_none() && !st.config.artifact_gc {
        return;
    }
    let mut tick = tokio::time::interval(st.config.retention_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = st.shutdown.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = purge_once(&st).await {
                    tracing::error!(error = %e, "retention pass failed");
                }
                if st.config.artifact_gc && !st.shutdown.is_cancelled() {
                    if let Err(e) = collect_artifacts_once(&st).await {
                        tracing::error!(error = %e, "artifact collection failed");
                    }
                }
            }
        }
    }
}
