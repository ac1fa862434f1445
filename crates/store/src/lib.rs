//! The storage contract of the control plane.
//!
//! One [`Store`] trait, implemented by SQLite (the embedded default) and
//! Postgres (scale-out). Every state change goes through the pure functions
//! of `minitower_core::status` and is written as a compare-and-set on the
//! status (and lease token) that was read, inside one transaction, so two
//! replicas or two tasks can never both win a transition. Time is always
//! passed in (`now`), which keeps the reaper and lease expiry testable
//! without sleeping. The `conformance` module (feature `conformance`) is the
//! test suite every backend must pass.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use minitower_core::api::{
    App, AttemptState, Environment, Lease, LogLine, NewLogLine, ResultAck, ResultRequest, Role,
    Run, RunDetail, RunStats, RunnerInfo, SecretInfo, Team, TokenInfo, TokenScope, Version,
};
use minitower_core::api::{Webhook, WebhookDelivery};
use minitower_core::status::{RunStatus, TransitionError};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

#[cfg(feature = "conformance")]
pub mod conformance;
mod retention;
pub use retention::{PurgeLimits, Purged};
mod schedules;
pub use schedules::{FireOutcome, FireTick, NewSchedule, ScheduleRecord, ScheduleUpdate};
mod webhooks;
pub use webhooks::{ClaimedEvent, DeliveryRecord, NewWebhook, WebhookUpdate};

/// Errors every backend maps its failures to; the server maps these to HTTP.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such object (for this team).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Unique constraint or illegal state transition.
    #[error("{0}")]
    Conflict(String),
    /// The lease token does not name the active attempt any more.
    #[error("lease is no longer active")]
    LeaseGone,
    /// The database failed; not the caller's fault.
    #[error("database error: {0}")]
    Database(String),
    /// The database cannot be reached right now (restarting, connection
    /// lost, pool exhausted): worth retrying; answered 503, not 500.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

impl From<sqlx::Error> for StoreError {
    /// One mapping of driver errors for every SQL backend: a duplicate is a
    /// `Conflict`; a lost or refused connection, an exhausted or closed pool,
    /// or a server shutting down (SQLSTATE classes 08 and 57P) is
    /// `Unavailable`; anything else is a `Database` error.
    fn from(e: sqlx::Error) -> StoreError {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                StoreError::Conflict(format!("already exists ({})", d.message()))
            }
            sqlx::Error::Database(d)
                if d.code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Database(e.to_string()),
        }
    }
}

impl From<TransitionError> for StoreError {
    fn from(e: TransitionError) -> Self {
        match e {
            TransitionError::LeaseGone => StoreError::LeaseGone,
            TransitionError::Conflict { .. } => StoreError::Conflict(e.to_string()),
        }
    }
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// A team token resolved from its hash: who is calling and with what role.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenIdentity {
    pub token_id: i64,
    pub team: Team,
    pub role: Role,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Past this time the token is refused (as expired, not unknown).
    pub expires_at: Option<DateTime<Utc>>,
    /// A scope narrower than the role, when the token has one.
    pub scope: Option<TokenScope>,
}

/// Options of a new token beyond its name, role and hash.
#[derive(Debug, Clone, Default)]
pub struct TokenOptions {
    /// `None` for a token that lives until revoked.
    pub expires_at: Option<DateTime<Utc>>,
    pub scope: Option<TokenScope>,
}

/// A stored secret: what lists show plus the sealed value (never plain).
#[derive(Debug, Clone, PartialEq)]
pub struct SealedSecret {
    pub info: SecretInfo,
    /// `v1.<key id>.<base64>`; opens only for this team, environment, name
    /// and version.
    pub sealed_value: String,
    pub key_id: String,
}

/// A secret value to store, sealed by the caller for `version`.
#[derive(Debug, Clone)]
pub struct NewSecret<'a> {
    pub team_id: i64,
    pub environment: &'a str,
    pub name: &'a str,
    /// The version the value was sealed for: 1 for a new secret, else the
    /// stored version + 1. Anything else is a `Conflict` (a racing write).
    pub version: i64,
    pub sealed_value: &'a str,
    pub key_id: &'a str,
    pub now: DateTime<Utc>,
}

/// What the server needs to deliver a leased run's secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSecrets {
    pub team_id: i64,
    pub environment: String,
    /// The version's Towerfile text, which declares the secrets it needs.
    pub towerfile: Option<String>,
    /// Every secret of the run's team and environment (sealed).
    pub secrets: Vec<SealedSecret>,
}

/// A runner resolved from its token hash.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerIdentity {
    pub runner_id: i64,
    pub name: String,
    pub environment: String,
    pub max_concurrency: i64,
}

/// Everything needed to insert a version; the number is assigned by the store.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub artifact_sha256: String,
    pub artifact_size: i64,
    pub entrypoint: String,
    pub timeout_seconds: i64,
    pub params_schema: Option<Value>,
    pub towerfile: Option<String>,
    pub import_paths: Vec<String>,
    /// Failure retries of the version's runs (the Towerfile's `retries`).
    pub retries: i64,
    /// First failure-retry delay in ms (the Towerfile's `retry_delay`).
    pub retry_delay_ms: i64,
    /// The Towerfile's schedules, applied in the version's transaction: the
    /// app's `towerfile` schedules become exactly this set. `None` (no
    /// Towerfile in the upload) leaves them alone.
    pub schedules: Option<Vec<minitower_core::towerfile::ScheduleSpec>>,
    /// What the version's runs execute (a plain script: `entrypoint`).
    pub job: minitower_core::job::JobSpec,
    /// Default priority of its runs (the Towerfile's `priority`).
    pub priority: Option<i64>,
}

/// A version with the internal ids the server needs to create runs.
#[derive(Debug, Clone)]
pub struct VersionRecord {
    pub id: i64,
    pub app_id: i64,
    pub version: Version,
}

/// An app with its internal id.
#[derive(Debug, Clone)]
pub struct AppRecord {
    pub id: i64,
    pub app: App,
}

/// Everything needed to queue a run.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub team_id: i64,
    pub app_id: i64,
    pub version_id: i64,
    pub environment: String,
    pub input: Value,
    pub priority: i64,
    pub max_retries: i64,
    pub idempotency_key: Option<String>,
    /// The run's own attempt timeout; `None`: the version's.
    pub timeout_seconds: Option<i64>,
    /// The run's own failure retries; `None`: the version's `retries`.
    pub failure_retries: Option<i64>,
    /// The run's own first failure-retry delay (ms); `None`: the version's.
    pub retry_delay_ms: Option<i64>,
    /// What the run changes of its version's job, already checked against it.
    pub job_overrides: Option<minitower_core::job::JobOverrides>,
    pub now: DateTime<Utc>,
}

/// Filters of run lists; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub app_id: Option<i64>,
    pub status: Option<RunStatus>,
    pub limit: i64,
    pub offset: i64,
}

/// Metric labels of a run whose state changed, for the server's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct RunLabels {
    pub run_id: i64,
    pub team: String,
    pub app: String,
    pub environment: String,
}

/// What a result or reap did, with the timings the histograms need.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub labels: RunLabels,
    pub status: RunStatus,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
}

/// Outcome of a submitted result.
#[derive(Debug, Clone)]
pub struct ResultOutcome {
    pub ack: ResultAck,
    /// Set when this call finished the run (not on an idempotent repeat).
    pub finished: Option<Finished>,
    /// Set when a failed attempt requeued the run for a failure retry.
    pub retry: Option<Retrying>,
}

/// A run a failed attempt put back in the queue, waiting for its retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Retrying {
    pub labels: RunLabels,
    /// The run's `not_before`: it is not leased earlier.
    pub not_before: DateTime<Utc>,
}

/// Outcome of one reaped attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Reaped {
    pub labels: RunLabels,
    pub attempt_no: i64,
    /// `Queued` (retried), `Dead` or `Cancelled`.
    pub run_status: RunStatus,
    pub finished: Option<Finished>,
}

/// A lease plus what the server's metrics need.
#[derive(Debug, Clone)]
pub struct Leased {
    pub lease: Lease,
    pub labels: RunLabels,
    pub queued_at: DateTime<Utc>,
    /// The run's Towerfile and its team's secrets in its environment, read
    /// in the lease's transaction (what `run_secrets` would answer), for
    /// the server to open the declared ones.
    pub secrets: RunSecrets,
}

/// The end of an attempt as the result call carries it (see
/// [`Store::finish_attempt`]).
#[derive(Debug, Clone, Copy)]
pub struct AttemptEnd<'a> {
    pub runner_id: i64,
    pub run_id: i64,
    pub lease_token_hash: &'a str,
    pub result: &'a ResultRequest,
    /// The attempt's last log lines.
    pub lines: &'a [NewLogLine],
    /// The commit its git source resolved to.
    pub commit: Option<&'a str>,
    pub now: DateTime<Utc>,
}

/// The runner's next lease, taken with a result (see
/// [`Store::finish_attempt`]); the arguments `lease` takes.
#[derive(Debug, Clone, Copy)]
pub struct NextLease<'a> {
    pub lease_token: &'a str,
    pub lease_token_hash: &'a str,
    pub params: LeaseParams,
}

/// What [`Store::finish_attempt`] did.
#[derive(Debug, Clone)]
pub struct AttemptFinish {
    pub outcome: ResultOutcome,
    /// How many of the lines were new.
    pub stored: i64,
    /// The next run, leased when asked for and one was leasable.
    pub next: Option<Leased>,
}

/// See [`Store::queue_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueState {
    pub leasable_now: bool,
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// Lease parameters.
#[derive(Debug, Clone, Copy)]
pub struct LeaseParams {
    pub now: DateTime<Utc>,
    pub ttl: Duration,
    /// `lease` only: also start the attempt (`leased -> running`) in the
    /// same transaction, as `start_attempt` would, and say so in
    /// `Lease.started` (the protocol's fast path, one write instead of two).
    pub start: bool,
}

/// A row of the pending-runs gauge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCount {
    pub team: String,
    pub app: String,
    pub environment: String,
    pub count: i64,
}

/// The control plane's storage. Implementations must be safe to call from
/// many tasks (and, for Postgres, many processes) at once.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Health check for `/ready`.
    async fn ping(&self) -> StoreResult<()>;

    /// Closes connections cleanly at shutdown (checkpointing where the
    /// backend needs it). Calls after close may fail.
    async fn close(&self) {}

    // ---- teams and tokens ----

    /// Creates a team and its first admin token in one transaction.
    /// Duplicate slug -> `Conflict`.
    async fn create_team(
        &self,
        slug: &str,
        name: &str,
        password_hash: Option<&str>,
        token_name: &str,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<(Team, i64)>;
    /// The team and its password hash, for login.
    async fn team_login_info(&self, slug: &str) -> StoreResult<Option<(Team, Option<String>)>>;
    /// Adds a token to a team (expiry and scope in `opts`).
    async fn create_token(
        &self,
        team_id: i64,
        name: &str,
        role: Role,
        token_hash: &str,
        now: DateTime<Utc>,
        opts: TokenOptions,
    ) -> StoreResult<TokenInfo>;
    /// Resolves a (non-revoked) team token, expired ones included (with
    /// their `expires_at`, so callers can say why they refuse).
    async fn token_by_hash(&self, token_hash: &str) -> StoreResult<Option<TokenIdentity>>;
    /// Records use of a token (callers throttle this).
    async fn touch_token(&self, token_id: i64, now: DateTime<Utc>) -> StoreResult<()>;
    /// Records a refused use of a token (expired, out of scope) and why.
    async fn refuse_token(
        &self,
        token_id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Tokens of a team that are not revoked, oldest first.
    async fn list_tokens(&self, team_id: i64) -> StoreResult<Vec<TokenInfo>>;
    /// Revokes a token of this team; `NotFound` when it is not the team's.
    async fn revoke_token(
        &self,
        team_id: i64,
        token_id: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;

    // ---- environments and secrets (store-sql environments.rs) ----

    /// Adds an environment to a team; a duplicate name is a `Conflict`.
    async fn create_environment(
        &self,
        team_id: i64,
        name: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Environment>;
    /// A team's environments by name, each with the online runners whose
    /// label is its name.
    async fn list_environments(&self, team_id: i64) -> StoreResult<Vec<Environment>>;
    /// Whether the team has this environment.
    async fn environment_exists(&self, team_id: i64, name: &str) -> StoreResult<bool>;
    /// Deletes an environment and its secrets. `NotFound` when the team has
    /// none by that name; `Conflict` for `default` and while runs of the
    /// team are active (queued, leased, running, cancelling) in it.
    async fn delete_environment(&self, team_id: i64, name: &str) -> StoreResult<()>;
    /// The stored version of a secret, `None` when it is not set.
    async fn secret_version(
        &self,
        team_id: i64,
        environment: &str,
        name: &str,
    ) -> StoreResult<Option<i64>>;
    /// Stores a sealed secret value (see [`NewSecret::version`]).
    /// `NotFound("environment")` when the team has no such environment.
    async fn put_secret(&self, secret: NewSecret<'_>) -> StoreResult<SecretInfo>;
    /// Secrets of a team's environment by name (never values).
    /// `NotFound("environment")` when the team has no such environment.
    async fn list_secrets(&self, team_id: i64, environment: &str) -> StoreResult<Vec<SecretInfo>>;
    /// Deletes a secret; `NotFound("secret")` when it is not set.
    async fn delete_secret(&self, team_id: i64, environment: &str, name: &str) -> StoreResult<()>;
    /// The sealed secrets of a run's team and environment and the Towerfile
    /// of its version (no team check: the caller holds the run's lease).
    async fn run_secrets(&self, run_id: i64) -> StoreResult<RunSecrets>;

    // ---- apps and versions ----

    /// Creates an app; duplicate slug in the team -> `Conflict`.
    async fn create_app(
        &self,
        team_id: i64,
        slug: &str,
        description: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<AppRecord>;
    /// Apps of a team, by slug.
    async fn list_apps(&self, team_id: i64) -> StoreResult<Vec<App>>;
    /// One app of a team, with its latest version number.
    async fn get_app(&self, team_id: i64, slug: &str) -> StoreResult<Option<AppRecord>>;
    /// Adds the next version (numbered 1, 2, 3 per app).
    async fn create_version(
        &self,
        team_id: i64,
        app_id: i64,
        version: NewVersion,
        now: DateTime<Utc>,
    ) -> StoreResult<Version>;
    /// Versions of an app, newest first.
    async fn list_versions(&self, team_id: i64, app_id: i64) -> StoreResult<Vec<Version>>;
    /// A version by number, or the latest when `None`.
    async fn get_version(
        &self,
        team_id: i64,
        app_id: i64,
        version_no: Option<i64>,
    ) -> StoreResult<Option<VersionRecord>>;

    // ---- runs ----

    /// Queues a run. With an idempotency key already used for this app, returns
    /// the first run and `false`.
    async fn create_run(&self, run: NewRun) -> StoreResult<(Run, bool)>;
    /// A run of this team, with attempts.
    async fn get_run(&self, team_id: i64, run_id: i64) -> StoreResult<Option<RunDetail>>;
    /// Runs of the team, newest first.
    async fn list_runs(&self, team_id: i64, filter: &RunFilter) -> StoreResult<Vec<Run>>;
    /// Count of runs per status (every status present, zeros included).
    async fn runs_summary(&self, team_id: i64) -> StoreResult<BTreeMap<RunStatus, i64>>;
    /// Hourly finished-run counts and success figures since `now - hours`.
    async fn run_stats(
        &self,
        team_id: i64,
        hours: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<RunStats>;
    /// User cancel (see `status::cancel`). Returns the run afterwards.
    async fn cancel_run(&self, team_id: i64, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run>;
    /// Log lines with seq > `after_seq`, ascending, at most `limit`.
    /// `team_id` `None` skips the team check (internal streaming).
    async fn get_logs(
        &self,
        team_id: Option<i64>,
        run_id: i64,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<LogLine>>;
    /// Status of a run and whether it is terminal, for streams (no team check).
    async fn run_status(&self, run_id: i64) -> StoreResult<Option<RunStatus>>;

    // ---- webhooks (store-sql webhooks.rs) ----

    /// Adds an endpoint; `NotFound("app")` for an app the team does not have.
    async fn create_webhook(&self, w: NewWebhook) -> StoreResult<Webhook>;
    /// A team's endpoints, oldest first.
    async fn list_webhooks(&self, team_id: i64) -> StoreResult<Vec<Webhook>>;
    /// One endpoint of the team.
    async fn get_webhook(&self, team_id: i64, id: i64) -> StoreResult<Option<Webhook>>;
    /// Changes an endpoint; `NotFound("webhook")` when it is not the team's.
    async fn update_webhook(
        &self,
        team_id: i64,
        id: i64,
        update: WebhookUpdate,
        now: DateTime<Utc>,
    ) -> StoreResult<Webhook>;
    /// Deletes an endpoint with its pending events and delivery history.
    async fn delete_webhook(&self, team_id: i64, id: i64) -> StoreResult<()>;
    /// An endpoint's delivery attempts, newest first (at most `limit`).
    async fn list_webhook_deliveries(
        &self,
        team_id: i64,
        id: i64,
        limit: i64,
    ) -> StoreResult<Vec<WebhookDelivery>>;
    /// Queues a `webhook.test` event for one endpoint (enabled or not) and
    /// returns its outbox id.
    async fn enqueue_test_event(
        &self,
        team_id: i64,
        id: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<i64>;
    /// Claims up to `limit` due events of enabled endpoints (each row by one
    /// claimer: `SKIP LOCKED` where there are row locks) and makes each due
    /// again at `now + claim_ttl` unless its attempt is recorded first.
    async fn claim_webhook_events(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        claim_ttl: Duration,
    ) -> StoreResult<Vec<ClaimedEvent>>;
    /// Records one attempt and moves the event on (delivered, due again,
    /// or failed). `false` when the claim is no longer current (the claim
    /// ran out and another deliverer took the event): nothing is written.
    async fn record_webhook_delivery(&self, d: DeliveryRecord) -> StoreResult<bool>;
    /// Events waiting for delivery, across teams (the outbox-depth gauge).
    async fn webhook_outbox_depth(&self) -> StoreResult<i64>;
    /// When the next pending event is due (the deliverer sleeps until then).
    async fn next_webhook_due(&self) -> StoreResult<Option<DateTime<Utc>>>;

    // ---- schedules ----

    /// Adds a schedule; its first due tick is the first after `now`.
    /// `NotFound` for an app or pinned version the team does not have.
    async fn create_schedule(&self, schedule: NewSchedule) -> StoreResult<ScheduleRecord>;
    /// The app's schedules, oldest first.
    async fn list_schedules(&self, team_id: i64, app_id: i64) -> StoreResult<Vec<ScheduleRecord>>;
    /// One schedule of the team.
    async fn get_schedule(&self, team_id: i64, id: i64) -> StoreResult<Option<ScheduleRecord>>;
    /// Changes a schedule. A new cron, zone or a resume counts ticks from
    /// `now` (ticks before it never fire); a pause clears the due tick.
    async fn update_schedule(
        &self,
        team_id: i64,
        id: i64,
        update: ScheduleUpdate,
        now: DateTime<Utc>,
    ) -> StoreResult<ScheduleRecord>;
    /// Deletes a schedule of the team (its runs stay, keeping its id).
    async fn delete_schedule(&self, team_id: i64, id: i64) -> StoreResult<()>;
    /// Enabled schedules whose next tick is at or before `now`, most
    /// overdue first, at most `limit`; and the earliest due tick of any
    /// enabled schedule after them (when the scheduler should look again).
    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<(Vec<ScheduleRecord>, Option<DateTime<Utc>>)>;
    /// Creates the tick's run and records the tick in one transaction. The
    /// unique `(schedule_id, scheduled_for)` of runs makes a tick fire at
    /// most once across replicas and restarts.
    async fn fire_schedule_tick(&self, fire: FireTick) -> StoreResult<FireOutcome>;
    /// Records a tick as processed without a run (no version to run, input
    /// the version refuses); `false` when it was already processed.
    async fn skip_schedule_tick(&self, schedule_id: i64, tick: DateTime<Utc>) -> StoreResult<bool>;

    // ---- runners ----
    /// What a waiting lease call needs to know of `environment`'s queue,
    /// in one read: whether a run is leasable now (so a call woken for a
    /// run another call already took skips the write), and the earliest
    /// time after `now` a run waiting for its failure retry becomes
    /// leasable (the `not_before` it can wake at; `None` when none waits).
    async fn queue_state(&self, environment: &str, now: DateTime<Utc>) -> StoreResult<QueueState>;

    /// Registers a runner or rotates the token of an existing name.
    async fn register_runner(
        &self,
        name: &str,
        environment: &str,
        max_concurrency: i64,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<i64>;
    /// Resolves a runner token.
    async fn runner_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<RunnerIdentity>>;
    /// Marks the runner seen (online) now. Lease and heartbeat do this too.
    async fn runner_seen(&self, runner_id: i64, now: DateTime<Utc>) -> StoreResult<()>;
    /// Marks the runner offline now (it stopped cleanly); its next call
    /// marks it online again.
    async fn runner_offline(&self, runner_id: i64) -> StoreResult<()>;
    /// Hands the next queued run of the runner's environment to it, if the
    /// runner is below its concurrency. `lease_token_hash` is stored; the
    /// caller hands the plain token to the runner.
    async fn lease(
        &self,
        runner: &RunnerIdentity,
        lease_token: &str,
        lease_token_hash: &str,
        params: LeaseParams,
    ) -> StoreResult<Option<Leased>>;
    /// `leased -> running`; harmless to repeat. `LeaseGone` on a stale token.
    async fn start_attempt(
        &self,
        runner_id: i64,
        run_id: i64,
        lease_token_hash: &str,
        params: LeaseParams,
    ) -> StoreResult<(AttemptState, Option<RunLabels>)>;
    /// Extends the lease; reports whether cancel was requested.
    async fn heartbeat(
        &self,
        runner_id: i64,
        run_id: i64,
        lease_token_hash: &str,
        params: LeaseParams,
    ) -> StoreResult<AttemptState>;
    /// Stores log lines of the active attempt; seqs already stored are ignored.
    /// Returns how many were new and whether cancel was requested.
    async fn append_logs(
        &self,
        runner_id: i64,
        run_id: i64,
        lease_token_hash: &str,
        lines: &[NewLogLine],
        now: DateTime<Utc>,
    ) -> StoreResult<(i64, bool)>;
    /// Finishes the attempt and the run (see `status::result`).
    async fn complete_attempt(
        &self,
        runner_id: i64,
        run_id: i64,
        lease_token_hash: &str,
        result: &ResultRequest,
        now: DateTime<Utc>,
    ) -> StoreResult<ResultOutcome>;
    /// The fast path's end of an attempt, in one transaction: the
    /// attempt's last log lines and the commit its git source resolved to,
    /// stored only while it is active (as `append_logs` stores lines),
    /// then its result as `complete_attempt` records it. A repeated result
    /// stores nothing new and gets the same answer.
    ///
    /// With `next`, the same transaction then leases the runner's next run
    /// as `lease` would (its rules, its concurrency, the count this result
    /// just lowered): one turn at the writer for the end of one run and the
    /// start of the next. A result that is refused leases nothing.
    async fn finish_attempt(
        &self,
        end: AttemptEnd<'_>,
        next: Option<NextLease<'_>>,
    ) -> StoreResult<AttemptFinish>;
    /// The runner hands its active attempt back without spending a retry
    /// (see `status::release`): the run is queued again, or cancelled when a
    /// cancel was requested. `LeaseGone` on a stale token.
    async fn release_attempt(
        &self,
        runner_id: i64,
        run_id: i64,
        lease_token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<ResultOutcome>;
    /// The artifact hash of the run's version, if the token holds the lease.
    async fn leased_artifact(
        &self,
        runner_id: i64,
        run_id: i64,
        lease_token_hash: &str,
    ) -> StoreResult<String>;
    /// Every runner with its online state and active attempt count.
    async fn list_runners(&self) -> StoreResult<Vec<RunnerInfo>>;
    /// Active attempts (leased, running, cancelling) of one team's runs per
    /// runner, as `(runner id, count)`; runners with none are left out. What
    /// a team's runner listing shows instead of platform-wide counts.
    async fn team_active_attempts(&self, team_id: i64) -> StoreResult<Vec<(i64, i64)>>;

    // ---- reaper and metrics ----

    /// Expires up to `limit` attempts whose lease ended before `now` and
    /// requeues, kills or cancels their runs. Each expiry is applied once,
    /// even when several reapers race.
    async fn reap_expired(&self, now: DateTime<Utc>, limit: i64) -> StoreResult<Vec<Reaped>>;
    /// Marks runners not seen since `threshold` offline; returns how many.
    async fn mark_stale_runners_offline(&self, threshold: DateTime<Utc>) -> StoreResult<i64>;
    /// Queued runs per team, app and environment.
    async fn pending_counts(&self) -> StoreResult<Vec<PendingCount>>;
    /// Online runners per environment.
    async fn runners_online(&self) -> StoreResult<Vec<(String, i64)>>;

    // ---- retention (store-sql retention.rs) ----

    /// Deletes one batch (one transaction, within `limits`) of runs that
    /// finished before `finished_before`, oldest first, with their attempts,
    /// log lines, webhook events and delivery attempts. Never touches a run
    /// that is not terminal, one with a webhook event still pending for an
    /// enabled endpoint, or the newest run of its app (ids and run numbers
    /// are assigned past the highest stored one, so keeping it means none
    /// is ever reused). Runs
    /// another replica is purging are skipped, not waited for. Nothing left
    /// to delete: all counts zero.
    async fn purge_finished_runs(
        &self,
        finished_before: DateTime<Utc>,
        limits: PurgeLimits,
    ) -> StoreResult<Purged>;
    /// Returns a bounded amount of freed space to the file system (SQLite's
    /// incremental vacuum) and says how much is still left to return, in
    /// the backend's units (pages); 0 when nothing is, or when the database
    /// reclaims space by itself (PostgreSQL's autovacuum).
    async fn reclaim_space(&self) -> StoreResult<u64>;
    /// The artifact hashes among `sha256s` that some version references.
    async fn referenced_artifacts(
        &self,
        sha256s: &[String],
    ) -> StoreResult<std::collections::HashSet<String>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_unavailable_not_database_errors() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        for e in [
            sqlx::Error::Io(io),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Protocol("unexpected EOF".into()),
        ] {
            assert!(
                matches!(StoreError::from(e), StoreError::Unavailable(_)),
                "a lost connection is worth a retry"
            );
        }
        assert!(matches!(
            StoreError::from(sqlx::Error::RowNotFound),
            StoreError::Database(_)
        ));
    }
}
