//! Teams and their tokens.

use crate::db::{self, get, ms};
use crate::SqlStore;
use chrono::{DateTime, Utc};
use minitower_core::api::{Role, Team, TokenInfo, TokenScope};
use minitower_store::{StoreError, StoreResult, TokenIdentity, TokenOptions};
use sqlx::any::AnyRow;

fn role(row: &AnyRow) -> StoreResult<Role> {
    let s: String = get(row, "role")?;
    Role::parse(&s).ok_or_else(|| StoreError::Database(format!("unknown role {s:?}")))
}

fn team(row: &AnyRow) -> StoreResult<Team> {
    Ok(Team {
        id: get(row, "team_id")?,
        slug: get(row, "team_slug")?,
        name: get(row, "team_name")?,
    })
}

fn scope(row: &AnyRow) -> StoreResult<Option<TokenScope>> {
    let text: Option<String> = get(row, "scope")?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Database(format!("tokens.scope: {e}")))
    })
    .transpose()
}

fn token_info(row: &AnyRow) -> StoreResult<TokenInfo> {
    Ok(TokenInfo {
        id: get(row, "id")?,
        name: get(row, "name")?,
        role: role(row)?,
        created_at: db::time(row, "created_at")?,
        last_used_at: db::time_opt(row, "last_used_at")?,
        expires_at: db::time_opt(row, "expires_at")?,
        scope: scope(row)?,
        last_refused_at: db::time_opt(row, "last_refused_at")?,
        last_refusal: get(row, "last_refusal")?,
    })
}

pub(crate) async fn create_team(
    s: &SqlStore,
    slug: &str,
    name: &str,
    password_hash: Option<&str>,
    token_name: &str,
    token_hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<(Team, i64)> {
    let now = ms(now);
    let mut tx = s.write().await?;
    let team_id: i64 = sqlx::query_scalar(
        "INSERT INTO teams (slug, name, password_hash, created_at) VALUES ($1, $2, $3, $4) \
         RETURNING id",
    )
    .bind(slug)
    .bind(s.dialect.text(name).as_ref())
    .bind(password_hash)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(db::unique(|| format!("team {slug:?} already exists")))?;
    let token_id: i64 = sqlx::query_scalar(
        "INSERT INTO tokens (team_id, name, role, token_hash, created_at) \
         VALUES ($1, $2, 'admin', $3, $4) RETURNING id",
    )
    .bind(team_id)
    .bind(s.dialect.text(token_name).as_ref())
    .bind(token_hash)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(db::unique(|| "token hash already in use".to_string()))?;
    crate::environments::insert_environment(
        s,
        &mut tx,
        team_id,
        crate::environments::DEFAULT_ENVIRONMENT,
        now,
    )
    .await?;
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
    s: &SqlStore,
    slug: &str,
) -> StoreResult<Option<(Team, Option<String>)>> {
    let row = sqlx::query(
        "SELECT id AS team_id, slug AS team_slug, name AS team_name, password_hash \
         FROM teams WHERE slug = $1",
    )
    .bind(slug)
    .fetch_optional(&mut s.read_conn().await?)
    .await
    .map_err(db::err)?;
    row.map(|r| Ok((team(&r)?, get(&r, "password_hash")?)))
        .transpose()
}

pub(crate) async fn create_token(
    s: &SqlStore,
    team_id: i64,
    name: &str,
    role: Role,
    token_hash: &str,
    now: DateTime<Utc>,
    opts: TokenOptions,
) -> StoreResult<TokenInfo> {
    let now = db::ts(ms(now))?;
    let expires_at = opts.expires_at.map(|t| db::ts(ms(t))).transpose()?;
    let scope_text = opts
        .scope
        .as_ref()
        .map(|s| serde_json::to_string(s).expect("a scope serializes"));
    let mut tx = s.write().await?;
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM teams WHERE id = $1")
        .bind(team_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db::err)?;
    if exists.is_none() {
        return Err(StoreError::NotFound("team"));
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO tokens (team_id, name, role, token_hash, created_at, expires_at, scope) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(team_id)
    .bind(s.dialect.text(name).as_ref())
    .bind(role.as_str())
    .bind(token_hash)
    .bind(ms(now))
    .bind(expires_at.map(ms))
    .bind(scope_text)
    .fetch_one(&mut *tx)
    .await
    .map_err(db::unique(|| "token hash already in use".to_string()))?;
    tx.commit().await.map_err(db::err)?;
    Ok(TokenInfo {
        id,
        name: name.to_string(),
        role,
        created_at: now,
        last_used_at: None,
        expires_at,
        scope: opts.scope,
        last_refused_at: None,
        last_refusal: None,
    })
}

pub(crate) async fn token_by_hash(
    s: &SqlStore,
    token_hash: &str,
) -> StoreResult<Option<TokenIdentity>> {
    let row = sqlx::query(
        "SELECT k.id, k.role, k.last_used_at, k.expires_at, k.scope, \
                t.id AS team_id, t.slug AS team_slug, t.name AS team_name \
         FROM tokens k JOIN teams t ON t.id = k.team_id \
         WHERE k.token_hash = $1 AND k.revoked_at IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(&mut s.read_conn().await?)
    .await
    .map_err(db::err)?;
    row.map(|r| {
        Ok(TokenIdentity {
            token_id: get(&r, "id")?,
            team: team(&r)?,
            role: role(&r)?,
            last_used_at: db::time_opt(&r, "last_used_at")?,
            expires_at: db::time_opt(&r, "expires_at")?,
            scope: scope(&r)?,
        })
    })
    .transpose()
}

pub(crate) async fn touch_token(
    s: &SqlStore,
    token_id: i64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query("UPDATE tokens SET last_used_at = $1 WHERE id = $2")
        .bind(ms(now))
        .bind(token_id)
        .execute(&mut s.write_conn().await?)
        .await
        .map_err(db::err)?;
    Ok(())
}

/// Longest refusal reason kept.
const MAX_REFUSAL: usize = 500;

pub(crate) async fn refuse_token(
    s: &SqlStore,
    token_id: i64,
    reason: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut reason = reason.to_string();
    if reason.len() > MAX_REFUSAL {
        let mut cut = MAX_REFUSAL;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    sqlx::query("UPDATE tokens SET last_refused_at = $1, last_refusal = $2 WHERE id = $3")
        .bind(ms(now))
        .bind(s.dialect.text(&reason).as_ref())
        .bind(token_id)
        .execute(&mut s.write_conn().await?)
        .await
        .map_err(db::err)?;
    Ok(())
}

pub(crate) async fn list_tokens(s: &SqlStore, team_id: i64) -> StoreResult<Vec<TokenInfo>> {
    let rows = sqlx::query(
        "SELECT id, name, role, created_at, last_used_at, expires_at, scope, last_refused_at, \
                last_refusal FROM tokens \
         WHERE team_id = $1 AND revoked_at IS NULL ORDER BY id",
    )
    .bind(team_id)
    .fetch_all(&mut s.read_conn().await?)
    .await
    .map_err(db::err)?;
    rows.iter().map(token_info).collect()
}

pub(crate) async fn revoke_token(
    s: &SqlStore,
    team_id: i64,
    token_id: i64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let done = sqlx::query(
        "UPDATE tokens SET revoked_at = $1 \
         WHERE id = $2 AND team_id = $3 AND revoked_at IS NULL",
    )
    .bind(ms(now))
    .bind(token_id)
    .bind(team_id)
    .execute(&mut s.write_conn().await?)
    .await
    .map_err(db::err)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("token"));
    }
    Ok(())
}

pub(crate) async fn team_active_attempts(
    s: &SqlStore,
    team_id: i64,
) -> StoreResult<Vec<(i64, i64)>> {
    sqlx::query_as(
        "SELECT a.runner_id, COUNT(*) FROM run_attempts a JOIN runs r ON r.id = a.run_id \
         WHERE r.team_id = $1 AND a.status IN ('leased', 'running', 'cancelling') \
         GROUP BY a.runner_id ORDER BY a.runner_id",
    )
    .bind(team_id)
    .fetch_all(&mut s.read_conn().await?)
    .await
    .map_err(db::err)
}
