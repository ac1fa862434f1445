//! Schedules: cron ticks that start runs (issue 12).
//!
//! Design note. The invariant: a tick starts at most one run, whatever
//! number of replicas fire it and however often the control plane restarts.
//! Two facts keep it, both in the database: the run a tick starts carries
//! `(schedule_id, scheduled_for)`, UNIQUE in `runs`; and the schedule row
//! records the last tick processed (`last_tick_at`), advanced in the same
//! transaction as the run is inserted, under the schedule's row lock. A
//! replica that loses the race finds the tick processed (or the index
//! refuses the insert) and changes nothing. Locks are taken app first, then
//! schedule, the order a deploy's Towerfile sync uses, so the two never
//! deadlock. `next_due_at` (first tick after `last_tick_at`, NULL while
//! paused) is computed here from the cron expression, so every writer keeps
//! the due scan's index right. Proven by the conformance tests in
//! `minitower-store`'s `conformance/schedules.rs` (fire-tick idempotence,
//! racing fires) on both backends, and by the server's
//! `tests/schedules_replicas.rs` (three PostgreSQL replicas, a SIGKILL).

use crate::apps::lock_app;
use crate::db::{self, get, ms};
use crate::runs::{insert_run, version_defaults};
use crate::{SqlStore, Tx};
use chrono::{DateTime, Utc};
use minitower_core::api::{RunEvent, ScheduleSource};
use minitower_core::schedule::CronSchedule;
use minitower_core::towerfile::ScheduleSpec;
use minitower_store::{
    FireOutcome, FireTick, NewRun, NewSchedule, ScheduleRecord, ScheduleUpdate, StoreError,
    StoreResult,
};
use serde_json::Value;
use sqlx::any::AnyRow;

const SELECT: &str = "SELECT s.id, s.team_id, t.slug AS team, s.app_id, a.slug AS app, \
     s.cron, s.timezone, s.input, s.version_no, s.environment, s.enabled, s.source, \
     s.created_at, s.updated_at, s.last_tick_at, s.next_due_at \
     FROM schedules s JOIN apps a ON a.id = s.app_id JOIN teams t ON t.id = s.team_id";

fn record(row: &AnyRow) -> StoreResult<ScheduleRecord> {
    let source: String = get(row, "source")?;
    Ok(ScheduleRecord {
        id: get(row, "id")?,
        team_id: get(row, "team_id")?,
        team: get(row, "team")?,
        app_id: get(row, "app_id")?,
        app: get(row, "app")?,
        cron: get(row, "cron")?,
        timezone: get(row, "timezone")?,
        input: db::json(row, "input")?,
        version_no: get(row, "version_no")?,
        environment: get(row, "environment")?,
        enabled: db::flag(row, "enabled")?,
        source: ScheduleSource::parse(&source)
            .ok_or_else(|| StoreError::Database(format!("schedules.source: {source:?}")))?,
        created_at: db::time(row, "created_at")?,
        updated_at: db::time(row, "updated_at")?,
        last_tick_at: db::time(row, "last_tick_at")?,
        next_due_at: db::time_opt(row, "next_due_at")?,
    })
}

/// The cron of a stored or new schedule. Callers validate first; a bad one
/// here is refused as a conflict rather than stored.
fn cron(expr: &str, timezone: &str) -> StoreResult<CronSchedule> {
    CronSchedule::new(expr, timezone).map_err(|e| StoreError::Conflict(e.to_string()))
}

/// The first tick after `after` in milliseconds, or `None` when paused (or
/// the expression never fires again).
fn next_due(c: &CronSchedule, enabled: bool, after: DateTime<Utc>) -> Option<i64> {
    enabled.then(|| c.next_after(after)).flatten().map(ms)
}

async fn load(tx: &mut Tx, id: i64) -> StoreResult<ScheduleRecord> {
    let row = sqlx::query(&format!("{SELECT} WHERE s.id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db::err)?
        .ok_or(StoreError::NotFound("schedule"))?;
    record(&row)
}

/// `NotFound("version")` unless the app has version `n`.
async fn check_version(tx: &mut Tx, app_id: i64, n: Option<i64>) -> StoreResult<()> {
    let Some(n) = n else { return Ok(()) };
    let found: Option<i64> =
        sqlx::query_scalar("SELECT id FROM versions WHERE app_id = $1 AND version_no = $2")
            .bind(app_id)
            .bind(n)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db::err)?;
    found.map(|_| ()).ok_or(StoreError::NotFound("version"))
}

/// Inserts a schedule whose ticks count from `now`; returns its id.
async fn insert(s: &SqlStore, tx: &mut Tx, n: &NewSchedule) -> StoreResult<i64> {
    let c = cron(&n.cron, &n.timezone)?;
    if !n.input.is_object() {
        return Err(StoreError::Conflict(
            "schedule input must be a JSON object".into(),
        ));
    }
    sqlx::query_scalar(
        "INSERT INTO schedules (team_id, app_id, cron, timezone, input, version_no, environment, \
         enabled, source, created_at, updated_at, last_tick_at, next_due_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $10, $11) RETURNING id",
    )
    .bind(n.team_id)
    .bind(n.app_id)
    .bind(c.expr())
    .bind(&n.timezone)
    .bind(s.dialect.text(&n.input.to_string()).as_ref())
    .bind(n.version_no)
    .bind(&n.environment)
    .bind(n.enabled)
    .bind(n.source.as_str())
    .bind(ms(n.now))
    .bind(next_due(&c, n.enabled, n.now))
    .fetch_one(&mut **tx)
    .await
    .map_err(db::err)
}

pub(crate) async fn create_schedule(s: &SqlStore, n: NewSchedule) -> StoreResult<ScheduleRecord> {
    let mut tx = s.write().await?;
    if !lock_app(s, &mut tx, n.team_id, n.app_id).await? {
        return Err(StoreError::NotFound("app"));
    }
    check_version(&mut tx, n.app_id, n.version_no).await?;
    crate::environments::hold_environment(s, &mut tx, n.team_id, &n.environment).await?;
    let id = insert(s, &mut tx, &n).await?;
    let rec = load(&mut tx, id).await?;
    tx.commit().await.map_err(db::err)?;
    Ok(rec)
}

pub(crate) async fn list_schedules(
    s: &SqlStore,
    team_id: i64,
    app_id: i64,
) -> StoreResult<Vec<ScheduleRecord>> {
    let rows = sqlx::query(&format!(
        "{SELECT} WHERE s.team_id = $1 AND s.app_id = $2 ORDER BY s.id"
    ))
    .bind(team_id)
    .bind(app_id)
    .fetch_all(&mut s.read_conn().await?)
    .await
    .map_err(db::err)?;
    rows.iter().map(record).collect()
}

pub(crate) async fn get_schedule(
    s: &SqlStore,
    team_id: i64,
    id: i64,
) -> StoreResult<Option<ScheduleRecord>> {
    let row = sqlx::query(&format!("{SELECT} WHERE s.id = $1 AND s.team_id = $2"))
        .bind(id)
        .bind(team_id)
        .fetch_optional(&mut s.read_conn().await?)
        .await
        .map_err(db::err)?;
    row.as_ref().map(record).transpose()
}

/// Locks a schedule row of the team (any team with `None`) for the rest of
/// the transaction and reads it.
async fn lock(
    s: &SqlStore,
    tx: &mut Tx,
    id: i64,
    team_id: Option<i64>,
) -> StoreResult<Option<ScheduleRecord>> {
    let locked: Option<i64> = sqlx::query_scalar(&s.sql(
        "SELECT id FROM schedules WHERE id = $1 AND (CAST($2 AS BIGINT) IS NULL OR team_id = $2) \
         FOR UPDATE",
    ))
    .bind(id)
    .bind(team_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db::err)?;
    match locked {
        Some(id) => load(tx, id).await.map(Some),
        None => Ok(None),
    }
}

pub(crate) async fn update_schedule(
    s: &SqlStore,
    team_id: i64,
    id: i64,
    u: ScheduleUpdate,
    now: DateTime<Utc>,
) -> StoreResult<ScheduleRecord> {
    let mut tx = s.write().await?;
    let old = lock(s, &mut tx, id, Some(team_id))
        .await?
        .ok_or(StoreError::NotFound("schedule"))?;
    apply_update(s, &mut tx, &old, u, now).await?;
    let rec = load(&mut tx, id).await?;
    tx.commit().await.map_err(db::err)?;
    Ok(rec)
}

/// Writes `u` over the locked schedule `old`. A new expression or zone, or
/// a resume, starts counting ticks at `now`: ticks that fell while paused,
/// or under the old timing, never fire. A pause clears the due tick.
async fn apply_update(
    s: &SqlStore,
    tx: &mut Tx,
    old: &ScheduleRecord,
    u: ScheduleUpdate,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let expr = u.cron.unwrap_or_else(|| old.cron.clone());
    let timezone = u.timezone.unwrap_or_else(|| old.timezone.clone());
    let enabled = u.enabled.unwrap_or(old.enabled);
    let c = cron(&expr, &timezone)?;
    let input = u.input.unwrap_or_else(|| old.input.clone());
    if !input.is_object() {
        return Err(StoreError::Conflict(
            "schedule input must be a JSON object".into(),
        ));
    }
    let version_no = u.version_no.unwrap_or(old.version_no);
    check_version(tx, old.app_id, version_no).await?;
    let environment = u.environment.unwrap_or_else(|| old.environment.clone());
    if environment != old.environment {
        crate::environments::hold_environment(s, tx, old.team_id, &environment).await?;
    }
    let retimed = c.expr() != old.cron || timezone != old.timezone || (enabled && !old.enabled);
    let last_tick = if retimed {
        old.last_tick_at.max(now)
    } else {
        old.last_tick_at
    };
    sqlx::query(
        "UPDATE schedules SET cron = $1, timezone = $2, input = $3, version_no = $4, \
         environment = $5, enabled = $6, updated_at = $7, last_tick_at = $8, next_due_at = $9 \
         WHERE id = $10",
    )
    .bind(c.expr())
    .bind(&timezone)
    .bind(s.dialect.text(&input.to_string()).as_ref())
    .bind(version_no)
    .bind(&environment)
    .bind(enabled)
    .bind(ms(now))
    .bind(ms(last_tick))
    .bind(next_due(&c, enabled, last_tick))
    .bind(old.id)
    .execute(&mut **tx)
    .await
    .map_err(db::err)?;
    Ok(())
}

pub(crate) async fn delete_schedule(s: &SqlStore, team_id: i64, id: i64) -> StoreResult<()> {
    let done = sqlx::query("DELETE FROM schedules WHERE id = $1 AND team_id = $2")
        .bind(id)
        .bind(team_id)
        .execute(&mut s.write_conn().await?)
        .await
        .map_err(db::err)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("schedule"));
    }
    Ok(())
}

pub(crate) async fn due_schedules(
    s: &SqlStore,
    now: DateTime<Utc>,
    limit: i64,
) -> StoreResult<(Vec<ScheduleRecord>, Option<DateTime<Utc>>)> {
    let mut conn = s.read_conn().await?;
    let rows = sqlx::query(&format!(
        "{SELECT} WHERE s.next_due_at IS NOT NULL AND s.next_due_at <= $1 \
         ORDER BY s.next_due_at, s.id LIMIT $2"
    ))
    .bind(ms(now))
    .bind(limit.max(1))
    .fetch_all(&mut conn)
    .await
    .map_err(db::err)?;
    let next: Option<i64> =
        sqlx::query_scalar("SELECT MIN(next_due_at) FROM schedules WHERE next_due_at > $1")
            .bind(ms(now))
            .fetch_one(&mut conn)
            .await
            .map_err(db::err)?;
    let due = rows.iter().map(record).collect::<StoreResult<Vec<_>>>()?;
    Ok((due, db::ts_opt(next)?))
}

/// The team and app of a schedule, read without a lock (they never change),
/// so the app can be locked before the schedule.
async fn owner(tx: &mut Tx, id: i64) -> StoreResult<Option<(i64, i64)>> {
    let row = sqlx::query("SELECT team_id, app_id FROM schedules WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db::err)?;
    row.map(|r| Ok((get(&r, "team_id")?, get(&r, "app_id")?)))
        .transpose()
}

/// Moves a locked schedule past `tick`.
async fn advance(tx: &mut Tx, rec: &ScheduleRecord, tick: DateTime<Utc>) -> StoreResult<()> {
    let c = cron(&rec.cron, &rec.timezone)?;
    let done = sqlx::query(
        "UPDATE schedules SET last_tick_at = $1, next_due_at = $2 \
         WHERE id = $3 AND last_tick_at < $1",
    )
    .bind(ms(tick))
    .bind(next_due(&c, rec.enabled, tick))
    .bind(rec.id)
    .execute(&mut **tx)
    .await
    .map_err(db::err)?;
    db::cas(done.rows_affected(), "advance schedule")
}

pub(crate) async fn fire_schedule_tick(s: &SqlStore, f: FireTick) -> StoreResult<FireOutcome> {
    let mut tx = s.write().await?;
    let Some((team_id, app_id)) = owner(&mut tx, f.schedule_id).await? else {
        return Ok(FireOutcome::Stale);
    };
    if !lock_app(s, &mut tx, team_id, app_id).await? {
        return Ok(FireOutcome::Stale);
    }
    let Some(rec) = lock(s, &mut tx, f.schedule_id, None).await? else {
        return Ok(FireOutcome::Stale);
    };
    if !rec.enabled {
        return Ok(FireOutcome::Stale);
    }
    if f.tick <= rec.last_tick_at {
        return Ok(FireOutcome::AlreadyDone);
    }
    crate::environments::hold_environment(s, &mut tx, team_id, &rec.environment).await?;
    let run = NewRun {
        team_id,
        app_id,
        version_id: f.version_id,
        environment: rec.environment.clone(),
        input: f.input.clone(),
        priority: 0,
        max_retries: f.max_retries,
        idempotency_key: None,
        timeout_seconds: None,
        failure_retries: None,
        retry_delay_ms: None,
        job_overrides: None,
        now: f.now,
    };
    let version = version_defaults(&mut tx, &run).await?;
    let hooks = crate::webhooks::app_hooks(&mut tx, team_id, app_id, &[RunEvent::Queued]).await?;
    let created = match insert_run(
        s,
        &mut tx,
        &run,
        &version,
        &hooks,
        None,
        Some((rec.id, ms(f.tick))),
    )
    .await
    {
        Ok(created) => created,
        // The unique (schedule_id, scheduled_for): this tick has its run.
        Err(StoreError::Conflict(_)) => return Ok(FireOutcome::AlreadyDone),
        Err(e) => return Err(e),
    };
    advance(&mut tx, &rec, f.tick).await?;
    tx.commit().await.map_err(db::err)?;
    Ok(FireOutcome::Fired(Box::new(created)))
}

pub(crate) async fn skip_schedule_tick(
    s: &SqlStore,
    schedule_id: i64,
    tick: DateTime<Utc>,
) -> StoreResult<bool> {
    let mut tx = s.write().await?;
    let Some(rec) = lock(s, &mut tx, schedule_id, None).await? else {
        return Ok(false);
    };
    if tick <= rec.last_tick_at {
        return Ok(false);
    }
    advance(&mut tx, &rec, tick).await?;
    tx.commit().await.map_err(db::err)?;
    Ok(true)
}

/// Makes the app's `towerfile` schedules exactly `specs`, inside a deploy's
/// transaction (the caller holds the app lock). An entry with the cron,
/// zone and input of an existing one keeps that row (its id and tick
/// history) and takes the file's `enabled`; the others are deleted or
/// inserted. Schedules created through the API are never touched.
pub(crate) async fn sync_towerfile(
    s: &SqlStore,
    tx: &mut Tx,
    team_id: i64,
    app_id: i64,
    specs: &[ScheduleSpec],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let ids: Vec<i64> = sqlx::query_scalar(&s.sql(
        "SELECT id FROM schedules WHERE app_id = $1 AND source = 'towerfile' ORDER BY id \
         FOR UPDATE",
    ))
    .bind(app_id)
    .fetch_all(&mut **tx)
    .await
    .map_err(db::err)?;
    let mut existing = Vec::with_capacity(ids.len());
    for id in ids {
        existing.push(load(tx, id).await?);
    }
    let mut kept = vec![false; existing.len()];
    for spec in specs {
        let input = Value::Object(spec.input.clone());
        let same = existing.iter().enumerate().position(|(i, e)| {
            !kept[i] && e.cron == spec.cron && e.timezone == spec.timezone && e.input == input
        });
        match same {
            Some(i) => {
                kept[i] = true;
                let e = &existing[i];
                if e.enabled != spec.enabled {
                    let update = ScheduleUpdate {
                        enabled: Some(spec.enabled),
                        ..Default::default()
                    };
                    apply_update(s, tx, e, update, now).await?;
                }
            }
            None => {
                let n = NewSchedule {
                    team_id,
                    app_id,
                    cron: spec.cron.clone(),
                    timezone: spec.timezone.clone(),
                    input,
                    version_no: None,
                    environment: "default".into(),
                    enabled: spec.enabled,
                    source: ScheduleSource::Towerfile,
                    now,
                };
                insert(s, tx, &n).await?;
            }
        }
    }
    for (e, keep) in existing.iter().zip(kept) {
        if !keep {
            sqlx::query("DELETE FROM schedules WHERE id = $1")
                .bind(e.id)
                .execute(&mut **tx)
                .await
                .map_err(db::err)?;
        }
    }
    Ok(())
}
