//! Webhooks: endpoints, the transactional outbox and delivery attempts.
//!
//! Design note. An event is one outbox row per matching endpoint, written by
//! [`run_event`] inside the transaction that changes the run (creation,
//! lease, start, cancel, every attempt ending), so an event exists exactly
//! when its state change committed: a crash can lose neither. The row holds
//! the payload as it was then. Deliverers (any replica) take due rows with
//! [`claim`]: `FOR UPDATE SKIP LOCKED` on PostgreSQL so replicas share the
//! work, SQLite's single writer elsewhere; a claim pushes `next_attempt_at`
//! out by the claim TTL and bumps `claim`, so a deliverer that dies is
//! replaced when its claim runs out, and [`record`] writes an attempt only
//! while its claim is current (a late recorder writes nothing). Proven by
//! `conformance/webhooks.rs` on both backends and the server's webhook
//! tests with a real receiver and a SIGKILLed control plane.

use crate::db::{self, get, ms};
use crate::Db;
use crate::SqlStore;
use chrono::{DateTime, Utc};
use minitower_core::api::{
    event_id, DeliveryOutcome, RunEvent, Webhook, WebhookDelivery, WebhookEvents, TEST_EVENT,
};
use minitower_store::{
    ClaimedEvent, DeliveryRecord, NewWebhook, StoreError, StoreResult, WebhookUpdate,
};
use serde_json::json;
use sqlx::any::AnyRow;
use std::time::Duration;

const WEBHOOK_SELECT: &str = "SELECT w.id, w.url, a.slug AS app, w.events, w.enabled, \
     w.created_at, w.updated_at FROM webhooks w LEFT JOIN apps a ON a.id = w.app_id";

fn webhook(row: &AnyRow) -> StoreResult<Webhook> {
    let events: String = get(row, "events")?;
    Ok(Webhook {
        id: get(row, "id")?,
        url: get(row, "url")?,
        app: get(row, "app")?,
        events: WebhookEvents::parse(&events).map_err(StoreError::Database)?,
        enabled: db::flag(row, "enabled")?,
        created_at: db::time(row, "created_at")?,
        updated_at: db::time(row, "updated_at")?,
    })
}

/// The `events` filters that receive `event`.
fn filters_for(event: RunEvent) -> &'static [&'static str] {
    if event.is_failure() {
        &["all", "terminal", "failures"]
    } else if event.is_terminal() {
        &["all", "terminal"]
    } else {
        &["all"]
    }
}

fn payload(event_type: &str, at_ms: i64, data: serde_json::Value) -> StoreResult<String> {
    let at = db::ts(at_ms)?;
    Ok(json!({
        "type": event_type,
        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": data,
    })
    .to_string())
}

async fn insert_event(
    conn: &mut Db,
    webhook_id: i64,
    team_id: i64,
    run_id: Option<i64>,
    event_type: &str,
    body: &str,
    now: i64,
) -> StoreResult<i64> {
    sqlx::query_scalar(
        "INSERT INTO webhook_outbox (webhook_id, team_id, run_id, event_type, payload, \
         next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
    )
    .bind(webhook_id)
    .bind(team_id)
    .bind(run_id)
    .bind(event_type)
    .bind(body)
    .bind(now)
    .fetch_one(conn)
    .await
    .map_err(db::err)
}

/// Writes `event` of run `run_id` to the outbox of every enabled endpoint
/// of the run's team (and app) whose filter takes it, inside the caller's
/// transaction. One indexed query when no endpoint matches.
pub(crate) async fn run_event(
    conn: &mut Db,
    run_id: i64,
    event: RunEvent,
    now: i64,
) -> StoreResult<()> {
    run_events(conn, run_id, &[event], now).await
}

/// Endpoints (id, team, filter) that take at least one of `events`.
pub(crate) type Hooks = Vec<(i64, i64, String)>;

/// The `events IN (…)` list of the filters that take any of `events`.
fn filter_list(events: &[RunEvent]) -> String {
    let mut filters: Vec<&str> = events
        .iter()
        .flat_map(|e| filters_for(*e))
        .copied()
        .collect();
    filters.sort_unstable();
    filters.dedup();
    filters
        .iter()
        .map(|f| format!("'{f}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// [`run_event`] for several events of one state change (a lease that
/// starts is `run.leased` then `run.started`), with one query for all.
pub(crate) async fn run_events(
    conn: &mut Db,
    run_id: i64,
    events: &[RunEvent],
    now: i64,
) -> StoreResult<()> {
    let hooks: Hooks = sqlx::query_as(&format!(
        "SELECT w.id, w.team_id, w.events FROM webhooks w JOIN runs r ON r.team_id = w.team_id \
         WHERE r.id = $1 AND w.enabled = TRUE AND (w.app_id IS NULL OR w.app_id = r.app_id) \
         AND w.events IN ({}) ORDER BY w.id",
        filter_list(events)
    ))
    .bind(run_id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db::err)?;
    if hooks.is_empty() {
        return Ok(());
    }
    let run = db::load_run(&mut *conn, run_id).await?;
    write_events(conn, &hooks, &run, events, now).await
}

/// [`app_hooks`]' condition on `webhooks`, team `$1` and app `$2`; also
/// what a statement checks with `NOT EXISTS` to know there are none.
pub(crate) fn app_hooks_where(events: &[RunEvent]) -> String {
    format!(
        "team_id = $1 AND enabled = TRUE AND (app_id IS NULL OR app_id = $2) AND events IN ({})",
        filter_list(events)
    )
}

/// The endpoints of app `app_id` of team `team_id` that take any of
/// `events`: a creation looks them up before it takes the app lock, so the
/// lock is held for fewer statements. (An endpoint created meanwhile misses
/// this run's events, as it would with the lookup a statement later.)
pub(crate) async fn app_hooks(
    conn: &mut Db,
    team_id: i64,
    app_id: i64,
    events: &[RunEvent],
) -> StoreResult<Hooks> {
    sqlx::query_as(&format!(
        "SELECT id, team_id, events FROM webhooks WHERE {} ORDER BY id",
        app_hooks_where(events)
    ))
    .bind(team_id)
    .bind(app_id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db::err)
}

/// Writes `events` of `run` (as it is after the change) to the outbox of
/// every endpoint in `hooks` whose filter takes it.
pub(crate) async fn write_events(
    conn: &mut Db,
    hooks: &Hooks,
    run: &minitower_core::api::Run,
    events: &[RunEvent],
    now: i64,
) -> StoreResult<()> {
    if hooks.is_empty() {
        return Ok(());
    }
    let data = serde_json::to_value(run).map_err(|e| StoreError::Database(e.to_string()))?;
    for event in events {
        let body = payload(event.as_str(), now, data.clone())?;
        for (webhook_id, team_id, _) in hooks
            .iter()
            .filter(|(_, _, f)| filters_for(*event).contains(&f.as_str()))
        {
            insert_event(
                conn,
                *webhook_id,
                *team_id,
                Some(run.id),
                event.as_str(),
                &body,
                now,
            )
            .await?;
        }
    }
    Ok(())
}

pub(crate) async fn create_webhook(s: &SqlStore, w: NewWebhook) -> StoreResult<Webhook> {
    let mut tx = s.write().await?;
    if let Some(app_id) = w.app_id {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT id FROM apps WHERE id = $1 AND team_id = $2")
                .bind(app_id)
                .bind(w.team_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db::err)?;
        if found.is_none() {
            return Err(StoreError::NotFound("app"));
        }
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO webhooks (team_id, app_id, url, secret, events, enabled, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
    )
    .bind(w.team_id)
    .bind(w.app_id)
    .bind(&w.url)
    .bind(&w.secret)
    .bind(w.events.as_str())
    .bind(w.enabled)
    .bind(ms(w.now))
    .fetch_one(&mut *tx)
    .await
    .map_err(db::err)?;
    let row = sqlx::query(&format!("{WEBHOOK_SELECT} WHERE w.id = $1"))
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db::err)?;
    let created = webhook(&row)?;
    tx.commit().await.map_err(db::err)?;
    Ok(created)
}

pub(crate) async fn list_webhooks(s: &SqlStore, team_id: i64) -> StoreResult<Vec<Webhook>> {
    let rows = sqlx::query(&format!(
        "{WEBHOOK_SELECT} WHERE w.team_id = $1 ORDER BY w.id"
    ))
    .bind(team_id)
    .fetch_all(&mut s.read_conn().await?)
    .await
    .map_err(db::err)?;
    rows.iter().map(webhook).collect()
}

async fn get_on(conn: &mut Db, team_id: i64, id: i64) -> StoreResult<Option<Webhook>> {
    let row = sqlx::query(&format!(
        "{WEBHOOK_SELECT} WHERE w.id = $1 AND w.team_id = $2"
    ))
    .bind(id)
    .bind(team_id)
    .fetch_optional(conn)
    .await
    .map_err(db::err)?;
    row.as_ref().map(webhook).transpose()
}

pub(crate) async fn get_webhook(
    s: &SqlStore,
    team_id: i64,
    id: i64,
) -> StoreResult<Option<Webhook>> {
    let mut conn = s.read_conn().await?;
    get_on(&mut conn, team_id, id).await
}

pub(crate) async fn update_webhook(
    s: &SqlStore,
    team_id: i64,
    id: i64,
    u: WebhookUpdate,
    now: DateTime<Utc>,
) -> StoreResult<Webhook> {
    let mut tx = s.write().await?;
    let done = sqlx::query(
        "UPDATE webhooks SET url = COALESCE($1, url), events = COALESCE($2, events), \
         enabled = COALESCE($3, enabled), updated_at = $4 WHERE id = $5 AND team_id = $6",
    )
    .bind(u.url.as_deref())
    .bind(u.events.map(WebhookEvents::as_str))
    .bind(u.enabled)
    .bind(ms(now))
    .bind(id)
    .bind(team_id)
    .execute(&mut *tx)
    .await
    .map_err(db::err)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("webhook"));
    }
    let w = get_on(&mut tx, team_id, id)
        .await?
        .ok_or(StoreError::NotFound("webhook"))?;
    tx.commit().await.map_err(db::err)?;
    Ok(w)
}

pub(crate) async fn delete_webhook(s: &SqlStore, team_id: i64, id: i64) -> StoreResult<()> {
    let mut tx = s.write().await?;
    let found: Option<i64> = sqlx::query_scalar(
        &s.sql("SELECT id FROM webhooks WHERE id = $1 AND team_id = $2 FOR UPDATE"),
    )
    .bind(id)
    .bind(team_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db::err)?;
    if found.is_none() {
        return Err(StoreError::NotFound("webhook"));
    }
    for sql in [
        "DELETE FROM webhook_deliveries WHERE webhook_id = $1",
        "DELETE FROM webhook_outbox WHERE webhook_id = $1",
        "DELETE FROM webhooks WHERE id = $1",
    ] {
        sqlx::query(sql)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db::err)?;
    }
    tx.commit().await.map_err(db::err)?;
    Ok(())
}

pub(crate) async fn list_deliveries(
    s: &SqlStore,
    team_id: i64,
    id: i64,
    limit: i64,
) -> StoreResult<Vec<WebhookDelivery>> {
    let mut tx = s.snapshot().await?;
    if get_on(&mut tx, team_id, id).await?.is_none() {
        return Err(StoreError::NotFound("webhook"));
    }
    let rows = sqlx::query(
        "SELECT d.id, d.outbox_id, o.event_type, o.run_id, d.attempt_no, d.status_code, \
                d.latency_ms, d.response_excerpt, d.error, d.outcome, d.delivered_at \
         FROM webhook_deliveries d JOIN webhook_outbox o ON o.id = d.outbox_id \
         WHERE d.webhook_id = $1 ORDER BY d.id DESC LIMIT $2",
    )
    .bind(id)
    .bind(limit.clamp(1, 500))
    .fetch_all(&mut *tx)
    .await
    .map_err(db::err)?;
    tx.commit().await.map_err(db::err)?;
    rows.iter()
        .map(|r| {
            let outcome: String = get(r, "outcome")?;
            Ok(WebhookDelivery {
                id: get(r, "id")?,
                event_id: event_id(get(r, "outbox_id")?),
                event_type: get(r, "event_type")?,
                run_id: get(r, "run_id")?,
                attempt_no: get(r, "attempt_no")?,
                status_code: get(r, "status_code")?,
                latency_ms: get(r, "latency_ms")?,
                response_excerpt: get(r, "response_excerpt")?,
                error: get(r, "error")?,
                outcome: DeliveryOutcome::parse(&outcome)
                    .ok_or_else(|| StoreError::Database(format!("outcome {outcome:?}")))?,
                at: db::time(r, "delivered_at")?,
            })
        })
        .collect()
}

pub(crate) async fn enqueue_test_event(
    s: &SqlStore,
    team_id: i64,
    id: i64,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    let mut tx = s.write().await?;
    if get_on(&mut tx, team_id, id).await?.is_none() {
        return Err(StoreError::NotFound("webhook"));
    }
    let now = ms(now);
    let data = json!({
        "webhook_id": id,
        "message": "a test event from MiniTower: your endpoint receives and verifies deliveries",
    });
    let body = payload(TEST_EVENT, now, data)?;
    let outbox_id = insert_event(&mut tx, id, team_id, None, TEST_EVENT, &body, now).await?;
    tx.commit().await.map_err(db::err)?;
    Ok(outbox_id)
}

/// Only events of enabled endpoints are due; a disabled endpoint's events
/// wait until it is enabled again.
const DUE: &str = "status = 'pending' AND next_attempt_at <= $1 \
     AND webhook_id IN (SELECT id FROM webhooks WHERE enabled = TRUE)";

pub(crate) async fn claim(
    s: &SqlStore,
    now: DateTime<Utc>,
    limit: i64,
    claim_ttl: Duration,
) -> StoreResult<Vec<ClaimedEvent>> {
    let mut tx = s.write().await?;
    let now = s.now(&mut *tx, now).await?;
    let ids: Vec<i64> = sqlx::query_scalar(&s.sql(&format!(
        "SELECT id FROM webhook_outbox WHERE {DUE} ORDER BY next_attempt_at, id LIMIT $2 \
         FOR UPDATE SKIP LOCKED"
    )))
    .bind(now)
    .bind(limit.max(1))
    .fetch_all(&mut *tx)
    .await
    .map_err(db::err)?;
    if ids.is_empty() {
        tx.commit().await.map_err(db::err)?;
        return Ok(Vec::new());
    }
    let list = (0..ids.len())
        .map(|i| format!("${}", i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let update = format!(
        "UPDATE webhook_outbox SET claim = claim + 1, next_attempt_at = $1 WHERE id IN ({list})"
    );
    let mut q = sqlx::query(&update).bind(db::expiry(now, claim_ttl));
    for id in &ids {
        q = q.bind(*id);
    }
    q.execute(&mut *tx).await.map_err(db::err)?;
    let select = format!(
        "SELECT o.id, o.claim, o.webhook_id, w.team_id, w.url, w.secret, o.event_type, o.payload, \
                o.attempts, o.created_at \
         FROM webhook_outbox o JOIN webhooks w ON w.id = o.webhook_id \
         WHERE o.id IN ({}) ORDER BY o.next_attempt_at, o.id",
        (0..ids.len())
            .map(|i| format!("${}", i + 1))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut q = sqlx::query(&select);
    for id in &ids {
        q = q.bind(*id);
    }
    let rows = q.fetch_all(&mut *tx).await.map_err(db::err)?;
    tx.commit().await.map_err(db::err)?;
    rows.iter()
        .map(|r| {
            Ok(ClaimedEvent {
                outbox_id: get(r, "id")?,
                claim: get(r, "claim")?,
                webhook_id: get(r, "webhook_id")?,
                team_id: get(r, "team_id")?,
                url: get(r, "url")?,
                secret: get(r, "secret")?,
                event_type: get(r, "event_type")?,
                payload: get(r, "payload")?,
                attempts: get(r, "attempts")?,
                created_at: db::time(r, "created_at")?,
            })
        })
        .collect()
}

pub(crate) async fn record(s: &SqlStore, d: DeliveryRecord) -> StoreResult<bool> {
    let mut tx = s.write().await?;
    let now = ms(d.now);
    let (status, next, finished) = match d.outcome {
        DeliveryOutcome::Delivered => ("delivered", None, Some(now)),
        DeliveryOutcome::Failed => ("failed", None, Some(now)),
        DeliveryOutcome::Retry => (
            "pending",
            Some(ms(d.next_attempt_at.unwrap_or(d.now))),
            None,
        ),
    };
    let row = sqlx::query(
        "UPDATE webhook_outbox SET attempts = attempts + 1, claim = claim + 1, status = $1, \
         next_attempt_at = COALESCE($2, next_attempt_at), finished_at = $3 \
         WHERE id = $4 AND claim = $5 AND status = 'pending' RETURNING attempts, webhook_id",
    )
    .bind(status)
    .bind(next)
    .bind(finished)
    .bind(d.outbox_id)
    .bind(d.claim)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db::err)?;
    let Some(row) = row else {
        let _ = tx.rollback().await;
        return Ok(false);
    };
    let excerpt = d
        .response_excerpt
        .as_deref()
        .map(|e| s.dialect.text(e).into_owned());
    let error = d.error.as_deref().map(|e| s.dialect.text(e).into_owned());
    sqlx::query(
        "INSERT INTO webhook_deliveries (outbox_id, webhook_id, attempt_no, status_code, \
         latency_ms, response_excerpt, error, outcome, delivered_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(d.outbox_id)
    .bind(get::<i64>(&row, "webhook_id")?)
    .bind(get::<i64>(&row, "attempts")?)
    .bind(d.status_code)
    .bind(d.latency_ms.max(0))
    .bind(excerpt)
    .bind(error)
    .bind(d.outcome.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(db::err)?;
    tx.commit().await.map_err(db::err)?;
    Ok(true)
}

pub(crate) async fn outbox_depth(s: &SqlStore) -> StoreResult<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM webhook_outbox WHERE status = 'pending'")
        .fetch_one(&mut s.read_conn().await?)
        .await
        .map_err(db::err)
}

pub(crate) async fn next_due(s: &SqlStore) -> StoreResult<Option<DateTime<Utc>>> {
    let at: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM webhook_outbox WHERE status = 'pending' \
         AND webhook_id IN (SELECT id FROM webhooks WHERE enabled = TRUE)",
    )
    .fetch_one(&mut s.read_conn().await?)
    .await
    .map_err(db::err)?;
    db::ts_opt(at)
}
