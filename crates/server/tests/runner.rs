//! The runner protocol: register, lease, start, heartbeat, logs, result,
//! artifact, and the lease-token fence around them.

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
                priority: Some(10),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
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
    let registered_at = app.state.now();
    // Lease calls mark the runner seen at the (manual) clock's time, so a
    // later last_seen_at proves the waiting lease has made its first try.
    app.advance(Duration::from_secs(1));
    let poll = {
        let runner = runner.clone();
        tokio::spawn(async move { runner.lease(Duration::from_secs(20)).await })
    };
    let store = app.state.store.clone();
    eventually("the lease call to start waiting", || {
        let store = store.clone();
        async move {
            let r = store.list_runners().await.unwrap();
            (r[0].last_seen_at.unwrap() > registered_at).then_some(())
        }
    })
    .await;
    assert!(!poll.is_finished());
    let run = queue_run(&team, "hello", None).await;
    let lease = tokio::time::timeout(HANG, poll)
        .await
        .expect("long poll returned")
        .unwrap()
        .unwrap()
        .expect("a lease, not 204");
    assert_eq!(lease.run_id, run.id);
}

#[tokio::test]
async fn lease_token_fences_every_call() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    let run_id = l.run.id;
    let other_runner = app.runner("r2", None).await;
    let good = l.lease.lease_token.clone();

    for what in ["start", "heartbeat", "logs", "result", "artifact"] {
        let method = if what == "artifact" {
            Method::GET
        } else {
            Method::POST
        };
        let body = match what {
            "logs" => json!({"logs": [{"seq": 1, "stream": "stdout", "line": "x"}]}),
            "result" => json!({"status": "completed", "exit_code": 0}),
            _ => json!({}),
        };
        let path = format!("/api/v1/runs/{run_id}/{what}");
        // Missing lease token: 401.
        let resp = l
            .runner
            .raw(method.clone(), &path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (code, _) = envelope(resp, 401).await;
        assert_eq!(code, "unauthorized", "{what}");
        // Wrong lease token: 410.
        let resp = l
            .runner
            .raw(method.clone(), &path)
            .header(LEASE_TOKEN_HEADER, "mtl_wrong")
            .json(&body)
            .send()
            .await
            .unwrap();
        let (code, _) = envelope(resp, 410).await;
        assert_eq!(code, "lease_gone", "{what}");
        // The right lease token from another runner: 410.
        let resp = other_runner
            .raw(method.clone(), &path)
            .header(LEASE_TOKEN_HEADER, &good)
            .json(&body)
            .send()
            .await
            .unwrap();
        envelope(resp, 410).await;
        // No runner token at all: 401.
        let resp = app
            .raw(None, method, &path)
            .header(LEASE_TOKEN_HEADER, &good)
            .json(&body)
            .send()
            .await
            .unwrap();
        envelope(resp, 401).await;
    }
    // Nothing changed.
    let d = l.team.get_run(run_id).await.unwrap();
    assert_eq!(d.run.status, RunStatus::Leased);
    assert_eq!(d.attempts[0].status, AttemptStatus::Leased);
    assert!(l.team.logs(run_id, 0).await.unwrap().is_empty());
    // The real holder still can.
    let st = l.runner.start(run_id, &good).await.unwrap();
    assert_eq!(
        (st.status, st.run_status),
        (AttemptStatus::Running, RunStatus::Running)
    );
    // Repeating start is harmless.
    let st2 = l.runner.start(run_id, &good).await.unwrap();
    assert_eq!(st2.run_status, RunStatus::Running);
    // A lease token for another run does not work on this one.
    let second = queue_run(&l.team, "hello", None).await;
    let r2 = app.runner("r3", None).await;
    let l2 = lease_now(&r2).await;
    assert_eq!(l2.run_id, second.id);
    expect_api_err(
        r2.heartbeat(run_id, &l2.lease_token).await,
        410,
        "lease_gone",
    );
}

#[tokio::test]
async fn heartbeat_extends_the_lease() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    l.runner
        .start(l.run.id, &l.lease.lease_token)
        .await
        .unwrap();
    app.advance(Duration::from_secs(3));
    let hb = l
        .runner
        .heartbeat(l.run.id, &l.lease.lease_token)
        .await
        .unwrap();
    assert!(hb.lease_expires_at > l.lease.lease_expires_at);
    assert!(!hb.cancel_requested);
    assert_eq!(hb.run_status, RunStatus::Running);
    // Past the first expiry but within the extended one: not reaped.
    app.advance(Duration::from_secs(3));
    app.reap().await;
    assert_eq!(
        l.team.get_run(l.run.id).await.unwrap().run.status,
        RunStatus::Running
    );
}

#[tokio::test]
async fn logs_resent_are_stored_once() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    let t = &l.lease.lease_token;
    l.runner.start(l.run.id, t).await.unwrap();
    let ack = l
        .runner
        .send_logs(l.run.id, t, vec![line(1, "one"), line(2, "two")])
        .await
        .unwrap();
    assert_eq!(ack.accepted, 2);
    let ack = l
        .runner
        .send_logs(
            l.run.id,
            t,
            vec![line(1, "one"), line(2, "two"), line(3, "three")],
        )
        .await
        .unwrap();
    assert_eq!(ack.accepted, 1);
    let ack = l
        .runner
        .send_logs(l.run.id, t, vec![line(2, "two")])
        .await
        .unwrap();
    assert_eq!(ack.accepted, 0);
    let logs = l.team.logs(l.run.id, 0).await.unwrap();
    let got: Vec<(i64, &str)> = logs.iter().map(|x| (x.seq, x.line.as_str())).collect();
    assert_eq!(got, [(1, "one"), (2, "two"), (3, "three")]);
    assert!(logs
        .iter()
        .all(|x| x.attempt_no == 1 && x.stream == "stdout"));
    for bad in [
        json!({"logs": [{"seq": 0, "stream": "stdout", "line": "x"}]}),
        json!({"logs": [{"seq": 4, "stream": "", "line": "x"}]}),
        json!({"logs": [{"seq": 4, "stream": "STDOUT!", "line": "x"}]}),
        json!({"logs": [{"seq": "4", "stream": "stdout", "line": "x"}]}),
        json!({"logs": "nope"}),
        json!({}),
    ] {
        let resp = l
            .runner
            .raw(Method::POST, &format!("/api/v1/runs/{}/logs", l.run.id))
            .header(LEASE_TOKEN_HEADER, t)
            .json(&bad)
            .send()
            .await
            .unwrap();
        envelope(resp, 400).await;
    }
    assert_eq!(l.team.logs(l.run.id, 0).await.unwrap().len(), 3);
}

#[tokio::test]
async fn result_is_idempotent_and_conflicts_when_different() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    let t = &l.lease.lease_token;
    l.runner.start(l.run.id, t).await.unwrap();
    let done = result_req(ResultStatus::Completed, Some(0));
    let ack = l.runner.result(l.run.id, t, &done).await.unwrap();
    assert_eq!(
        (ack.status, ack.run_status),
        (AttemptStatus::Completed, RunStatus::Completed)
    );
    let ack2 = l.runner.result(l.run.id, t, &done).await.unwrap();
    assert_eq!((ack2.status, ack2.run_status), (ack.status, ack.run_status));
    expect_api_err(
        l.runner
            .result(l.run.id, t, &result_req(ResultStatus::Failed, Some(1)))
            .await,
        409,
        "conflict",
    );
    expect_api_err(
        l.runner
            .result(l.run.id, t, &result_req(ResultStatus::Completed, Some(7)))
            .await,
        409,
        "conflict",
    );
    let r = l.team.get_run(l.run.id).await.unwrap().run;
    assert_eq!((r.status, r.exit_code), (RunStatus::Completed, Some(0)));
    // A finished attempt no longer holds a lease.
    expect_api_err(l.runner.heartbeat(l.run.id, t).await, 410, "lease_gone");
    expect_api_err(
        l.runner.send_logs(l.run.id, t, vec![line(1, "late")]).await,
        410,
        "lease_gone",
    );
    assert!(l.team.logs(l.run.id, 0).await.unwrap().is_empty());
    for bad in [
        json!({"status": "dead"}),
        json!({"status": "completed", "exit_code": "0"}),
        json!({}),
    ] {
        let resp = l
            .runner
            .raw(Method::POST, &format!("/api/v1/runs/{}/result", l.run.id))
            .header(LEASE_TOKEN_HEADER, t)
            .json(&bad)
            .send()
            .await
            .unwrap();
        envelope(resp, 400).await;
    }
}

#[tokio::test]
async fn artifact_download_matches_the_upload() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    team.create_app("hello", None).await.unwrap();
    let bytes = targz(&[
        Entry::File("main.py", b"print('hi')"),
        Entry::File("data.bin", &[42u8; 5000]),
    ]);
    let v = upload(&team, "hello", bytes.clone(), Some("main.py"), None)
        .await
        .unwrap();
    let runner = app.runner("r1", None).await;
    let run = queue_run(&team, "hello", None).await;
    let lease = lease_now(&runner).await;
    let resp = runner.artifact(run.id, &lease.lease_token).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let sha = resp
        .headers()
        .get(ARTIFACT_SHA_HEADER)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(sha, v.artifact_sha256);
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.as_ref(), bytes.as_slice());
    assert_eq!(sha256_hex(&body), sha);
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

#[tokio::test]
async fn token_kinds_do_not_mix() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    // Runner token on team endpoints.
    for (m, p) in [
        (Method::GET, "/api/v1/me".to_string()),
        (Method::GET, "/api/v1/apps".to_string()),
        (Method::GET, format!("/api/v1/runs/{}", l.run.id)),
        (Method::POST, format!("/api/v1/runs/{}/cancel", l.run.id)),
        (Method::GET, format!("/api/v1/runs/{}/logs", l.run.id)),
        (Method::GET, "/api/v1/admin/runners".to_string()),
    ] {
        let resp = l.runner.raw(m, &p).send().await.unwrap();
        let (code, _) = envelope(resp, 401).await;
        assert_eq!(code, "unauthorized", "{p}");
    }
    // Team token (and the registration secret) on runner endpoints.
    for token in [l.team.token().unwrap(), REGISTRATION, BOOTSTRAP] {
        let c = app.client(token);
        expect_api_err(c.lease(Duration::ZERO).await, 401, "unauthorized");
        expect_api_err(
            c.heartbeat(l.run.id, &l.lease.lease_token).await,
            401,
            "unauthorized",
        );
        expect_api_err(
            c.start(l.run.id, &l.lease.lease_token).await,
            401,
            "unauthorized",
        );
        expect_api_err(
            c.result(
                l.run.id,
                &l.lease.lease_token,
                &result_req(ResultStatus::Completed, Some(0)),
            )
            .await,
            401,
            "unauthorized",
        );
        expect_api_err(
            c.artifact(l.run.id, &l.lease.lease_token).await,
            401,
            "unauthorized",
        );
    }
    assert_eq!(
        l.team.get_run(l.run.id).await.unwrap().run.status,
        RunStatus::Leased
    );
}
