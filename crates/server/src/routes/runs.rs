//! Runs as teams see them: trigger, list, inspect, cancel, read logs.

use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_id, JsonBody, State, TeamAuth};
use crate::routes::apps::app_of;
use crate::routes::RunIdExt;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use minitower_core::api::*;
use minitower_core::RunStatus;
use minitower_store::{NewRun, RunFilter};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;
const MAX_RETRIES_CAP: i64 = 100;

/// Creates a run (201), or returns the first run for a repeated idempotency key (200).
#[utoipa::path(post, path = "/api/v1/apps/{app}/runs", tag = "runs", params(("app" = String, Path)),
    request_body = CreateRunRequest,
    responses((status = 201, body = Run), (status = 200, body = Run, description = "idempotent repeat"),
              (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)),
    security(("team" = [])))]
pub async fn create_run(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(slug): Path<String>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<CreateRunRequest>,
) -> ApiResult<Response> {
    let app = app_of(&st, &auth, &slug).await?;
    let idempotency_key = match headers.get(IDEMPOTENCY_HEADER) {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .map_err(|_| ApiError::invalid_request("Idempotency-Key must be visible ASCII"))?
                .trim();
            if k.is_empty() || k.len() > 255 {
                return Err(ApiError::invalid_request(
                    "Idempotency-Key must be 1 to 255 characters",
                ));
            }
            Some(k.to_string())
        }
    };
    let version = st
        .store
        .get_version(auth.team.id, app.id, req.version_no)
        .await?
        .ok_or_else(|| match req.version_no {
            Some(n) => ApiError::not_found(&format!("version {n} of app {slug:?}")),
            None => {
                ApiError::conflict(format!("app {slug:?} has no version yet: upload one first"))
            }
        })?;
    let job_overrides = req.job_overrides();
    let input = checked_input(
        &st,
        &version,
        req.input
            .unwrap_or_else(|| Value::Object(Default::default())),
    )?;
    let timeout_seconds = req
        .timeout
        .as_ref()
        .map(TimeoutSpec::seconds)
        .transpose()
        .map_err(ApiError::invalid_request)?;
    let max_retries = req.max_retries.unwrap_or(DEFAULT_MAX_RETRIES);
    if !(0..=MAX_RETRIES_CAP).contains(&max_retries) {
        return Err(ApiError::invalid_request(format!(
            "max_retries must be from 0 to {MAX_RETRIES_CAP}"
        )));
    }
    // The run's priority (a number or a name), else its version's.
    let priority = match &req.priority {
        Some(p) => p.resolve().map_err(ApiError::invalid_request)?,
        None => version.version.priority.unwrap_or(0),
    };
    // PTY, limits and ref: checked against the version's job now, so the
    // lease can merge them without failing.
    version
        .version
        .job
        .with_overrides(&job_overrides)
        .map_err(ApiError::invalid_request)?;
    let environment = req.environment.unwrap_or_else(|| "default".to_string());
    minitower_core::validate::slug(&environment)
        .map_err(|e| ApiError::invalid_request(format!("environment: {e}")))?;
    // Failure retries: the run's own, else the version's (read by the store).
    let failure_retries = req
        .retries
        .map(|n| minitower_core::retry::validate_retries(n).map(i64::from))
        .transpose()
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let retry_delay_ms = req
        .retry_delay
        .as_ref()
        .map(RetryDelaySpec::millis)
        .transpose()
        .map_err(ApiError::invalid_request)?;
    let (run, created) = st
        .store
        .create_run(NewRun {
            team_id: auth.team.id,
            app_id: app.id,
            version_id: version.id,
            environment: environment.clone(),
            input,
            priority,
            max_retries,
            idempotency_key,
            timeout_seconds,
            failure_retries,
            retry_delay_ms,
            job_overrides: Some(job_overrides),
            now: st.now(),
        })
        .await
        .map_err(crate::routes::environments::unknown_environment(
            &environment,
        ))?;
    if created {
        st.metrics.run_created(&auth.team.slug, &slug);
        st.notifier.queue_changed(&environment);
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(RunIdExt::attach(
        run.id,
        (status, Json(run)).into_response(),
    ))
}

/// Retries after a lost runner when the request names none (runs started
/// by a schedule get the same).
pub const DEFAULT_MAX_RETRIES: i64 = 2;

/// A run's input as the version takes it: a JSON object, with the schema's
/// defaults filled in, valid against the version's parameters. Runs created
/// by hand and by a schedule's tick are checked here alike.
pub fn checked_input(
    st: &crate::state::AppState,
    version: &minitower_store::VersionRecord,
    mut input: Value,
) -> ApiResult<Value> {
    if !input.is_object() {
        return Err(ApiError::invalid_input(
            "input must be a JSON object (it is passed to the script as MINITOWER_INPUT)",
        ));
    }
    if let Some(schema) = &version.version.params_schema {
        apply_defaults(&mut input, schema);
        let validator = st
            .schemas
            .get(version.id, schema)
            .map_err(|e| ApiError::internal(format!("stored schema does not compile: {e}")))?;
        let errors: Vec<String> = validator
            .iter_errors(&input)
            .take(5)
            .map(|e| {
                let path = e.instance_path().to_string();
                format!("{}: {}", if path.is_empty() { "/".into() } else { path }, e)
            })
            .collect();
        if !errors.is_empty() {
            return Err(ApiError::invalid_input(format!(
                "input does not match the version's schema: {}",
                errors.join("; ")
            )));
        }
    }
    Ok(input)
}

/// Fills in schema defaults for missing top-level properties.
fn apply_defaults(input: &mut Value, schema: &Value) {
    let (Some(obj), Some(props)) = (
        input.as_object_mut(),
        schema.get("properties").and_then(Value::as_object),
    ) else {
        return;
    };
    for (k, prop) in props {
        if let Some(d) = prop.get("default") {
            obj.entry(k.clone()).or_insert_with(|| d.clone());
        }
    }
}

/// Paging parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// How many runs (at most 500).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// How many runs to skip.
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

fn page(limit: Option<i64>, offset: Option<i64>) -> ApiResult<(i64, i64)> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    let offset = offset.unwrap_or(0);
    if limit < 1 || offset < 0 {
        return Err(ApiError::invalid_request(
            "limit must be >= 1 and offset >= 0",
        ));
    }
    Ok((limit.min(MAX_LIMIT), offset))
}

fn query_error(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::invalid_request(format!("invalid query string: {}", e.body_text()))
}

/// Runs of one app, newest first.
#[utoipa::path(get, path = "/api/v1/apps/{app}/runs", tag = "runs", params(("app" = String, Path), Page),
    responses((status = 200, body = RunList), (status = 404, body = ErrorEnvelope)), security(("team" = [])))]
pub async fn list_app_runs(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(slug): Path<String>,
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<RunList>> {
    let Query(q) = q.map_err(query_error)?;
    let app = app_of(&st, &auth, &slug).await?;
    let (limit, offset) = page(q.limit, q.offset)?;
    let filter = RunFilter {
        app_id: Some(app.id),
        status: None,
        limit,
        offset,
    };
    Ok(Json(RunList {
        runs: st.store.list_runs(auth.team.id, &filter).await?,
    }))
}

/// Filters of the team-wide run list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only runs in this status.
    #[param(value_type = Option<RunStatus>)]
    pub status: Option<String>,
    /// Only runs of this app (an unknown app lists nothing).
    pub app: Option<String>,
    /// How many runs (at most 500).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// How many runs to skip.
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// Runs across the team's apps, newest first.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(RunsQuery),
    responses((status = 200, body = RunList), (status = 400, body = ErrorEnvelope)), security(("team" = [])))]
pub async fn list_runs(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    q: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<RunList>> {
    let Query(q) = q.map_err(query_error)?;
    let (limit, offset) = page(q.limit, q.offset)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(s.parse::<RunStatus>().map_err(|_| {
            ApiError::invalid_request(format!(
                "unknown status {s:?}; one of queued, leased, running, cancelling, completed, failed, cancelled, dead"
            ))
        })?),
    };
    let app_id = match q.app.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(slug) => match st.store.get_app(auth.team.id, slug).await? {
            Some(a) => Some(a.id),
            None => return Ok(Json(RunList { runs: vec![] })),
        },
    };
    let filter = RunFilter {
        app_id,
        status,
        limit,
        offset,
    };
    Ok(Json(RunList {
        runs: st.store.list_runs(auth.team.id, &filter).await?,
    }))
}

/// Count of the team's runs per status.
#[utoipa::path(get, path = "/api/v1/runs/summary", tag = "runs",
    responses((status = 200, body = BTreeMap<String, i64>)), security(("team" = [])))]
pub async fn summary(
    AxState(st): AxState<State>,
    auth: TeamAuth,
) -> ApiResult<Json<BTreeMap<String, i64>>> {
    let counts = st.store.runs_summary(auth.team.id).await?;
    let mut out: BTreeMap<String, i64> = RunStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    for (s, n) in counts {
        out.insert(s.as_str().to_string(), n);
    }
    Ok(Json(out))
}

/// Window of the dashboard figures.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Window in hours (default 24).
    #[param(minimum = 1, maximum = 168)]
    pub hours: Option<i64>,
}

/// Hourly finished runs, success rate and median duration (dashboard).
#[utoipa::path(get, path = "/api/v1/runs/stats", tag = "runs", params(StatsQuery),
    responses((status = 200, body = RunStats)), security(("team" = [])))]
pub async fn stats(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    q: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<RunStats>> {
    let Query(q) = q.map_err(query_error)?;
    let hours = q.hours.unwrap_or(24);
    if !(1..=168).contains(&hours) {
        return Err(ApiError::invalid_request("hours must be from 1 to 168"));
    }
    Ok(Json(
        st.store.run_stats(auth.team.id, hours, st.now()).await?,
    ))
}

/// A run with its attempts.
#[utoipa::path(get, path = "/api/v1/runs/{run}", tag = "runs", params(("run" = i64, Path)),
    responses((status = 200, body = RunDetail), (status = 404, body = ErrorEnvelope)), security(("team" = [])))]
pub async fn get_run(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(run): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&run, "run")?;
    let detail = st
        .store
        .get_run(auth.team.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("run"))?;
    Ok(RunIdExt::attach(id, Json(detail).into_response()))
}

/// Requests cancellation.
#[utoipa::path(post, path = "/api/v1/runs/{run}/cancel", tag = "runs", params(("run" = i64, Path)),
    responses((status = 200, body = Run), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)),
    security(("team" = [])))]
pub async fn cancel(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(run): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&run, "run")?;
    let run = st.store.cancel_run(auth.team.id, id, st.now()).await?;
    // A queued run (one waiting for its retry too) ends here and now; a
    // leased or running one ends when its runner answers or its lease passes.
    let finished = match (run.status, run.finished_at) {
        (RunStatus::Cancelled, Some(finished_at)) => Some(minitower_store::Finished {
            labels: minitower_store::RunLabels {
                run_id: id,
                team: auth.team.slug.clone(),
                app: run.app.clone(),
                environment: run.environment.clone(),
            },
            status: run.status,
            queued_at: run.queued_at,
            started_at: run.started_at,
            finished_at,
        }),
        _ => None,
    };
    st.run_transitioned(id, &run.environment, finished.as_ref());
    Ok(RunIdExt::attach(id, Json(run).into_response()))
}

/// Where to start reading logs.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only lines with a higher `seq`.
    pub after_seq: Option<i64>,
    /// How many lines (at most 10000).
    pub limit: Option<i64>,
}

/// Stored log lines after `after_seq`, ascending.
#[utoipa::path(get, path = "/api/v1/runs/{run}/logs", tag = "runs", params(("run" = i64, Path), LogsQuery),
    responses((status = 200, body = LogList), (status = 404, body = ErrorEnvelope)), security(("team" = [])))]
pub async fn get_logs(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(run): Path<String>,
    q: Result<Query<LogsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(query_error)?;
    let id = parse_id(&run, "run")?;
    let after = q.after_seq.unwrap_or(0).max(0);
    let limit = q.limit.unwrap_or(10_000).clamp(1, 10_000);
    if st.store.get_run(auth.team.id, id).await?.is_none() {
        return Err(ApiError::not_found("run"));
    }
    let logs = st
        .store
        .get_logs(Some(auth.team.id), id, after, limit)
        .await?;
    Ok(RunIdExt::attach(id, Json(LogList { logs }).into_response()))
}
