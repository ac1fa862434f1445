//! Git and binary sources end to end, with the real runner: local
//! repositories made with the `git` CLI (paths, `file://`, and a loopback
//! HTTP server that asks for a token), and binaries served over loopback.

mod common;

use common::{Harness, RunnerHandle};
use minitower_client::ClientError;
use minitower_core::api::{CreateRunRequest, LogLine, RunDetail};
use minitower_core::RunStatus;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs `git` in `dir` with a fixed identity; its trimmed stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare "origin" and a working clone that pushes to it.
struct Repo {
    origin: PathBuf,
    work: PathBuf,
}

impl Repo {
    /// `origin.git` with `build.sh` (prints `version.txt` and the checked
    /// out HEAD) at `v1` (annotated) on `main`.
    fn new(root: &Path) -> Repo {
        let origin = root.join("origin.git");
        let work = root.join("work");
        std::fs::create_dir_all(&origin).unwrap();
        git(&origin, &["init", "-q", "--bare"]);
        git(root, &["clone", "-q", origin.to_str().unwrap(), "work"]);
        let r = Repo { origin, work };
        std::fs::write(
            r.work.join("build.sh"),
            "echo \"version $(cat version.txt)\"\necho \"head $(git rev-parse HEAD)\"\n",
        )
        .unwrap();
        r.push("one");
        git(&r.work, &["tag", "-a", "v1", "-m", "release one"]);
        git(&r.work, &["push", "-q", "origin", "v1"]);
        r
    }

    /// Commits `version.txt = text` on `main` and pushes it; the new commit.
    fn push(&self, text: &str) -> String {
        std::fs::write(self.work.join("version.txt"), text).unwrap();
        git(&self.work, &["add", "."]);
        git(&self.work, &["commit", "-q", "-m", text]);
        git(&self.work, &["push", "-q", "origin", "HEAD:main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

/// Uploads a version of `slug` whose Towerfile has `app` (the entry) and
/// a `main.txt` file; the upload's answer.
async fn deploy(h: &Harness, slug: &str, app: &str) -> Result<(), ClientError> {
    let towerfile = format!("[app]\nname = \"{slug}\"\n{app}\n");
    let files = [
        ("Towerfile", towerfile.as_str()),
        ("data.txt", "from the archive\n"),
    ];
    h.upload(slug, &files, None, None).await.map(|_| ())
}

fn git_app(url: &str, r: &str, extra: &str) -> String {
    format!(
        "{extra}\n[app.git]\nurl = \"{url}\"\nref = \"{r}\"\ncommand = [\"sh\", \"build.sh\"]\n"
    )
}

async fn run(h: &Harness, slug: &str, git_ref: Option<&str>) -> (RunDetail, Vec<LogLine>) {
    let req = CreateRunRequest {
        git_ref: git_ref.map(str::to_string),
        ..Default::default()
    };
    let id = h.team.create_run(slug, &req, None).await.unwrap().0.id;
    let done = h.finished(id).await;
    // The result is stored after the last line: every line is there.
    (done, h.logs(id).await)
}

fn stdout(logs: &[LogLine]) -> Vec<&str> {
    logs.iter()
        .filter(|l| l.stream == "stdout")
        .map(|l| l.line.as_str())
        .collect()
}

fn setup(logs: &[LogLine]) -> Vec<&str> {
    logs.iter()
        .filter(|l| l.stream == "setup")
        .map(|l| l.line.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn git_runs_at_a_tag_a_commit_and_a_moving_branch() {
    let h = Harness::start().await;
    let repo = Repo::new(h.dir.path());
    let url = repo.origin.to_str().unwrap().to_string();
    let v1 = git(&repo.origin, &["rev-parse", "v1^{commit}"]);
    let two = repo.push("two");
    let runner = RunnerHandle::spawn(h.runner_config("r1"));

    // A tag: the annotated tag's commit, checked out with its .git.
    deploy(&h, "at-tag", &git_app(&url, "v1", ""))
        .await
        .unwrap();
    let (done, logs) = run(&h, "at-tag", None).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{logs:?}");
    assert_eq!(stdout(&logs), ["version one", &format!("head {v1}")]);
    assert_eq!(done.attempts[0].source_commit.as_deref(), Some(v1.as_str()));
    assert!(
        setup(&logs).contains(&format!("git: v1 is commit {v1}").as_str()),
        "{logs:?}"
    );

    // A commit, named by its full SHA, through a file:// URL.
    let file_url = format!("file://{url}");
    deploy(&h, "at-sha", &git_app(&file_url, &two, ""))
        .await
        .unwrap();
    let (done, logs) = run(&h, "at-sha", None).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{logs:?}");
    assert_eq!(stdout(&logs)[0], "version two");
    assert_eq!(
        done.attempts[0].source_commit.as_deref(),
        Some(two.as_str())
    );

    // A branch: a push between two runs of the same version is seen.
    deploy(&h, "at-branch", &git_app(&url, "main", ""))
        .await
        .unwrap();
    let (done, _) = run(&h, "at-branch", None).await;
    assert_eq!(
        done.attempts[0].source_commit.as_deref(),
        Some(two.as_str())
    );
    let three = repo.push("three");
    assert_eq!(git(&repo.origin, &["rev-parse", "main"]), three);
    let (done, logs) = run(&h, "at-branch", None).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{logs:?}");
    assert_eq!(stdout(&logs), ["version three", &format!("head {three}")]);
    assert_eq!(
        done.attempts[0].source_commit.as_deref(),
        Some(three.as_str())
    );

    // A run may ask for another ref of the version's repository.
    let (done, logs) = run(&h, "at-branch", Some("v1")).await;
    assert_eq!(stdout(&logs)[0], "version one");
    assert_eq!(done.attempts[0].source_commit.as_deref(), Some(v1.as_str()));

    // A run may point an archive version at a repository: the version's
    // command runs in that checkout instead of the archive.
    deploy(&h, "archive", "command = [\"sh\", \"build.sh\"]")
        .await
        .unwrap();
    let req = CreateRunRequest {
        git_url: Some(file_url.clone()),
        git_ref: Some("v1".into()),
        ..Default::default()
    };
    let id = h.team.create_run("archive", &req, None).await.unwrap().0.id;
    let done = h.finished(id).await;
    let logs = h.logs(id).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{logs:?}");
    assert_eq!(stdout(&logs), ["version one", &format!("head {v1}")]);
    assert_eq!(done.attempts[0].source_commit.as_deref(), Some(v1.as_str()));
    // Without the run's repository the archive has no build.sh.
    let (done, _) = run(&h, "archive", None).await;
    assert_eq!(done.run.status, RunStatus::Failed);
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_refs_unreachable_repositories_and_credentials_in_urls_fail_clearly() {
    let h = Harness::start().await;
    let repo = Repo::new(h.dir.path());
    let url = repo.origin.to_str().unwrap().to_string();
    let runner = RunnerHandle::spawn(h.runner_config("r1"));

    deploy(&h, "no-ref", &git_app(&url, "v9", ""))
        .await
        .unwrap();
    let (done, logs) = run(&h, "no-ref", None).await;
    assert_eq!(done.run.status, RunStatus::Failed);
    let msg = done.run.error_message.clone().unwrap_or_default();
    assert!(
        msg.contains("ref \"v9\" not found") && msg.contains(&url),
        "{msg}"
    );
    assert!(
        setup(&logs).iter().any(|l| l.contains("\"v9\"")),
        "{logs:?}"
    );
    assert_eq!(done.attempts[0].source_commit, None);
    assert!(stdout(&logs).is_empty(), "nothing ran");

    let missing = h.dir.path().join("no-such-repo.git");
    let missing = missing.to_str().unwrap();
    deploy(&h, "no-repo", &git_app(missing, "main", ""))
        .await
        .unwrap();
    let (done, _) = run(&h, "no-repo", None).await;
    assert_eq!(done.run.status, RunStatus::Failed);
    let msg = done.run.error_message.unwrap_or_default();
    assert!(
        msg.starts_with("git source: could not fetch") && msg.contains(missing),
        "{msg}"
    );
    runner.stop().await;

    // A runner that does not allow repositories on its host (the default:
    // it fetches as itself, so a path could read another team's cached
    // clone) fails such a run before running git.
    let mut strict = h.runner_config("strict");
    strict.git_allow_local = false;
    let runner = RunnerHandle::spawn(strict);
    for slug in ["at-path", "at-file"] {
        let u = if slug == "at-path" {
            url.clone()
        } else {
            format!("file://{url}")
        };
        deploy(&h, slug, &git_app(&u, "v1", "")).await.unwrap();
        let (done, logs) = run(&h, slug, None).await;
        assert_eq!(done.run.status, RunStatus::Failed);
        let msg = done.run.error_message.unwrap_or_default();
        assert!(msg.contains("MINITOWER_RUNNER_GIT_ALLOW_LOCAL"), "{msg}");
        assert!(stdout(&logs).is_empty(), "nothing ran");
    }
    runner.stop().await;

    // Credentials in the URL never get stored: the upload is a 400.
    for bad in [
        "https://user:tok3n@example.com/acme/x.git",
        "https://tok3n@example.com/acme/x.git",
    ] {
        let e = deploy(&h, "creds", &git_app(bad, "main", ""))
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400), "{bad}: {e}");
        assert!(e.to_string().contains("git.url"), "{e}");
        assert!(!e.to_string().contains("tok3n"), "{e}");
    }
    assert!(h.team.list_versions("creds").await.unwrap().is_empty());
}

/// A minimal base64 (for the expected `Authorization` header).
fn base64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A loopback HTTP server: files under `root` (git's "dumb" protocol for a
/// bare repository, or a binary), optionally behind Basic auth; counts
/// requests and keeps each request's head.
struct FileServer {
    url: String,
    hits: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn file_server(root: PathBuf, auth: Option<String>) -> FileServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (h2, heads2) = (hits.clone(), heads.clone());
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (hits, heads, root, auth) =
                (h2.clone(), heads2.clone(), root.clone(), auth.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                hits.fetch_add(1, Ordering::SeqCst);
                let text = String::from_utf8_lossy(&head).into_owned();
                heads.lock().unwrap().push(text.clone());
                let path = text.split_whitespace().nth(1).unwrap_or("/");
                let path = path.split('?').next().unwrap_or("/");
                let authorized = match &auth {
                    None => true,
                    Some(want) => text
                        .lines()
                        .any(|l| l.eq_ignore_ascii_case(&format!("authorization: {want}"))),
                };
                let file = root.join(path.trim_start_matches('/'));
                let (status, body) = if !authorized {
                    (
                        "401 Unauthorized\r\nwww-authenticate: Basic realm=\"t\"",
                        Vec::new(),
                    )
                } else if path.contains("..") {
                    ("404 Not Found", Vec::new())
                } else {
                    match std::fs::read(&file) {
                        Ok(b) => ("200 OK", b),
                        Err(_) => ("404 Not Found", Vec::new()),
                    }
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\ncontent-type: application/octet-stream\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    FileServer {
        url,
        hits,
        heads,
        task,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_git_token_comes_from_the_runs_secret_and_stays_out_of_logs() {
    let h = Harness::start().await;
    let repo = Repo::new(h.dir.path());
    git(&repo.origin, &["update-server-info"]);
    let token = "ghp_s3cretTokenValue42";
    let expected = format!(
        "Basic {}",
        base64(format!("x-access-token:{token}").as_bytes())
    );
    let server = file_server(h.dir.path().to_path_buf(), Some(expected.clone())).await;
    let url = format!("{}/origin.git", server.url);
    h.team
        .put_secret("GIT_TOKEN", "default", token)
        .await
        .unwrap();
    let with_secret = "secrets = [\"GIT_TOKEN\"]";
    let app = git_app(&url, "v1", with_secret)
        .replace("command = [", "secret = \"GIT_TOKEN\"\ncommand = [");
    deploy(&h, "private", &app).await.unwrap();
    let runner = RunnerHandle::spawn(h.runner_config("r1"));
    let (done, logs) = run(&h, "private", None).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{logs:?}");
    assert_eq!(stdout(&logs)[0], "version one");
    let heads = server.heads.lock().unwrap().clone();
    assert!(
        heads.iter().any(|h| h.contains(&expected)),
        "the token was sent as Basic auth"
    );
    assert!(
        heads.iter().all(|h| !h.contains(token)),
        "never in a URL or in clear"
    );
    assert!(logs.iter().all(|l| !l.line.contains(token)));

    // Without the secret the server's 401 fails the run, naming the URL.
    deploy(&h, "no-token", &git_app(&url, "v1", ""))
        .await
        .unwrap();
    let (done, _) = run(&h, "no-token", None).await;
    assert_eq!(done.run.status, RunStatus::Failed);
    let msg = done.run.error_message.unwrap_or_default();
    assert!(
        msg.contains("could not fetch") && msg.contains(&url),
        "{msg}"
    );
    runner.stop().await;
}

const TOOL: &str = "#!/bin/sh\necho \"tool got: $1 | $2\"\ncat data.txt\n";

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn binary_app(url: &str, sha256: &str) -> String {
    format!("\n[app.binary]\nurl = \"{url}\"\nsha256 = \"{sha256}\"\nargs = [\"--flag\", \"two words\"]\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn binaries_are_downloaded_once_verified_and_run_with_their_args() {
    let h = Harness::start().await;
    let served = h.dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::write(served.join("tool"), TOOL).unwrap();
    let server = file_server(served, None).await;
    let url = format!("{}/tool", server.url);
    let want = sha(TOOL.as_bytes());
    deploy(&h, "tool", &binary_app(&url, &want)).await.unwrap();
    let runner = RunnerHandle::spawn(h.runner_config("r1"));

    let (done, logs) = run(&h, "tool", None).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{logs:?}");
    assert_eq!(
        stdout(&logs),
        ["tool got: --flag | two words", "from the archive"]
    );
    assert!(
        setup(&logs)
            .iter()
            .any(|l| l.starts_with("binary: downloaded")),
        "{logs:?}"
    );
    let (done, logs) = run(&h, "tool", None).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{logs:?}");
    assert_eq!(stdout(&logs)[0], "tool got: --flag | two words");
    assert_eq!(server.hits.load(Ordering::SeqCst), 1, "one download");
    assert_eq!(done.attempts[0].source_commit, None);

    // A hash that does not match: refused, and nothing cached under it.
    let wrong = sha(b"something else");
    deploy(&h, "tampered", &binary_app(&url, &wrong))
        .await
        .unwrap();
    let (done, logs) = run(&h, "tampered", None).await;
    assert_eq!(done.run.status, RunStatus::Failed);
    assert_eq!(
        done.run.error_message.as_deref(),
        Some(format!("binary sha256 mismatch: expected {wrong}, got {want}").as_str())
    );
    assert!(stdout(&logs).is_empty(), "nothing ran");
    let cache = h.dir.path().join("runner-r1").join("binaries");
    let cached: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        cached,
        std::slice::from_ref(&want),
        "only the verified binary"
    );
    runner.stop().await;

    // A malformed hash never gets stored.
    for bad in ["abc123", &"g".repeat(64), &want[..63]] {
        let e = deploy(&h, "bad-sha", &binary_app(&url, bad))
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400), "{bad}: {e}");
        assert!(e.to_string().contains("sha256"), "{e}");
    }
    assert!(h.team.list_versions("bad-sha").await.unwrap().is_empty());
}

/// Kills the runner process when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const SNOOP_BINARY: &str = r#"#!/bin/sh
if echo planted >> "$0" 2>/dev/null; then echo "ALLOWED: change the binary"; else echo "denied: change the binary"; fi
if ls "$(dirname "$0")" >/dev/null 2>&1; then echo "ALLOWED: list the binaries"; else echo "denied: list the binaries"; fi
echo "uid $(id -u)"
"#;

const SNOOP_GIT: &str = r#"if ls "$cache" >/dev/null 2>&1; then echo "ALLOWED: list the git cache"; else echo "denied: list the git cache"; fi
if touch "$cache/planted" 2>/dev/null; then echo "ALLOWED: plant in the git cache"; else echo "denied: plant in the git cache"; fi
echo "head $(git rev-parse HEAD)"
git -c user.name=run -c user.email=run@example.com commit -q --allow-empty -m "made by the run" && echo "committed in the workspace"
"#;

/// Under user isolation (the default for a root runner with a system-wide
/// interpreter) a run executes a cached binary and works in its checkout,
/// but cannot change the binary, list the binaries, or reach the git cache.
#[tokio::test(flavor = "multi_thread")]
async fn isolated_runs_use_the_caches_without_changing_them() {
    let python = Path::new("/usr/bin/python3");
    if !nix::unistd::geteuid().is_root() || !python.exists() {
        eprintln!("skipped: needs root and /usr/bin/python3 to run as other users");
        return;
    }
    let h = Harness::start().await;
    let served = h.dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::write(served.join("snoop"), SNOOP_BINARY).unwrap();
    let server = file_server(served, None).await;
    let want = sha(SNOOP_BINARY.as_bytes());
    deploy(
        &h,
        "snoop-bin",
        &binary_app(&format!("{}/snoop", server.url), &want),
    )
    .await
    .unwrap();
    let repo = Repo::new(h.dir.path());
    std::fs::write(repo.work.join("snoop.sh"), SNOOP_GIT).unwrap();
    let head = repo.push("snoop");
    let app =
        git_app(repo.origin.to_str().unwrap(), "main", "").replace("build.sh", "snoop.sh") + "\n";
    deploy(&h, "snoop-git", &app).await.unwrap();

    let data = h.dir.path().join("iso");
    let runner = std::process::Command::new(env!("CARGO_BIN_EXE_minitower-runner"))
        .env("MINITOWER_SERVER_URL", &h.url)
        .env("MINITOWER_RUNNER_NAME", "iso")
        .env("MINITOWER_RUNNER_REGISTRATION_TOKEN", "reg")
        .env("MINITOWER_DATA_DIR", &data)
        .env("MINITOWER_PYTHON_BIN", python)
        .env("MINITOWER_ISOLATION", "user")
        .env("MINITOWER_RUNNER_GIT_ALLOW_LOCAL", "true")
        .env("MINITOWER_POLL_INTERVAL", "200ms")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _runner = KillOnDrop(runner);
    let tries = |logs: &[LogLine]| -> Vec<String> {
        stdout(logs)
            .into_iter()
            .filter(|l| l.starts_with("denied:") || l.starts_with("ALLOWED:"))
            .map(str::to_string)
            .collect()
    };

    let (done, logs) = run(&h, "snoop-bin", None).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{logs:?}");
    let t = tries(&logs);
    assert_eq!(t.len(), 2, "{logs:?}");
    assert!(t.iter().all(|l| l.starts_with("denied:")), "{t:?}");
    assert!(stdout(&logs)
        .iter()
        .any(|l| l.starts_with("uid ") && *l != "uid 0"));
    let cached = data.join("binaries").join(&want);
    assert_eq!(sha(&std::fs::read(&cached).unwrap()), want, "unchanged");

    let req = CreateRunRequest {
        input: Some(serde_json::json!({ "cache": data.join("git") })),
        ..Default::default()
    };
    let id = h
        .team
        .create_run("snoop-git", &req, None)
        .await
        .unwrap()
        .0
        .id;
    let done = h.finished(id).await;
    let logs = h.logs(id).await;
    assert_eq!(done.run.status, RunStatus::Completed, "{logs:?}");
    let t = tries(&logs);
    assert_eq!(t.len(), 2, "{logs:?}");
    assert!(t.iter().all(|l| l.starts_with("denied:")), "{t:?}");
    let out = stdout(&logs);
    assert!(out.contains(&format!("head {head}").as_str()), "{out:?}");
    assert!(out.contains(&"committed in the workspace"), "{out:?}");
    assert_eq!(
        done.attempts[0].source_commit.as_deref(),
        Some(head.as_str())
    );
    assert!(!data.join("git").join("planted").exists());
}
