//! Storage types of schedules (issue 12): what the server hands the store
//! and what it gets back. The SQL lives once in `minitower-store-sql`
//! (`schedules.rs`); the conformance tests in `conformance/schedules.rs`.

use chrono::{DateTime, Utc};
use minitower_core::api::ScheduleSource;
use serde_json::Value;

/// A schedule to insert. The store computes its first due tick from the
/// cron expression and zone (already validated by the caller).
#[derive(Debug, Clone)]
pub struct NewSchedule {
    pub team_id: i64,
    pub app_id: i64,
    pub cron: String,
    pub timezone: String,
    /// A JSON object.
    pub input: Value,
    /// `None`: the app's latest version when a tick fires.
    pub version_no: Option<i64>,
    pub environment: String,
    pub enabled: bool,
    pub source: ScheduleSource,
    pub now: DateTime<Utc>,
}

/// A change to a schedule; `None` fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct ScheduleUpdate {
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub input: Option<Value>,
    /// `Some(None)`: run the latest version again.
    pub version_no: Option<Option<i64>>,
    pub environment: Option<String>,
    pub enabled: Option<bool>,
}

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRecord {
    pub id: i64,
    pub team_id: i64,
    /// The team's slug.
    pub team: String,
    pub app_id: i64,
    /// The app's slug.
    pub app: String,
    pub cron: String,
    pub timezone: String,
    pub input: Value,
    pub version_no: Option<i64>,
    pub environment: String,
    pub enabled: bool,
    pub source: ScheduleSource,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Ticks at or before this instant are done: fired, skipped, or before
    /// the schedule was created or last resumed.
    pub last_tick_at: DateTime<Utc>,
    /// The first tick after `last_tick_at`; `None` while paused.
    pub next_due_at: Option<DateTime<Utc>>,
}

/// One tick to fire: the run it starts and the tick it is for.
#[derive(Debug, Clone)]
pub struct FireTick {
    pub schedule_id: i64,
    /// The tick (a cron instant); the run's `scheduled_for`.
    pub tick: DateTime<Utc>,
    /// The version the run uses (resolved and its input checked by the caller).
    pub version_id: i64,
    /// The run's input, schema defaults applied.
    pub input: Value,
    /// Retries after a lost runner, as for runs created by hand.
    pub max_retries: i64,
    pub now: DateTime<Utc>,
}

/// What firing a tick did.
#[derive(Debug, Clone, PartialEq)]
pub enum FireOutcome {
    /// This call created the tick's run.
    Fired(Box<minitower_core::api::Run>),
    /// The tick was already processed (another replica, or before a
    /// restart): nothing changed. Losing this race is normal.
    AlreadyDone,
    /// The schedule is gone, paused, or its cron or version changed since
    /// it was read: nothing changed.
    Stale,
}
