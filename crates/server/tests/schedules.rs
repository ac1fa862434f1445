//! Schedules through the HTTP API (issue 12): CRUD with next fire times,
//! bad input refused naming the field, team isolation, a deploy applying the
//! Towerfile's schedules, the scheduler firing once per tick and catching up
//! with one run after downtime (manual clock), and the per-run timeout.

mod common;

use chrono::DateTime;
use common::*;
use minitower_client::Client;
use minitower_core::api::*;
use serde_json::json;
use std::time::Duration;

fn create(cron: &str, timezone: Option<&str>) -> CreateScheduleRequest {
    CreateScheduleRequest {
        cron: cron.into(),
        timezone: timezone.map(str::to_string),
        ..Default::default()
    }
}

/// One scheduler pass at the manual clock's time.
async fn pass(app: &TestApp) {
    minitower_server::scheduler::tick_once(&app.state)
        .await
        .expect("scheduler pass");
}

async fn scheduled_runs(team: &Client) -> Vec<Run> {
    let mut runs = team
        .list_runs(&minitower_client::RunQuery {
            limit: Some(500),
            ..Default::default()
        })
        .await
        .unwrap();
    runs.retain(|r| r.schedule_id.is_some());
    runs.sort_by_key(|r| r.scheduled_for);
    runs
}

async fn metric(app: &TestApp, prefix: &str) -> f64 {
    let text = app
        .anon
        .raw(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    let text = text.text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn schedules_are_created_listed_paused_resumed_and_deleted() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let s = team
        .create_schedule(
            "hello",
            &CreateScheduleRequest {
                input: Some(json!({"region": "eu"})),
                ..create("0 9 * * *", Some("Europe/Berlin"))
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (s.app.as_str(), s.cron.as_str(), s.timezone.as_str()),
        ("hello", "0 9 * * *", "Europe/Berlin")
    );
    assert_eq!(s.source, ScheduleSource::Api);
    assert!(s.enabled);
    assert_eq!(s.input, json!({"region": "eu"}));
    assert_eq!(s.version_no, None);
    assert_eq!(s.next_runs.len(), 5);
    assert_eq!(s.next_runs_local.len(), 5);
    for (utc, local) in s.next_runs.iter().zip(&s.next_runs_local) {
        // 09:00 on Berlin's wall clock, whatever the offset of the day.
        assert!(local.contains("T09:00:00+0"), "{local}");
        assert_eq!(DateTime::parse_from_rfc3339(local).unwrap(), *utc);
    }
    assert!(s.next_runs.windows(2).all(|w| w[0] < w[1]));

    assert_eq!(team.list_schedules("hello").await.unwrap(), vec![s.clone()]);
    assert_eq!(team.get_schedule(s.id).await.unwrap(), s);

    let pause = UpdateScheduleRequest {
        enabled: Some(false),
        ..Default::default()
    };
    let paused = team.update_schedule(s.id, &pause).await.unwrap();
    assert!(!paused.enabled);
    assert!(paused.next_runs.is_empty());
    let resume = UpdateScheduleRequest {
        enabled: Some(true),
        cron: Some("*/30 * * * *".into()),
        ..Default::default()
    };
    let resumed = team.update_schedule(s.id, &resume).await.unwrap();
    assert!(resumed.enabled);
    assert_eq!(resumed.cron, "*/30 * * * *");
    assert_eq!(resumed.next_runs.len(), 5);
    assert_eq!(
        resumed.input,
        json!({"region": "eu"}),
        "untouched fields stay"
    );

    team.delete_schedule(s.id).await.unwrap();
    expect_api_err(team.get_schedule(s.id).await, 404, "not_found");
    expect_api_err(team.delete_schedule(s.id).await, 404, "not_found");
    assert!(team.list_schedules("hello").await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_changes_nothing() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    team.create_app("hello", None).await.unwrap();
    let schema = json!({
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "additionalProperties": false
    });
    upload(&team, "hello", hello_targz(), Some("main.py"), Some(schema))
        .await
        .unwrap();
    let cases: Vec<(CreateScheduleRequest, &str)> = vec![
        (create("every day", None), "cron"),
        (create("* * * * * * *", None), "cron"),
        (create("0 0 30 2 *", None), "cron"),
        (create("", None), "cron"),
        (create("0 0 * * *", Some("Mars/Olympus")), "timezone"),
        (
            CreateScheduleRequest {
                input: Some(json!([1, 2])),
                ..create("0 0 * * *", None)
            },
            "input",
        ),
        (
            CreateScheduleRequest {
                input: Some(json!({"n": "three"})),
                ..create("0 0 * * *", None)
            },
            "input",
        ),
        (
            CreateScheduleRequest {
                version_no: Some(9),
                ..create("0 0 * * *", None)
            },
            "version_no",
        ),
        (
            CreateScheduleRequest {
                version_no: Some(-1),
                ..create("0 0 * * *", None)
            },
            "version_no",
        ),
        (
            CreateScheduleRequest {
                environment: Some("Not A Slug".into()),
                ..create("0 0 * * *", None)
            },
            "environment",
        ),
    ];
    for (req, field) in cases {
        let msg = expect_api_err(
            team.create_schedule("hello", &req).await,
            400,
            "invalid_request",
        );
        assert!(msg.starts_with(&format!("{field}:")), "{field}: {msg}");
    }
    // Not JSON at all, or the wrong type for a field.
    for body in [
        r#"{"cron": 5}"#,
        "{",
        r#"{"cron": "* * * * *", "enabled": "yes"}"#,
    ] {
        let resp = app
            .raw(
                team.token(),
                reqwest::Method::POST,
                "/api/v1/apps/hello/schedules",
            )
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        envelope(resp, 400).await;
    }
    assert!(team.list_schedules("hello").await.unwrap().is_empty());

    // A bad PATCH changes nothing either.
    let s = team
        .create_schedule("hello", &create("0 0 * * *", None))
        .await
        .unwrap();
    let patches: Vec<(UpdateScheduleRequest, &str)> = vec![
        (
            UpdateScheduleRequest {
                cron: Some("61 * * * *".into()),
                enabled: Some(false),
                ..Default::default()
            },
            "cron",
        ),
        (
            UpdateScheduleRequest {
                timezone: Some("Nowhere".into()),
                ..Default::default()
            },
            "timezone",
        ),
        (
            UpdateScheduleRequest {
                input: Some(json!({"unknown": 1})),
                ..Default::default()
            },
            "input",
        ),
        (
            UpdateScheduleRequest {
                version_no: Some(Some(4)),
                ..Default::default()
            },
            "version_no",
        ),
    ];
    for (req, field) in patches {
        let msg = expect_api_err(
            team.update_schedule(s.id, &req).await,
            400,
            "invalid_request",
        );
        assert!(msg.starts_with(&format!("{field}:")), "{field}: {msg}");
    }
    assert_eq!(team.get_schedule(s.id).await.unwrap(), s);
}

#[tokio::test]
async fn one_team_never_sees_or_touches_anothers_schedules() {
    let app = spawn_app().await;
    let acme = app.team("acme").await;
    app_with_version(&acme, "hello").await;
    let s = acme
        .create_schedule("hello", &create("0 0 * * *", None))
        .await
        .unwrap();
    let beta = app.team("beta").await;
    expect_api_err(beta.list_schedules("hello").await, 404, "not_found");
    expect_api_err(
        beta.create_schedule("hello", &create("0 0 * * *", None))
            .await,
        404,
        "not_found",
    );
    expect_api_err(beta.get_schedule(s.id).await, 404, "not_found");
    let pause = UpdateScheduleRequest {
        enabled: Some(false),
        ..Default::default()
    };
    expect_api_err(beta.update_schedule(s.id, &pause).await, 404, "not_found");
    expect_api_err(beta.delete_schedule(s.id).await, 404, "not_found");
    assert_eq!(acme.get_schedule(s.id).await.unwrap(), s, "unchanged");
    // Beta's own app of the same name has its own (empty) list.
    app_with_version(&beta, "hello").await;
    assert!(beta.list_schedules("hello").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_tick_fires_once_and_downtime_catches_up_with_one_run() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let s = team
        .create_schedule(
            "hello",
            &CreateScheduleRequest {
                input: Some(json!({"from": "cron"})),
                ..create("* * * * *", None)
            },
        )
        .await
        .unwrap();
    let first_tick = s.next_runs[0];
    pass(&app).await;
    assert!(scheduled_runs(&team).await.is_empty(), "nothing due yet");

    app.advance(Duration::from_secs(60));
    pass(&app).await;
    pass(&app).await;
    let runs = scheduled_runs(&team).await;
    assert_eq!(runs.len(), 1, "one run per tick: {runs:?}");
    assert_eq!(runs[0].schedule_id, Some(s.id));
    assert_eq!(runs[0].scheduled_for, Some(first_tick));
    assert_eq!(runs[0].input, json!({"from": "cron"}));
    assert_eq!(runs[0].status, minitower_core::RunStatus::Queued);
    let detail = team.get_run(runs[0].id).await.unwrap();
    assert_eq!(detail.run.schedule_id, Some(s.id));

    // Away for ten minutes: one run, for the most recent tick.
    app.advance(Duration::from_secs(600));
    pass(&app).await;
    pass(&app).await;
    let runs = scheduled_runs(&team).await;
    assert_eq!(runs.len(), 2, "no flood after downtime: {runs:?}");
    let latest = runs[1].scheduled_for.unwrap();
    assert_eq!(latest, first_tick + chrono::Duration::minutes(10));
    assert!(metric(&app, "minitower_schedule_ticks_skipped_total{").await >= 9.0);
    assert_eq!(
        metric(&app, "minitower_schedule_ticks_fired_total{").await,
        2.0
    );
    assert!(metric(&app, "minitower_schedule_lag_seconds_count{").await >= 2.0);

    // Paused: nothing fires; resumed: counts from now.
    let pause = UpdateScheduleRequest {
        enabled: Some(false),
        ..Default::default()
    };
    team.update_schedule(s.id, &pause).await.unwrap();
    app.advance(Duration::from_secs(300));
    pass(&app).await;
    assert_eq!(scheduled_runs(&team).await.len(), 2);
    let resume = UpdateScheduleRequest {
        enabled: Some(true),
        ..Default::default()
    };
    let resumed = team.update_schedule(s.id, &resume).await.unwrap();
    pass(&app).await;
    assert_eq!(
        scheduled_runs(&team).await.len(),
        2,
        "ticks while paused never fire"
    );
    assert!(resumed.next_runs[0] > latest + chrono::Duration::minutes(5));
}

#[tokio::test]
async fn a_tick_without_a_version_is_skipped_not_retried() {
    let app = spawn_app().await;
    let team = team_with_app(&app).await;
    let s = team
        .create_schedule("hello", &create("* * * * *", None))
        .await
        .unwrap();
    app.advance(Duration::from_secs(60));
    pass(&app).await;
    assert!(scheduled_runs(&team).await.is_empty());
    assert!(team.get_schedule(s.id).await.unwrap().last_tick_at > s.last_tick_at);
    assert!(
        metric(&app, "minitower_schedule_ticks_skipped_total{").await >= 1.0,
        "counted"
    );
    upload(&team, "hello", hello_targz(), Some("main.py"), None)
        .await
        .unwrap();
    app.advance(Duration::from_secs(60));
    pass(&app).await;
    let runs = scheduled_runs(&team).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].version_no, 1);
}

fn towerfile_archive(extra: &str) -> Vec<u8> {
    let towerfile = format!("[app]\nname = \"hello\"\nscript = \"main.py\"\n{extra}");
    targz(&[
        Entry::File("Towerfile", towerfile.as_bytes()),
        Entry::File("main.py", b"print(1)"),
    ])
}

#[tokio::test]
async fn deploying_a_towerfile_applies_its_schedules() {
    let app = spawn_app().await;
    let team = team_with_app(&app).await;
    let api = team
        .create_schedule("hello", &create("@hourly", None))
        .await
        .unwrap();
    upload(
        &team,
        "hello",
        towerfile_archive("schedule = \"0 0 * * *\"\n"),
        None,
        None,
    )
    .await
    .unwrap();
    let all = team.list_schedules("hello").await.unwrap();
    assert_eq!(all.len(), 2);
    let tf = all
        .iter()
        .find(|s| s.source == ScheduleSource::Towerfile)
        .expect("the Towerfile's schedule");
    assert_eq!(
        (tf.cron.as_str(), tf.timezone.as_str()),
        ("0 0 * * *", "UTC")
    );
    assert!(tf.enabled);
    assert_eq!(tf.next_runs.len(), 5);

    // [[schedules]] with a zone and input replace it.
    let tables = "\n[[schedules]]\ncron = \"*/10 * * * *\"\ntimezone = \"Europe/Berlin\"\n\
                  input = { region = \"eu\" }\n";
    upload(&team, "hello", towerfile_archive(tables), None, None)
        .await
        .unwrap();
    let all = team.list_schedules("hello").await.unwrap();
    let tf: Vec<_> = all
        .iter()
        .filter(|s| s.source == ScheduleSource::Towerfile)
        .collect();
    assert_eq!(tf.len(), 1);
    assert_eq!(tf[0].cron, "*/10 * * * *");
    assert_eq!(tf[0].timezone, "Europe/Berlin");
    assert_eq!(tf[0].input, json!({"region": "eu"}));

    // A Towerfile without schedules removes them; the API's stays.
    upload(&team, "hello", towerfile_archive(""), None, None)
        .await
        .unwrap();
    assert_eq!(team.list_schedules("hello").await.unwrap(), vec![api]);

    // A bad schedule in the Towerfile refuses the whole deploy.
    let before = team.list_versions("hello").await.unwrap().len();
    let r = upload(
        &team,
        "hello",
        towerfile_archive("schedule = \"0 0 31 2 *\"\n"),
        None,
        None,
    )
    .await;
    expect_api_err(r, 400, "invalid_towerfile");
    assert_eq!(team.list_versions("hello").await.unwrap().len(), before);
    assert_eq!(team.list_schedules("hello").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_run_timeout_overrides_the_versions_in_the_lease() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await; // timeout 60 s
    let runner = app.runner("r1", Some(4)).await;
    for (timeout, want) in [
        (Some(TimeoutSpec::Text("30s".into())), Some(30)),
        (Some(TimeoutSpec::Seconds(7)), Some(7)),
        (Some(TimeoutSpec::Text("2m".into())), Some(120)),
        (None, None),
    ] {
        let (run, _) = team
            .create_run(
                "hello",
                &CreateRunRequest {
                    timeout,
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap();
        assert_eq!(run.timeout_seconds, want);
        let lease = lease_now(&runner).await;
        assert_eq!(lease.run_id, run.id);
        assert_eq!(lease.timeout_seconds, want.unwrap_or(60));
    }
    for bad in [
        json!(0),
        json!(-5),
        json!("-5s"),
        json!("soon"),
        json!("8d"),
        json!(1.5),
    ] {
        let (status, body) = send_json(
            app.raw(
                team.token(),
                reqwest::Method::POST,
                "/api/v1/apps/hello/runs",
            )
            .json(&json!({"timeout": bad})),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains("timeout"), "{bad}: {msg}");
    }
    let runs = team
        .list_runs(&minitower_client::RunQuery::default())
        .await
        .unwrap();
    assert_eq!(runs.len(), 4, "refused runs were not created");
}
