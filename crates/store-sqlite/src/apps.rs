//! Apps and their immutable, numbered versions.

use crate::db::{self, get, ms, ts};
use crate::SqliteStore;
use chrono::{DateTime, Utc};
use minitower_core::api::{App, Version};
use minitower_store::{AppRecord, NewVersion, StoreError, StoreResult, VersionRecord};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;

const APP_SELECT: &str = "SELECT a.id, a.slug, a.description, a.created_at, \
     (SELECT MAX(version_no) FROM versions v WHERE v.app_id = a.id) AS latest_version \
     FROM apps a";

const VERSION_SELECT: &str = "SELECT v.id, v.app_id, v.version_no, v.artifact_sha256, \
     v.entrypoint, v.timeout_seconds, v.params_schema, v.import_paths, v.created_at \
     FROM versions v";

fn app(row: &SqliteRow) -> StoreResult<App> {
    Ok(App {
        id: get(row, "id")?,
        slug: get(row, "slug")?,
        description: get(row, "description")?,
        created_at: ts(get(row, "created_at")?)?,
        latest_version: get(row, "latest_version")?,
    })
}

fn version(row: &SqliteRow) -> StoreResult<VersionRecord> {
    let params_schema = match get::<Option<String>>(row, "params_schema")? {
        Some(text) => Some(
            serde_json::from_str(&text)
                .map_err(|e| StoreError::Database(format!("params_schema: {e}")))?,
        ),
        None => None,
    };
    let import_paths: String = get(row, "import_paths")?;
    let import_paths = serde_json::from_str(&import_paths)
        .map_err(|e| StoreError::Database(format!("import_paths: {e}")))?;
    Ok(VersionRecord {
        id: get(row, "id")?,
        app_id: get(row, "app_id")?,
        version: Version {
            version_no: get(row, "version_no")?,
            artifact_sha256: get(row, "artifact_sha256")?,
            entrypoint: get(row, "entrypoint")?,
            timeout_seconds: get(row, "timeout_seconds")?,
            params_schema,
            created_at: ts(get(row, "created_at")?)?,
            import_paths,
        },
    })
}

pub(crate) async fn create_app(
    s: &SqliteStore,
    team_id: i64,
    slug: &str,
    description: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<AppRecord> {
    let mut tx = s.write().await?;
    let team: Option<i64> = sqlx::query_scalar("SELECT id FROM teams WHERE id = ?")
        .bind(team_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db::err)?;
    if team.is_none() {
        return Err(StoreError::NotFound("team"));
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO apps (team_id, slug, description, created_at) VALUES (?, ?, ?, ?) \
         RETURNING id",
    )
    .bind(team_id)
    .bind(slug)
    .bind(description)
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
            created_at: ts(ms(now))?,
            latest_version: None,
        },
    })
}

pub(crate) async fn list_apps(s: &SqliteStore, team_id: i64) -> StoreResult<Vec<App>> {
    let rows = sqlx::query(&format!("{APP_SELECT} WHERE a.team_id = ? ORDER BY a.slug"))
        .bind(team_id)
        .fetch_all(&s.reader)
        .await
        .map_err(db::err)?;
    rows.iter().map(app).collect()
}

pub(crate) async fn get_app(
    s: &SqliteStore,
    team_id: i64,
    slug: &str,
) -> StoreResult<Option<AppRecord>> {
    let row = sqlx::query(&format!("{APP_SELECT} WHERE a.team_id = ? AND a.slug = ?"))
        .bind(team_id)
        .bind(slug)
        .fetch_optional(&s.reader)
        .await
        .map_err(db::err)?;
    row.map(|r| {
        let app = app(&r)?;
        Ok(AppRecord { id: app.id, app })
    })
    .transpose()
}

pub(crate) async fn create_version(
    s: &SqliteStore,
    team_id: i64,
    app_id: i64,
    v: NewVersion,
    now: DateTime<Utc>,
) -> StoreResult<Version> {
    let mut tx = s.write().await?;
    let app: Option<i64> = sqlx::query_scalar("SELECT id FROM apps WHERE id = ? AND team_id = ?")
        .bind(app_id)
        .bind(team_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db::err)?;
    if app.is_none() {
        return Err(StoreError::NotFound("app"));
    }
    let version_no: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(version_no), 0) + 1 FROM versions WHERE app_id = ?",
    )
    .bind(app_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(db::err)?;
    let schema = v.params_schema.as_ref().map(Value::to_string);
    let import_paths = Value::from(v.import_paths.clone()).to_string();
    sqlx::query(
        "INSERT INTO versions (app_id, team_id, version_no, artifact_sha256, artifact_size, \
         entrypoint, timeout_seconds, params_schema, towerfile, import_paths, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(app_id)
    .bind(team_id)
    .bind(version_no)
    .bind(&v.artifact_sha256)
    .bind(v.artifact_size)
    .bind(&v.entrypoint)
    .bind(v.timeout_seconds)
    .bind(schema)
    .bind(&v.towerfile)
    .bind(import_paths)
    .bind(ms(now))
    .execute(&mut *tx)
    .await
    .map_err(db::unique(|| {
        format!("version {version_no} already exists")
    }))?;
    tx.commit().await.map_err(db::err)?;
    Ok(Version {
        version_no,
        artifact_sha256: v.artifact_sha256,
        entrypoint: v.entrypoint,
        timeout_seconds: v.timeout_seconds,
        params_schema: v.params_schema,
        created_at: ts(ms(now))?,
        import_paths: v.import_paths,
    })
}

pub(crate) async fn list_versions(
    s: &SqliteStore,
    team_id: i64,
    app_id: i64,
) -> StoreResult<Vec<Version>> {
    let rows = sqlx::query(&format!(
        "{VERSION_SELECT} WHERE v.app_id = ? AND v.team_id = ? ORDER BY v.version_no DESC"
    ))
    .bind(app_id)
    .bind(team_id)
    .fetch_all(&s.reader)
    .await
    .map_err(db::err)?;
    rows.iter().map(|r| Ok(version(r)?.version)).collect()
}

pub(crate) async fn get_version(
    s: &SqliteStore,
    team_id: i64,
    app_id: i64,
    version_no: Option<i64>,
) -> StoreResult<Option<VersionRecord>> {
    let q = match version_no {
        Some(_) => format!("{VERSION_SELECT} WHERE v.app_id = ? AND v.team_id = ? AND v.version_no = ?"),
        None => format!(
            "{VERSION_SELECT} WHERE v.app_id = ? AND v.team_id = ? ORDER BY v.version_no DESC LIMIT 1"
        ),
    };
    let mut query = sqlx::query(&q).bind(app_id).bind(team_id);
    if let Some(no) = version_no {
        query = query.bind(no);
    }
    let row = query.fetch_optional(&s.reader).await.map_err(db::err)?;
    row.as_ref().map(version).transpose()
}
