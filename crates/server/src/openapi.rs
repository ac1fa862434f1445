//! The OpenAPI document, generated from the handlers' annotations.

use crate::routes::{apps, runner, runs, stream, teams};
use minitower_core::api::*;
use minitower_core::status::{AttemptStatus, ResultStatus, RunStatus};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// `GET /api/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "MiniTower API", description = "Job orchestration control plane: teams, apps, versions, runs, runners."),
    paths(
        crate::routes::health, crate::routes::ready, crate::routes::metrics,
        teams::bootstrap, teams::login, teams::me, teams::create_token, teams::list_tokens, teams::revoke_token,
        apps::create_app, apps::list_apps, apps::get_app, apps::create_version, apps::list_versions,
        runs::create_run, runs::list_app_runs, runs::list_runs, runs::summary, runs::stats, runs::get_run,
        runs::cancel, runs::get_logs, stream::stream_logs,
        runner::register, runner::lease, runner::start, runner::heartbeat, runner::release, runner::offline, runner::post_logs, runner::result,
        runner::artifact, runner::list_runners,
    ),
    components(schemas(
        ErrorEnvelope, ErrorBody, Health, Team, BootstrapTeamRequest, TeamWithToken, LoginRequest, Role, Me,
        CreateTokenRequest, CreatedToken, TokenInfo, TokenList, CreateAppRequest, App, AppList, Version,
        VersionList, CreateRunRequest, Run, Attempt, RunDetail, RunList, StatsBucket, RunStats, LogLine, LogList,
        StreamEnd, RegisterRunnerRequest, RegisteredRunner, LeaseRequest, Lease, AttemptState, NewLogLine,
        LogBatch, LogBatchAck, ResultRequest, ResultAck, RunnerStatus, RunnerInfo, RunnerList, RunStatus,
        AttemptStatus, ResultStatus,
    )),
    modifiers(&Security)
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
