//! The [`Store`] trait, delegating each method to the module that owns it.

use crate::retention;
use crate::schedules;
use crate::webhooks;
use crate::{apps, attempts, db, environments, reaper, runner, runs, stats, teams, SqlStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use minitower_core::api::{
    App, AttemptState, Environment, LogLine, NewLogLine, ResultRequest, Role, Run, RunDetail,
    RunStats, RunnerInfo, SecretInfo, Team, TokenInfo, Version,
};
use minitower_core::api::{Webhook, WebhookDelivery};
use minitower_core::status::RunStatus;
use minitower_store::{
    AppRecord, LeaseParams, Leased, NewRun, NewVersion, PendingCount, QueueState, Reaped,
    ResultOutcome, RunFilter, RunLabels, RunnerIdentity, Store, StoreResult, TokenIdentity,
    VersionRecord,
};
use minitower_store::{AttemptEnd, AttemptFinish, NextLease};
use minitower_store::{ClaimedEvent, DeliveryRecord, NewWebhook, WebhookUpdate};
use minitower_store::{FireOutcome, FireTick, NewSchedule, ScheduleRecord, ScheduleUpdate};
use minitower_store::{NewSecret, RunSecrets, TokenOptions};
use minitower_store::{PurgeLimits, Purged};
use std::collections::BTreeMap;

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&mut self.write_conn().await?)
            .await
            .map_err(db::err)?;
        Ok(())
    }
    async fn close(&self) {
        SqlStore::close(self).await
    }

    async fn create_team(
        &self,
        slug: &str,
        name: &str,
        password_hash: Option<&str>,
        token_name: &str,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<(Team, i64)> {
        teams::create_team(self, slug, name, password_hash, token_name, token_hash, now).await
    }
    async fn team_login_info(&self, slug: &str) -> StoreResult<Option<(Team, Option<String>)>> {
        // PostgreSQL text cannot hold NUL (the query would fail): no stored
        // key holds one, so such a key names nothing.
        if slug.contains('\0') {
            return Ok(None);
        }
        teams::team_login_info(self, slug).await
    }
    async fn create_token(
        &self,
        team_id: i64,
        name: &str,
        role: Role,
        token_hash: &str,
        now: DateTime<Utc>,
        opts: TokenOptions,
    ) -> StoreResult<TokenInfo> {
        teams::create_token(self, team_id, name, role, token_hash, now, opts).await
    }
    async fn token_by_hash(&self, token_hash: &str) -> StoreResult<Option<TokenIdentity>> {
        if token_hash.contains('\0') {
            return Ok(None);
        }
        teams::token_by_hash(self, token_hash).await
    }
    async fn touch_token(&self, token_id: i64, now: DateTime<Utc>) -> StoreResult<()> {
        teams::touch_token(self, token_id, now).await
    }
    async fn refuse_token(
        &self,
        token_id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        teams::refuse_token(self, token_id, reason, now).await
    }
    async fn list_tokens(&self, team_id: i64) -> StoreResult<Vec<TokenInfo>> {
        teams::list_tokens(self, team_id).await
    }
    async fn revoke_token(
        &self,
        team_id: i64,
        token_id: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        teams::revoke_token(self, team_id, token_id, now).await
    }

    async fn create_environment(
        &self,
        team_id: i64,
        name: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Environment> {
        environments::create_environment(self, team_id, name, now).await
    }
    async fn list_environments(&self, team_id: i64) -> StoreResult<Vec<Environment>> {
        environments::list_environments(self, team_id).await
    }
    async fn environment_exists(&self, team_id: i64, name: &str) -> StoreResult<bool> {
        if name.contains('\0') {
            return Ok(false);
        }
        environments::environment_exists(self, team_id, name).await
    }
    async fn delete_environment(&self, team_id: i64, name: &str) -> StoreResult<()> {
        environments::delete_environment(self, team_id, name).await
    }
    async fn secret_version(
        &self,
        team_id: i64,
        environment: &str,
        name: &str,
    ) -> StoreResult<Option<i64>> {
        environments::secret_version(self, team_id, environment, name).await
    }
    async fn put_secret(&self, secret: NewSecret<'_>) -> StoreResult<SecretInfo> {
        environments::put_secret(self, secret).await
    }
    async fn list_secrets(&self, team_id: i64, environment: &str) -> StoreResult<Vec<SecretInfo>> {
        environments::list_secrets(self, team_id, environment).await
    }
    async fn delete_secret(&self, team_id: i64, environment: &str, name: &str) -> StoreResult<()> {
        environments::delete_secret(self, team_id, environment, name).await
    }
    async fn run_secrets(&self, run_id: i64) -> StoreResult<RunSecrets> {
        environments::run_secrets(self, run_id).await
    }

    async fn create_app(
        &self,
        team_id: i64,
        slug: &str,
        description: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<AppRecord> {
        apps::create_app(self, team_id, slug, description, now).await
    }
    async fn list_apps(&self, team_id: i64) -> StoreResult<Vec<App>> {
        apps::list_apps(self, team_id).await
    }
    async fn get_app(&self, team_id: i64, slug: &str) -> StoreResult<Option<AppRecord>> {
        if slug.contains('\0') {
            return Ok(None);
        }
        apps::get_app(self, team_id, slug).await
    }
    async fn create_version(
        &self,
        team_id: i64,
        app_id: i64,
        version: NewVersion,
        now: DateTime<Utc>,
    ) -> StoreResult<Version> {
        apps::create_version(self, team_id, app_id, version, now).await
    }
    async fn list_versions(&self, team_id: i64, app_id: i64) -> StoreResult<Vec<Version>> {
        apps::list_versions(self, team_id, app_id).await
    }
    async fn get_version(
        &self,
        team_id: i64,
        app_id: i64,
        version_no: Option<i64>,
    ) -> StoreResult<Option<VersionRecord>> {
        apps::get_version(self, team_id, app_id, version_no).await
    }

    async fn create_run(&self, run: NewRun) -> StoreResult<(Run, bool)> {
        runs::create_run(self, run).await
    }
    async fn get_run(&self, team_id: i64, run_id: i64) -> StoreResult<Option<RunDetail>> {
        runs::get_run(self, team_id, run_id).await
    }
    async fn list_runs(&self, team_id: i64, filter: &RunFilter) -> StoreResult<Vec<Run>> {
        runs::list_runs(self, team_id, filter).await
    }
    async fn runs_summary(&self, team_id: i64) -> StoreResult<BTreeMap<RunStatus, i64>> {
        stats::runs_summary(self, team_id).await
    }
    async fn run_stats(
        &self,
        team_id: i64,
        hours: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<RunStats> {
        stats::run_stats(self, team_id, hours, now).await
    }
    async fn cancel_run(&self, team_id: i64, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run> {
        runs::cancel_run(self, team_id, run_id, now).await
    }
    async fn get_logs(
        &self,
        team_id: Option<i64>,
        run_id: i64,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<LogLine>> {
        runs::get_logs(self, team_id, run_id, after_seq, limit).await
    }
    async fn run_status(&self, run_id: i64) -> StoreResult<Option<RunStatus>> {
        runs::run_status(self, run_id).await
    }

    async fn create_schedule(&self, schedule: NewSchedule) -> StoreResult<ScheduleRecord> {
        schedules::create_schedule(self, schedule).await
    }
    async fn list_schedules(&self, team_id: i64, app_id: i64) -> StoreResult<Vec<ScheduleRecord>> {
        schedules::list_schedules(self, team_id, app_id).await
    }
    async fn get_schedule(&self, team_id: i64, id: i64) -> StoreResult<Option<ScheduleRecord>> {
        schedules::get_schedule(self, team_id, id).await
    }
    async fn update_schedule(
        &self,
        team_id: i64,
        id: i64,
        update: ScheduleUpdate,
        now: DateTime<Utc>,
    ) -> StoreResult<ScheduleRecord> {
        schedules::update_schedule(self, team_id, id, update, now).await
    }
    async fn delete_schedule(&self, team_id: i64, id: i64) -> StoreResult<()> {
        schedules::delete_schedule(self, team_id, id).await
    }
    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<(Vec<ScheduleRecord>, Option<DateTime<Utc>>)> {
        schedules::due_schedules(self, now, limit).await
    }
    async fn fire_schedule_tick(&self, fire: FireTick) -> StoreResult<FireOutcome> {
        schedules::fire_schedule_tick(self, fire).await
    }
    async fn skip_schedule_tick(&self, schedule_id: i64, tick: DateTime<Utc>) -> StoreResult<bool> {
        schedules::skip_schedule_tick(self, schedule_id, tick).await
    }

    async fn register_runner(
        &self,
        name: &str,
        environment: &str,
        max_concurrency: i64,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<i64> {
        runner::register_runner(self, name, environment, max_concurrency, token_hash, now).await
    }
    async fn runner_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<RunnerIdentity>> {
        if token_hash.contains('\0') {
            return Ok(None);
        }
        runner::runner_by_token_hash(self, token_hash).await
    }
    async fn runner_seen(&self, runner_id: i64, now: DateTime<Utc>) -> StoreResult<()> {
        runner::runner_seen(self, runner_id, now).await
    }
    async fn runner_offline(&self, runner_id: i64) -> StoreResult<()> {
        runner::runner_offline(self, runner_id).await
    }
    async fn create_webhook(&self, w: NewWebhook) -> StoreResult<Webhook> {
        webhooks::create_webhook(self, w).await
    }
    async fn list_webhooks(&self, team_id: i64) -> StoreResult<Vec<Webhook>> {
        webhooks::list_webhooks(self, team_id).await
    }
    async fn get_webhook(&self, team_id: i64, id: i64) -> StoreResult<Option<Webhook>> {
        webhooks::get_webhook(self, team_id, id).await
    }
    async fn update_webhook(
        &self,
        team_id: i64,
        id: i64,
        update: WebhookUpdate,
        now: DateTime<Utc>,
    ) -> StoreResult<Webhook> {
        webhooks::update_webhook(self, team_id, id, update, now).await
    }
    async fn delete_webhook(&self, team_id: i64, id: i64) -> StoreResult<()> {
        webhooks::delete_webhook(self, team_id, id).await
    }
    async fn list_webhook_deliveries(
        &self,
        team_id: i64,
        id: i64,
        limit: i64,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        webhooks::list_deliveries(self, team_id, id, limit).await
    }
    async fn enqueue_test_event(
        &self,
        team_id: i64,
        id: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<i64> {
        webhooks::enqueue_test_event(self, team_id, id, now).await
    }
    async fn claim_webhook_events(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        claim_ttl: std::time::Duration,
    ) -> StoreResult<Vec<ClaimedEvent>> {
        webhooks::claim(self, now, limit, claim_ttl).await
    }
    async fn record_webhook_delivery(&self, d: DeliveryRecord) -> StoreResult<bool> {
        webhooks::record(self, d).await
    }
    async fn webhook_outbox_depth(&self) -> StoreResult<i64> {
        webhooks::outbox_depth(self).await
    }
    async fn next_webhook_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        webhooks::next_due(self).await
    }
    async fn queue_state(&self, environment: &str, now: DateTime<Utc>) -> StoreResult<QueueState> {
        runner::queue_state(self, environment, now).await
    }
    async fn lease(
        &self,
        runner: &RunnerIdentity,
        lease_token: &str,
        lease_token_hash: &str,
        params: LeaseParams,
    ) -> StoreResult<Option<Leased>> {
        runner::lease(self, runner, lease_token, lease_token_hash, params).await
    }
    async fn start_attempt(
        &self,
        runner_id: i64,
        run_id: i64,
        lease_token_hash: &str,
        params: LeaseParams,
    ) -> StoreResult<(AttemptState, Option<RunLabels>)> {
        attempts::start_attempt(self, runner_id, run_id, lease_token_hash, params).await
    }
    async fn heartbeat(
        &self,
        runner_id: i64,
        run_id: i64,
        lease_token_hash: &str,
        params: LeaseParams,
    ) -> StoreResult<AttemptState> {
        attempts::heartbeat(self, runner_id, run_id, lease_token_hash, params).await
    }
    async fn append_logs(
        &self,
        runner_id: i64,
        run_id: i64,
        lease_token_hash: &str,
        lines: &[NewLogLine],
        now: DateTime<Utc>,
    ) -> StoreResult<(i64, bool)> {
        attempts::append_logs(self, runner_id, run_id, lease_token_hash, lines, now).await
    }
    async fn complete_attempt(
        &self,
        runner_id: i64,
        run_id: i64,
        lease_token_hash: &str,
        result: &ResultRequest,
        now: DateTime<Utc>,
    ) -> StoreResult<ResultOutcome> {
        attempts::complete_attempt(self, runner_id, run_id, lease_token_hash, result, now).await
    }
    async fn finish_attempt(
        &self,
        end: AttemptEnd<'_>,
        next: Option<NextLease<'_>>,
    ) -> StoreResult<AttemptFinish> {
        attempts::finish_attempt(self, end, next).await
    }
    async fn release_attempt(
        &self,
        runner_id: i64,
        run_id: i64,
        lease_token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<ResultOutcome> {
        attempts::release_attempt(self, runner_id, run_id, lease_token_hash, now).await
    }
    async fn leased_artifact(
        &self,
        runner_id: i64,
        run_id: i64,
        lease_token_hash: &str,
    ) -> StoreResult<String> {
        attempts::leased_artifact(self, runner_id, run_id, lease_token_hash).await
    }
    async fn list_runners(&self) -> StoreResult<Vec<RunnerInfo>> {
        runner::list_runners(self).await
    }
    async fn team_active_attempts(&self, team_id: i64) -> StoreResult<Vec<(i64, i64)>> {
        teams::team_active_attempts(self, team_id).await
    }

    async fn reap_expired(&self, now: DateTime<Utc>, limit: i64) -> StoreResult<Vec<Reaped>> {
        reaper::reap_expired(self, now, limit).await
    }
    async fn mark_stale_runners_offline(&self, threshold: DateTime<Utc>) -> StoreResult<i64> {
        reaper::mark_stale_runners_offline(self, threshold).await
    }
    async fn pending_counts(&self) -> StoreResult<Vec<PendingCount>> {
        stats::pending_counts(self).await
    }
    async fn runners_online(&self) -> StoreResult<Vec<(String, i64)>> {
        stats::runners_online(self).await
    }

    async fn purge_finished_runs(
        &self,
        finished_before: DateTime<Utc>,
        limits: PurgeLimits,
    ) -> StoreResult<Purged> {
        retention::purge_finished_runs(self, finished_before, limits).await
    }
    async fn reclaim_space(&self) -> StoreResult<u64> {
        retention::reclaim_space(self).await
    }
    async fn referenced_artifacts(
        &self,
        sha256s: &[String],
    ) -> StoreResult<std::collections::HashSet<String>> {
        retention::referenced_artifacts(self, sha256s).await
    }
}
