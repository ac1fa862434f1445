//! Typed `[[parameters]]` on the server: the schema a Towerfile becomes,
//! typed defaults filled in, and input of the wrong type or with an
//! undeclared name refused with a 400 naming the field (nothing queued).
//! Also `GET /api/v1/apps/{app}/versions/{version}`, which the CLI reads.

mod common;

use common::*;
use minitower_core::api::CreateRunRequest;
use reqwest::Method;
use serde_json::json;

const TOWERFILE: &str = r#"
[app]
name = "typed"
script = "main.py"

[[parameters]]
name = "count"
type = "integer"
default = "3"

[[parameters]]
name = "mode"
enum = ["fast", "slow"]
required = true

[[parameters]]
name = "loud"
type = "boolean"
required = false
"#;

#[tokio::test]
async fn typed_input_is_checked_and_defaults_are_typed() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    team.create_app("typed", None).await.unwrap();
    let bytes = targz(&[
        Entry::File("Towerfile", TOWERFILE.as_bytes()),
        Entry::File("main.py", b"print('hi')"),
    ]);
    let v = upload(&team, "typed", bytes, None, None).await.unwrap();
    let schema = v.params_schema.clone().unwrap();
    assert_eq!(
        schema["properties"]["count"],
        json!({"type": "integer", "default": 3})
    );
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["required"], json!(["mode"]));

    // The default arrives as an integer.
    let run = queue_run(&team, "typed", Some(json!({"mode": "fast"}))).await;
    assert_eq!(run.input, json!({"count": 3, "mode": "fast"}));

    for (input, field) in [
        (json!({"mode": "fast", "count": "3"}), "/count"),
        (json!({"mode": "medium"}), "/mode"),
        (json!({"mode": "fast", "loud": "yes"}), "/loud"),
        (json!({"mode": "fast", "cout": 3}), "cout"),
        (json!({}), "mode"),
    ] {
        let req = CreateRunRequest {
            input: Some(input.clone()),
            ..Default::default()
        };
        let msg = expect_api_err(
            team.create_run("typed", &req, None).await,
            400,
            "invalid_input",
        );
        assert!(msg.contains(field), "{input}: {msg}");
    }
    // Only the one good run was queued.
    assert_eq!(team.list_app_runs("typed", 100, 0).await.unwrap().len(), 1);
}

#[tokio::test]
async fn one_version_by_number_or_latest() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    team.create_app("typed", None).await.unwrap();
    let e = team.get_version("typed", None).await;
    let msg = expect_api_err(e, 404, "not_found");
    assert!(msg.contains("none uploaded yet"), "{msg}");
    for _ in 0..2 {
        let bytes = targz(&[
            Entry::File("Towerfile", TOWERFILE.as_bytes()),
            Entry::File("main.py", b"print('hi')"),
        ]);
        upload(&team, "typed", bytes, None, None).await.unwrap();
    }
    assert_eq!(team.get_version("typed", None).await.unwrap().version_no, 2);
    let one = team.get_version("typed", Some(1)).await.unwrap();
    assert_eq!(one.version_no, 1);
    assert_eq!(
        one.params_schema.unwrap()["properties"]["count"]["type"],
        "integer"
    );
    expect_api_err(team.get_version("typed", Some(3)).await, 404, "not_found");
    expect_api_err(team.get_version("nope", None).await, 404, "not_found");
    // A path that names no version is a 404 like an unknown one (the
    // contract's pattern says which strings name one).
    for bad in ["0", "x", "-1", "1.5", "latest%0A"] {
        let (status, body) =
            send_json(team.raw(Method::GET, &format!("/api/v1/apps/typed/versions/{bad}"))).await;
        assert_eq!(status, 404, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    // Another team cannot read it.
    let other = app.team("other").await;
    expect_api_err(other.get_version("typed", None).await, 404, "not_found");
}
