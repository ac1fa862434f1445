//! Runs as teams see them: create, validate, list, inspect.

mod common;

use common::*;
use minitower_client::RunQuery;
use minitower_core::api::*;
use minitower_core::{ResultStatus, RunStatus};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn create_run_with_defaults() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let (status, body) = send_json(
        team.raw(Method::POST, "/api/v1/apps/hello/runs")
            .json(&json!({"input": {"name": "MiniTower"}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let run: Run = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(run.run_no, 1);
    assert_eq!(run.app, "hello");
    assert_eq!(run.version_no, 1);
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.input, json!({"name": "MiniTower"}));
    assert_eq!((run.priority, run.max_retries, run.retry_count), (0, 2, 0));
    assert!(!run.cancel_requested);
    assert_eq!((run.exit_code, run.error_message.as_deref()), (None, None));
    assert_eq!((run.started_at, run.finished_at), (None, None));
    assert_eq!(run.environment, "default");
    for k in ["exit_code", "error_message", "started_at", "finished_at"] {
        assert!(body[k].is_null(), "{k} present as null: {body}");
    }

    // No body at all: empty input, and run numbers count up per app.
    let (status, body) = send_json(team.raw(Method::POST, "/api/v1/apps/hello/runs")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["run_no"], 2);
    assert_eq!(body["input"], json!({}));
    app_with_version(&team, "other").await;
    assert_eq!(queue_run(&team, "other", None).await.run_no, 1);
    // Explicit settings are kept.
    let (run, _) = team
        .create_run(
            "hello",
            &CreateRunRequest {
                priority: Some(minitower_core::job::PriorityInput::Number(5.into())),
                max_retries: Some(0),
                version_no: Some(1),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!((run.run_no, run.priority, run.max_retries), (3, 5, 0));
}

#[tokio::test]
async fn run_settings_are_bounded() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    for body in [
        json!({"max_retries": -1}),
        json!({"max_retries": 1_000_000}),
        json!({"priority": 10_000_000_000_i64}),
        json!({"environment": "Not A Slug"}),
        json!({"input": "not an object"}),
    ] {
        let resp = team
            .raw(Method::POST, "/api/v1/apps/hello/runs")
            .json(&body)
            .send()
            .await
            .unwrap();
        let (code, _) = envelope(resp, 400).await;
        assert!(
            code == "invalid_request" || code == "invalid_input",
            "{body}: {code}"
        );
    }
    assert!(team.list_app_runs("hello", 50, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn input_is_validated_and_defaults_filled() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    team.create_app("hello", None).await.unwrap();
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "default": "World"},
            "count": {"type": "integer", "minimum": 1},
            "opts": {"type": "object", "properties": {"deep": {"type": "boolean"}}}
        },
        "required": ["count"]
    });
    upload(&team, "hello", hello_targz(), Some("main.py"), Some(schema))
        .await
        .unwrap();

    let m = expect_api_err(
        team.create_run(
            "hello",
            &CreateRunRequest {
                input: Some(json!({"count": "three"})),
                ..Default::default()
            },
            None,
        )
        .await,
        400,
        "invalid_input",
    );
    assert!(m.contains("/count"), "{m}");
    let m = expect_api_err(
        team.create_run(
            "hello",
            &CreateRunRequest {
                input: Some(json!({"count": 1, "opts": {"deep": "yes"}})),
                ..Default::default()
            },
            None,
        )
        .await,
        400,
        "invalid_input",
    );
    assert!(m.contains("/opts/deep"), "{m}");
    let m = expect_api_err(
        team.create_run("hello", &Default::default(), None).await,
        400,
        "invalid_input",
    );
    assert!(m.contains("count"), "{m}");
    assert!(team.list_app_runs("hello", 50, 0).await.unwrap().is_empty());

    let run = queue_run(&team, "hello", Some(json!({"count": 2}))).await;
    assert_eq!(run.input, json!({"count": 2, "name": "World"}));
    let run = queue_run(&team, "hello", Some(json!({"count": 2, "name": "Ann"}))).await;
    assert_eq!(run.input["name"], "Ann");
}

#[tokio::test]
async fn app_without_versions_and_unknown_version() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    team.create_app("empty", None).await.unwrap();
    expect_api_err(
        team.create_run("empty", &Default::default(), None).await,
        409,
        "conflict",
    );
    app_with_version(&team, "hello").await;
    for n in [2, 0, -1] {
        expect_api_err(
            team.create_run(
                "hello",
                &CreateRunRequest {
                    version_no: Some(n),
                    ..Default::default()
                },
                None,
            )
            .await,
            404,
            "not_found",
        );
    }
    expect_api_err(
        team.create_run("ghost", &Default::default(), None).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn idempotency_key_returns_the_first_run() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    app_with_version(&team, "other").await;
    let req = CreateRunRequest {
        input: Some(json!({"a": 1})),
        ..Default::default()
    };
    let (first, created) = team.create_run("hello", &req, Some("key-1")).await.unwrap();
    assert!(created);
    let resp = team
        .raw(Method::POST, "/api/v1/apps/hello/runs")
        .header("Idempotency-Key", "key-1")
        .json(&json!({"input": {"a": 2}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let again: Run = resp.json().await.unwrap();
    assert_eq!(again, first);
    // Another key, or the same key on another app, creates a new run.
    let (second, created) = team.create_run("hello", &req, Some("key-2")).await.unwrap();
    assert!(created && second.id != first.id);
    let (third, created) = team.create_run("other", &req, Some("key-1")).await.unwrap();
    assert!(created && third.id != first.id);
    assert_eq!(team.list_app_runs("hello", 50, 0).await.unwrap().len(), 2);
    // A repeat does not count as a created run in the metrics.
    let metrics = app
        .anon
        .raw(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("minitower_runs_created_total{") && l.contains("app=\"hello\""))
        .unwrap();
    assert!(line.ends_with(" 2"), "{line}");
}

#[tokio::test]
async fn list_filters_and_paging() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "a").await;
    app_with_version(&team, "b").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            queue_run(&team, if i % 2 == 0 { "a" } else { "b" }, None)
                .await
                .id,
        );
    }
    let cancelled = team.cancel_run(ids[0]).await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);

    let all = team.list_runs(&RunQuery::default()).await.unwrap();
    let got: Vec<i64> = all.iter().map(|r| r.id).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(got, newest_first);

    let q = |status: Option<&str>, app: Option<&str>, limit, offset| RunQuery {
        status: status.map(Into::into),
        app: app.map(Into::into),
        limit,
        offset,
    };
    let queued = team
        .list_runs(&q(Some("queued"), None, None, None))
        .await
        .unwrap();
    assert_eq!(queued.len(), 4);
    assert!(queued.iter().all(|r| r.status == RunStatus::Queued));
    let a = team
        .list_runs(&q(None, Some("a"), None, None))
        .await
        .unwrap();
    assert_eq!(
        a.iter().map(|r| r.id).collect::<Vec<_>>(),
        [ids[4], ids[2], ids[0]]
    );
    let a_queued = team
        .list_runs(&q(Some("queued"), Some("a"), None, None))
        .await
        .unwrap();
    assert_eq!(a_queued.len(), 2);
    let page = team
        .list_runs(&q(None, None, Some(2), Some(1)))
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|r| r.id).collect::<Vec<_>>(),
        [ids[3], ids[2]]
    );
    assert!(team
        .list_runs(&q(None, None, None, Some(10)))
        .await
        .unwrap()
        .is_empty());
    assert!(team
        .list_runs(&q(None, Some("ghost"), None, None))
        .await
        .unwrap()
        .is_empty());
    let app_page = team.list_app_runs("b", 1, 0).await.unwrap();
    assert_eq!(app_page.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[3]]);
    // A huge limit is capped, not refused.
    assert_eq!(
        team.list_runs(&q(None, None, Some(100_000), None))
            .await
            .unwrap()
            .len(),
        5
    );

    for bad in [
        "/api/v1/runs?status=bogus",
        "/api/v1/runs?limit=0",
        "/api/v1/runs?limit=-3",
        "/api/v1/runs?offset=-1",
        "/api/v1/runs?limit=abc",
        "/api/v1/apps/a/runs?limit=abc",
        "/api/v1/runs?limit=99999999999999999999999",
    ] {
        let resp = team.raw(Method::GET, bad).send().await.unwrap();
        let (code, _) = envelope(resp, 400).await;
        assert_eq!(code, "invalid_request", "{bad}");
    }
}

#[tokio::test]
async fn get_run_includes_attempts() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    let d = l.team.get_run(l.run.id).await.unwrap();
    assert_eq!(d.run.status, RunStatus::Leased);
    assert_eq!(d.attempts.len(), 1);
    assert_eq!(d.attempts[0].attempt_no, 1);
    assert_eq!(d.attempts[0].runner, "runner-1");
    assert_eq!(d.attempts[0].status, minitower_core::AttemptStatus::Leased);
    l.runner
        .start(l.run.id, &l.lease.lease_token)
        .await
        .unwrap();
    l.runner
        .result(
            l.run.id,
            &l.lease.lease_token,
            &ResultRequest {
                status: ResultStatus::Failed,
                exit_code: Some(3),
                error_message: Some("boom".into()),
            },
        )
        .await
        .unwrap();
    let (status, body) = send_json(
        l.team
            .raw(Method::GET, &format!("/api/v1/runs/{}", l.run.id)),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "failed");
    assert_eq!(body["exit_code"], 3);
    assert_eq!(body["error_message"], "boom");
    assert!(body["started_at"].is_string() && body["finished_at"].is_string());
    let a = &body["attempts"][0];
    for k in [
        "attempt_no",
        "status",
        "runner",
        "exit_code",
        "started_at",
        "finished_at",
    ] {
        assert!(a.get(k).is_some(), "{k} missing: {a}");
    }
    assert_eq!(a["status"], "failed");
    assert_eq!(a["exit_code"], 3);
    for bad in ["0", "-1", "abc", "99999"] {
        let resp = l
            .team
            .raw(Method::GET, &format!("/api/v1/runs/{bad}"))
            .send()
            .await
            .unwrap();
        envelope(resp, 404).await;
    }
}
