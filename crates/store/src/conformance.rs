//! The backend-independent test suite every [`Store`] must pass.
//!
//! Each test is a `pub async fn(Arc<dyn Store>)` that starts from a fresh,
//! empty store and moves time only through the `now` parameters (never
//! sleeps). A backend runs the whole suite with one line in its
//! `tests/conformance.rs`, so every test shows up as its own `#[tokio::test]`
//! and a new backend cannot silently skip one:
//!
//! ```ignore
//! async fn fresh() -> Option<(Arc<dyn Store>, TempDir)> { /* new empty store + guard */ }
//! minitower_store::conformance_tests!(fresh);
//! ```
//!
//! The factory returns the store and a guard dropped after the test (a temp
//! dir, a database to drop, or `()`), or `None` to skip the test. The calling crate needs `tokio` (with the
//! multi-threaded runtime) as a dev-dependency.

pub mod chained;
pub mod environments;
pub mod handback;
pub mod jobs;
pub mod lease;
pub mod races;
pub mod reaper;
pub mod retention;
pub mod retries;
pub mod runs;
pub mod schedules;
pub mod source_commit;
pub mod teams;
pub mod webhooks;

use crate::{
    AppRecord, LeaseParams, Leased, NewRun, NewVersion, QueueState, RunnerIdentity, Store,
    StoreError, StoreResult, TokenOptions, VersionRecord,
};
use chrono::{DateTime, TimeZone, Utc};
use minitower_core::api::{AttemptState, NewLogLine, ResultRequest, Role, Run, RunDetail, Team};
use minitower_core::status::ResultStatus;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Generates one `#[tokio::test]` per conformance test, each calling
/// `$factory().await` for a fresh `Some((Arc<dyn Store>, guard))`, or `None`
/// to skip (a backend whose server is not configured on this machine).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::conformance_tests!(@each $factory;
            teams::team_create_and_duplicate_slug,
            teams::team_login_info_and_password,
            teams::tokens_create_list_touch_revoke,
            teams::tokens_expire,
            teams::team_active_attempts_are_the_teams_own,
            teams::apps_and_duplicate_slugs,
            teams::versions_are_numbered_per_app,
            teams::team_isolation,
            teams::nul_in_a_looked_up_key_is_not_found,
            environments::default_exists_and_names_are_per_team,
            environments::runs_need_an_existing_environment,
            environments::delete_refused_while_active_or_default,
            environments::online_runners_and_waiting_runs,
            environments::secrets_versions_and_isolation,
            environments::run_secrets_of_the_runs_environment,
            environments::token_scope_and_refusal_audit,
            runs::create_run_fields_and_numbering,
            runs::idempotency_key_returns_first_run,
            runs::list_runs_filters_and_pages,
            runs::summary_counts_every_status,
            runs::run_stats_hourly_buckets,
            runs::cancel_queued_run_is_immediate,
            runs::cancel_leased_and_running_runs,
            runs::cancel_finished_run_conflicts,
            lease::register_runner_rotates_token,
            lease::lease_start_heartbeat_complete,
            lease::lease_returns_none_without_work,
            lease::lease_orders_by_priority_then_fifo,
            lease::lease_matches_environment,
            lease::runner_concurrency_limit,
            lease::stale_lease_token_is_gone,
            lease::result_repeat_and_conflict,
            lease::logs_dedupe_and_order,
            lease::log_seq_continues_across_attempts,
            lease::leased_artifact_needs_active_lease,
            handback::lease_answer_carries_ttl_and_fencing_token,
            handback::release_requeues_without_spending_a_retry,
            handback::release_after_cancel_cancels,
            handback::release_needs_the_active_lease,
            handback::unstarted_expiry_spends_no_retry,
            reaper::reaper_requeues_then_kills,
            reaper::reaper_cancels_when_cancel_requested,
            reaper::reaper_spares_heartbeating_leases,
            reaper::late_result_after_expiry_is_gone,
            reaper::reaper_respects_limit,
            reaper::stale_runners_go_offline,
            reaper::pending_counts_per_team_app_environment,
            races::concurrent_leases_never_double_lease,
            races::cancel_racing_result_converges,
            races::racing_reapers_expire_once,
            races::heartbeat_racing_reaper_has_one_winner,
            races::concurrent_creates_number_runs_uniquely,
            races::a_failed_create_gives_its_number_back,
            races::creates_racing_environment_delete,
            retries::failed_attempt_requeues_until_the_budget_is_spent,
            retries::no_budget_fails_at_once,
            retries::version_defaults_and_run_overrides,
            retries::cancels_and_expiries_are_not_failure_retries,
            retries::waiting_run_lets_others_pass,
            webhooks::webhooks_create_list_update_delete_per_team,
            webhooks::run_transitions_write_filtered_events,
            webhooks::claims_records_and_retries,
            webhooks::racing_claims_take_each_event_once,
            schedules::schedules_create_list_get_update_delete,
            schedules::schedules_are_team_scoped,
            schedules::fire_tick_is_idempotent,
            schedules::racing_fires_create_one_run,
            schedules::towerfile_schedules_follow_deploys,
            lease::lease_that_starts_is_one_transaction,
            jobs::versions_keep_their_job_and_priority,
            jobs::leases_carry_the_merged_job_only_when_needed,
            retention::purge_deletes_old_finished_runs_and_what_they_own,
            retention::a_disabled_endpoint_keeps_no_run,
            retention::purge_batches_are_bounded_and_oldest_first,
            retention::purged_numbers_are_never_reused,
            retention::racing_purges_delete_each_run_once,
            retention::referenced_artifacts_are_the_versions_hashes,
            source_commit::source_commit_lands_on_the_held_attempt,
            source_commit::finish_attempt_is_one_transaction,
            chained::result_leases_the_next_run,
            chained::refused_result_leases_nothing,
            chained::repeated_result_never_leases_past_concurrency,
        );
    };
    (@each $factory:path; $($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                // `None`: the backend is not available here (e.g. no
                // PostgreSQL configured); the factory said so and why.
                let Some((store, guard)) = $factory().await else {
                    return;
                };
                $crate::conformance::$module::$name(store).await;
                drop(guard);
            }
        )*
    };
}

/// Lease time-to-live used throughout the suite.
pub const TTL: Duration = Duration::from_secs(30);

/// A fixed, hour-aligned instant plus `secs`: tests move time explicitly.
pub fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

/// Lease parameters at `t(secs)`.
pub fn at(secs: i64) -> LeaseParams {
    LeaseParams {
        start: false,
        now: t(secs),
        ttl: TTL,
    }
}

/// A process-unique string, for token hashes and names.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Asserts a `LeaseGone` error.
#[track_caller]
pub fn assert_gone<T: std::fmt::Debug>(r: StoreResult<T>) {
    assert!(
        matches!(r, Err(StoreError::LeaseGone)),
        "expected LeaseGone, got {r:?}"
    );
}

/// Asserts a `Conflict` error.
#[track_caller]
pub fn assert_conflict<T: std::fmt::Debug>(r: StoreResult<T>) {
    assert!(
        matches!(r, Err(StoreError::Conflict(_))),
        "expected Conflict, got {r:?}"
    );
}

/// Asserts a `NotFound` error.
#[track_caller]
pub fn assert_not_found<T: std::fmt::Debug>(r: StoreResult<T>) {
    assert!(
        matches!(r, Err(StoreError::NotFound(_))),
        "expected NotFound, got {r:?}"
    );
}

/// A version as most tests upload it.
pub fn new_version(sha: &str) -> NewVersion {
    NewVersion {
        artifact_sha256: sha.to_string(),
        artifact_size: 1234,
        entrypoint: "main.py".to_string(),
        timeout_seconds: 60,
        params_schema: Some(json!({"type": "object"})),
        towerfile: Some("[app]\nname = \"hello\"\n".to_string()),
        import_paths: vec!["modules/shared".to_string()],
        retries: 0,
        retry_delay_ms: 2000,
        schedules: None,
        job: minitower_core::job::JobSpec::script("main.py"),
        priority: None,
    }
}

/// A team with one app and one version: the starting point of most tests.
pub struct Fixture {
    pub store: Arc<dyn Store>,
    pub team: Team,
    pub admin_token_id: i64,
    pub app: AppRecord,
    pub version: VersionRecord,
}

impl Fixture {
    /// Team `acme`, app `hello`, version 1.
    pub async fn new(store: Arc<dyn Store>) -> Fixture {
        Fixture::with_team(store, "acme").await
    }

    /// A team `slug` with app `hello` and version 1.
    pub async fn with_team(store: Arc<dyn Store>, slug: &str) -> Fixture {
        let (team, admin_token_id) = store
            .create_team(slug, "Team", None, "admin", &unique("team-token"), t(0))
            .await
            .unwrap();
        let app = store
            .create_app(team.id, "hello", None, t(0))
            .await
            .unwrap();
        let version = Fixture::add_version(&store, team.id, app.id).await;
        Fixture {
            store,
            team,
            admin_token_id,
            app,
            version,
        }
    }

    /// Adds a version to an app and returns its record.
    pub async fn add_version(store: &Arc<dyn Store>, team_id: i64, app_id: i64) -> VersionRecord {
        let v = store
            .create_version(team_id, app_id, new_version(&unique("sha")), t(0))
            .await
            .unwrap();
        store
            .get_version(team_id, app_id, Some(v.version_no))
            .await
            .unwrap()
            .unwrap()
    }

    /// Another app of the team, with one version.
    pub async fn app(&self, slug: &str) -> (AppRecord, VersionRecord) {
        let app = self
            .store
            .create_app(self.team.id, slug, None, t(0))
            .await
            .unwrap();
        let v = Fixture::add_version(&self.store, self.team.id, app.id).await;
        (app, v)
    }

    /// The `NewRun` of a default run of the fixture app queued at `t(secs)`.
    pub fn new_run(&self, secs: i64) -> NewRun {
        NewRun {
            team_id: self.team.id,
            app_id: self.app.id,
            version_id: self.version.id,
            environment: "default".to_string(),
            input: json!({"name": "MiniTower"}),
            priority: 0,
            max_retries: 2,
            idempotency_key: None,
            timeout_seconds: None,
            failure_retries: None,
            retry_delay_ms: None,
            job_overrides: None,
            now: t(secs),
        }
    }

    /// Queues a default run at `t(secs)`.
    pub async fn run(&self, secs: i64) -> Run {
        self.store.create_run(self.new_run(secs)).await.unwrap().0
    }

    /// Queues a run after letting `edit` change its parameters.
    pub async fn run_with(&self, secs: i64, edit: impl FnOnce(&mut NewRun)) -> Run {
        let mut r = self.new_run(secs);
        edit(&mut r);
        self.environment(&r.environment).await;
        self.store.create_run(r).await.unwrap().0
    }

    /// Makes sure the fixture team has the environment `name`.
    pub async fn environment(&self, name: &str) {
        if !self
            .store
            .environment_exists(self.team.id, name)
            .await
            .unwrap()
        {
            self.store
                .create_environment(self.team.id, name, t(0))
                .await
                .unwrap();
        }
    }

    /// Registers a runner.
    pub async fn runner(&self, env: &str, max_concurrency: i64) -> RunnerIdentity {
        register(&self.store, &unique("runner"), env, max_concurrency).await
    }

    /// The team's runs, newest first (at most 100).
    pub async fn runs(&self) -> Vec<Run> {
        self.store
            .list_runs(
                self.team.id,
                &crate::RunFilter {
                    limit: 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
    }

    /// The run as the team sees it now.
    pub async fn get(&self, run_id: i64) -> RunDetail {
        self.store
            .get_run(self.team.id, run_id)
            .await
            .unwrap()
            .unwrap()
    }
}

/// Registers a runner called `name` and resolves it back from its token.
pub async fn register(
    store: &Arc<dyn Store>,
    name: &str,
    env: &str,
    max_concurrency: i64,
) -> RunnerIdentity {
    let hash = unique("runner-token");
    store
        .register_runner(name, env, max_concurrency, &hash, t(0))
        .await
        .unwrap();
    store.runner_by_token_hash(&hash).await.unwrap().unwrap()
}

/// A lease as its runner holds it.
#[derive(Clone)]
pub struct Held {
    pub store: Arc<dyn Store>,
    pub runner_id: i64,
    pub leased: Leased,
    pub token_hash: String,
}

impl Held {
    /// The leased run's id.
    pub fn run_id(&self) -> i64 {
        self.leased.lease.run_id
    }
    /// `start_attempt` at `t(secs)`.
    pub async fn start(&self, secs: i64) -> StoreResult<AttemptState> {
        let r = self
            .store
            .start_attempt(self.runner_id, self.run_id(), &self.token_hash, at(secs));
        r.await.map(|(s, _)| s)
    }
    /// `heartbeat` at `t(secs)`.
    pub async fn heartbeat(&self, secs: i64) -> StoreResult<AttemptState> {
        let r = self
            .store
            .heartbeat(self.runner_id, self.run_id(), &self.token_hash, at(secs));
        r.await
    }
    /// `append_logs` of stdout lines with the given seqs at `t(secs)`.
    pub async fn logs(&self, seqs: &[i64], secs: i64) -> StoreResult<(i64, bool)> {
        let lines: Vec<NewLogLine> = seqs
            .iter()
            .map(|s| NewLogLine {
                seq: *s,
                stream: "stdout".to_string(),
                line: format!("line {s}"),
                logged_at: None,
            })
            .collect();
        let r = self.store.append_logs(
            self.runner_id,
            self.run_id(),
            &self.token_hash,
            &lines,
            t(secs),
        );
        r.await
    }
    /// `complete_attempt` at `t(secs)`.
    pub async fn finish(
        &self,
        status: ResultStatus,
        exit_code: Option<i32>,
        secs: i64,
    ) -> StoreResult<crate::ResultOutcome> {
        let req = ResultRequest {
            status,
            exit_code,
            error_message: None,
        };
        let r = self.store.complete_attempt(
            self.runner_id,
            self.run_id(),
            &self.token_hash,
            &req,
            t(secs),
        );
        r.await
    }
}

impl Held {
    /// `finish_attempt` with an exit code of 0 at `t(secs)`, leasing the
    /// runner's next run (started when `start`) with a fresh lease token.
    pub async fn finish_and_lease(
        &self,
        secs: i64,
        start: bool,
    ) -> StoreResult<(crate::ResultOutcome, Option<Held>)> {
        let req = ResultRequest {
            status: ResultStatus::Completed,
            exit_code: Some(0),
            error_message: None,
        };
        let token = unique("lease");
        let hash = format!("hash-of-{token}");
        let next = crate::NextLease {
            lease_token: &token,
            lease_token_hash: &hash,
            params: LeaseParams { start, ..at(secs) },
        };
        let done = self
            .store
            .finish_attempt(
                end(
                    self.runner_id,
                    self.run_id(),
                    &self.token_hash,
                    &req,
                    &[],
                    None,
                    secs,
                ),
                Some(next),
            )
            .await?;
        let next = done.next.map(|leased| {
            assert_eq!(leased.lease.lease_token, token);
            Held {
                store: self.store.clone(),
                runner_id: self.runner_id,
                leased,
                token_hash: hash.clone(),
            }
        });
        Ok((done.outcome, next))
    }
}

/// The [`crate::AttemptEnd`] of these arguments at `t(secs)`.
pub fn end<'a>(
    runner_id: i64,
    run_id: i64,
    lease_token_hash: &'a str,
    result: &'a ResultRequest,
    lines: &'a [NewLogLine],
    commit: Option<&'a str>,
    secs: i64,
) -> crate::AttemptEnd<'a> {
    crate::AttemptEnd {
        runner_id,
        run_id,
        lease_token_hash,
        result,
        lines,
        commit,
        now: t(secs),
    }
}

/// Leases for `runner` at `t(secs)` with a fresh lease token.
pub async fn lease(store: &Arc<dyn Store>, runner: &RunnerIdentity, secs: i64) -> Option<Held> {
    let token = unique("lease");
    let hash = format!("hash-of-{token}");
    let leased = store
        .lease(runner, &token, &hash, at(secs))
        .await
        .unwrap()?;
    assert_eq!(leased.lease.lease_token, token);
    Some(Held {
        store: store.clone(),
        runner_id: runner.runner_id,
        leased,
        token_hash: hash,
    })
}

/// The token role used when a test does not care.
pub const MEMBER: Role = Role::Member;

/// `{"name": ...}` inputs.
pub fn input(name: &str) -> Value {
    json!({ "name": name })
}
