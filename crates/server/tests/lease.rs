//! Runner registration and leasing: shape, order, environments,
//! concurrency and the long-poll.

mod common;

use common::*;
use minitower_core::api::*;
use minitower_core::{AttemptStatus, ResultStatus, RunStatus};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn register_and_rotate() {
    let app = spawn_app().await;
    let (status, body) = send_json(
        app.raw(Some(REGISTRATION), Method::POST, "/api/v1/runners/register")
            .json(&json!({"name": "runner-1", "environment": "default"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["runner_id"].as_i64().unwrap();
    let old = body["token"].as_str().unwrap().to_string();
    let old_client = app.client(&old);
    assert!(old_client.lease(Duration::ZERO).await.unwrap().is_none());

    let req = RegisterRunnerRequest {
        name: "runner-1".into(),
        environment: None,
        max_concurrency: None,
    };
    expect_api_err(
        app.anon.register_runner("wrong", &req).await,
        401,
        "unauthorized",
    );
    expect_api_err(
        app.anon.register_runner(BOOTSTRAP, &req).await,
        401,
        "unauthorized",
    );
    let resp = app
        .raw(None, Method::POST, "/api/v1/runners/register")
        .json(&req)
        .send()
        .await
        .unwrap();
    envelope(resp, 401).await;

    let again = app.anon.register_runner(REGISTRATION, &req).await.unwrap();
    assert_eq!(again.runner_id, id);
    assert_ne!(again.token, old);
    expect_api_err(old_client.lease(Duration::ZERO).await, 401, "unauthorized");
    assert!(app
        .client(&again.token)
        .lease(Duration::ZERO)
        .await
        .unwrap()
        .is_none());

    for bad in [
        json!({"name": ""}),
        json!({"name": "has space"}),
        json!({"name": "r", "environment": "Bad Env"}),
        json!({"name": "r", "max_concurrency": 0}),
        json!({"name": "r", "max_concurrency": 100000}),
        json!({}),
    ] {
        let resp = app
            .raw(Some(REGISTRATION), Method::POST, "/api/v1/runners/register")
            .json(&bad)
            .send()
            .await
            .unwrap();
        envelope(resp, 400).await;
    }
    let team = app.team("acme").await;
    let runners = team.list_runners().await.unwrap();
    assert_eq!(runners.len(), 1, "{runners:?}");
}

#[tokio::test]
async fn lease_is_204_when_there_is_nothing() {
    let app = spawn_app().await;
    let runner = app.runner("r1", None).await;
    let resp = runner
        .raw(Method::POST, "/api/v1/runs/lease")
        .json(&json!({"wait_seconds": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert!(resp.bytes().await.unwrap().is_empty());
    // An empty body means "do not wait".
    let resp = runner
        .raw(Method::POST, "/api/v1/runs/lease")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
}

#[tokio::test]
async fn lease_has_every_field() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    let v = app_with_version(&team, "hello").await;
    let runner = app.runner("r1", None).await;
    let run = queue_run(&team, "hello", Some(json!({"name": "MiniTower"}))).await;
    let (status, body) = send_json(
        runner
            .raw(Method::POST, "/api/v1/runs/lease")
            .json(&json!({"wait_seconds": 0})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["run_id"], run.id);
    assert_eq!(body["run_no"], 1);
    assert_eq!(body["attempt_no"], 1);
    assert!(body["lease_token"].as_str().unwrap().len() >= 32);
    let expires: chrono::DateTime<chrono::Utc> =
        body["lease_expires_at"].as_str().unwrap().parse().unwrap();
    let want = app.state.now() + chrono::Duration::from_std(app.lease_ttl()).unwrap();
    assert!(
        (expires - want).num_milliseconds().abs() <= 1,
        "{expires} vs {want}"
    );
    assert_eq!(body["app"], "hello");
    assert_eq!(body["version_no"], 1);
    assert_eq!(body["entrypoint"], "main.py");
    assert_eq!(body["timeout_seconds"], 60);
    assert_eq!(body["artifact_sha256"], v.artifact_sha256.as_str());
    assert_eq!(body["input"], json!({"name": "MiniTower"}));
    assert_eq!(body["team"], "acme");
    let d = team.get_run(run.id).await.unwrap();
    assert_eq!(d.run.status, RunStatus::Leased);
    // The run is taken: nobody else gets it.
    let other = app.runner("r2", None).await;
    assert!(other.lease(Duration::ZERO).await.unwrap().is_none());
}

#[tokio::test]
async fn lease_order_and_environment() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let low = queue_run(&team, "hello", None).await;
    let (high, _) = team
        .create_run(
            "hello",
            &CreateRunRequest {
                priority: Some(minitower_core::job::PriorityInput::Number(10.into())),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    team.create_environment("gpu").await.unwrap();
    let (gpu, _) = team
        .create_run(
            "hello",
            &CreateRunRequest {
                environment: Some("gpu".into()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let low2 = queue_run(&team, "hello", None).await;
    let runner = app.runner("r1", Some(10)).await;
    let order: Vec<i64> = [
        lease_now(&runner).await,
        lease_now(&runner).await,
        lease_now(&runner).await,
    ]
    .iter()
    .map(|l| l.run_id)
    .collect();
    assert_eq!(order, [high.id, low.id, low2.id]);
    assert!(runner.lease(Duration::ZERO).await.unwrap().is_none());
    let gpu_runner = app
        .anon
        .register_runner(
            REGISTRATION,
            &RegisterRunnerRequest {
                name: "g1".into(),
                environment: Some("gpu".into()),
                max_concurrency: None,
            },
        )
        .await
        .unwrap();
    let g = lease_now(&app.client(&gpu_runner.token)).await;
    assert_eq!(g.run_id, gpu.id);
}

#[tokio::test]
async fn long_poll_is_woken_by_a_new_run() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let runner = app.runner("r1", None).await;
    let poll = parked_lease(&app, &runner, "r1").await;
    let run = queue_run(&team, "hello", None).await;
    assert_eq!(answered(poll).await.run_id, run.id);
}

#[tokio::test]
async fn concurrency_limit_is_enforced() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let one = app.runner("one", Some(1)).await;
    let r1 = queue_run(&team, "hello", None).await;
    let r2 = queue_run(&team, "hello", None).await;
    let l1 = lease_now(&one).await;
    assert_eq!(l1.run_id, r1.id);
    let resp = one
        .raw(Method::POST, "/api/v1/runs/lease")
        .json(&json!({"wait_seconds": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(
        team.get_run(r2.id).await.unwrap().run.status,
        RunStatus::Queued
    );
    let listed = team.list_runners().await.unwrap();
    assert_eq!(listed[0].active_runs, 1);
    // Finishing frees the slot.
    one.result(
        r1.id,
        &l1.lease_token,
        &result_req(ResultStatus::Failed, Some(1)),
    )
    .await
    .unwrap();
    assert_eq!(lease_now(&one).await.run_id, r2.id);

    let two = app.runner("two", Some(2)).await;
    queue_run(&team, "hello", None).await;
    queue_run(&team, "hello", None).await;
    queue_run(&team, "hello", None).await;
    lease_now(&two).await;
    lease_now(&two).await;
    assert!(two.lease(Duration::ZERO).await.unwrap().is_none());
}

/// Starts a `wait_seconds` lease call for `runner` and returns once the
/// server has made its first (empty) try, so whatever happens next happens
/// while the call is parked.
async fn parked_lease(
    app: &TestApp,
    runner: &minitower_client::Client,
    name: &str,
) -> tokio::task::JoinHandle<minitower_client::ClientResult<Option<Lease>>> {
    let before = app.state.now();
    app.advance(Duration::from_millis(10));
    let poll = {
        let runner = runner.clone();
        tokio::spawn(async move { runner.lease(Duration::from_secs(20)).await })
    };
    let store = app.state.store.clone();
    let name = name.to_string();
    eventually("the lease call to park", || {
        let (store, name) = (store.clone(), name.clone());
        async move {
            let runners = store.list_runners().await.unwrap();
            let r = runners.iter().find(|r| r.name == name).unwrap();
            (r.last_seen_at.unwrap() > before).then_some(())
        }
    })
    .await;
    assert!(!poll.is_finished(), "the lease call should be waiting");
    poll
}

async fn answered(
    poll: tokio::task::JoinHandle<minitower_client::ClientResult<Option<Lease>>>,
) -> Lease {
    tokio::time::timeout(HANG, poll)
        .await
        .expect("long poll answered")
        .unwrap()
        .unwrap()
        .expect("a lease, not 204")
}

#[tokio::test]
async fn long_poll_is_woken_by_a_requeue() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    let other = app.runner("other", None).await;
    let poll = parked_lease(&app, &other, "other").await;
    app.advance(app.lease_ttl() + Duration::from_secs(1));
    assert_eq!(app.reap().await.retried, 1);
    let lease = answered(poll).await;
    assert_eq!((lease.run_id, lease.attempt_no), (l.run.id, 2));
}

#[tokio::test]
async fn long_poll_at_capacity_is_woken_when_a_slot_frees() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    let next = queue_run(&l.team, "hello", None).await;
    // The runner (concurrency 1) is busy: its waiting call cannot take `next`...
    let poll = parked_lease(&app, &l.runner, "runner-1").await;
    // ...until its attempt finishes.
    l.runner
        .result(
            l.run.id,
            &l.lease.lease_token,
            &result_req(ResultStatus::Completed, Some(0)),
        )
        .await
        .unwrap();
    assert_eq!(answered(poll).await.run_id, next.id);
}

#[tokio::test]
async fn long_poll_at_capacity_is_woken_when_the_reaper_frees_a_slot() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let runner = app.runner("r1", None).await;
    let (doomed, _) = team
        .create_run(
            "hello",
            &CreateRunRequest {
                max_retries: Some(0),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    // Started, so its expiry spends the retry it does not have.
    let held = lease_now(&runner).await;
    runner.start(held.run_id, &held.lease_token).await.unwrap();
    let next = queue_run(&team, "hello", None).await;
    let poll = parked_lease(&app, &runner, "r1").await;
    app.advance(app.lease_ttl() + Duration::from_secs(1));
    assert_eq!(app.reap().await.dead, 1);
    assert_eq!(answered(poll).await.run_id, next.id);
    assert_eq!(
        team.get_run(doomed.id).await.unwrap().run.status,
        RunStatus::Dead
    );
}

#[tokio::test]
async fn reregistering_below_the_active_attempts_conflicts() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let runner = app.runner("r1", Some(2)).await;
    queue_run(&team, "hello", None).await;
    queue_run(&team, "hello", None).await;
    lease_now(&runner).await;
    lease_now(&runner).await;
    let req = |n| RegisterRunnerRequest {
        name: "r1".into(),
        environment: None,
        max_concurrency: Some(n),
    };
    expect_api_err(
        app.anon.register_runner(REGISTRATION, &req(1)).await,
        409,
        "conflict",
    );
    // The refused registration did not rotate the token.
    runner.lease(Duration::ZERO).await.unwrap();
    let again = app
        .anon
        .register_runner(REGISTRATION, &req(2))
        .await
        .unwrap();
    assert_eq!(team.list_runners().await.unwrap()[0].active_runs, 2);
    expect_api_err(runner.lease(Duration::ZERO).await, 401, "unauthorized");
    assert!(app
        .client(&again.token)
        .lease(Duration::ZERO)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn release_hands_the_run_back_over_http_without_a_retry() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    let ttl = app.lease_ttl().as_millis() as u64;
    assert_eq!(l.lease.ttl_ms, Some(ttl));
    assert_eq!(l.lease.fencing_token, Some(1));
    let s = l
        .runner
        .start(l.run.id, &l.lease.lease_token)
        .await
        .unwrap();
    assert_eq!(s.ttl_ms, Some(ttl));
    let s = l
        .runner
        .heartbeat(l.run.id, &l.lease.lease_token)
        .await
        .unwrap();
    assert_eq!(s.ttl_ms, Some(ttl));
    let ack = l
        .runner
        .release(l.run.id, &l.lease.lease_token)
        .await
        .unwrap();
    assert_eq!(
        (ack.status, ack.run_status),
        (AttemptStatus::Expired, RunStatus::Queued)
    );
    let d = l.team.get_run(l.run.id).await.unwrap();
    assert_eq!((d.run.status, d.run.retry_count), (RunStatus::Queued, 0));
    // The released token is fenced off; a repeat is 410 too.
    expect_api_err(
        l.runner.release(l.run.id, &l.lease.lease_token).await,
        410,
        "lease_gone",
    );
    let again = lease_now(&l.runner).await;
    assert_eq!(
        (again.run_id, again.attempt_no, again.fencing_token),
        (l.run.id, 2, Some(2))
    );
}
