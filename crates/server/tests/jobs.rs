//! Job kinds through the API (issue 14): what a Towerfile or the upload
//! form says a version runs is stored, shown, merged with a run's overrides
//! and handed to the runner in the lease; bad input is a 400 naming the
//! field with nothing stored.

mod common;

use common::*;
use minitower_core::api::{CreateRunRequest, Lease};
use minitower_core::job::{Entry as JobEntry, PriorityInput, PtyInput, PtySize, Source};
use reqwest::Method;
use serde_json::{json, Value};

/// Uploads `files` to app `hello` with extra text fields; (status, body).
async fn upload_form(
    team: &minitower_client::Client,
    files: &[Entry<'_>],
    fields: &[(&str, String)],
) -> (u16, Value) {
    let mut form = reqwest::multipart::Form::new().part(
        "artifact",
        reqwest::multipart::Part::bytes(targz(files)).file_name("a.tar.gz"),
    );
    for (k, v) in fields {
        form = form.text(k.to_string(), v.clone());
    }
    send_json(
        team.raw(Method::POST, "/api/v1/apps/hello/versions")
            .multipart(form),
    )
    .await
}

fn towerfile(body: &str) -> String {
    format!("[app]\nname = \"hello\"\n{body}\n")
}

async fn lease_of(app: &TestApp) -> Lease {
    let runner = app.runner("r1", None).await;
    lease_now(&runner).await
}

#[tokio::test]
async fn a_towerfile_command_with_pty_limits_and_priority_reaches_the_lease() {
    let app = spawn_app().await;
    let team = team_with_app(&app).await;
    let tf = towerfile(
        "command = [\"make\", \"test\"]\npty = { cols = 120, rows = 40 }\npriority = \"foreground\"\n[app.limits]\nmemory = \"256MiB\"\npids = 64",
    );
    let (status, v) = upload_form(&team, &[Entry::File("Towerfile", tf.as_bytes())], &[]).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["entrypoint"], "make test");
    assert_eq!(
        v["job"]["entry"],
        json!({"kind":"command","argv":["make","test"]})
    );
    assert_eq!(v["job"]["source"], json!({"kind":"archive"}));
    assert_eq!(v["job"]["pty"], json!({"cols":120,"rows":40}));
    assert_eq!(v["job"]["limits"], json!({"memory":268435456u64,"pids":64}));
    assert_eq!(
        (v["priority"].clone(), v["priority_name"].clone()),
        (json!(100), json!("foreground"))
    );
    // The run takes the version's priority; the lease carries the job.
    let run = queue_run(&team, "hello", None).await;
    assert_eq!(
        (run.priority, run.priority_name.as_deref()),
        (100, Some("foreground"))
    );
    let lease = lease_of(&app).await;
    let job = lease.job.expect("a command travels in the lease");
    assert_eq!(
        job.entry,
        JobEntry::Command {
            argv: vec!["make".into(), "test".into()]
        }
    );
    assert_eq!(
        job.pty,
        Some(PtySize {
            cols: 120,
            rows: 40
        })
    );
    assert_eq!(
        (job.limits.memory, job.limits.pids),
        (Some(256 << 20), Some(64))
    );
}

#[tokio::test]
async fn a_plain_script_lease_has_no_job_and_old_fields_still_work() {
    let app = spawn_app().await;
    let team = team_with_app(&app).await;
    let (status, v) = upload_form(
        &team,
        &[Entry::File("main.py", b"print(1)")],
        &[("entrypoint", "main.py".into())],
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["job"]["entry"], json!({"kind":"script","path":"main.py"}));
    assert!(v.get("priority").is_none() || v["priority"].is_null());
    queue_run(&team, "hello", None).await;
    let raw = lease_of(&app).await;
    assert!(
        raw.job.is_none(),
        "older runners must still take plain scripts"
    );
    assert_eq!(
        raw.job_spec().entry,
        JobEntry::Script {
            path: "main.py".into()
        }
    );
}

#[tokio::test]
async fn run_overrides_merge_with_the_version_and_are_shown_on_the_run() {
    let app = spawn_app().await;
    let team = team_with_app(&app).await;
    let tf = towerfile("[app.git]\nurl = \"file:///srv/repo.git\"\nref = \"main\"\ncommand = [\"make\"]\n[app.limits]\nmemory = \"1GiB\"\ncpus = 2");
    let (status, v) = upload_form(&team, &[Entry::File("Towerfile", tf.as_bytes())], &[]).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        v["job"]["source"],
        json!({"kind":"git","url":"file:///srv/repo.git","ref":"main"})
    );
    let req: CreateRunRequest = serde_json::from_value(json!({
        "priority": "best_effort", "pty": true, "limits": {"memory": "64MiB"}, "ref": "v2"
    }))
    .unwrap();
    let (run, _) = team.create_run("hello", &req, None).await.unwrap();
    assert_eq!(
        (run.priority, run.priority_name.as_deref()),
        (-100, Some("best_effort"))
    );
    let o = run.job_overrides.clone().expect("overrides shown");
    assert_eq!(o.pty, Some(PtyInput::On(true)));
    assert_eq!(o.git_ref.as_deref(), Some("v2"));
    let job = lease_of(&app).await.job.unwrap();
    assert!(matches!(&job.source, Source::Git { git_ref, .. } if git_ref == "v2"));
    assert_eq!(job.pty, Some(minitower_core::job::DEFAULT_PTY));
    // memory from the run, cpus from the version
    assert_eq!(
        (job.limits.memory, job.limits.cpus),
        (Some(64 << 20), Some(2.0))
    );
    // A run may point at another repository (the version's entry runs there).
    let req: CreateRunRequest = serde_json::from_value(json!({
        "git_url": "https://git.example.org/fork.git", "ref": "feature"
    }))
    .unwrap();
    let (run, _) = team.create_run("hello", &req, None).await.unwrap();
    assert_eq!(
        run.job_overrides
            .as_ref()
            .and_then(|o| o.git_url.as_deref()),
        Some("https://git.example.org/fork.git")
    );
    // A numeric priority has no name.
    let n = CreateRunRequest {
        priority: Some(PriorityInput::Number(7.into())),
        ..Default::default()
    };
    let (run, _) = team.create_run("hello", &n, None).await.unwrap();
    assert_eq!((run.priority, run.priority_name), (7, None));
}

#[tokio::test]
async fn upload_form_fields_describe_jobs_without_a_towerfile() {
    let app = spawn_app().await;
    let team = team_with_app(&app).await;
    let sha = "ab".repeat(32);
    let (status, v) = upload_form(
        &team,
        &[Entry::File("data.txt", b"x")],
        &[
            (
                "binary",
                json!({"url":"http://127.0.0.1:9/tool","sha256": sha.to_uppercase(),"args":["-v"]})
                    .to_string(),
            ),
            ("priority", "background".into()),
            ("limits", json!({"disk":"1GiB"}).to_string()),
            ("pty", "true".into()),
        ],
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["job"]["entry"], json!({"kind":"binary","args":["-v"]}));
    assert_eq!(v["job"]["source"]["sha256"], sha.as_str());
    assert_eq!(v["job"]["limits"]["disk"], 1u64 << 30);
    assert_eq!(v["priority_name"], "background");
    let (status, v) = upload_form(
        &team,
        &[Entry::File("x", b"x")],
        &[("shell", "echo hi | wc -c".into())],
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        v["job"]["entry"],
        json!({"kind":"shell","script":"echo hi | wc -c"})
    );
    // The form's command wins over the Towerfile's script (which need not exist then).
    let tf = towerfile("script = \"main.py\"\npriority = 5");
    let (status, v) = upload_form(
        &team,
        &[Entry::File("Towerfile", tf.as_bytes())],
        &[("command", json!(["ls", "-la"]).to_string())],
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["job"]["entry"]["argv"], json!(["ls", "-la"]));
    assert_eq!(v["priority"], 5);
}

#[tokio::test]
async fn bad_job_input_is_a_400_naming_the_field_and_stores_nothing() {
    let app = spawn_app().await;
    let team = team_with_app(&app).await;
    let file = || vec![Entry::File("main.py", b"print(1)")];
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            vec![("command", "\"make test\"".into())],
            "command must be a JSON list of strings",
        ),
        (
            vec![("command", "[]".into())],
            "command must name a program",
        ),
        (
            vec![(
                "git",
                json!({"url":"https://me:tok@example.org/r.git","ref":"v1","command":["make"]})
                    .to_string(),
            )],
            "git.url",
        ),
        (
            vec![(
                "git",
                json!({"url":"/srv/r","ref":"--upload-pack=x","command":["make"]}).to_string(),
            )],
            "git.ref",
        ),
        (
            vec![(
                "binary",
                json!({"url":"http://h/x","sha256":"nothex"}).to_string(),
            )],
            "binary.sha256",
        ),
        (
            vec![("entrypoint", "main.py".into()), ("shell", "ls".into())],
            "only one of",
        ),
        (
            vec![
                ("entrypoint", "main.py".into()),
                ("priority", "urgent".into()),
            ],
            "priority",
        ),
        (
            vec![
                ("entrypoint", "main.py".into()),
                ("limits", json!({"memory":"1KiB"}).to_string()),
            ],
            "limits.memory",
        ),
        (
            vec![("entrypoint", "main.py".into()), ("pty", "maybe".into())],
            "pty must be",
        ),
    ];
    for (fields, want) in cases {
        let (status, body) = upload_form(&team, &file(), &fields).await;
        assert_eq!(status, 400, "{fields:?}: {body}");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(want), "{fields:?}: {msg}");
    }
    let tf = towerfile("command = \"make test\"");
    let (status, body) = upload_form(&team, &[Entry::File("Towerfile", tf.as_bytes())], &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("[app].command must be a list of strings"));
    assert!(
        team.list_versions("hello").await.unwrap().is_empty(),
        "nothing stored"
    );
    assert!(app.object_files().is_empty(), "no artifact kept");
    // Run overrides are checked against the version before a run exists.
    upload_form(&team, &file(), &[("entrypoint", "main.py".into())]).await;
    for (body, want) in [
        (
            json!({"ref":"v1"}),
            "ref is only for a version with a git source",
        ),
        (json!({"git_url":"/srv/r.git"}), "git_url needs a ref"),
        (
            json!({"git_url":"https://me:tok@h/r.git","ref":"v1"}),
            "git.url",
        ),
        (json!({"limits":{"pids":0}}), "limits.pids"),
        (json!({"pty":{"cols":5000,"rows":1}}), "pty.cols"),
        (json!({"priority":"soon"}), "priority"),
    ] {
        let (status, b) = send_json(
            team.raw(Method::POST, "/api/v1/apps/hello/runs")
                .json(&body),
        )
        .await;
        assert_eq!(status, 400, "{body}: {b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(want),
            "{body}: {b}"
        );
    }
    assert!(team
        .list_runs(&Default::default())
        .await
        .unwrap()
        .is_empty());
}
