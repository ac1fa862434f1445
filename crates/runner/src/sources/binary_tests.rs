use super::*;
use crate::logs::LogSink;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncReadExt;

/// A loopback HTTP server answering every GET with `body` (or 404 for a
/// path ending in `/missing`); counts the requests.
struct Server {
    url: String,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(body: Vec<u8>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let body = Arc::new(body);
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (counter, body) = (counter.clone(), body.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let path = String::from_utf8_lossy(&head)
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .split('?')
                    .next()
                    .unwrap_or("")
                    .to_string();
                let (status, body): (&str, &[u8]) = if path.ends_with("/missing") {
                    ("404 Not Found", b"")
                } else {
                    ("200 OK", &body)
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body).await;
            });
        }
    });
    Server { url, hits, task }
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

const SCRIPT: &[u8] = b"#!/bin/sh\necho \"hello $1\"\n";

fn cache() -> (tempfile::TempDir, BinaryCache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = BinaryCache::open(dir.path().join("binaries")).unwrap();
    (dir, cache)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn downloads_once_verifies_and_runs() {
    use std::os::unix::fs::PermissionsExt;
    let server = serve(SCRIPT.to_vec()).await;
    let (_d, cache) = cache();
    let sink = LogSink::discard();
    let log = SetupLog::for_tests(&sink, &[]);
    let want = sha(SCRIPT).to_ascii_uppercase();
    let url = format!("{}/tool", server.url);
    let got = cache.get(&url, &want, &log).await.unwrap();
    assert!(got.downloaded);
    assert_eq!(got.path, cache.dir.join(sha(SCRIPT)));
    let mode = std::fs::metadata(&got.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    let out = std::process::Command::new(&got.path)
        .arg("Ada")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello Ada\n");
    let again = cache.get(&url, &want, &log).await.unwrap();
    assert!(!again.downloaded);
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        1,
        "served from the cache"
    );
}

#[tokio::test]
async fn a_mismatch_fails_and_caches_nothing() {
    let server = serve(SCRIPT.to_vec()).await;
    let (_d, cache) = cache();
    let sink = LogSink::discard();
    let log = SetupLog::for_tests(&sink, &[]);
    let wrong = "ab".repeat(32);
    let e = cache
        .get(&format!("{}/tool", server.url), &wrong, &log)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "binary sha256 mismatch: expected {wrong}, got {}",
            sha(SCRIPT)
        )
    );
    assert!(entries(&cache.dir).is_empty(), "{:?}", entries(&cache.dir));
}

#[tokio::test]
async fn a_corrupted_entry_is_replaced_by_a_fresh_download() {
    let server = serve(SCRIPT.to_vec()).await;
    let (_d, cache) = cache();
    let (sink, mut read) = LogSink::capture();
    let log = SetupLog::for_tests(&sink, &[]);
    let want = sha(SCRIPT);
    let url = format!("{}/tool", server.url);
    let path = cache.get(&url, &want, &log).await.unwrap().path.clone();
    std::fs::write(&path, b"#!/bin/sh\necho tampered\n").unwrap();
    let got = cache.get(&url, &want, &log).await.unwrap();
    assert!(got.downloaded);
    assert_eq!(std::fs::read(&got.path).unwrap(), SCRIPT);
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    let lines: Vec<String> = read().into_iter().map(|(_, l)| l).collect();
    assert!(
        lines.iter().any(|l| l.contains("no longer matches")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn http_errors_and_oversized_bodies_are_refused() {
    let server = serve(vec![b'x'; 4096]).await;
    let (_d, mut cache) = cache();
    let sink = LogSink::discard();
    let log = SetupLog::for_tests(&sink, &["sekrit-token"]);
    let want = sha(&[b'x'; 4096]);
    let e = cache
        .get(
            &format!("{}/missing?sig=sekrit-token", server.url),
            &want,
            &log,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("404") && e.contains("/missing"), "{e}");
    assert!(!e.contains("sekrit"), "no query in the message: {e}");
    cache.max_bytes = 1000;
    let e = cache
        .get(&format!("{}/big", server.url), &want, &log)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("larger than"), "{e}");
    let e = cache
        .get("http://127.0.0.1:1/none", &want, &log)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("binary download failed: http://127.0.0.1:1/none"),
        "{e}"
    );
    assert!(entries(&cache.dir).is_empty());
}

#[tokio::test]
async fn concurrent_uses_share_one_download() {
    let server = serve(SCRIPT.to_vec()).await;
    let (_d, cache) = cache();
    let sink = LogSink::discard();
    let want = sha(SCRIPT);
    let url = format!("{}/tool", server.url);
    let gets = (0..4).map(|_| async {
        let log = SetupLog::for_tests(&sink, &[]);
        cache.get(&url, &want, &log).await.map(|b| b.path.clone())
    });
    for got in futures::future::join_all(gets).await {
        assert_eq!(std::fs::read(got.unwrap()).unwrap(), SCRIPT);
    }
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn collection_spares_binaries_in_use() {
    let a: &[u8] = b"#!/bin/sh\necho a\n";
    let b: &[u8] = b"#!/bin/sh\necho b\n";
    let (sa, sb) = (serve(a.to_vec()).await, serve(b.to_vec()).await);
    let (_d, cache) = cache();
    let sink = LogSink::discard();
    let log = SetupLog::for_tests(&sink, &[]);
    let held = cache.get(&sa.url, &sha(a), &log).await.unwrap();
    let unused = cache
        .get(&sb.url, &sha(b), &log)
        .await
        .unwrap()
        .path
        .clone();
    let old = std::time::SystemTime::now() - Duration::from_secs(3 * 86400);
    for p in [&held.path, &unused] {
        std::fs::File::open(p).unwrap().set_modified(old).unwrap();
    }
    let done = cache.collect_unused(Duration::from_secs(86400));
    assert_eq!((done.removed, done.in_use), (1, 1));
    assert!(held.path.exists() && !unused.exists());
    drop(held);
    assert_eq!(cache.collect_unused(Duration::from_secs(86400)).removed, 1);
}
