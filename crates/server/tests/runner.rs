//! The lease holder's calls: start, heartbeat, logs, result, artifact, and
//! the lease-token fence around them.

mod common;

use common::*;
use minitower_core::api::*;
use minitower_core::{AttemptStatus, ResultStatus, RunStatus};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

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
async fn start_and_heartbeat_answer_the_documented_shape() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    for (what, status) in [
        ("start", "running"),
        ("start", "running"),
        ("heartbeat", "running"),
    ] {
        let (code, body) = send_json(
            l.runner
                .raw(Method::POST, &format!("/api/v1/runs/{}/{what}", l.run.id))
                .header(LEASE_TOKEN_HEADER, &l.lease.lease_token),
        )
        .await;
        assert_eq!(code, 200, "{what}: {body}");
        assert_eq!(body["status"], status, "{what}: {body}");
        assert_eq!(body["cancel_requested"], false, "{what}: {body}");
        assert!(body["lease_expires_at"].as_str().unwrap().ends_with('Z'));
    }
    let d = l.team.get_run(l.run.id).await.unwrap();
    assert_eq!(d.run.status, RunStatus::Running);
    assert!(d.run.started_at.is_some());
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
