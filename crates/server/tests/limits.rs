//! Configured size limits: JSON bodies and artifacts (compressed and
//! unpacked) above them are 413 with the envelope, and nothing is stored.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn json_body_over_the_limit_is_413() {
    let app = spawn_app_with(|c| c.max_request_body_size = 1024).await;
    let team = app.team("acme").await;
    let big = json!({"slug": "big", "description": "x".repeat(4096)});
    let resp = team
        .raw(Method::POST, "/api/v1/apps")
        .json(&big)
        .send()
        .await
        .unwrap();
    let (code, _) = envelope(resp, 413).await;
    assert_eq!(code, "payload_too_large");
    // Streamed without a Content-Length, too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(serde_json::to_vec(&big).unwrap())];
    let resp = team
        .raw(Method::POST, "/api/v1/apps")
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    envelope(resp, 413).await;
    assert!(team.list_apps().await.unwrap().is_empty());
    team.create_app("small", None).await.unwrap();
}

#[tokio::test]
async fn compressed_size_over_limit_is_413() {
    let app = spawn_app_with(|c| c.max_artifact_size = 4096).await;
    let team = team_with_app(&app).await;
    let big = targz(&[
        Entry::File("main.py", b"x"),
        Entry::File("blob", &noise(20_000, 1)),
    ]);
    assert!(big.len() > 4096);
    assert_refused(
        &app,
        &team,
        big,
        Some("main.py"),
        None,
        413,
        "payload_too_large",
    )
    .await;
    // A small one still goes through.
    upload(&team, "hello", hello_targz(), Some("main.py"), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn unpacked_size_over_the_cap_is_413() {
    let app = spawn_app_with(|c| c.max_artifact_size = 4096).await;
    let team = team_with_app(&app).await;
    // Zeros compress to almost nothing but unpack past 10x the limit.
    let bomb = targz(&[
        Entry::File("main.py", b"x"),
        Entry::File("zeros", &vec![0u8; 100_000]),
    ]);
    assert!(bomb.len() < 4096, "{}", bomb.len());
    assert_refused(
        &app,
        &team,
        bomb,
        Some("main.py"),
        None,
        413,
        "payload_too_large",
    )
    .await;
}

#[tokio::test]
async fn large_streamed_artifact_over_the_limit_is_413() {
    let app = spawn_app_with(|c| c.max_artifact_size = 64 * 1024).await;
    let team = team_with_app(&app).await;
    // Several MiB that the client is still sending when the server refuses.
    let big = targz(&[
        Entry::File("main.py", b"x"),
        Entry::File("blob", &noise(4 << 20, 7)),
    ]);
    assert_refused(
        &app,
        &team,
        big,
        Some("main.py"),
        None,
        413,
        "payload_too_large",
    )
    .await;
    // The server is fine afterwards.
    upload(&team, "hello", hello_targz(), Some("main.py"), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn sparse_file_unpacking_over_the_cap_is_413() {
    // The cap counts the real size of a GNU sparse file, not its stored bytes.
    let app = spawn_app_with(|c| c.max_artifact_size = 4096).await;
    let team = team_with_app(&app).await;
    let bomb = targz(&[Entry::File("main.py", b"x"), Entry::Sparse("hole", 1 << 40)]);
    assert!(bomb.len() < 4096, "{}", bomb.len());
    assert_refused(
        &app,
        &team,
        bomb,
        Some("main.py"),
        None,
        413,
        "payload_too_large",
    )
    .await;
}

#[tokio::test]
async fn uploads_are_bounded_by_the_artifact_limit_not_the_json_one() {
    let app = spawn_app_with(|c| c.max_request_body_size = 1024).await;
    let team = team_with_app(&app).await;
    let bytes = targz(&[
        Entry::File("main.py", b"x"),
        Entry::File("blob", &noise(50_000, 3)),
    ]);
    assert!(bytes.len() > 1024 * 10);
    let v = upload(&team, "hello", bytes, Some("main.py"), None)
        .await
        .unwrap();
    assert_eq!(v.version_no, 1);
}
