//! Schedules as teams manage them: per app, with their next fire times.
//! The loop that fires them is `crate::scheduler`.

use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_id, JsonBody, RequiredJsonBody, State, TeamAuth};
use crate::routes::apps::app_of;
use crate::routes::runs::checked_input;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use minitower_core::api::*;
use minitower_core::schedule::{CronSchedule, DEFAULT_TIMEZONE};
use minitower_core::towerfile::MAX_INPUT_BYTES;
use minitower_store::{AppRecord, NewSchedule, ScheduleRecord, ScheduleUpdate, StoreError};
use serde_json::Value;

/// Fire times shown per schedule.
const NEXT_RUNS: usize = 5;

/// The API's view of a stored schedule, with its next fire times from `now`.
pub fn schedule_view(s: ScheduleRecord, now: DateTime<Utc>) -> Schedule {
    let (next_runs, next_runs_local) = match CronSchedule::new(&s.cron, &s.timezone) {
        Ok(c) if s.enabled => {
            let next = c.next_n(now.max(s.last_tick_at), NEXT_RUNS);
            let tz = c.timezone();
            let local = next
                .iter()
                .map(|t| {
                    t.with_timezone(&tz)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                })
                .collect();
            (next, local)
        }
        _ => (Vec::new(), Vec::new()),
    };
    Schedule {
        id: s.id,
        app: s.app,
        cron: s.cron,
        timezone: s.timezone,
        input: s.input,
        version_no: s.version_no,
        environment: s.environment,
        enabled: s.enabled,
        source: s.source,
        created_at: s.created_at,
        updated_at: s.updated_at,
        last_tick_at: s.last_tick_at,
        next_runs,
        next_runs_local,
    }
}

/// A 400 naming the field.
fn bad(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_request(format!("{field}: {message}"))
}

/// Checks cron and zone together (an alias needs no zone, but a wrong
/// zone is still named).
fn checked_timing(cron: &str, timezone: &str) -> ApiResult<CronSchedule> {
    CronSchedule::new(cron, timezone).map_err(|e| bad(e.field(), e.message()))
}

/// Checks the input's shape and size, and against the version the schedule
/// will run now (pinned, else the latest; none yet: checked at each tick).
async fn checked_schedule_input(
    st: &State,
    team_id: i64,
    app: &AppRecord,
    version_no: Option<i64>,
    input: Value,
) -> ApiResult<Value> {
    if !input.is_object() {
        return Err(bad("input", "must be a JSON object"));
    }
    let size = input.to_string().len();
    if size > MAX_INPUT_BYTES {
        return Err(bad(
            "input",
            format!("is {size} bytes as JSON; at most {MAX_INPUT_BYTES}"),
        ));
    }
    let version = st.store.get_version(team_id, app.id, version_no).await?;
    match (version, version_no) {
        (None, Some(n)) => Err(bad(
            "version_no",
            format!("app {:?} has no version {n}", app.app.slug),
        )),
        (None, None) => Ok(input),
        // The stored input stays as written; defaults are filled per run.
        (Some(v), _) => checked_input(st, &v, input.clone())
            .map(|_| input)
            .map_err(|e| bad("input", e.message)),
    }
}

fn checked_environment(env: &str) -> ApiResult<()> {
    minitower_core::validate::slug(env).map_err(|e| bad("environment", e))
}

/// Store errors of a create or update: an unknown environment or version
/// named in the body is the caller's 400, not a 404 of the path.
fn body_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound("environment") => bad(
            "environment",
            "the team has no such environment (create it first)",
        ),
        StoreError::NotFound("version") => bad("version_no", "the app has no such version"),
        other => other.into(),
    }
}

/// Schedules of one app, oldest first.
#[utoipa::path(get, path = "/api/v1/apps/{app}/schedules", tag = "schedules", params(("app" = String, Path)),
    responses((status = 200, body = ScheduleList), (status = 404, body = ErrorEnvelope)), security(("team" = [])))]
pub async fn list_schedules(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(slug): Path<String>,
) -> ApiResult<Json<ScheduleList>> {
    let app = app_of(&st, &auth, &slug).await?;
    let now = st.now();
    let schedules = st
        .store
        .list_schedules(auth.team.id, app.id)
        .await?
        .into_iter()
        .map(|s| schedule_view(s, now))
        .collect();
    Ok(Json(ScheduleList { schedules }))
}

/// Creates a schedule (source `api`; a deploy never touches it).
#[utoipa::path(post, path = "/api/v1/apps/{app}/schedules", tag = "schedules", params(("app" = String, Path)),
    request_body = CreateScheduleRequest,
    responses((status = 201, body = Schedule), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("team" = [])))]
pub async fn create_schedule(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(slug): Path<String>,
    RequiredJsonBody(req): RequiredJsonBody<CreateScheduleRequest>,
) -> ApiResult<impl IntoResponse> {
    let app = app_of(&st, &auth, &slug).await?;
    let timezone = req.timezone.unwrap_or_else(|| DEFAULT_TIMEZONE.to_string());
    let cron = checked_timing(&req.cron, &timezone)?;
    if let Some(n) = req.version_no.filter(|n| *n < 1) {
        return Err(bad("version_no", format!("must be 1 or more, got {n}")));
    }
    let environment = req.environment.unwrap_or_else(|| "default".to_string());
    checked_environment(&environment)?;
    let input = req
        .input
        .unwrap_or_else(|| Value::Object(Default::default()));
    let input = checked_schedule_input(&st, auth.team.id, &app, req.version_no, input).await?;
    let now = st.now();
    let rec = st
        .store
        .create_schedule(NewSchedule {
            team_id: auth.team.id,
            app_id: app.id,
            cron: cron.expr().to_string(),
            timezone,
            input,
            version_no: req.version_no,
            environment,
            enabled: req.enabled.unwrap_or(true),
            source: ScheduleSource::Api,
            now,
        })
        .await
        .map_err(body_error)?;
    Ok((StatusCode::CREATED, Json(schedule_view(rec, now))))
}

async fn schedule_of(st: &State, auth: &TeamAuth, raw: &str) -> ApiResult<ScheduleRecord> {
    let id = parse_id(raw, "schedule")?;
    st.store
        .get_schedule(auth.team.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("schedule"))
}

/// One schedule with its next fire times.
#[utoipa::path(get, path = "/api/v1/schedules/{id}", tag = "schedules", params(("id" = i64, Path)),
    responses((status = 200, body = Schedule), (status = 404, body = ErrorEnvelope)), security(("team" = [])))]
pub async fn get_schedule(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Schedule>> {
    let rec = schedule_of(&st, &auth, &id).await?;
    Ok(Json(schedule_view(rec, st.now())))
}

/// Pauses or resumes (`enabled`), or changes cron, zone, input, version or
/// environment; absent fields stay. A resume or a new timing counts ticks
/// from now.
#[utoipa::path(patch, path = "/api/v1/schedules/{id}", tag = "schedules", params(("id" = i64, Path)),
    request_body = UpdateScheduleRequest,
    responses((status = 200, body = Schedule), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("team" = [])))]
pub async fn update_schedule(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UpdateScheduleRequest>,
) -> ApiResult<Json<Schedule>> {
    let old = schedule_of(&st, &auth, &id).await?;
    let cron = req.cron.as_deref().unwrap_or(&old.cron);
    let timezone = req.timezone.as_deref().unwrap_or(&old.timezone);
    let cron = checked_timing(cron, timezone)?.expr().to_string();
    if let Some(Some(n)) = req.version_no.filter(|v| v.is_some_and(|n| n < 1)) {
        return Err(bad("version_no", format!("must be 1 or more, got {n}")));
    }
    if let Some(env) = &req.environment {
        checked_environment(env)?;
    }
    let version_no = req.version_no.unwrap_or(old.version_no);
    let input_changes = req.input.is_some() || req.version_no.is_some();
    let input = match req.input {
        Some(input) => Some(input),
        None if input_changes => Some(old.input.clone()),
        None => None,
    };
    let input = match input {
        Some(i) => {
            let app = app_of(&st, &auth, &old.app).await?;
            Some(checked_schedule_input(&st, auth.team.id, &app, version_no, i).await?)
        }
        None => None,
    };
    let now = st.now();
    let rec = st
        .store
        .update_schedule(
            auth.team.id,
            old.id,
            ScheduleUpdate {
                cron: Some(cron),
                timezone: req.timezone,
                input,
                version_no: req.version_no,
                environment: req.environment,
                enabled: req.enabled,
            },
            now,
        )
        .await
        .map_err(body_error)?;
    Ok(Json(schedule_view(rec, now)))
}

/// Deletes a schedule; runs it started keep its id.
#[utoipa::path(delete, path = "/api/v1/schedules/{id}", tag = "schedules", params(("id" = i64, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorEnvelope)), security(("team" = [])))]
pub async fn delete_schedule(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id, "schedule")?;
    st.store.delete_schedule(auth.team.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
