//! Wire types of the HTTP API (`shared/API.md`), shared by the server, the
//! typed client, the runner, the CLI and the tests so they cannot drift apart.

use crate::job::{JobOverrides, JobSpec, LimitsInput, PriorityInput, PtyInput};
use crate::status::{AttemptStatus, ResultStatus, RunStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

mod access;
pub use access::*;
mod schedules;
pub use schedules::*;
mod retries;
pub use retries::*;
mod webhooks;
pub use webhooks::*;

/// Timestamps travel as RFC 3339 in UTC.
pub type Timestamp = DateTime<Utc>;

/// The error envelope every non-2xx JSON answer carries.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// Machine-readable code plus a message for humans.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A team as shown to its members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Team {
    pub id: i64,
    pub slug: String,
    pub name: String,
}

/// Body of `POST /api/v1/bootstrap/team`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BootstrapTeamRequest {
    pub slug: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// A team plus a fresh admin token (bootstrap and login).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TeamWithToken {
    pub team: Team,
    pub token: String,
}

/// Body of `POST /api/v1/teams/login`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub slug: String,
    pub password: String,
}

/// Token roles: admins may see runners and mint admin tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    /// Wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
    /// Parses the database spelling.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// `GET /api/v1/me`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub team: Team,
    pub role: Role,
    pub token_id: i64,
}

/// Body of `POST /api/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateTokenRequest {
    #[serde(default)]
    #[schema(max_length = 100)]
    pub name: Option<String>,
    #[serde(default)]
    pub role: Option<Role>,
    /// Lifetime from now, e.g. `30d`, `12h` (a bare number is seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
    /// Or an absolute expiry (not both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// A scope narrower than member (the token is then a member token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<TokenScope>,
}

/// A freshly minted token; the secret is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub token: String,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<TokenScope>,
}

/// A token as listed (never the secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// When the token stops working; `null` until revoked.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// The token's scope, when narrower than its role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<TokenScope>,
    /// When the token was last refused (expired, out of scope) and why.
    #[serde(default)]
    pub last_refused_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_refusal: Option<String>,
}

/// `GET /api/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// Body of `POST /api/v1/apps`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateAppRequest {
    #[schema(pattern = "^[a-z][a-z0-9-]{0,62}$")]
    pub slug: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
}

/// An app: a named series of immutable versions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct App {
    pub id: i64,
    pub slug: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_version: Option<i64>,
}

/// `GET /api/v1/apps`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AppList {
    pub apps: Vec<App>,
}

/// One immutable version of an app.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Version {
    pub version_no: i64,
    pub artifact_sha256: String,
    pub entrypoint: String,
    pub timeout_seconds: i64,
    #[schema(value_type = Option<Object>)]
    pub params_schema: Option<Value>,
    pub created_at: DateTime<Utc>,
    /// Extra import folders (packed under `modules/`) from the Towerfile.
    #[serde(default)]
    pub import_paths: Vec<String>,
    /// Failure retries of its runs (the Towerfile's `retries`, default 0).
    #[serde(default)]
    pub retries: i64,
    /// First failure-retry delay in milliseconds (`retry_delay`, default 2 s).
    #[serde(default)]
    pub retry_delay_ms: i64,
    /// What its runs execute: entry, source, PTY and limits (a plain
    /// archive script for versions from before job kinds).
    #[serde(default)]
    pub job: JobSpec,
    /// Default priority of its runs (the Towerfile's `priority`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Its name when the priority has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_name: Option<String>,
}

/// `GET /api/v1/apps/{app}/versions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionList {
    pub versions: Vec<Version>,
}

/// Body of `POST /api/v1/apps/{app}/runs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateRunRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "integral::opt_i64"
    )]
    pub version_no: Option<i64>,
    /// Higher runs are leased first: −1000000 to 1000000, or one of the
    /// names `foreground` (100), `background` (0) and `best_effort` (−100).
    /// Default: the version's `priority`, else 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<PriorityInput>,
    /// Retries after a lost runner (default 2).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "integral::opt_i64"
    )]
    #[schema(minimum = 0, maximum = 100)]
    pub max_retries: Option<i64>,
    /// Runner environment that may take the run (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[a-z][a-z0-9-]{0,62}$")]
    pub environment: Option<String>,
    /// This run's attempt timeout instead of the version's: whole seconds
    /// or a duration such as `"30s"` or `"10m"` (1 s to 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<TimeoutSpec>,
    /// Failure retries of this run instead of the version's `retries`
    /// (0 to 100): a failed attempt queues the run again.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "integral::opt_i64"
    )]
    #[schema(minimum = 0, maximum = 100)]
    pub retries: Option<i64>,
    /// The first failure-retry delay instead of the version's: seconds or
    /// a duration such as `"2s"` (more than 0, at most 1 h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay: Option<RetryDelaySpec>,
    /// A pseudo-terminal for this run (`true`, `false` or `{cols, rows}`)
    /// instead of the version's choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pty: Option<PtyInput>,
    /// Limits replacing the version's, each on its own (`{"memory":
    /// "256MiB", "cpus": 1.5, "pids": 256, "disk": "1GiB"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsInput>,
    /// Another ref (tag, branch, commit) of a git version's repository.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// A git repository to check out for this run instead of the version's
    /// archive or repository, at `ref` (required then); the version's
    /// script or command runs in the checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_url: Option<String>,
}

impl CreateRunRequest {
    /// The job fields of the request, as the run stores them.
    pub fn job_overrides(&self) -> JobOverrides {
        JobOverrides {
            pty: self.pty,
            limits: self.limits.clone(),
            git_ref: self.git_ref.clone(),
            git_url: self.git_url.clone(),
        }
    }
}

/// Integers in request bodies: JSON Schema counts `3.0` as an integer, so
/// integral numbers written as floats are accepted when they fit in an i64.
pub mod integral {
    use serde::{Deserialize, Deserializer};

    /// An optional i64 that may be written `7` or `7.0` (not `7.5`).
    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let v = Option::<serde_json::Number>::deserialize(d)?;
        let Some(n) = v else { return Ok(None) };
        if let Some(i) = n.as_i64() {
            return Ok(Some(i));
        }
        // 2^63 is exactly representable; every f64 below it in magnitude
        // with no fraction converts losslessly.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        match n.as_f64() {
            Some(f) if f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f) => Ok(Some(f as i64)),
            _ => Err(serde::de::Error::custom(format!(
                "expected an integer, got {n}"
            ))),
        }
    }
}

/// A run as users see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Run {
    pub id: i64,
    pub run_no: i64,
    pub app: String,
    pub version_no: i64,
    pub status: RunStatus,
    #[schema(value_type = Object)]
    pub input: Value,
    pub priority: i64,
    /// `foreground`, `background` or `best_effort` when `priority` is one
    /// of theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_name: Option<String>,
    /// What this run changed of its version's job (`pty`, `limits`, `ref`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_overrides: Option<JobOverrides>,
    pub max_retries: i64,
    pub retry_count: i64,
    pub cancel_requested: bool,
    pub exit_code: Option<i32>,
    pub error_message: Option<String>,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub environment: String,
    /// The schedule that started the run; `null` when triggered by hand.
    #[serde(default)]
    pub schedule_id: Option<i64>,
    /// The tick it was started for (set with `schedule_id`).
    #[serde(default)]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// The run's own attempt timeout; `null`: the version's.
    #[serde(default)]
    pub timeout_seconds: Option<i64>,
    /// Failure retries the run may make (a failed attempt queues it again);
    /// separate from `max_retries`, which only lost runners spend.
    #[serde(default)]
    pub failure_retries: i64,
    /// Failure retries made so far.
    #[serde(default)]
    pub failure_retry_count: i64,
    /// The first failure-retry delay in milliseconds; later ones double
    /// (with jitter, capped at 1 h).
    #[serde(default)]
    pub retry_delay_ms: i64,
    /// A queued run is not leased before this time (it waits for a failure
    /// retry); `null` when it never waited.
    #[serde(default)]
    pub not_before: Option<DateTime<Utc>>,
}

/// One attempt in a run's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    pub attempt_no: i64,
    pub status: AttemptStatus,
    pub runner: String,
    pub exit_code: Option<i32>,
    pub error_message: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The commit a git version's checkout resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
}

/// `GET /api/v1/runs/{run}`: the run plus its attempts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: Run,
    pub attempts: Vec<Attempt>,
    /// True when the run is queued and no online runner serves its
    /// environment: it waits until one comes.
    #[serde(default)]
    pub waiting_for_runner: bool,
}

/// Run lists.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<Run>,
}

/// One hour of finished runs for the dashboard chart.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatsBucket {
    pub start: DateTime<Utc>,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub dead: i64,
}

/// `GET /api/v1/runs/stats?hours=N`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunStats {
    pub hours: i64,
    pub buckets: Vec<StatsBucket>,
    pub finished: i64,
    pub succeeded: i64,
    pub success_rate: Option<f64>,
    pub median_duration_seconds: Option<f64>,
}

/// A stored log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    pub seq: i64,
    pub attempt_no: i64,
    pub stream: String,
    pub line: String,
    pub logged_at: DateTime<Utc>,
}

/// `GET /api/v1/runs/{run}/logs`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogList {
    pub logs: Vec<LogLine>,
}

/// The data of the SSE `end` event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StreamEnd {
    pub status: RunStatus,
}

/// Body of `POST /api/v1/runners/register`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterRunnerRequest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<i64>,
}

/// A runner's credentials.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisteredRunner {
    pub runner_id: i64,
    pub token: String,
}

/// Body of `POST /api/v1/runs/lease`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct LeaseRequest {
    #[serde(default)]
    pub wait_seconds: Option<f64>,
    /// Acknowledge the lease in the same call (`leased -> running`, as
    /// `POST /runs/{run}/start` does): the answer then carries `started`.
    /// A server without this fast path ignores it and leaves `started` out,
    /// and the runner calls `start` itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub start: bool,
}

/// Everything a runner needs to execute one attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Lease {
    pub run_id: i64,
    pub run_no: i64,
    pub attempt_no: i64,
    pub lease_token: String,
    pub lease_expires_at: DateTime<Utc>,
    pub app: String,
    pub version_no: i64,
    pub entrypoint: String,
    pub timeout_seconds: i64,
    pub artifact_sha256: String,
    #[schema(value_type = Object)]
    pub input: Value,
    pub team: String,
    /// Highest log seq already stored for the run; this attempt continues after it.
    #[serde(default)]
    pub last_log_seq: i64,
    /// Folders (relative to the workspace) to put on `PYTHONPATH`.
    #[serde(default)]
    pub import_paths: Vec<String>,
    /// The lease's time to live in milliseconds. A runner fences itself at
    /// `time it sent the call + ttl_ms − margin`, which needs no clock
    /// agreement with the server (absent from older servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// Increases with every attempt of the run (the attempt number): a
    /// script passes it to an external store to reject a stale writer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fencing_token: Option<i64>,
    /// The secrets the version's Towerfile declares (`[app] secrets`), from
    /// the run's environment, for the runner to set as environment
    /// variables and mask in the output. Left out when there are none.
    #[serde(default, skip_serializing_if = "LeaseSecrets::is_empty")]
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub secrets: LeaseSecrets,
    /// Set when the lease was asked for with `start: true` and the attempt
    /// is already `running`: the answer `start` would have given. Its
    /// presence also tells the runner that this server takes a result with
    /// the attempt's last log lines (`logs` in the result body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<AttemptState>,
    /// How to execute: entry, source, PTY and limits (the version's with
    /// the run's overrides). Left out for a plain archive script, which
    /// `entrypoint` describes fully, so older runners still take those.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobSpec>,
}

impl Lease {
    /// The job to execute: `job`, else the plain script `entrypoint` names.
    pub fn job_spec(&self) -> JobSpec {
        self.job
            .clone()
            .unwrap_or_else(|| JobSpec::script(&self.entrypoint))
    }
}

/// Answer of start and heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AttemptState {
    pub status: AttemptStatus,
    pub run_status: RunStatus,
    pub cancel_requested: bool,
    pub lease_expires_at: DateTime<Utc>,
    /// The lease's time to live in milliseconds, counted from this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// One line a runner sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewLogLine {
    pub seq: i64,
    pub stream: String,
    pub line: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logged_at: Option<DateTime<Utc>>,
}

/// Body of `POST /api/v1/runs/{run}/logs`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogBatch {
    pub logs: Vec<NewLogLine>,
}

/// Answer to a log batch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogBatchAck {
    pub accepted: i64,
    pub cancel_requested: bool,
}

/// Body of `POST /api/v1/runs/{run}/result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResultRequest {
    pub status: ResultStatus,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub error_message: Option<String>,
}

/// Body of `POST /api/v1/runs/{run}/result` as the server reads it: a
/// [`ResultRequest`] that may also carry the attempt's last log lines, stored
/// in the same call before the result (the fast path that spares a
/// separate `logs` call at the end of every run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResultReport {
    pub status: ResultStatus,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub error_message: Option<String>,
    /// Log lines not yet sent, as in a `logs` batch (same limits; seqs
    /// already stored are ignored, so a repeated result is harmless).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<NewLogLine>,
    /// The commit a git source resolved to (40 or 64 hex digits), stored on
    /// the attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[0-9a-f]{40}([0-9a-f]{24})?$")]
    pub source_commit: Option<String>,
    /// Lease this runner's next run in the same call, started (as a lease
    /// with `start`): the answer's `next`. Never waits; with nothing to
    /// lease `next` is left out and the runner long-polls as usual. A server
    /// without this ignores it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lease_next: bool,
}

impl ResultReport {
    /// The result with `logs` attached.
    pub fn new(result: &ResultRequest, logs: Vec<NewLogLine>) -> ResultReport {
        ResultReport {
            status: result.status,
            exit_code: result.exit_code,
            error_message: result.error_message.clone(),
            logs,
            source_commit: None,
            lease_next: false,
        }
    }

    /// The result and the log lines, apart.
    pub fn split(self) -> (ResultRequest, Vec<NewLogLine>) {
        (
            ResultRequest {
                status: self.status,
                exit_code: self.exit_code,
                error_message: self.error_message,
            },
            self.logs,
        )
    }
}

/// Answer to a result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResultAck {
    pub status: AttemptStatus,
    pub run_status: RunStatus,
    /// The runner's next run, leased and started, when the result asked
    /// for it (`lease_next`) and one was queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Box<Lease>>,
}

/// Whether a runner is heard from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunnerStatus {
    Online,
    Offline,
}

/// A runner as admins see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunnerInfo {
    pub id: i64,
    pub name: String,
    pub environment: String,
    pub status: RunnerStatus,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub active_runs: i64,
    pub max_concurrency: i64,
}

/// `GET /api/v1/admin/runners`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunnerList {
    pub runners: Vec<RunnerInfo>,
}

/// Header carrying the attempt's lease token.
pub const LEASE_TOKEN_HEADER: &str = "X-Lease-Token";
/// Header carrying an artifact's hash on download.
pub const ARTIFACT_SHA_HEADER: &str = "X-Artifact-SHA256";
/// Header that makes run creation idempotent.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// Longest long-poll a lease may ask for.
pub const MAX_LEASE_WAIT_SECONDS: f64 = 30.0;

/// Formats a timestamp the way the API writes them (millisecond precision, `Z`).
pub fn format_ts(ts: &Timestamp) -> String {
    ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
