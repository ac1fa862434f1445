//! Runs as users see them: queueing, reading, listing, cancelling, logs.

use crate::apps::lock_app;
use crate::db::{self, get, ms, run_from_row, RUN_SELECT};
use crate::SqlStore;
use chrono::{DateTime, Utc};
use minitower_core::api::{Attempt, LogLine, Run, RunDetail, RunEvent};
use minitower_core::status::{self, AttemptStatus, RunStatus};
use minitower_store::{NewRun, RunFilter, StoreError, StoreResult};

/// Default and maximum page sizes of run lists (API contract).
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;
/// Default and maximum log page sizes.
const DEFAULT_LOG_LIMIT: i64 = 1000;
const MAX_LOG_LIMIT: i64 = 10_000;

/// Active attempt statuses as an SQL list.
pub(crate) const ACTIVE: &str = "('leased', 'running', 'cancelling')";

pub(crate) async fn create_run(s: &SqlStore, run: NewRun) -> StoreResult<(Run, bool)> {
    if let Some(created) = create_alone(s, &run).await? {
        return Ok((created, true));
    }
    let mut tx = s.write().await?;
    // Everything that needs no app lock is read first: on PostgreSQL the
    // lock serializes every create of the app, so it is held only from the
    // statement that takes the run number to the commit.
    crate::environments::hold_environment(s, &mut tx, run.team_id, &run.environment).await?;
    let version = version_defaults(&mut tx, &run).await?;
    let hooks =
        crate::webhooks::app_hooks(&mut tx, run.team_id, run.app_id, &[RunEvent::Queued]).await?;
    let key = s.dialect.text_opt(run.idempotency_key.as_deref());
    if let Some(key) = &key {
        // With a key the app lock comes first, so the key is checked after
        // any racing create with the same key has committed.
        if !lock_app(s, &mut tx, run.team_id, run.app_id).await? {
            return Err(StoreError::NotFound("version"));
        }
        let first: Option<i64> =
            sqlx::query_scalar("SELECT id FROM runs WHERE app_id = $1 AND idempotency_key = $2")
                .bind(run.app_id)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db::err)?;
        if let Some(id) = first {
            let existing = db::load_run(&mut tx, id).await?;
            tx.commit().await.map_err(db::err)?;
            return Ok((existing, false));
        }
    }
    let created = insert_run(s, &mut tx, &run, &version, &hooks, key.as_deref(), None).await?;
    tx.commit().await.map_err(db::err)?;
    Ok((created, true))
}

/// The common create on PostgreSQL (no idempotency key, no webhook
/// endpoint for `run.queued`) as one statement in autocommit
/// ([`alone_sql`]): the environment's `FOR KEY SHARE`, the version's
/// defaults, the check for endpoints, the app's counter and the insert,
/// then the commit, in one round trip instead of six. The app row's lock,
/// which every create of the app takes in turn, is then held only while
/// PostgreSQL executes and commits that statement, not across a round trip
/// to this process and back (with two replicas that lock set the rate of
/// `dispatch-pg`; see `bench/README.md`). Numbers stay gap-free: a refused
/// statement gives its number back as a rolled-back transaction did, and
/// one that inserts nothing takes none. `None` when the create must take
/// [`create_run`]'s transaction: a key, SQLite (no writable CTEs), or no row
/// (a missing environment or version, which that path names precisely, or
/// endpoints to write the `run.queued` event to).
async fn create_alone(s: &SqlStore, run: &NewRun) -> StoreResult<Option<Run>> {
    if !s.dialect.writable_ctes || run.idempotency_key.is_some() || run.environment.contains('\0') {
        return Ok(None);
    }
    let mut conn = s.write_conn().await?;
    insert(s, &mut conn, run, None, None, None).await
}

/// What a new run takes from its version: failure-retry settings and
/// priority (unless the run has its own), and the version number and app
/// slug its [`Run`] shows.
pub(crate) struct VersionDefaults {
    retries: i64,
    retry_delay_ms: i64,
    priority: Option<i64>,
    version_no: i64,
    app: String,
}

/// Reads [`VersionDefaults`] of `run.version_id`, which must belong to
/// `run.app_id` of `run.team_id`.
pub(crate) async fn version_defaults(
    conn: &mut crate::Db,
    run: &NewRun,
) -> StoreResult<VersionDefaults> {
    let row = sqlx::query(
        "SELECT v.retries, v.retry_delay_ms, v.priority, v.version_no, a.slug AS app \
         FROM versions v JOIN apps a ON a.id = v.app_id \
         WHERE v.id = $1 AND v.app_id = $2 AND a.team_id = $3",
    )
    .bind(run.version_id)
    .bind(run.app_id)
    .bind(run.team_id)
    .fetch_optional(conn)
    .await
    .map_err(db::err)?
    .ok_or(StoreError::NotFound("version"))?;
    Ok(VersionDefaults {
        retries: get(&row, "retries")?,
        retry_delay_ms: get(&row, "retry_delay_ms")?,
        priority: get(&row, "priority")?,
        version_no: get(&row, "version_no")?,
        app: get(&row, "app")?,
    })
}

/// Columns a new run is inserted with; `$3` is the run number.
const INSERT_COLUMNS: &str = "team_id, app_id, version_id, run_no, environment, status, input, \
     priority, max_retries, idempotency_key, queued_at, timeout_seconds, schedule_id, \
     scheduled_for, failure_retries, retry_delay_ms, job_overrides";
/// Their values: `$1`-`$2` team and app, `$3` the run number, `$4`-`$16`
/// the rest (`$17`, `$18` are the app slug and version number returned).
const INSERT_VALUES: &str = "$1, $2, $4, $3, $5, 'queued', $6, $7, $8, $9, $10, $11, $12, $13, \
     $14, $15, $16";
/// The columns of `RUN_SELECT`: the app slug and version number are the
/// version's, bound as values, so nothing is read back.
const INSERT_RETURNING: &str = "RETURNING id, run_no, $17 AS app, $18 AS version_no, status, \
     input, priority, max_retries, retry_count, cancel_requested, exit_code, error_message, \
     queued_at, started_at, finished_at, environment, schedule_id, scheduled_for, \
     timeout_seconds, failure_retries, failure_retry_count, retry_delay_ms, not_before, \
     job_overrides";

/// Inserts a queued run and returns it as created: runs created by hand
/// and by a schedule's tick (`tick`: the schedule id and the tick in
/// milliseconds, unique per schedule) go through here alike. The caller
/// has checked the environment. The run number is the app's counter plus
/// one, taken by an `UPDATE` of the app row: that locks the app as
/// [`lock_app`] does (creates of one app take turns to the commit, so
/// numbers are gap-free), and a rolled-back create gives its number back.
/// On PostgreSQL the `UPDATE` and the insert are one statement. The
/// `run.queued` event goes to `hooks` in the same transaction.
pub(crate) async fn insert_run(
    s: &SqlStore,
    tx: &mut crate::Tx,
    run: &NewRun,
    version: &VersionDefaults,
    hooks: &crate::webhooks::Hooks,
    key: Option<&str>,
    tick: Option<(i64, i64)>,
) -> StoreResult<Run> {
    let created = insert(s, tx, run, Some(version), key, tick)
        .await?
        // no row: the app is not the team's (PostgreSQL's CTE updated none)
        .ok_or(StoreError::NotFound("version"))?;
    // The `run.queued` webhook event commits with the run.
    crate::webhooks::write_events(tx, hooks, &created, &[RunEvent::Queued], ms(run.now)).await?;
    Ok(created)
}

/// [`insert_run`]'s statements. Without `version` (PostgreSQL only, for
/// [`create_alone`]) the statement reads the version's defaults itself, and
/// takes its number and inserts only if the environment exists (taking its
/// `FOR KEY SHARE` lock), the version is the app's and no endpoint takes
/// `run.queued`. `None`: no row was inserted.
async fn insert(
    s: &SqlStore,
    conn: &mut crate::Db,
    run: &NewRun,
    version: Option<&VersionDefaults>,
    key: Option<&str>,
    tick: Option<(i64, i64)>,
) -> StoreResult<Option<Run>> {
    // Without `version`, the run's own settings or NULL (the statement's
    // COALESCE takes the version's).
    let failure_retries = run.failure_retries.or(version.map(|v| v.retries));
    let retry_delay_ms = run.retry_delay_ms.or(version.map(|v| v.retry_delay_ms));
    // A scheduled run takes its version's default priority (a trigger's
    // priority was resolved against the version by the server already).
    let priority = match (tick, version) {
        (Some(_), Some(v)) => v.priority.unwrap_or(run.priority),
        _ => run.priority,
    };
    let overrides = match &run.job_overrides {
        Some(o) if !o.is_empty() => {
            Some(serde_json::to_string(o).map_err(|e| StoreError::Database(format!("job: {e}")))?)
        }
        _ => None,
    };
    const NEXT: &str = "UPDATE apps SET last_run_no = last_run_no + 1 \
         WHERE id = $2 AND team_id = $1";
    let (sql, run_no): (std::borrow::Cow<str>, _) = if version.is_none() {
        (alone_sql().into(), None)
    } else if s.dialect.writable_ctes {
        let sql = format!(
            "WITH n AS ({NEXT} RETURNING last_run_no) \
             INSERT INTO runs ({INSERT_COLUMNS}) SELECT {} FROM n {INSERT_RETURNING}",
            INSERT_VALUES.replace("$3", "n.last_run_no")
        );
        (sql.into(), None)
    } else {
        let next: Option<i64> = sqlx::query_scalar(&format!("{NEXT} RETURNING last_run_no"))
            .bind(run.team_id)
            .bind(run.app_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db::err)?;
        let Some(no) = next else {
            return Ok(None);
        };
        let sql = format!(
            "INSERT INTO runs ({INSERT_COLUMNS}) VALUES ({INSERT_VALUES}) {INSERT_RETURNING}"
        );
        (sql.into(), Some(no))
    };
    let row = sqlx::query(&sql)
        .bind(run.team_id)
        .bind(run.app_id)
        // $3: bound on SQLite; PostgreSQL takes it from the CTE, and a
        // parameter no statement uses has no type there, so it is a typed NULL.
        .bind(run_no)
        .bind(run.version_id)
        .bind(&run.environment)
        .bind(run.input.to_string())
        .bind(priority)
        .bind(run.max_retries)
        .bind(key)
        .bind(ms(run.now))
        .bind(run.timeout_seconds)
        .bind(tick.map(|t| t.0))
        .bind(tick.map(|t| t.1))
        .bind(failure_retries)
        .bind(retry_delay_ms)
        .bind(overrides)
        .bind(version.map(|v| v.app.as_str()))
        .bind(version.map(|v| v.version_no))
        .fetch_optional(conn)
        .await
        .map_err(db::unique(|| {
            "the run number was taken by a concurrent create".to_string()
        }))?;
    row.map(|row| db::run_from_row(&row)).transpose()
}

/// [`create_alone`]'s statement (PostgreSQL): [`insert`]'s parameters, the
/// version's defaults (`d`) where the run has none (`$14`, `$15` NULL), and
/// the app's counter taken only when everything the transactional create
/// would check holds, so a statement that inserts nothing takes no number.
fn alone_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let values = INSERT_VALUES
            .replace("$3", "n.last_run_no")
            .replace("$14", "COALESCE($14, d.d_retries)")
            .replace("$15", "COALESCE($15, d.d_retry_delay_ms)");
        let returning = INSERT_RETURNING
            .replace("RETURNING ", "SELECT ")
            .replace("$17 AS app", "d.d_app AS app")
            .replace("$18 AS version_no", "d.d_version_no AS version_no");
        format!(
            "WITH e AS (SELECT 1 FROM environments WHERE team_id = $1 AND name = $5 \
               FOR KEY SHARE), \
             d AS (SELECT v.retries AS d_retries, v.retry_delay_ms AS d_retry_delay_ms, \
               v.version_no AS d_version_no, a.slug AS d_app \
               FROM versions v JOIN apps a ON a.id = v.app_id \
               WHERE v.id = $4 AND v.app_id = $2 AND a.team_id = $1), \
             n AS (UPDATE apps SET last_run_no = last_run_no + 1 WHERE id = $2 AND team_id = $1 \
               AND EXISTS (SELECT 1 FROM e) AND EXISTS (SELECT 1 FROM d) \
               AND NOT EXISTS (SELECT 1 FROM webhooks WHERE {}) RETURNING last_run_no), \
             r AS (INSERT INTO runs ({INSERT_COLUMNS}) SELECT {values} FROM n, d RETURNING *) \
             {returning} FROM r, d",
            crate::webhooks::app_hooks_where(&[RunEvent::Queued])
        )
    })
}

pub(crate) async fn get_run(
    s: &SqlStore,
    team_id: i64,
    run_id: i64,
) -> StoreResult<Option<RunDetail>> {
    // One snapshot: the run and its attempts agree with each other.
    let mut tx = s.snapshot().await?;
    let row = sqlx::query(&format!("{RUN_SELECT} WHERE r.id = $1 AND r.team_id = $2"))
        .bind(run_id)
        .bind(team_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db::err)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let run = run_from_row(&row)?;
    let rows = sqlx::query(
        "SELECT a.attempt_no, a.status, n.name AS runner, a.exit_code, a.error_message, \
                a.started_at, a.finished_at, a.source_commit \
         FROM run_attempts a JOIN runners n ON n.id = a.runner_id \
         WHERE a.run_id = $1 ORDER BY a.attempt_no",
    )
    .bind(run_id)
    .fetch_all(&mut *tx)
    .await
    .map_err(db::err)?;
    let attempts = rows
        .iter()
        .map(|r| {
            Ok(Attempt {
                attempt_no: get(r, "attempt_no")?,
                status: db::attempt_status(r, "status")?,
                runner: get(r, "runner")?,
                exit_code: get(r, "exit_code")?,
                error_message: get(r, "error_message")?,
                started_at: db::time(r, "started_at")?,
                finished_at: db::time_opt(r, "finished_at")?,
                source_commit: get(r, "source_commit")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let waiting_for_runner = run.status == RunStatus::Queued
        && !crate::environments::served(&mut tx, &run.environment).await?;
    tx.commit().await.map_err(db::err)?;
    Ok(Some(RunDetail {
        run,
        attempts,
        waiting_for_runner,
    }))
}

pub(crate) async fn list_runs(
    s: &SqlStore,
    team_id: i64,
    filter: &RunFilter,
) -> StoreResult<Vec<Run>> {
    let limit = if filter.limit <= 0 {
        DEFAULT_LIMIT
    } else {
        filter.limit.min(MAX_LIMIT)
    };
    // Filters are spelled out (not `$n IS NULL OR ...`) so the planner picks
    // the index that matches each combination.
    let mut sql = format!("{RUN_SELECT} WHERE r.team_id = $1");
    let mut n = 1;
    if filter.app_id.is_some() {
        n += 1;
        sql.push_str(&format!(" AND r.app_id = ${n}"));
    }
    if filter.status.is_some() {
        n += 1;
        sql.push_str(&format!(" AND r.status = ${n}"));
    }
    sql.push_str(&format!(
        " ORDER BY r.id DESC LIMIT ${} OFFSET ${}",
        n + 1,
        n + 2
    ));
    let mut q = sqlx::query(&sql).bind(team_id);
    if let Some(app_id) = filter.app_id {
        q = q.bind(app_id);
    }
    if let Some(st) = filter.status {
        q = q.bind(st.as_str());
    }
    let rows = q
        .bind(limit)
        .bind(filter.offset.max(0))
        .fetch_all(&mut s.read_conn().await?)
        .await
        .map_err(db::err)?;
    rows.iter().map(run_from_row).collect()
}

pub(crate) async fn cancel_run(
    s: &SqlStore,
    team_id: i64,
    run_id: i64,
    now: DateTime<Utc>,
) -> StoreResult<Run> {
    let mut tx = s.write().await?;
    let run_status = db::lock_run(s, &mut tx, run_id, Some(team_id))
        .await?
        .ok_or(StoreError::NotFound("run"))?;
    let active = sqlx::query(&format!(
        "SELECT id, status FROM run_attempts WHERE run_id = $1 AND status IN {ACTIVE}"
    ))
    .bind(run_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db::err)?;
    let active = match active {
        Some(r) => Some((get::<i64>(&r, "id")?, db::attempt_status(&r, "status")?)),
        None => None,
    };
    let t = status::cancel(run_status, active.map(|(_, st)| st))?;
    if t.changed {
        let finished_at = t.run.is_terminal().then(|| ms(now));
        let done = sqlx::query(
            "UPDATE runs SET status = $1, cancel_requested = TRUE, finished_at = $2 \
             WHERE id = $3 AND status = $4",
        )
        .bind(t.run.as_str())
        .bind(finished_at)
        .bind(run_id)
        .bind(run_status.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db::err)?;
        db::cas(done.rows_affected(), "cancel run")?;
        if let (Some((attempt_id, old)), Some(new)) = (active, t.attempt) {
            if new != old {
                set_attempt_status(&mut tx, attempt_id, old, new).await?;
            }
        }
        crate::webhooks::run_event(&mut tx, run_id, RunEvent::of(t.run), ms(now)).await?;
    }
    let run = db::load_run(&mut tx, run_id).await?;
    tx.commit().await.map_err(db::err)?;
    Ok(run)
}

/// Compare-and-set of an attempt's status alone.
async fn set_attempt_status(
    tx: &mut crate::Tx,
    attempt_id: i64,
    old: AttemptStatus,
    new: AttemptStatus,
) -> StoreResult<()> {
    let done = sqlx::query("UPDATE run_attempts SET status = $1 WHERE id = $2 AND status = $3")
        .bind(new.as_str())
        .bind(attempt_id)
        .bind(old.as_str())
        .execute(&mut **tx)
        .await
        .map_err(db::err)?;
    db::cas(done.rows_affected(), "update attempt")
}

pub(crate) async fn get_logs(
    s: &SqlStore,
    team_id: Option<i64>,
    run_id: i64,
    after_seq: i64,
    limit: i64,
) -> StoreResult<Vec<LogLine>> {
    let limit = if limit <= 0 {
        DEFAULT_LOG_LIMIT
    } else {
        limit.min(MAX_LOG_LIMIT)
    };
    let mut conn = s.read_conn().await?;
    if let Some(team_id) = team_id {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT id FROM runs WHERE id = $1 AND team_id = $2")
                .bind(run_id)
                .bind(team_id)
                .fetch_optional(&mut conn)
                .await
                .map_err(db::err)?;
        if found.is_none() {
            return Err(StoreError::NotFound("run"));
        }
    }
    let rows = sqlx::query(
        "SELECT seq, attempt_no, stream, line, logged_at FROM run_logs \
         WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(run_id)
    .bind(after_seq)
    .bind(limit)
    .fetch_all(&mut conn)
    .await
    .map_err(db::err)?;
    rows.iter()
        .map(|r| {
            Ok(LogLine {
                seq: get(r, "seq")?,
                attempt_no: get(r, "attempt_no")?,
                stream: get(r, "stream")?,
                line: get(r, "line")?,
                logged_at: db::time(r, "logged_at")?,
            })
        })
        .collect()
}

pub(crate) async fn run_status(s: &SqlStore, run_id: i64) -> StoreResult<Option<RunStatus>> {
    let st: Option<String> = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_optional(&mut s.read_conn().await?)
        .await
        .map_err(db::err)?;
    st.map(|s| {
        s.parse()
            .map_err(|e| StoreError::Database(format!("runs.status: {e}")))
    })
    .transpose()
}
