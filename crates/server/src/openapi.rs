//! The OpenAPI document, generated from the handlers' annotations.

use crate::routes::{apps, environments, runner, runs, schedules, stream, teams, webhooks};
use minitower_core::api::*;
use minitower_core::job::{
    Entry, JobOverrides, JobSpec, Limits, LimitsInput, Priority, PriorityInput, PtyInput, PtySize,
    SizeInput, Source,
};
use minitower_core::status::{AttemptStatus, ResultStatus, RunStatus};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, Required, ResponseBuilder};
use utoipa::{Modify, OpenApi};

/// `GET /api/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "MiniTower API", description = "Job orchestration control plane: teams, apps, versions, runs, runners."),
    paths(
        crate::routes::health, crate::routes::ready, crate::routes::metrics,
        teams::bootstrap, teams::login, teams::me, teams::create_token, teams::list_tokens, teams::revoke_token,
        apps::create_app, apps::list_apps, apps::get_app, apps::create_version, apps::list_versions, apps::get_version,
        runs::create_run, runs::list_app_runs, runs::list_runs, runs::summary, runs::stats, runs::get_run,
        runs::cancel, runs::get_logs, stream::stream_logs,
        schedules::list_schedules, schedules::create_schedule, schedules::get_schedule,
        schedules::update_schedule, schedules::delete_schedule,
        environments::list_environments, environments::create_environment, environments::delete_environment,
        environments::list_secrets, environments::put_secret, environments::delete_secret,
        runner::register, runner::lease, runner::start, runner::heartbeat, runner::release, runner::offline, runner::post_logs, runner::result,
        runner::artifact, runner::list_runners,
        webhooks::list_webhooks, webhooks::create_webhook, webhooks::get_webhook,
        webhooks::update_webhook, webhooks::delete_webhook, webhooks::list_deliveries,
        webhooks::send_test,
    ),
    components(schemas(
        ErrorEnvelope, ErrorBody, Health, Team, BootstrapTeamRequest, TeamWithToken, LoginRequest, Role, Me,
        CreateTokenRequest, CreatedToken, TokenInfo, TokenList, CreateAppRequest, App, AppList, Version,
        VersionList, CreateRunRequest, Run, Attempt, RunDetail, RunList, StatsBucket, RunStats, LogLine, LogList,
        StreamEnd, RegisterRunnerRequest, RegisteredRunner, LeaseRequest, Lease, AttemptState, NewLogLine,
        LogBatch, LogBatchAck, ResultRequest, ResultReport, ResultAck, RunnerStatus, RunnerInfo, RunnerList, RunStatus,
        AttemptStatus, ResultStatus,
        Schedule, ScheduleList, ScheduleSource, CreateScheduleRequest, UpdateScheduleRequest, TimeoutSpec,
        CreateEnvironmentRequest, Environment, EnvironmentList, SecretInfo, SecretList, PutSecretRequest,
        ScopeAction, TokenScope, LeaseSecrets,
        RetryDelaySpec, Webhook, WebhookList, CreatedWebhook, CreateWebhookRequest, UpdateWebhookRequest,
        WebhookEvents, DeliveryOutcome, WebhookDelivery, WebhookDeliveryList, QueuedEvent, WebhookPayload,
        JobSpec, Entry, Source, PtySize, PtyInput, Limits, LimitsInput, SizeInput, JobOverrides,
        Priority, PriorityInput,
    )),
    modifiers(&Security, &CommonErrors)
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let bearer =
            || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        let components = doc.components.get_or_insert_with(Default::default);
        for name in ["team", "bootstrap", "registration", "runner"] {
            components.add_security_scheme(name, bearer());
        }
    }
}

/// Adds the error answers the shared extractors give to every operation
/// that uses them, so no handler can forget one:
/// - 401 where a token is required (missing, unknown or revoked token);
/// - 403 on admin-only paths (a member token);
/// - 400 where a JSON body or a query string is read (malformed, wrong types);
/// - 404 where a path names an object (unknown or malformed id or slug).
///
/// Bodies whose fields are all optional may be left out (read as `{}`),
/// except where the handler insists on one (`POST /api/v1/tokens`).
struct CommonErrors;

/// Operations whose JSON body may be omitted.
const OPTIONAL_BODIES: &[&str] = &["/api/v1/apps/{app}/runs", "/api/v1/runs/lease"];

impl Modify for CommonErrors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for (path, item) in doc.paths.paths.iter_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                add_common_errors(path, op);
            }
        }
    }
}

fn add_common_errors(path: &str, op: &mut Operation) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let params = op.parameters.as_deref().unwrap_or_default();
    let has_query = params
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Query));
    let has_path = params
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Path));
    let json_body = op
        .request_body
        .as_ref()
        .is_some_and(|b| b.content.contains_key("application/json"));
    if let Some(body) = op.request_body.as_mut() {
        if OPTIONAL_BODIES.contains(&path) {
            body.required = Some(Required::False);
        }
    }
    let mut want = Vec::new();
    if json_body || op.request_body.is_some() || has_query {
        want.push(("400", "invalid request (malformed body or parameters)"));
    }
    if op.request_body.is_some() {
        want.push((
            "413",
            "the body is larger than this call accepts (MINITOWER_MAX_REQUEST_BODY_SIZE; 512 KiB for a secret)",
        ));
    }
    if secured {
        want.push(("401", "missing, unknown or revoked token"));
    }
    if secured && path.starts_with("/api/v1/admin/") {
        want.push(("403", "the token is not an admin token"));
    }
    let team_secured = op.security.as_ref().is_some_and(|s| {
        serde_json::to_value(s)
            .map(|v| v.to_string().contains("\"team\""))
            .unwrap_or(false)
    });
    if team_secured {
        want.push(("403", "the token's scope does not allow this call"));
    }
    if has_path {
        want.push(("404", "no such object"));
    }
    for (code, description) in want {
        op.responses
            .responses
            .entry(code.to_string())
            .or_insert_with(|| {
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                            .build(),
                    )
                    .build()
                    .into()
            });
    }
}
