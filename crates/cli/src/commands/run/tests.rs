//! `follow` against a fake server whose log stream breaks mid-run.

use super::*;
use serde_json::json;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn log_event(seq: i64) -> String {
    let line = json!({
        "seq": seq, "attempt_no": 1, "stream": "stdout",
        "line": format!("line {seq}"), "logged_at": "2026-01-01T00:00:00.000Z"
    });
    format!("event: log\nid: {seq}\ndata: {line}\n\n")
}

fn run_json(status: &str) -> String {
    json!({
        "id": 7, "run_no": 1, "app": "a", "version_no": 1, "status": status,
        "input": {}, "priority": 0, "max_retries": 2, "retry_count": 0,
        "cancel_requested": false, "exit_code": null, "error_message": null,
        "queued_at": "2026-01-01T00:00:00.000Z", "started_at": null, "finished_at": null,
        "environment": "default", "attempts": []
    })
    .to_string()
}

/// Serves: first stream = lines 1-2 then EOF; run = running; second
/// stream = 2 (again), 3, end. Records every request path.
async fn fake_server(paths: Arc<Mutex<Vec<String>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf).into_owned();
            let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
            paths.lock().unwrap().push(path.clone());
            let (ctype, body) = if path.starts_with("/api/v1/runs/7/logs/stream?after_seq=0") {
                ("text/event-stream", log_event(1) + &log_event(2))
            } else if path.starts_with("/api/v1/runs/7/logs/stream?after_seq=2") {
                let end = "event: end\ndata: {\"status\":\"completed\"}\n\n";
                ("text/event-stream", log_event(2) + &log_event(3) + end)
            } else if path == "/api/v1/runs/7" {
                ("application/json", run_json("running"))
            } else {
                (
                    "application/json",
                    "{\"error\":{\"code\":\"not_found\",\"message\":\"no\"}}".into(),
                )
            };
            let status = if ctype == "application/json" && body.contains("not_found") {
                "404 Not Found"
            } else {
                "200 OK"
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn follow_resumes_after_a_broken_stream() {
    let paths = Arc::new(Mutex::new(Vec::new()));
    let url = fake_server(paths.clone()).await;
    let client = Client::new(&url, Some("t".into())).unwrap();
    let mut seen = Vec::new();
    let status = follow(&client, 7, 0, &mut |l| seen.push(l.seq))
        .await
        .unwrap();
    assert_eq!(status, RunStatus::Completed);
    assert_eq!(seen, vec![1, 2, 3], "each line once, in order");
    let paths = paths.lock().unwrap().clone();
    assert_eq!(
        paths,
        vec![
            "/api/v1/runs/7/logs/stream?after_seq=0",
            "/api/v1/runs/7",
            "/api/v1/runs/7/logs/stream?after_seq=2",
        ]
    );
}

#[tokio::test]
async fn follow_reports_a_missing_run() {
    let url = fake_server(Arc::new(Mutex::new(Vec::new()))).await;
    let client = Client::new(&url, Some("t".into())).unwrap();
    let err = follow(&client, 8, 0, &mut |_| {}).await.unwrap_err();
    assert_eq!(err.exit_code(), crate::error::exit::NOT_FOUND, "{err}");
}
