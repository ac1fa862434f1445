//! The runner protocol: register, lease (long-poll), start, heartbeat, logs,
//! result, artifact. Every call after the lease carries the lease token; a
//! token that no longer names the active attempt gets 410 and changes nothing.

use crate::error::{ApiError, ApiResult};
use crate::extract::{
    parse_id, AdminAuth, JsonBody, LeaseToken, RegistrationAuth, RunnerAuth, State,
};
use crate::routes::RunIdExt;
use crate::state::{hash_token, new_secret};
use axum::body::Body;
use axum::extract::{Path, State as AxState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use minitower_core::api::*;
use minitower_store::{AttemptEnd, LeaseParams, NextLease};
use std::time::Duration;

/// Longest accepted log line; longer ones are cut (the runner splits first).
const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most lines in one batch.
const MAX_BATCH_LINES: usize = 5000;
/// Longest accepted error message of a result.
const MAX_ERROR_BYTES: usize = 8 * 1024;

fn params(st: &State) -> LeaseParams {
    LeaseParams {
        now: st.now(),
        ttl: st.config.lease_ttl,
        start: false,
    }
}

/// Registers a runner, or rotates the token of an existing name.
#[utoipa::path(post, path = "/api/v1/runners/register", tag = "runner", request_body = RegisterRunnerRequest,
    responses((status = 201, body = RegisteredRunner), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)),
    security(("registration" = [])))]
pub async fn register(
    AxState(st): AxState<State>,
    _auth: RegistrationAuth,
    JsonBody(req): JsonBody<RegisterRunnerRequest>,
) -> ApiResult<impl IntoResponse> {
    let name = req.name.trim();
    if name.is_empty()
        || name.len() > 100
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        return Err(ApiError::invalid_request(
            "runner name must be 1 to 100 characters of letters, digits, '-', '_', '.', '@'",
        ));
    }
    let environment = req.environment.as_deref().unwrap_or("default");
    minitower_core::validate::slug(environment)
        .map_err(|e| ApiError::invalid_request(format!("environment: {e}")))?;
    let max_concurrency = req.max_concurrency.unwrap_or(1);
    if !(1..=256).contains(&max_concurrency) {
        return Err(ApiError::invalid_request(
            "max_concurrency must be from 1 to 256",
        ));
    }
    let token = new_secret("mtr");
    let runner_id = st
        .store
        .register_runner(
            name,
            environment,
            max_concurrency,
            &hash_token(&token),
            st.now(),
        )
        .await?;
    // A registration under a known name replaces that runner's token.
    st.auth.invalidate();
    st.metrics.runner_registered(environment);
    Ok((
        StatusCode::CREATED,
        Json(RegisteredRunner { runner_id, token }),
    ))
}

/// A runner that stops cleanly marks itself offline at once (otherwise it
/// shows online until three lease TTLs pass without a call).
#[utoipa::path(post, path = "/api/v1/runners/offline", tag = "runner",
    responses((status = 204, description = "marked offline"), (status = 401, body = ErrorEnvelope)),
    security(("runner" = [])))]
pub async fn offline(
    AxState(st): AxState<State>,
    RunnerAuth(runner): RunnerAuth,
) -> ApiResult<StatusCode> {
    st.store.runner_offline(runner.runner_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Hands out the next queued run, long-polling up to `wait_seconds`.
#[utoipa::path(post, path = "/api/v1/runs/lease", tag = "runner", request_body = LeaseRequest,
    responses((status = 200, body = Lease), (status = 204, description = "nothing to do"), (status = 401, body = ErrorEnvelope)),
    security(("runner" = [])))]
pub async fn lease(
    AxState(st): AxState<State>,
    RunnerAuth(runner): RunnerAuth,
    JsonBody(req): JsonBody<LeaseRequest>,
) -> ApiResult<Response> {
    let wait = req.wait_seconds.unwrap_or(0.0);
    if !wait.is_finite() || wait < 0.0 {
        return Err(ApiError::invalid_request(
            "wait_seconds must be a number >= 0",
        ));
    }
    let wait = Duration::from_secs_f64(wait.min(MAX_LEASE_WAIT_SECONDS));
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribe before the first try so a run queued in between still wakes us.
    let mut wake = st.notifier.watch_queue(&runner.environment);
    let mut woken = false;
    loop {
        wake.borrow_and_update();
        // A wake reaches every call waiting on the environment, but one run
        // is taken by one of them: the woken take turns and each first
        // reads whether a run is still leasable, so the others skip the
        // write (a queued run's wake, seen after that read, comes round
        // again; see `Notifier`).
        let turn = match woken {
            true => Some(st.notifier.lease_turn(&runner.environment).await),
            false => None,
        };
        let queue = match &turn {
            Some(_) => Some(st.store.queue_state(&runner.environment, st.now()).await?),
            None => None,
        };
        let leased = match queue {
            Some(q) if !q.leasable_now => None,
            // The fast path: the store starts the attempt in the lease's
            // own transaction (`started` in the answer).
            _ => take_next(&st, &runner, req.start).await?,
        };
        drop(turn);
        if let Some(l) = leased {
            let id = l.run_id;
            return Ok(RunIdExt::attach(id, Json(l).into_response()));
        }
        // A run waiting for its failure retry wakes this call when it is due
        // (nothing else announces that moment).
        let mut wake_at = deadline;
        if deadline > tokio::time::Instant::now() {
            let now = st.now();
            let next = match queue {
                Some(q) => q.next_retry_at,
                None => {
                    st.store
                        .queue_state(&runner.environment, now)
                        .await?
                        .next_retry_at
                }
            };
            if let Some(at) = next {
                let until = (at - now).to_std().unwrap_or_default();
                wake_at = wake_at.min(tokio::time::Instant::now() + until);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake_at) => {
                if wake_at >= deadline {
                    return Ok(StatusCode::NO_CONTENT.into_response());
                }
            }
            _ = st.shutdown.cancelled() => return Ok(StatusCode::NO_CONTENT.into_response()),
            changed = wake.changed() => {
                if changed.is_err() {
                    return Ok(StatusCode::NO_CONTENT.into_response());
                }
            }
        }
        woken = true;
    }
}

/// One try at the runner's next run: leased (and started with `start`),
/// its secrets attached, or `None` when nothing is leasable now. A run whose
/// secrets cannot be delivered is failed and the next one tried. Used by
/// the long-poll, and by a result that asked for the next lease when the
/// one its transaction took could not be delivered.
async fn take_next(
    st: &State,
    runner: &minitower_store::RunnerIdentity,
    start: bool,
) -> ApiResult<Option<Lease>> {
    loop {
        let lease_token = new_secret("mtl");
        let lease_hash = hash_token(&lease_token);
        let params = LeaseParams {
            start,
            ..params(st)
        };
        let Some(l) = st
            .store
            .lease(runner, &lease_token, &lease_hash, params)
            .await?
        else {
            return Ok(None);
        };
        if let Some(lease) = deliver(st, runner, l, &lease_hash).await? {
            return Ok(Some(lease));
        }
    }
}

/// Hands a leased run over: its secrets attached, metrics and wake-ups
/// told. `None` when its secrets cannot be delivered: the run is failed
/// before any runner sees it.
async fn deliver(
    st: &State,
    runner: &minitower_store::RunnerIdentity,
    mut l: minitower_store::Leased,
    lease_hash: &str,
) -> ApiResult<Option<Lease>> {
    match crate::lease_secrets::for_run(st, &l.secrets) {
        Ok(secrets) => l.lease.secrets = secrets,
        Err(why) => {
            fail_undeliverable(st, runner, &l, lease_hash, why).await?;
            return Ok(None);
        }
    }
    let wait_s = (st.now() - l.queued_at).num_milliseconds() as f64 / 1000.0;
    st.metrics
        .run_leased(&l.labels.team, &l.labels.app, &l.labels.environment, wait_s);
    st.notifier.run_changed(l.lease.run_id);
    Ok(Some(l.lease))
}

/// Fails a leased run whose secrets cannot be delivered, before any runner
/// sees it (see [`crate::lease_secrets`]).
async fn fail_undeliverable(
    st: &State,
    runner: &minitower_store::RunnerIdentity,
    l: &minitower_store::Leased,
    lease_hash: &str,
    why: crate::lease_secrets::Undeliverable,
) -> ApiResult<()> {
    let mut message = why.0;
    truncate_utf8(&mut message, MAX_ERROR_BYTES);
    let req = ResultRequest {
        status: minitower_core::status::ResultStatus::Failed,
        exit_code: None,
        error_message: Some(message),
    };
    let id = l.lease.run_id;
    let outcome = st
        .store
        .complete_attempt(runner.runner_id, id, lease_hash, &req, st.now())
        .await?;
    st.run_transitioned(id, &l.labels.environment, outcome.finished.as_ref());
    Ok(())
}

/// Acknowledges the lease: `leased -> running`.
#[utoipa::path(post, path = "/api/v1/runs/{run}/start", tag = "runner", params(("run" = i64, Path)),
    responses((status = 200, body = AttemptState), (status = 410, body = ErrorEnvelope)), security(("runner" = [])))]
pub async fn start(
    AxState(st): AxState<State>,
    RunnerAuth(runner): RunnerAuth,
    LeaseToken(lease): LeaseToken,
    Path(run): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&run, "run")?;
    let (state, _labels) = st
        .store
        .start_attempt(runner.runner_id, id, &lease, params(&st))
        .await?;
    st.notifier.run_changed(id);
    Ok(RunIdExt::attach(id, Json(state).into_response()))
}

/// Extends the lease and tells the runner whether cancel was requested.
#[utoipa::path(post, path = "/api/v1/runs/{run}/heartbeat", tag = "runner", params(("run" = i64, Path)),
    responses((status = 200, body = AttemptState), (status = 410, body = ErrorEnvelope)), security(("runner" = [])))]
pub async fn heartbeat(
    AxState(st): AxState<State>,
    RunnerAuth(runner): RunnerAuth,
    LeaseToken(lease): LeaseToken,
    Path(run): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&run, "run")?;
    let state = st
        .store
        .heartbeat(runner.runner_id, id, &lease, params(&st))
        .await?;
    Ok(RunIdExt::attach(id, Json(state).into_response()))
}

/// Stores a batch of log lines; seqs already stored are ignored.
#[utoipa::path(post, path = "/api/v1/runs/{run}/logs", tag = "runner", params(("run" = i64, Path)), request_body = LogBatch,
    responses((status = 200, body = LogBatchAck), (status = 400, body = ErrorEnvelope), (status = 410, body = ErrorEnvelope)),
    security(("runner" = [])))]
pub async fn post_logs(
    AxState(st): AxState<State>,
    RunnerAuth(runner): RunnerAuth,
    LeaseToken(lease): LeaseToken,
    Path(run): Path<String>,
    JsonBody(batch): JsonBody<LogBatch>,
) -> ApiResult<Response> {
    let id = parse_id(&run, "run")?;
    let mut lines = batch.logs;
    check_lines(&mut lines)?;
    let (accepted, cancel_requested) = st
        .store
        .append_logs(runner.runner_id, id, &lease, &lines, st.now())
        .await?;
    if accepted > 0 {
        st.notifier.run_changed(id);
    }
    Ok(RunIdExt::attach(
        id,
        Json(LogBatchAck {
            accepted,
            cancel_requested,
        })
        .into_response(),
    ))
}

/// The checks a batch of log lines passes before it is stored, whether it
/// comes alone or with the result: size, seq, stream name; over-long lines
/// are cut at a character boundary.
fn check_lines(lines: &mut [NewLogLine]) -> ApiResult<()> {
    if lines.len() > MAX_BATCH_LINES {
        return Err(ApiError::invalid_request(format!(
            "at most {MAX_BATCH_LINES} lines per batch"
        )));
    }
    for l in lines {
        if l.seq < 1 {
            return Err(ApiError::invalid_request("log seq must be >= 1"));
        }
        if l.stream.is_empty()
            || l.stream.len() > 16
            || !l.stream.bytes().all(|b| b.is_ascii_lowercase())
        {
            return Err(ApiError::invalid_request(format!(
                "invalid stream name {:?}",
                l.stream
            )));
        }
        truncate_utf8(&mut l.line, MAX_LINE_BYTES);
    }
    Ok(())
}

/// Reports the attempt's outcome; repeating the same result is harmless.
/// The body may carry the attempt's last log lines (`logs`), stored first,
/// so a run's end needs one call instead of a log batch and a result.
#[utoipa::path(post, path = "/api/v1/runs/{run}/result", tag = "runner", params(("run" = i64, Path)), request_body = ResultReport,
    responses((status = 200, body = ResultAck), (status = 409, body = ErrorEnvelope), (status = 410, body = ErrorEnvelope)),
    security(("runner" = [])))]
pub async fn result(
    AxState(st): AxState<State>,
    RunnerAuth(runner): RunnerAuth,
    LeaseToken(lease): LeaseToken,
    Path(run): Path<String>,
    JsonBody(report): JsonBody<ResultReport>,
) -> ApiResult<Response> {
    let id = parse_id(&run, "run")?;
    let commit = report.source_commit.clone();
    if let Some(c) = &commit {
        check_commit(c)?;
    }
    let lease_next = report.lease_next;
    let (mut req, mut lines) = report.split();
    if let Some(m) = req.error_message.as_mut() {
        truncate_utf8(m, MAX_ERROR_BYTES);
    }
    check_lines(&mut lines)?;
    // Lines, commit and result in one transaction: whoever sees the run
    // finished also sees its last lines and what it ran. Asked for, the
    // runner's next run is leased (and started) in that same transaction.
    let next_token = lease_next.then(|| {
        let token = new_secret("mtl");
        let hash = hash_token(&token);
        (token, hash)
    });
    let done = st
        .store
        .finish_attempt(
            AttemptEnd {
                runner_id: runner.runner_id,
                run_id: id,
                lease_token_hash: &lease,
                result: &req,
                lines: &lines,
                commit: commit.as_deref(),
                now: st.now(),
            },
            next_token.as_ref().map(|(token, hash)| NextLease {
                lease_token: token,
                lease_token_hash: hash,
                params: LeaseParams {
                    start: true,
                    ..params(&st)
                },
            }),
        )
        .await?;
    let outcome = done.outcome;
    if done.stored > 0 {
        st.notifier.run_changed(id);
    }
    st.run_transitioned(id, &runner.environment, outcome.finished.as_ref());
    if let Some(r) = &outcome.retry {
        st.metrics
            .failure_retry_scheduled(&r.labels.team, &r.labels.app);
    }
    let mut ack = outcome.ack;
    if let (Some(leased), Some((_, hash))) = (done.next, &next_token) {
        // The result is committed whatever happens here: a run whose
        // secrets cannot be delivered is failed and the next one tried, and
        // a lease that fails is left to the runner's next long-poll.
        let next = match deliver(&st, &runner, leased, hash).await {
            Ok(Some(lease)) => Ok(Some(lease)),
            Ok(None) => take_next(&st, &runner, true).await,
            Err(e) => Err(e),
        };
        ack.next = match next {
            Ok(next) => next.map(Box::new),
            Err(e) => {
                tracing::warn!(run_id = id, error = %e.message, "leasing the next run with a result failed");
                None
            }
        };
    }
    Ok(RunIdExt::attach(id, Json(ack).into_response()))
}

/// Hands a leased or running attempt back without spending a retry (the
/// runner shuts down): the attempt ends `expired`, the run is queued again in
/// its old place, or cancelled when a cancel was requested meanwhile.
#[utoipa::path(post, path = "/api/v1/runs/{run}/release", tag = "runner", params(("run" = i64, Path)),
    responses((status = 200, body = ResultAck), (status = 401, body = ErrorEnvelope), (status = 410, body = ErrorEnvelope)),
    security(("runner" = [])))]
pub async fn release(
    AxState(st): AxState<State>,
    RunnerAuth(runner): RunnerAuth,
    LeaseToken(lease): LeaseToken,
    Path(run): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&run, "run")?;
    let outcome = st
        .store
        .release_attempt(runner.runner_id, id, &lease, st.now())
        .await?;
    st.run_transitioned(id, &runner.environment, outcome.finished.as_ref());
    Ok(RunIdExt::attach(id, Json(outcome.ack).into_response()))
}

/// Streams the version's artifact to the runner holding the lease.
#[utoipa::path(get, path = "/api/v1/runs/{run}/artifact", tag = "runner", params(("run" = i64, Path)),
    responses((status = 200, content_type = "application/gzip", description = "the .tar.gz; header X-Artifact-SHA256"),
              (status = 410, body = ErrorEnvelope)), security(("runner" = [])))]
pub async fn artifact(
    AxState(st): AxState<State>,
    RunnerAuth(runner): RunnerAuth,
    LeaseToken(lease): LeaseToken,
    Path(run): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&run, "run")?;
    let sha = st
        .store
        .leased_artifact(runner.runner_id, id, &lease)
        .await?;
    let (body, size) = st
        .objects
        .open(&sha)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal(format!("artifact object {sha} is missing")))?;
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/gzip"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(v) = HeaderValue::from_str(&sha) {
        h.insert(ARTIFACT_SHA_HEADER, v);
    }
    Ok(RunIdExt::attach(id, resp))
}

/// The platform's runners (admins only), as this team sees them:
/// `active_runs` counts only the team's own runs, never other teams' work.
#[utoipa::path(get, path = "/api/v1/admin/runners", tag = "admin",
    responses((status = 200, body = RunnerList), (status = 403, body = ErrorEnvelope)), security(("team" = [])))]
pub async fn list_runners(
    AxState(st): AxState<State>,
    admin: AdminAuth,
) -> ApiResult<Json<RunnerList>> {
    let mut runners = st.store.list_runners().await?;
    let own: std::collections::HashMap<i64, i64> = st
        .store
        .team_active_attempts(admin.0.team.id)
        .await?
        .into_iter()
        .collect();
    for r in &mut runners {
        r.active_runs = own.get(&r.id).copied().unwrap_or(0);
    }
    Ok(Json(RunnerList { runners }))
}

/// A result's `source_commit`: a full commit SHA as git prints it (40
/// lowercase hex digits, 64 for a SHA-256 repository).
fn check_commit(c: &str) -> ApiResult<()> {
    let hex = c.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if hex && matches!(c.len(), 40 | 64) {
        Ok(())
    } else {
        Err(ApiError::invalid_request(
            "source_commit must be a full commit SHA: 40 or 64 lowercase hex digits",
        ))
    }
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::check_commit;

    #[test]
    fn source_commits_are_full_lowercase_shas() {
        assert!(check_commit(&"a1".repeat(20)).is_ok());
        assert!(check_commit(&"0f".repeat(32)).is_ok());
        for bad in [
            "".to_string(),
            "abc1234".to_string(),
            "A1".repeat(20),
            "g1".repeat(20),
            "a1".repeat(21),
            format!("{} ", "a1".repeat(20)),
        ] {
            assert!(check_commit(&bad).is_err(), "{bad:?}");
        }
    }
}
