//! Artifacts in an S3-compatible store: `S3Objects` against a real S3
//! protocol server in-process (s3s-fs over a temp dir), then a `minitowerd`
//! process configured with `MINITOWER_OBJECTS_URL` + `AWS_*` serving an
//! uploaded version back to a runner.

mod support;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use minitower_core::api::CreateRunRequest;
use minitower_server::objects::Objects;
use minitower_server::objects_s3::S3Objects;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::procs::Minitowerd;
use tempfile::TempDir;
use tokio::task::JoinHandle;

const BUCKET: &str = "artifacts";
const ACCESS_KEY: &str = "minitower-test";
const SECRET_KEY: &str = "minitower-test-secret";

/// An S3 endpoint on 127.0.0.1 storing buckets as folders of a temp dir.
struct S3Server {
    endpoint: String,
    root: TempDir,
    task: JoinHandle<()>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn s3_server() -> S3Server {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join(BUCKET)).unwrap();
    let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let service = service.clone();
            tokio::spawn(async move {
                let http = ConnBuilder::new(TokioExecutor::new());
                let _ = http.serve_connection(TokioIo::new(socket), service).await;
            });
        }
    });
    S3Server {
        endpoint,
        root,
        task,
    }
}

impl S3Server {
    /// The `AWS_*` settings a client of this server needs.
    fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ]
    }

    /// Where s3s-fs keeps the object `key` of the bucket.
    fn file_of(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Writes a spool file of the store and returns its path.
fn spool(objects: &S3Objects, name: &str, data: &[u8]) -> PathBuf {
    let path = objects.spool_dir().join(name);
    std::fs::write(&path, data).unwrap();
    path
}

/// Reads an object back whole.
async fn read_back(objects: &S3Objects, sha: &str) -> Option<(Vec<u8>, u64)> {
    use futures::TryStreamExt;
    let (body, size) = objects.open(sha).await.unwrap()?;
    let chunks: Vec<bytes::Bytes> = body.try_collect().await.unwrap();
    Some((chunks.concat(), size))
}

fn objects(s3: &S3Server, spool_root: &Path, part_size: usize) -> S3Objects {
    let url = format!("s3://{BUCKET}/mt/prod");
    let opts = s3.aws_env().into_iter().map(|(k, v)| (k.to_string(), v));
    S3Objects::with_options(&url, opts, spool_root)
        .unwrap()
        .with_part_size(part_size)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_download_and_hash_check() {
    let s3 = s3_server().await;
    let dir = tempfile::tempdir().unwrap();
    // 5 MiB parts (S3's minimum, which s3s-fs enforces too): the large
    // artifact goes up as a three-part upload, the small one in one PUT.
    let objects = objects(&s3, dir.path(), 5 * 1024 * 1024);
    let small = b"tiny artifact".to_vec();
    let large: Vec<u8> = (0..12 * 1024 * 1024 + 12345)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for (name, data) in [("small", &small), ("large", &large)] {
        let sha = hex_sha256(data);
        let path = spool(&objects, name, data);
        objects.commit(&path, &sha).await.unwrap();
        assert!(!path.exists(), "{name}: the spool file is consumed");
        let stored = s3.file_of(&format!("mt/prod/sha256/{}/{sha}", &sha[..2]));
        assert_eq!(std::fs::metadata(&stored).unwrap().len(), data.len() as u64);

        let (body, size) = read_back(&objects, &sha).await.unwrap();
        assert_eq!(size, data.len() as u64, "{name}: size");
        assert_eq!(
            hex_sha256(&body),
            sha,
            "{name}: downloaded bytes hash to the name"
        );

        // committing the same content again is a no-op that still consumes
        // the spool file
        let again = spool(&objects, name, data);
        objects.commit(&again, &sha).await.unwrap();
        assert!(!again.exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_objects_and_bad_names() {
    let s3 = s3_server().await;
    let dir = tempfile::tempdir().unwrap();
    let objects = objects(&s3, dir.path(), 1024 * 1024);
    assert!(read_back(&objects, &"0".repeat(64)).await.is_none());
    let path = spool(&objects, "x", b"x");
    let err = objects.commit(&path, "../../etc/passwd").await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(objects.open("nothex").await.is_err());
    // a store whose credentials are wrong fails loudly instead of
    // pretending the object is missing
    let url = format!("s3://{BUCKET}/mt");
    let mut opts = s3.aws_env();
    opts.retain(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY");
    opts.push(("AWS_SECRET_ACCESS_KEY", "wrong".into()));
    let bad = S3Objects::with_options(&url, opts, dir.path().join("b").as_path()).unwrap();
    assert!(bad.open(&"0".repeat(64)).await.is_err());
}

/// The whole path through a `minitowerd` process: the upload lands in the
/// bucket (not the local directory) and the runner downloads it intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minitowerd_serves_artifacts_from_s3() {
    let s3 = s3_server().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = s3.aws_env();
    env.push(("MINITOWER_OBJECTS_URL", format!("s3://{BUCKET}/minitower")));
    env.push((
        "MINITOWER_OBJECTS_DIR",
        dir.path().join("spool").display().to_string(),
    ));
    env.push((
        "MINITOWER_DB_PATH",
        dir.path().join("mt.db").display().to_string(),
    ));
    let server = Minitowerd::spawn(&env).await;

    let token = support::deploy(&server.base).await;
    let admin = minitower_client::Client::new(&server.base, Some(token)).unwrap();
    let version = admin.list_versions("hello").await.unwrap().remove(0);
    let sha = version.artifact_sha256.clone();
    let stored = s3.file_of(&format!("minitower/sha256/{}/{sha}", &sha[..2]));
    assert!(stored.exists(), "the artifact is in the bucket");
    assert!(!dir.path().join("spool").join("sha256").exists());

    admin
        .create_run("hello", &CreateRunRequest::default(), None)
        .await
        .unwrap();
    let runner_token = support::register(&server.base, "r1", 1).await;
    let runner = minitower_client::Client::new(&server.base, Some(runner_token)).unwrap();
    let lease = runner.lease(Duration::ZERO).await.unwrap().unwrap();
    let resp = runner
        .artifact(lease.run_id, &lease.lease_token)
        .await
        .unwrap();
    let header = resp.headers()["x-artifact-sha256"]
        .to_str()
        .unwrap()
        .to_string();
    let body = resp.bytes().await.unwrap();
    assert_eq!(header, sha);
    assert_eq!(hex_sha256(&body), sha, "downloaded bytes match the hash");

    // an object gone from the bucket is a server error, not a bad artifact
    std::fs::remove_file(&stored).unwrap();
    let err = runner
        .artifact(lease.run_id, &lease.lease_token)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500), "{err}");
}

/// The collector's side of a bucket: objects last written before a cutoff
/// are listed (keys that are not objects are not), deleted only while
/// still that old, and committing stored content again after
/// `REFRESH_AFTER` writes it again, so it counts as new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_lists_and_deletes_only_old_objects() {
    use minitower_server::objects::REFRESH_AFTER;
    use std::time::SystemTime;
    let s3 = s3_server().await;
    let dir = tempfile::tempdir().unwrap();
    let objects = objects(&s3, dir.path(), 1024 * 1024);
    let age = |sha: &str, by: Duration| {
        let file = s3.file_of(&format!("mt/prod/sha256/{}/{sha}", &sha[..2]));
        let f = std::fs::File::open(file).unwrap();
        f.set_modified(SystemTime::now() - by).unwrap();
    };
    let mut shas = Vec::new();
    for data in [&b"old one"[..], b"old two", b"new one"] {
        let sha = hex_sha256(data);
        objects
            .commit(&spool(&objects, "s", data), &sha)
            .await
            .unwrap();
        shas.push(sha);
    }
    let hour = Duration::from_secs(3600);
    age(&shas[0], 3 * hour);
    age(&shas[1], 3 * hour);
    // not an object: wrong shard, and a key outside the objects
    let stray = s3.file_of(&format!("mt/prod/sha256/zz/{}", shas[0]));
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, b"x").unwrap();
    let cutoff = SystemTime::now() - hour;
    let mut listed: Vec<String> = objects
        .list_before(cutoff)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.sha256)
        .collect();
    listed.sort();
    let mut old = vec![shas[0].clone(), shas[1].clone()];
    old.sort();
    assert_eq!(listed, old);

    // An upload of "old two" commits it again: older than REFRESH_AFTER,
    // so it is written again and no longer old.
    assert!(Duration::from_secs(3 * 3600) > REFRESH_AFTER);
    objects
        .commit(&spool(&objects, "again", b"old two"), &shas[1])
        .await
        .unwrap();
    assert!(!objects.delete_if_before(&shas[1], cutoff).await.unwrap());
    assert!(objects.delete_if_before(&shas[0], cutoff).await.unwrap());
    assert!(
        !objects.delete_if_before(&shas[2], cutoff).await.unwrap(),
        "new"
    );
    assert!(read_back(&objects, &shas[0]).await.is_none());
    assert!(read_back(&objects, &shas[1]).await.is_some());
    assert!(read_back(&objects, &shas[2]).await.is_some());
    assert!(
        !objects.delete_if_before(&shas[0], cutoff).await.unwrap(),
        "already gone"
    );
}
