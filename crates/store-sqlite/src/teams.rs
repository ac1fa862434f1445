//! Teams and their tokens.

use crate::db::{self, get, ms, ts, ts_opt};
use crate::SqliteStore;
use chrono::{DateTime, Utc};
use minitower_core::api::{Role, Team, TokenInfo};
use minitower_store::{StoreError, StoreResult, TokenIdentity};
use sqlx::sqlite::SqliteRow;

fn role(row: &SqliteRow) -> StoreResult<Role> {
    let s: String = get(row, "role")?;
    Role::parse(&s).ok_or_else(|| StoreError::Database(format!("unknown role {s:?}")))
}

fn team(row: &SqliteRow) -> StoreResult<Team> {
    Ok(Team {
        id: get(row, "team_id")?,
        slug: get(row, "team_slug")?,
        name: get(row, "team_name")?,
    })
}

fn token_info(row: &SqliteRow) -> StoreResult<TokenInfo> {
    Ok(TokenInfo {
        id: get(row, "id")?,
        name: get(row, "name")?,
        role: role(row)?,
        created_at: ts(get(row, "created_at")?)?,
        last_used_at: ts_opt(get(row, "last_used_at")?)?,
        expires_at: ts_opt(get(row, "expires_at")?)?,
    })
}

pub(crate) async fn create_team(
    s: &SqliteStore,
    slug: &str,
    name: &str,
    password_hash: Option<&str>,
    token_name: &str,
    token_hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<(Team, i64)> {
    let mut tx = s.write().await?;
    let team_id: i64 = sqlx::query_scalar(
        "INSERT INTO teams (slug, name, password_hash, created_at) VALUES (?, ?, ?, ?) \
         RETURNING id",
    )
    .bind(slug)
    .bind(name)
    .bind(password_hash)
    .bind(ms(now))
    .fetch_one(&mut *tx)
    .await
    .map_err(db::unique(|| format!("team {slug:?} already exists")))?;
    let token_id: i64 = sqlx::query_scalar(
        "INSERT INTO tokens (team_id, name, role, token_hash, created_at) \
         VALUES (?, ?, 'admin', ?, ?) RETURNING id",
    )
    .bind(team_id)
    .bind(token_name)
    .bind(token_hash)
    .bind(ms(now))
    .fetch_one(&mut *tx)
    .await
    .map_err(db::unique(|| "token hash already in use".to_string()))?;
    tx.commit().await.map_err(db::err)?;
    Ok((
        Team {
            id: team_id,
            slug: slug.to_string(),
            name: name.to_string(),
        },
        token_id,
    ))
}

pub(crate) async fn team_login_info(
    s: &SqliteStore,
    slug: &str,
) -> StoreResult<Option<(Team, Option<String>)>> {
    let row = sqlx::query(
        "SELECT id AS team_id, slug AS team_slug, name AS team_name, password_hash \
         FROM teams WHERE slug = ?",
    )
    .bind(slug)
    .fetch_optional(&s.reader)
    .await
    .map_err(db::err)?;
    row.map(|r| Ok((team(&r)?, get(&r, "password_hash")?)))
        .transpose()
}

pub(crate) async fn create_token(
    s: &SqliteStore,
    team_id: i64,
    name: &str,
    role: Role,
    token_hash: &str,
    now: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
) -> StoreResult<TokenInfo> {
    let mut tx = s.write().await?;
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM teams WHERE id = ?")
        .bind(team_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db::err)?;
    if exists.is_none() {
        return Err(StoreError::NotFound("team"));
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO tokens (team_id, name, role, token_hash, created_at, expires_at) \
         VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(team_id)
    .bind(name)
    .bind(role.as_str())
    .bind(token_hash)
    .bind(ms(now))
    .bind(expires_at.map(ms))
    .fetch_one(&mut *tx)
    .await
    .map_err(db::unique(|| "token hash already in use".to_string()))?;
    tx.commit().await.map_err(db::err)?;
    Ok(TokenInfo {
        id,
        name: name.to_string(),
        role,
        created_at: ts(ms(now))?,
        last_used_at: None,
        expires_at: expires_at.map(|t| ts(ms(t))).transpose()?,
    })
}

pub(crate) async fn token_by_hash(
    s: &SqliteStore,
    token_hash: &str,
) -> StoreResult<Option<TokenIdentity>> {
    let row = sqlx::query(
        "SELECT k.id, k.role, k.last_used_at, k.expires_at, \
                t.id AS team_id, t.slug AS team_slug, t.name AS team_name \
         FROM tokens k JOIN teams t ON t.id = k.team_id \
         WHERE k.token_hash = ? AND k.revoked_at IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(&s.reader)
    .await
    .map_err(db::err)?;
    row.map(|r| {
        Ok(TokenIdentity {
            token_id: get(&r, "id")?,
            team: team(&r)?,
            role: role(&r)?,
            last_used_at: ts_opt(get(&r, "last_used_at")?)?,
            expires_at: ts_opt(get(&r, "expires_at")?)?,
        })
    })
    .transpose()
}

pub(crate) async fn touch_token(
    s: &SqliteStore,
    token_id: i64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query("UPDATE tokens SET last_used_at = ? WHERE id = ?")
        .bind(ms(now))
        .bind(token_id)
        .execute(&s.writer)
        .await
        .map_err(db::err)?;
    Ok(())
}

pub(crate) async fn list_tokens(s: &SqliteStore, team_id: i64) -> StoreResult<Vec<TokenInfo>> {
    let rows = sqlx::query(
        "SELECT id, name, role, created_at, last_used_at, expires_at FROM tokens \
         WHERE team_id = ? AND revoked_at IS NULL ORDER BY id",
    )
    .bind(team_id)
    .fetch_all(&s.reader)
    .await
    .map_err(db::err)?;
    rows.iter().map(token_info).collect()
}

pub(crate) async fn revoke_token(
    s: &SqliteStore,
    team_id: i64,
    token_id: i64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let done = sqlx::query(
        "UPDATE tokens SET revoked_at = ? WHERE id = ? AND team_id = ? AND revoked_at IS NULL",
    )
    .bind(ms(now))
    .bind(token_id)
    .bind(team_id)
    .execute(&s.writer)
    .await
    .map_err(db::err)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("token"));
    }
    Ok(())
}

pub(crate) async fn team_active_attempts(
    s: &SqliteStore,
    team_id: i64,
) -> StoreResult<Vec<(i64, i64)>> {
    sqlx::query_as(
        "SELECT a.runner_id, COUNT(*) FROM run_attempts a JOIN runs r ON r.id = a.run_id \
         WHERE r.team_id = ? AND a.status IN ('leased', 'running', 'cancelling') \
         GROUP BY a.runner_id ORDER BY a.runner_id",
    )
    .bind(team_id)
    .fetch_all(&s.reader)
    .await
    .map_err(db::err)
}
