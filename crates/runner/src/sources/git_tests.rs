use super::*;
use crate::logs::LogSink;
use std::time::SystemTime;

/// Runs `git` in `dir` with a fixed identity; its trimmed stdout.
fn git_in(dir: &Path, args: &[&str]) -> String {
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

/// Commits `file = text` in `repo` and returns the new commit.
fn commit(repo: &Path, file: &str, text: &str) -> String {
    std::fs::write(repo.join(file), text).unwrap();
    git_in(repo, &["add", file]);
    git_in(repo, &["commit", "-q", "-m", text]);
    git_in(repo, &["rev-parse", "HEAD"])
}

/// A repository with `v1` (annotated tag) on the first commit and `main`
/// one commit further.
fn repo(root: &Path) -> (PathBuf, String, String) {
    let repo = root.join("src-repo");
    std::fs::create_dir_all(&repo).unwrap();
    git_in(&repo, &["init", "-q"]);
    let first = commit(&repo, "app.txt", "one");
    git_in(&repo, &["tag", "-a", "v1", "-m", "release 1"]);
    let second = commit(&repo, "app.txt", "two");
    (repo, first, second)
}

struct Env {
    root: tempfile::TempDir,
    cache: GitCache,
    sink: LogSink,
}

impl Env {
    fn new() -> Env {
        let root = tempfile::tempdir().unwrap();
        let cache = GitCache::open(root.path().join("data/git")).unwrap();
        Env {
            root,
            cache,
            sink: LogSink::discard(),
        }
    }

    fn dest(&self, name: &str) -> PathBuf {
        self.root.path().join("work").join(name)
    }

    async fn checkout(&self, url: &str, r: &str, dest: &str) -> Result<String, SetupError> {
        let log = SetupLog::for_tests(&self.sink, &[]);
        self.cache
            .checkout(url, r, None, &self.dest(dest), &log)
            .await
    }
}

#[tokio::test]
async fn tags_branches_and_commits_resolve_and_check_out() {
    let env = Env::new();
    let (repo, first, second) = repo(env.root.path());
    let url = repo.to_str().unwrap();
    assert_eq!(env.checkout(url, "v1", "a").await.unwrap(), first);
    assert_eq!(
        std::fs::read_to_string(env.dest("a/app.txt")).unwrap(),
        "one"
    );
    assert_eq!(git_in(&env.dest("a"), &["rev-parse", "HEAD"]), first);
    assert_eq!(env.checkout(url, "main", "b").await.unwrap(), second);
    assert_eq!(
        std::fs::read_to_string(env.dest("b/app.txt")).unwrap(),
        "two"
    );
    let file_url = format!("file://{url}");
    assert_eq!(env.checkout(&file_url, &first, "c").await.unwrap(), first);
    assert_eq!(env.checkout(url, &second[..8], "d").await.unwrap(), second);
    // A branch moves: the next checkout fetches it again.
    let third = commit(&repo, "app.txt", "three");
    assert_eq!(env.checkout(url, "main", "e").await.unwrap(), third);
    assert_eq!(
        std::fs::read_to_string(env.dest("e/app.txt")).unwrap(),
        "three"
    );
}

#[tokio::test]
async fn a_cached_commit_needs_no_fetch_and_a_workspace_cannot_touch_the_cache() {
    let env = Env::new();
    let (repo, first, _) = repo(env.root.path());
    let url = repo.to_str().unwrap();
    env.checkout(url, "main", "a").await.unwrap();
    // The source is gone: a full SHA already cached still checks out.
    std::fs::rename(&repo, env.root.path().join("moved")).unwrap();
    let (sink, mut read) = LogSink::capture();
    let log = SetupLog::for_tests(&sink, &[]);
    let got = env
        .cache
        .checkout(url, &first, None, &env.dest("b"), &log)
        .await
        .unwrap();
    assert_eq!(got, first);
    let lines: Vec<String> = read().into_iter().map(|(_, l)| l).collect();
    assert!(
        lines.iter().any(|l| l.contains("already cached")),
        "{lines:?}"
    );
    // The workspace is a repository of its own: commits there, and its
    // removal, leave the cache whole.
    let ws = env.dest("b");
    assert!(!ws.join(".git/objects/info/alternates").exists());
    commit(&ws, "new.txt", "made by the run");
    let mirror = env.cache.dir.join(format!("{}.git", key(url)));
    let made = git_in(&ws, &["rev-parse", "HEAD"]);
    assert!(std::process::Command::new("git")
        .arg(format!("--git-dir={}", mirror.display()))
        .args(["cat-file", "-e", &made])
        .output()
        .map(|o| !o.status.success())
        .unwrap());
    std::fs::remove_dir_all(&ws).unwrap();
    assert_eq!(env.checkout(url, &first, "c").await.unwrap(), first);
}

#[tokio::test]
async fn unknown_refs_and_unreachable_repositories_fail_naming_them() {
    let env = Env::new();
    let (repo, _, _) = repo(env.root.path());
    let url = repo.to_str().unwrap();
    let e = env.checkout(url, "v9", "a").await.unwrap_err().to_string();
    assert!(e.contains("\"v9\"") && e.contains(url), "{e}");
    let zeros = "0".repeat(40);
    let e = env
        .checkout(url, &zeros, "b")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&zeros), "{e}");
    let missing = env.root.path().join("no-such-repo");
    let e = env
        .checkout(missing.to_str().unwrap(), "main", "c")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("git source: could not fetch") && e.contains("no-such-repo"),
        "{e}"
    );
    // Nothing half-made stays in the cache.
    let left: Vec<String> = std::fs::read_dir(&env.cache.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with(".tmp-") || n == &format!("{}.git", key(missing.to_str().unwrap()))
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_commit_on_no_branch_is_fetched_by_its_sha() {
    let env = Env::new();
    let (repo, _, second) = repo(env.root.path());
    let url = repo.to_str().unwrap();
    env.checkout(url, "main", "a").await.unwrap();
    git_in(&repo, &["checkout", "-q", "-b", "topic"]);
    let loose = commit(&repo, "app.txt", "topic only");
    git_in(&repo, &["checkout", "-q", "main"]);
    git_in(&repo, &["branch", "-q", "-D", "topic"]);
    assert_eq!(git_in(&repo, &["rev-parse", "main"]), second);
    assert_eq!(env.checkout(url, &loose, "b").await.unwrap(), loose);
    assert_eq!(
        std::fs::read_to_string(env.dest("b/app.txt")).unwrap(),
        "topic only"
    );
}

#[tokio::test]
async fn a_fetch_that_hangs_times_out() {
    let mut env = Env::new();
    env.cache.fetch_timeout = Duration::from_secs(1);
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/repo.git", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let started = std::time::Instant::now();
    let e = env
        .checkout(&url, "main", "a")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("timed out after 1 s") && e.contains(&url), "{e}");
    assert!(started.elapsed() < Duration::from_secs(20));
    hold.abort();
}

#[test]
fn askpass_answers_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let cache = GitCache::open(dir.path().join("git")).unwrap();
    let ask = |prompt: &str| {
        let out = std::process::Command::new(&cache.askpass)
            .arg(prompt)
            .env("MINITOWER_GIT_USERNAME", TOKEN_USER)
            .env("MINITOWER_GIT_PASSWORD", "s3cret-token")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        ask("Username for 'https://example.com': "),
        "x-access-token\n"
    );
    assert_eq!(
        ask("Password for 'https://x-access-token@example.com': "),
        "s3cret-token\n"
    );
}

#[tokio::test]
async fn collection_spares_a_clone_whose_lock_is_held() {
    let env = Env::new();
    let (repo, _, _) = repo(env.root.path());
    let url = repo.to_str().unwrap();
    env.checkout(url, "main", "a").await.unwrap();
    let mirror = env.cache.dir.join(format!("{}.git", key(url)));
    let old = SystemTime::now() - Duration::from_secs(3 * 86400);
    File::open(&mirror).unwrap().set_modified(old).unwrap();
    let held = env.cache.flock(&key(url)).await.unwrap();
    let done = env.cache.collect_unused(Duration::from_secs(86400));
    assert_eq!((done.removed, done.in_use >= 1), (0, true));
    assert!(mirror.exists());
    drop(held);
    let done = env.cache.collect_unused(Duration::from_secs(86400));
    assert_eq!(done.removed, 1);
    assert!(!mirror.exists());
    assert!(env.cache.askpass.exists(), "the askpass script stays");
    // The next use clones it again.
    env.checkout(url, "main", "b").await.unwrap();
    assert!(mirror.exists());
}

#[test]
fn keys_and_hex() {
    assert_eq!(key("a").len(), 32);
    assert_ne!(key("a"), key("b"));
    assert!(is_hex("abc123") && !is_hex("v1") && !is_hex(""));
}
