//! Apps and their immutable, numbered versions.

use crate::db::{self, get, ms};
use crate::Db;
use crate::SqlStore;
use chrono::{DateTime, Utc};
use minitower_core::api::{App, Version};
use minitower_core::job::{priority_name, JobSpec};
use minitower_store::{AppRecord, NewVersion, StoreError, StoreResult, VersionRecord};
use serde_json::Value;
use sqlx::any::AnyRow;

const APP_SELECT: &str = "SELECT a.id, a.slug, a.description, a.created_at, \
     (SELECT MAX(version_no) FROM versions v WHERE v.app_id = a.id) AS latest_version \
     FROM apps a";

const VERSION_SELECT: &str = "SELECT v.id, v.app_id, v.version_no, v.artifact_sha256, \
     v.entrypoint, v.timeout_seconds, v.params_schema AS params_schema, \
     v.import_paths AS import_paths, v.created_at, v.retries, v.retry_delay_ms, \
     v.job AS job, v.priority \
     FROM versions v";

fn app(row: &AnyRow) -> StoreResult<App> {
    Ok(App {
        id: get(row, "id")?,
        slug: get(row, "slug")?,
        description: get(row, "description")?,
        created_at: db::time(row, "created_at")?,
        latest_version: get(row, "latest_version")?,
    })
}

fn version(row: &AnyRow) -> StoreResult<VersionRecord> {
    let params_schema = match get::<Option<String>>(row, "params_schema")? {
        Some(_) => Some(db::json(row, "params_schema")?),
        None => None,
    };
    let import_paths = serde_json::from_value(db::json(row, "import_paths")?)
        .map_err(|e| StoreError::Database(format!("import_paths: {e}")))?;
    let entrypoint: String = get(row, "entrypoint")?;
    let priority: Option<i64> = get(row, "priority")?;
    Ok(VersionRecord {
        id: get(row, "id")?,
        app_id: get(row, "app_id")?,
        version: Version {
            job: job_of(row, "job", &entrypoint)?,
            priority,
            priority_name: priority.and_then(priority_name).map(str::to_string),
            version_no: get(row, "version_no")?,
            artifact_sha256: get(row, "artifact_sha256")?,
            entrypoint,
            timeout_seconds: get(row, "timeout_seconds")?,
            params_schema,
            created_at: db::time(row, "created_at")?,
            import_paths,
            retries: get(row, "retries")?,
            retry_delay_ms: get(row, "retry_delay_ms")?,
        },
    })
}

/// A version's job from its `job` column; versions from before job kinds
/// (NULL) are the plain archive script their entrypoint names.
pub(crate) fn job_of(row: &AnyRow, col: &str, entrypoint: &str) -> StoreResult<JobSpec> {
    match get::<Option<String>>(row, col)? {
        None => Ok(JobSpec::script(entrypoint)),
        Some(text) => {
            serde_json::from_str(&text).map_err(|e| StoreError::Database(format!("{col}: {e}")))
        }
    }
}

/// Locks an app row of the team against other numbering writers (runs and
/// versions are numbered per app) without blocking foreign-key checks.
/// Returns whether the app exists.
pub(crate) async fn lock_app(
    s: &SqlStore,
    conn: &mut Db,
    team_id: i64,
    app_id: i64,
) -> StoreResult<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        &s.sql("SELECT id FROM apps WHERE id = $1 AND team_id = $2 FOR NO KEY UPDATE"),
    )
    .bind(app_id)
    .bind(team_id)
    .fetch_optional(conn)
    .await
    .map_err(db::err)?;
    Ok(found.is_some())
}

pub(crate) async fn create_app(
    s: &SqlStore,
    team_id: i64,
    slug: &str,
    description: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<AppRecord> {
    let now = db::ts(ms(now))?;
    let mut tx = s.write().await?;
    let team: Option<i64> = sqlx::query_scalar("SELECT id FROM teams WHERE id = $1")
        .bind(team_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db::err)?;
    if team.is_none() {
        return Err(StoreError::NotFound("team"));
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO apps (team_id, slug, description, created_at) VALUES ($1, $2, $3, $4) \
         RETURNING id",
    )
    .bind(team_id)
    .bind(slug)
    .bind(s.dialect.text_opt(description))
    .bind(ms(now))
    .fetch_one(&mut *tx)
    .await
    .map_err(db::unique(|| format!("app {slug:?} already exists")))?;
    tx.commit().await.map_err(db::err)?;
    Ok(AppRecord {
        id,
        app: App {
            id,
            slug: slug.to_string(),
            description: description.map(str::to_string),
            created_at: now,
            latest_version: None,
        },
    })
}

pub(crate) async fn list_apps(s: &SqlStore, team_id: i64) -> StoreResult<Vec<App>> {
    let rows = sqlx::query(&s.sql(&format!(
        "{APP_SELECT} WHERE a.team_id = $1 ORDER BY a.slug COLLATE \"C\""
    )))
    .bind(team_id)
    .fetch_all(&mut s.read_conn().await?)
    .await
    .map_err(db::err)?;
    rows.iter().map(app).collect()
}

pub(crate) async fn get_app(
    s: &SqlStore,
    team_id: i64,
    slug: &str,
) -> StoreResult<Option<AppRecord>> {
    let row = sqlx::query(&format!(
        "{APP_SELECT} WHERE a.team_id = $1 AND a.slug = $2"
    ))
    .bind(team_id)
    .bind(slug)
    .fetch_optional(&mut s.read_conn().await?)
    .await
    .map_err(db::err)?;
    row.map(|r| {
        let app = app(&r)?;
        Ok(AppRecord { id: app.id, app })
    })
    .transpose()
}

pub(crate) async fn create_version(
    s: &SqlStore,
    team_id: i64,
    app_id: i64,
    v: NewVersion,
    now: DateTime<Utc>,
) -> StoreResult<Version> {
    let now = db::ts(ms(now))?;
    let mut tx = s.write().await?;
    if !lock_app(s, &mut tx, team_id, app_id).await? {
        return Err(StoreError::NotFound("app"));
    }
    let version_no: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(version_no), 0) + 1 FROM versions WHERE app_id = $1",
    )
    .bind(app_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(db::err)?;
    let schema = v.params_schema.as_ref().map(Value::to_string);
    let import_paths = Value::from(v.import_paths.clone()).to_string();
    // A plain script stays NULL, as versions from before job kinds are.
    let job_text = (!v.job.is_plain_script())
        .then(|| serde_json::to_string(&v.job))
        .transpose()
        .map_err(|e| StoreError::Database(format!("job: {e}")))?;
    sqlx::query(
        "INSERT INTO versions (app_id, team_id, version_no, artifact_sha256, artifact_size, \
         entrypoint, timeout_seconds, params_schema, towerfile, import_paths, created_at, \
         retries, retry_delay_ms, job, priority) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(app_id)
    .bind(team_id)
    .bind(version_no)
    .bind(&v.artifact_sha256)
    .bind(v.artifact_size)
    .bind(s.dialect.text(&v.entrypoint).as_ref())
    .bind(v.timeout_seconds)
    .bind(schema)
    .bind(s.dialect.text_opt(v.towerfile.as_deref()))
    .bind(import_paths)
    .bind(ms(now))
    .bind(v.retries)
    .bind(v.retry_delay_ms)
    .bind(job_text)
    .bind(v.priority)
    .execute(&mut *tx)
    .await
    .map_err(db::unique(|| {
        format!("version {version_no} already exists")
    }))?;
    if let Some(specs) = &v.schedules {
        crate::schedules::sync_towerfile(s, &mut tx, team_id, app_id, specs, now).await?;
    }
    tx.commit().await.map_err(db::err)?;
    Ok(Version {
        version_no,
        artifact_sha256: v.artifact_sha256,
        entrypoint: v.entrypoint,
        timeout_seconds: v.timeout_seconds,
        params_schema: v.params_schema,
        created_at: now,
        import_paths: v.import_paths,
        retries: v.retries,
        retry_delay_ms: v.retry_delay_ms,
        priority_name: v.priority.and_then(priority_name).map(str::to_string),
        priority: v.priority,
        job: v.job,
    })
}

pub(crate) async fn list_versions(
    s: &SqlStore,
    team_id: i64,
    app_id: i64,
) -> StoreResult<Vec<Version>> {
    let rows = sqlx::query(&format!(
        "{VERSION_SELECT} WHERE v.app_id = $1 AND v.team_id = $2 ORDER BY v.version_no DESC"
    ))
    .bind(app_id)
    .bind(team_id)
    .fetch_all(&mut s.read_conn().await?)
    .await
    .map_err(db::err)?;
    rows.iter().map(|r| Ok(version(r)?.version)).collect()
}

pub(crate) async fn get_version(
    s: &SqlStore,
    team_id: i64,
    app_id: i64,
    version_no: Option<i64>,
) -> StoreResult<Option<VersionRecord>> {
    let row = sqlx::query(&format!(
        "{VERSION_SELECT} WHERE v.app_id = $1 AND v.team_id = $2 \
         AND (CAST($3 AS BIGINT) IS NULL OR v.version_no = $3) ORDER BY v.version_no DESC LIMIT 1"
    ))
    .bind(app_id)
    .bind(team_id)
    .bind(version_no)
    .fetch_optional(&mut s.read_conn().await?)
    .await
    .map_err(db::err)?;
    row.as_ref().map(version).transpose()
}
