//! The scheduler: turns schedules' cron ticks into runs, on every replica.
//!
//! Design note. Invariant: each tick of a schedule starts at most one run,
//! with any number of replicas and across restarts, and a control plane
//! that was down across ticks starts one run for the most recent missed
//! tick, never a flood. Every replica runs the same loop; none is elected.
//! A pass reads the due schedules (a bounded batch, from an index on
//! `next_due_at`), takes for each the most recent tick at or before now
//! that follows the last one processed ([`CronSchedule::latest_due`]: the
//! ticks missed before it are counted and skipped), and asks the store to
//! create the run and record the tick in one transaction, where the unique
//! `(schedule_id, scheduled_for)` of runs decides. Losing that race to
//! another replica is the normal case, not an error. A tick that cannot
//! run (the app has no version yet, the version refuses the input) is
//! recorded as processed without a run, so it is not retried forever.
//! The loop sleeps until the next due tick, at most [`MAX_SLEEP`], so
//! six-field (per-second) expressions fire on time and an idle control
//! plane costs one indexed query per second. Time comes from the injected
//! clock, so tests drive passes with [`tick_once`] after moving a manual
//! clock. Proven by `tests/schedules.rs` (catch-up, skips, restart of a
//! SQLite control plane) and `tests/schedules_replicas.rs` (three
//! PostgreSQL replicas, one SIGKILLed, one run per second, none twice).

use crate::routes::runs::{checked_input, DEFAULT_MAX_RETRIES};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use minitower_core::schedule::CronSchedule;
use minitower_store::{FireOutcome, FireTick, ScheduleRecord, StoreError, StoreResult};
use std::sync::Arc;
use std::time::Duration;

/// Schedules handled per store call.
const BATCH: i64 = 200;
/// Batches per pass at most, so one pass always ends.
const MAX_BATCHES: usize = 10;
/// Longest sleep between passes.
pub const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Missed ticks counted at most per fire (the count only feeds a metric).
const MAX_MISSED_COUNT: u64 = 10_000;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SchedulerReport {
    /// Runs this replica created.
    pub fired: usize,
    /// Ticks another replica (or an earlier pass) had already processed.
    pub already_done: usize,
    /// Ticks recorded without a run (no version, input refused, no
    /// environment).
    pub unrunnable: usize,
    /// Older ticks skipped because a later one was due (downtime).
    pub missed: u64,
}

/// One pass at the clock's current time; returns what it did and the next
/// due tick of any schedule (when to look again).
pub async fn tick_once(st: &AppState) -> StoreResult<(SchedulerReport, Option<DateTime<Utc>>)> {
    let now = st.now();
    let mut report = SchedulerReport::default();
    let mut next = None;
    for _ in 0..MAX_BATCHES {
        let (due, next_due) = st.store.due_schedules(now, BATCH).await?;
        next = next_due;
        let n = due.len();
        for s in &due {
            if let Err(e) = fire(st, s, now, &mut report).await {
                tracing::warn!(schedule_id = s.id, error = %e, "schedule tick failed; retried next pass");
            }
        }
        if (n as i64) < BATCH {
            break;
        }
    }
    Ok((report, next))
}

/// Fires the most recent due tick of `s`, if any.
async fn fire(
    st: &AppState,
    s: &ScheduleRecord,
    now: DateTime<Utc>,
    report: &mut SchedulerReport,
) -> StoreResult<()> {
    let cron = match CronSchedule::new(&s.cron, &s.timezone) {
        Ok(c) => c,
        Err(e) => {
            // Stored schedules were validated; a zone that left the tz
            // database would land here.
            tracing::error!(schedule_id = s.id, error = %e, "stored schedule no longer parses");
            return Ok(());
        }
    };
    let Some(tick) = cron.latest_due(s.last_tick_at, now) else {
        return Ok(());
    };
    let version = st
        .store
        .get_version(s.team_id, s.app_id, s.version_no)
        .await?;
    let Some(version) = version else {
        return skip(st, s, tick, "no_version", report).await;
    };
    let input = match checked_input(st, &version, s.input.clone()) {
        Ok(input) => input,
        Err(e) => {
            tracing::warn!(schedule_id = s.id, error = %e.message, "the version refuses the schedule's input");
            return skip(st, s, tick, "invalid_input", report).await;
        }
    };
    let outcome = st
        .store
        .fire_schedule_tick(FireTick {
            schedule_id: s.id,
            tick,
            version_id: version.id,
            input,
            max_retries: DEFAULT_MAX_RETRIES,
            now,
        })
        .await;
    let outcome = match outcome {
        // The schedule's environment (or version) is gone: no run can be
        // queued until it is back; retrying every pass would not help.
        Err(StoreError::NotFound(what)) => {
            tracing::warn!(
                schedule_id = s.id,
                missing = what,
                "schedule tick cannot run"
            );
            let reason = if what == "environment" {
                "no_environment"
            } else {
                "no_version"
            };
            return skip(st, s, tick, reason, report).await;
        }
        other => other?,
    };
    match outcome {
        FireOutcome::Fired(run) => {
            let missed = missed_between(&cron, s.last_tick_at, tick);
            report.fired += 1;
            report.missed += missed;
            let lag = (now - tick).num_milliseconds().max(0) as f64 / 1000.0;
            st.metrics.schedule_fired(&s.team, &s.app, lag, missed);
            st.metrics.run_created(&s.team, &s.app);
            st.notifier.queue_changed(&run.environment);
            tracing::info!(schedule_id = s.id, run_id = run.id, tick = %tick, missed, "schedule fired");
        }
        FireOutcome::AlreadyDone | FireOutcome::Stale => report.already_done += 1,
    }
    Ok(())
}

async fn skip(
    st: &AppState,
    s: &ScheduleRecord,
    tick: DateTime<Utc>,
    reason: &'static str,
    report: &mut SchedulerReport,
) -> StoreResult<()> {
    if st.store.skip_schedule_tick(s.id, tick).await? {
        report.unrunnable += 1;
        st.metrics.schedule_skipped(&s.team, &s.app, reason, 1);
        tracing::warn!(schedule_id = s.id, tick = %tick, reason, "schedule tick skipped");
    }
    Ok(())
}

/// Ticks strictly between `after` and `tick` (they were missed), bounded.
fn missed_between(cron: &CronSchedule, after: DateTime<Utc>, tick: DateTime<Utc>) -> u64 {
    let mut n = 0;
    let mut cursor = after;
    while n < MAX_MISSED_COUNT {
        match cron.next_after(cursor) {
            Some(t) if t < tick => {
                n += 1;
                cursor = t;
            }
            _ => break,
        }
    }
    n
}

/// How long to sleep before the next pass: until the next due tick (a
/// millisecond past it, so the pass finds it due), at most [`MAX_SLEEP`].
fn sleep_for(next: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Duration {
    next.and_then(|n| (n - now + chrono::Duration::milliseconds(1)).to_std().ok())
        .unwrap_or(MAX_SLEEP)
        .min(MAX_SLEEP)
}

/// Runs passes until shutdown.
pub async fn run(st: Arc<AppState>) {
    loop {
        let wait = match tick_once(&st).await {
            Ok((_, next)) => sleep_for(next, st.now()),
            Err(e) => {
                tracing::error!(error = %e, "scheduler pass failed");
                MAX_SLEEP
            }
        };
        tokio::select! {
            _ = st.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(secs)
    }

    #[test]
    fn missed_ticks_are_counted_between_the_last_and_the_fired_one() {
        let every_minute = CronSchedule::new("* * * * *", "UTC").unwrap();
        assert_eq!(missed_between(&every_minute, at(0), at(60)), 0);
        assert_eq!(missed_between(&every_minute, at(0), at(300)), 4);
        let every_second = CronSchedule::new("* * * * * *", "UTC").unwrap();
        assert_eq!(
            missed_between(&every_second, at(0), at(100_000)),
            MAX_MISSED_COUNT,
            "bounded"
        );
    }

    #[test]
    fn the_loop_sleeps_until_the_next_tick_at_most_a_second() {
        let now = at(0);
        assert_eq!(sleep_for(None, now), MAX_SLEEP);
        assert_eq!(sleep_for(Some(at(3600)), now), MAX_SLEEP);
        assert_eq!(
            sleep_for(Some(now + chrono::Duration::milliseconds(250)), now),
            Duration::from_millis(251)
        );
        // The store only reports ticks after `now`; a skewed earlier one
        // waits the longest sleep rather than spinning.
        assert_eq!(
            sleep_for(Some(now - chrono::Duration::seconds(5)), now),
            MAX_SLEEP
        );
    }
}
