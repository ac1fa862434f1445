//! Archives built in memory, and uploads.

use flate2::write::GzEncoder;
use flate2::Compression;
use minitower_client::{Client, ClientResult, VersionUpload};
use minitower_core::api::Version;
use serde_json::Value;

/// One entry of a test archive.
pub enum Entry<'a> {
    /// A regular file.
    File(&'a str, &'a [u8]),
    /// A symlink `path -> target`.
    Symlink(&'a str, &'a str),
    /// A regular file whose header name is written verbatim (no safety checks),
    /// for `..` and absolute paths.
    RawFile(&'a str, &'a [u8]),
    /// A directory.
    Dir(&'a str),
    /// An entry of another kind (device, fifo) with no data.
    Special(&'a str, tar::EntryType),
    /// A GNU sparse file: 512 bytes of data at the end of `real_size` bytes.
    Sparse(&'a str, u64),
}

/// A `.tar.gz` built in memory.
pub fn targz(entries: &[Entry<'_>]) -> Vec<u8> {
    let enc = GzEncoder::new(Vec::new(), Compression::default());
    let mut b = tar::Builder::new(enc);
    for e in entries {
        match e {
            Entry::File(path, data) => {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut h, path, *data).unwrap();
            }
            Entry::Symlink(path, target) => {
                let mut h = tar::Header::new_gnu();
                h.set_size(0);
                h.set_mode(0o777);
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_path(path).unwrap();
                h.set_link_name_literal(target.as_bytes()).unwrap();
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            Entry::Dir(path) => {
                let mut h = tar::Header::new_gnu();
                h.set_size(0);
                h.set_mode(0o755);
                h.set_entry_type(tar::EntryType::Directory);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
            Entry::Special(path, kind) => {
                let mut h = tar::Header::new_gnu();
                h.set_size(0);
                h.set_mode(0o644);
                h.set_entry_type(*kind);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
            Entry::Sparse(path, real_size) => {
                let mut h = tar::Header::new_gnu();
                h.set_path(path).unwrap();
                h.set_mode(0o644);
                h.set_entry_type(tar::EntryType::GNUSparse);
                h.set_size(512);
                let gnu = h.as_gnu_mut().unwrap();
                gnu.sparse[0].set_offset(real_size - 512);
                gnu.sparse[0].set_length(512);
                gnu.set_real_size(*real_size);
                h.set_cksum();
                b.append(&h, &[b'x'; 512][..]).unwrap();
            }
            Entry::RawFile(path, data) => {
                let mut h = tar::Header::new_old();
                let name = path.as_bytes();
                h.as_old_mut().name[..name.len()].copy_from_slice(name);
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
        }
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// The smallest app: `main.py` printing hello.
pub fn hello_targz() -> Vec<u8> {
    targz(&[Entry::File("main.py", b"print('hello')\n")])
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Uploads an archive as a new version.
pub async fn upload(
    team: &Client,
    app: &str,
    bytes: Vec<u8>,
    entrypoint: Option<&str>,
    params_schema: Option<Value>,
) -> ClientResult<Version> {
    let len = bytes.len() as u64;
    team.upload_version(
        app,
        VersionUpload {
            artifact: reqwest::Body::from(bytes),
            artifact_len: Some(len),
            entrypoint: entrypoint.map(str::to_string),
            timeout_seconds: Some(60),
            params_schema,
        },
    )
    .await
}

/// Creates app `slug` with one hello version (entrypoint `main.py`).
pub async fn app_with_version(team: &Client, slug: &str) -> Version {
    team.create_app(slug, None).await.expect("create app");
    upload(team, slug, hello_targz(), Some("main.py"), None)
        .await
        .expect("upload")
}

/// Bytes that gzip poorly (an LCG), so the compressed size stays close.
pub fn noise(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u8
        })
        .collect()
}

/// Asserts an upload to app `hello` was refused with `status`/`code` and
/// left nothing behind: no version, no object, only the empty spool dir.
pub async fn assert_refused(
    app: &super::TestApp,
    team: &Client,
    bytes: Vec<u8>,
    entrypoint: Option<&str>,
    schema: Option<Value>,
    status: u16,
    code: &str,
) -> String {
    let msg = super::expect_api_err(
        upload(team, "hello", bytes, entrypoint, schema).await,
        status,
        code,
    );
    assert!(
        team.list_versions("hello").await.unwrap().is_empty(),
        "a version was stored after: {msg}"
    );
    assert_eq!(
        app.object_files(),
        Vec::<String>::new(),
        "files left after: {msg}"
    );
    assert!(
        app.objects_dir.join("tmp").is_dir(),
        "spool dir must remain"
    );
    msg
}
