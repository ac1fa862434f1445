//! Version uploads: accepted archives, Towerfiles, and everything that must
//! be refused without storing anything.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn upload_with_entrypoint_field() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    team.create_app("hello", None).await.unwrap();
    let bytes = targz(&[
        Entry::File("main.py", b"print('hi')\n"),
        Entry::File("lib/util.py", b"X = 1\n"),
    ]);
    let sha = sha256_hex(&bytes);
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}}});

    // Raw multipart, like the README's curl.
    let form = reqwest::multipart::Form::new()
        .part(
            "artifact",
            reqwest::multipart::Part::bytes(bytes.clone()).file_name("hello.tar.gz"),
        )
        .text("entrypoint", "main.py")
        .text("timeout_seconds", "60")
        .text("params_schema", schema.to_string());
    let (status, body) = send_json(
        team.raw(Method::POST, "/api/v1/apps/hello/versions")
            .multipart(form),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version_no"], 1);
    assert_eq!(body["artifact_sha256"], sha.as_str());
    assert_eq!(body["entrypoint"], "main.py");
    assert_eq!(body["timeout_seconds"], 60);
    assert_eq!(body["params_schema"], schema);
    assert!(body["created_at"].is_string());

    let versions = team.list_versions("hello").await.unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].artifact_sha256, sha);
    // The object is stored under its hash, with exactly these bytes.
    let files = app.object_files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(&sha), "{files:?}");
    let stored = std::fs::read(app.objects_dir.join(&files[0])).unwrap();
    assert_eq!(stored, bytes);
}

#[tokio::test]
async fn archive_made_like_the_quickstart() {
    // `tar -czf hello.tar.gz -C artifact .` writes "./" and "./main.py".
    let app = spawn_app().await;
    let team = team_with_app(&app).await;
    let bytes = targz(&[Entry::Dir("./"), Entry::File("./main.py", b"print('hi')")]);
    let v = upload(&team, "hello", bytes, Some("main.py"), None)
        .await
        .unwrap();
    assert_eq!(v.entrypoint, "main.py");
    let v = upload(&team, "hello", hello_targz(), Some("./main.py"), None)
        .await
        .unwrap();
    assert_eq!(v.entrypoint, "main.py");
}

#[tokio::test]
async fn defaults_and_nested_entrypoint() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    team.create_app("hello", None).await.unwrap();
    let bytes = targz(&[Entry::File("./src/main.py", b"print(1)")]);
    let form = reqwest::multipart::Form::new()
        .part("artifact", reqwest::multipart::Part::bytes(bytes))
        .text("entrypoint", "src/main.py");
    let (status, body) = send_json(
        team.raw(Method::POST, "/api/v1/apps/hello/versions")
            .multipart(form),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["timeout_seconds"], 3600);
    assert_eq!(body["entrypoint"], "src/main.py");
    assert!(body["params_schema"].is_null());
}

const TOWERFILE: &str = r#"
[app]
name = "hello"
script = "app/run.py"

[[parameters]]
name = "name"
description = "Who to greet"
default = "World"

[[parameters]]
name = "count"
"#;

#[tokio::test]
async fn towerfile_supplies_entrypoint_and_schema() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    team.create_app("hello", None).await.unwrap();
    let bytes = targz(&[
        Entry::File("Towerfile", TOWERFILE.as_bytes()),
        Entry::File("app/run.py", b"print('hi')"),
    ]);
    let v = upload(&team, "hello", bytes, None, None).await.unwrap();
    assert_eq!(v.entrypoint, "app/run.py");
    let schema = v.params_schema.expect("schema derived from [[parameters]]");
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["properties"]["name"]["type"], "string");
    assert_eq!(schema["properties"]["name"]["default"], "World");
    assert_eq!(schema["properties"]["count"]["type"], "string");
    assert_eq!(schema["required"], json!(["count"]));

    // The derived schema is enforced and its defaults filled in.
    let msg = expect_api_err(
        team.create_run("hello", &Default::default(), None).await,
        400,
        "invalid_input",
    );
    assert!(msg.contains("count"), "{msg}");
    let run = queue_run(&team, "hello", Some(json!({"count": "3"}))).await;
    assert_eq!(run.input, json!({"count": "3", "name": "World"}));

    // An explicit entrypoint field wins over the Towerfile's script.
    let bytes = targz(&[
        Entry::File("Towerfile", TOWERFILE.as_bytes()),
        Entry::File("app/run.py", b"print('hi')"),
        Entry::File("other.py", b"print('other')"),
    ]);
    let explicit = json!({"type": "object"});
    let v2 = upload(
        &team,
        "hello",
        bytes,
        Some("other.py"),
        Some(explicit.clone()),
    )
    .await
    .unwrap();
    assert_eq!(v2.version_no, 2);
    assert_eq!(v2.entrypoint, "other.py");
    assert_eq!(v2.params_schema, Some(explicit));
}

#[tokio::test]
async fn rejects_unsafe_or_corrupt_archives() {
    let app = spawn_app().await;
    let team = team_with_app(&app).await;
    let main = || Entry::File("main.py", b"print(1)");
    let not_tar = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &[7u8; 2000]).unwrap();
        gz.finish().unwrap()
    };
    let mut truncated = hello_targz();
    truncated.truncate(truncated.len() / 2);
    let cases: Vec<(&str, Vec<u8>, Option<&str>, &str)> = vec![
        (
            "not gzip",
            b"this is not gzip".to_vec(),
            Some("main.py"),
            "invalid_artifact",
        ),
        (
            "gzip but not tar",
            not_tar,
            Some("main.py"),
            "invalid_artifact",
        ),
        ("truncated", truncated, Some("main.py"), "invalid_artifact"),
        ("empty", Vec::new(), Some("main.py"), "invalid_artifact"),
        (
            "absolute path",
            targz(&[main(), Entry::RawFile("/etc/evil", b"x")]),
            Some("main.py"),
            "invalid_artifact",
        ),
        (
            "dot-dot path",
            targz(&[main(), Entry::RawFile("a/../../evil.py", b"x")]),
            Some("main.py"),
            "invalid_artifact",
        ),
        (
            "symlink escaping",
            targz(&[main(), Entry::Symlink("lib/passwd", "../../etc/passwd")]),
            Some("main.py"),
            "invalid_artifact",
        ),
        (
            "absolute symlink",
            targz(&[main(), Entry::Symlink("passwd", "/etc/passwd")]),
            Some("main.py"),
            "invalid_artifact",
        ),
        (
            "character device",
            targz(&[main(), Entry::Special("tty", tar::EntryType::Char)]),
            Some("main.py"),
            "invalid_artifact",
        ),
        (
            "fifo",
            targz(&[main(), Entry::Special("pipe", tar::EntryType::Fifo)]),
            Some("main.py"),
            "invalid_artifact",
        ),
        (
            "entrypoint is a directory",
            targz(&[main(), Entry::Dir("pkg")]),
            Some("pkg"),
            "invalid_artifact",
        ),
        (
            "entrypoint missing",
            targz(&[main()]),
            Some("missing.py"),
            "invalid_artifact",
        ),
        (
            "entrypoint climbing out",
            hello_targz(),
            Some("../main.py"),
            "invalid_request",
        ),
        (
            "absolute entrypoint",
            hello_targz(),
            Some("/main.py"),
            "invalid_request",
        ),
        (
            "no entrypoint, no Towerfile",
            hello_targz(),
            None,
            "invalid_request",
        ),
    ];
    for (what, bytes, entrypoint, code) in cases {
        let m = assert_refused(&app, &team, bytes, entrypoint, None, 400, code).await;
        match what {
            "not gzip" => assert!(m.contains("gzip"), "{m}"),
            "entrypoint missing" => assert!(m.contains("missing.py"), "{m}"),
            _ => {}
        }
    }
    // After all those refusals the first accepted upload is version 1.
    let v = upload(&team, "hello", hello_targz(), Some("main.py"), None)
        .await
        .unwrap();
    assert_eq!(v.version_no, 1);
}

#[tokio::test]
async fn link_inside_the_archive_is_fine() {
    let app = spawn_app().await;
    let team = team_with_app(&app).await;
    let bytes = targz(&[
        Entry::File("lib/real.py", b"x"),
        Entry::Symlink("main.py", "lib/real.py"),
    ]);
    upload(&team, "hello", bytes, Some("main.py"), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn rejects_invalid_towerfile_and_schema() {
    let app = spawn_app().await;
    let team = team_with_app(&app).await;

    let syntax = targz(&[
        Entry::File("Towerfile", b"[app\nname = "),
        Entry::File("main.py", b"x"),
    ]);
    let m = assert_refused(&app, &team, syntax, None, None, 400, "invalid_towerfile").await;
    assert!(m.contains("line"), "{m}");
    let no_script = targz(&[
        Entry::File("Towerfile", b"[app]\nname = \"hello\"\n"),
        Entry::File("main.py", b"x"),
    ]);
    assert_refused(&app, &team, no_script, None, None, 400, "invalid_towerfile").await;
    // A broken Towerfile is refused even when the entrypoint field is given.
    let broken = targz(&[
        Entry::File("Towerfile", b"app = 3"),
        Entry::File("main.py", b"x"),
    ]);
    assert_refused(
        &app,
        &team,
        broken,
        Some("main.py"),
        None,
        400,
        "invalid_towerfile",
    )
    .await;
    // Towerfile script missing from the archive.
    let missing = targz(&[
        Entry::File(
            "Towerfile",
            b"[app]\nname = \"hello\"\nscript = \"nope.py\"\n",
        ),
        Entry::File("main.py", b"x"),
    ]);
    assert_refused(&app, &team, missing, None, None, 400, "invalid_artifact").await;

    for bad in [
        json!("a string"),
        json!([1, 2]),
        json!({"type": 12}),
        json!({"properties": {"x": {"type": "nonsense"}}}),
        // Remote references are not fetched: the schema does not resolve.
        json!({"$ref": "http://127.0.0.1:9/schema.json"}),
    ] {
        let m = assert_refused(
            &app,
            &team,
            hello_targz(),
            Some("main.py"),
            Some(bad.clone()),
            400,
            "invalid_request",
        )
        .await;
        assert!(m.contains("params_schema"), "{bad}: {m}");
    }
    // Not JSON at all.
    let form = reqwest::multipart::Form::new()
        .part("artifact", reqwest::multipart::Part::bytes(hello_targz()))
        .text("entrypoint", "main.py")
        .text("params_schema", "{not json");
    let resp = team
        .raw(Method::POST, "/api/v1/apps/hello/versions")
        .multipart(form)
        .send()
        .await
        .unwrap();
    envelope(resp, 400).await;
    for t in ["0", "-5", "soon", "99999999999999999999", "700000"] {
        let form = reqwest::multipart::Form::new()
            .part("artifact", reqwest::multipart::Part::bytes(hello_targz()))
            .text("entrypoint", "main.py")
            .text("timeout_seconds", t);
        let resp = team
            .raw(Method::POST, "/api/v1/apps/hello/versions")
            .multipart(form)
            .send()
            .await
            .unwrap();
        let (code, _) = envelope(resp, 400).await;
        assert_eq!(code, "invalid_request", "timeout {t}");
    }
    assert!(team.list_versions("hello").await.unwrap().is_empty());
    assert!(app.object_files().is_empty());
}

#[tokio::test]
async fn missing_artifact_or_not_multipart_is_400() {
    let app = spawn_app().await;
    let team = team_with_app(&app).await;
    let form = reqwest::multipart::Form::new().text("entrypoint", "main.py");
    let resp = team
        .raw(Method::POST, "/api/v1/apps/hello/versions")
        .multipart(form)
        .send()
        .await
        .unwrap();
    envelope(resp, 400).await;
    let resp = team
        .raw(Method::POST, "/api/v1/apps/hello/versions")
        .json(&json!({"artifact": "x"}))
        .send()
        .await
        .unwrap();
    envelope(resp, 400).await;
    assert!(team.list_versions("hello").await.unwrap().is_empty());
}

#[tokio::test]
async fn identical_uploads_are_stored_once() {
    let app = spawn_app().await;
    let team = team_with_app(&app).await;
    let bytes = hello_targz();
    let v1 = upload(&team, "hello", bytes.clone(), Some("main.py"), None)
        .await
        .unwrap();
    let v2 = upload(&team, "hello", bytes.clone(), Some("main.py"), None)
        .await
        .unwrap();
    assert_eq!((v1.version_no, v2.version_no), (1, 2));
    assert_eq!(v1.artifact_sha256, v2.artifact_sha256);
    assert_eq!(app.object_files().len(), 1, "{:?}", app.object_files());
    let versions = team.list_versions("hello").await.unwrap();
    let nos: Vec<i64> = versions.iter().map(|v| v.version_no).collect();
    assert_eq!(nos, [2, 1], "newest first");
}

#[tokio::test]
async fn versions_are_numbered_per_app() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "a").await;
    let b1 = app_with_version(&team, "b").await;
    assert_eq!(b1.version_no, 1);
    let other = app.team("globex").await;
    let g1 = app_with_version(&other, "a").await;
    assert_eq!(g1.version_no, 1);
}

#[tokio::test]
async fn two_artifacts_in_one_form_are_refused() {
    let app = spawn_app().await;
    let team = team_with_app(&app).await;
    let form = reqwest::multipart::Form::new()
        .part("artifact", reqwest::multipart::Part::bytes(hello_targz()))
        .part(
            "artifact",
            reqwest::multipart::Part::bytes(targz(&[Entry::File("main.py", b"2")])),
        )
        .text("entrypoint", "main.py");
    let resp = team
        .raw(Method::POST, "/api/v1/apps/hello/versions")
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (code, _) = envelope(resp, 400).await;
    assert_eq!(code, "invalid_request");
    assert!(team.list_versions("hello").await.unwrap().is_empty());
    assert!(app.object_files().is_empty(), "{:?}", app.object_files());
}

#[tokio::test]
async fn towerfile_import_paths_reach_the_lease() {
    let app = spawn_app().await;
    let team = team_with_app(&app).await;
    let towerfile =
        b"[app]\nname = \"hello\"\nscript = \"main.py\"\nimport_paths = [\"../shared-lib\"]\n";
    let bytes = targz(&[
        Entry::File("Towerfile", towerfile),
        Entry::File("main.py", b"import shared"),
        Entry::File("modules/shared-lib/shared.py", b"X = 1"),
    ]);
    let v = upload(&team, "hello", bytes, None, None).await.unwrap();
    assert_eq!(v.import_paths, ["modules/shared-lib"]);
    assert_eq!(v.params_schema, None);
    let runner = app.runner("r1", None).await;
    queue_run(&team, "hello", None).await;
    let lease = lease_now(&runner).await;
    assert_eq!(lease.import_paths, ["modules/shared-lib"]);
    assert_eq!(lease.entrypoint, "main.py");
}

/// Uploads `bytes` with an optional `timeout_seconds` field, nothing else,
/// so the Towerfile decides whatever the form leaves out.
async fn upload_with_timeout(
    team: &minitower_client::Client,
    bytes: Vec<u8>,
    timeout_seconds: Option<i64>,
) -> minitower_client::ClientResult<minitower_core::api::Version> {
    let len = bytes.len() as u64;
    team.upload_version(
        "hello",
        minitower_client::VersionUpload {
            artifact: reqwest::Body::from(bytes),
            artifact_len: Some(len),
            entrypoint: None,
            timeout_seconds,
            params_schema: None,
        },
    )
    .await
}

#[tokio::test]
async fn towerfile_timeout_is_the_default_and_the_field_wins() {
    let app = spawn_app().await;
    let team = team_with_app(&app).await;
    let with_timeout = |t: &str| {
        targz(&[
            Entry::File(
                "Towerfile",
                format!("[app]\nname = \"hello\"\nscript = \"main.py\"\ntimeout = \"{t}\"\n")
                    .as_bytes(),
            ),
            Entry::File("main.py", b"print(1)"),
        ])
    };
    // No form field: the Towerfile's 10m.
    let v = upload_with_timeout(&team, with_timeout("10m"), None)
        .await
        .unwrap();
    assert_eq!(v.timeout_seconds, 600);
    // The form field (`deploy --timeout 90s`) wins over the Towerfile.
    let v = upload_with_timeout(&team, with_timeout("10m"), Some(90))
        .await
        .unwrap();
    assert_eq!(v.timeout_seconds, 90);
    // Neither: the server default.
    let plain = targz(&[
        Entry::File(
            "Towerfile",
            b"[app]\nname = \"hello\"\nscript = \"main.py\"\n",
        ),
        Entry::File("main.py", b"print(1)"),
    ]);
    let v = upload_with_timeout(&team, plain, None).await.unwrap();
    assert_eq!(v.timeout_seconds, 3600);
    assert_eq!(team.list_versions("hello").await.unwrap().len(), 3);
}

#[tokio::test]
async fn bad_towerfile_timeout_is_refused_naming_the_key() {
    let app = spawn_app().await;
    let team = team_with_app(&app).await;
    for bad in ["0s", "8d", "1500ms", "soon"] {
        let bytes = targz(&[
            Entry::File(
                "Towerfile",
                format!("[app]\nname = \"hello\"\nscript = \"main.py\"\ntimeout = \"{bad}\"\n")
                    .as_bytes(),
            ),
            Entry::File("main.py", b"print(1)"),
        ]);
        let m = assert_refused(&app, &team, bytes, None, None, 400, "invalid_towerfile").await;
        assert!(m.contains("[app].timeout"), "{bad}: {m}");
        assert!(m.contains("line 4"), "{bad}: {m}");
    }
}
