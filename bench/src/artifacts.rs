//! The apps the bench deploys, built in memory: `.tar.gz` artifacts and a
//! tiny pure-Python wheel (no network, no build tools).

use anyhow::Result;
use sha2::{Digest, Sha256};

/// The hello-world script (same as `examples/hello`).
pub const HELLO_PY: &str = r#"import json
import os

params = json.loads(os.environ.get("MINITOWER_INPUT") or "{}")
name = params.get("name") or "World"
print(f"Hello, {name}!")
"#;

/// Name of the bench's wheel, as `requirements.txt` names it.
pub const WHEEL_FILE: &str = "benchdep-0.1.0-py3-none-any.whl";

/// The script of the app with a dependency.
pub const DEPS_PY: &str = r#"import benchdep

print(f"benchdep {benchdep.VALUE} from {benchdep.__file__}")
"#;

/// A gzipped tar of `(path, contents)` files, deterministic.
pub fn tar_gz(files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(enc);
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        tar.append_data(&mut h, path, *data)?;
    }
    Ok(tar.into_inner()?.finish()?)
}

/// The hello-world artifact.
pub fn hello() -> Result<Vec<u8>> {
    tar_gz(&[("main.py", HELLO_PY.as_bytes())])
}

/// An app whose `requirements.txt` names the wheel shipped inside the
/// archive by relative path (installers run in the unpacked workspace).
pub fn with_deps() -> Result<Vec<u8>> {
    let wheel = wheel()?;
    let req = format!("./wheels/{WHEEL_FILE}\n");
    let wheel_path = format!("wheels/{WHEEL_FILE}");
    tar_gz(&[
        ("main.py", DEPS_PY.as_bytes()),
        ("requirements.txt", req.as_bytes()),
        (wheel_path.as_str(), &wheel),
    ])
}

/// `benchdep` 0.1.0: one module, `VALUE = 42`, as a valid wheel
/// (`METADATA`, `WHEEL`, `RECORD` with sha256 digests), zip entries stored.
pub fn wheel() -> Result<Vec<u8>> {
    let init = b"\"\"\"A package built by minitower-bench.\"\"\"\n\nVALUE = 42\n".to_vec();
    let metadata = b"Metadata-Version: 2.1\nName: benchdep\nVersion: 0.1.0\nSummary: minitower-bench test dependency\n".to_vec();
    let wheel_meta =
        b"Wheel-Version: 1.0\nGenerator: minitower-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            .to_vec();
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("benchdep/__init__.py".into(), init),
        ("benchdep-0.1.0.dist-info/METADATA".into(), metadata),
        ("benchdep-0.1.0.dist-info/WHEEL".into(), wheel_meta),
    ];
    let mut record = String::new();
    for (name, data) in &files {
        let digest = Sha256::digest(data);
        record.push_str(&format!(
            "{name},sha256={},{}\n",
            base64_url_nopad(&digest),
            data.len()
        ));
    }
    record.push_str("benchdep-0.1.0.dist-info/RECORD,,\n");
    files.push((
        "benchdep-0.1.0.dist-info/RECORD".into(),
        record.into_bytes(),
    ));
    Ok(zip_stored(&files))
}

/// URL-safe base64 without padding (the RECORD digest format).
pub fn base64_url_nopad(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(data);
    c.sum()
}

/// A zip archive with every entry stored (no compression).
pub fn zip_stored(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    // 1980-01-01 00:00 in DOS format
    let (time, date): (u16, u16) = (0, (1 << 5) | 1);
    for (name, data) in files {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let size = data.len() as u32;
        let n = name.as_bytes();
        // local file header
        out.extend_from_slice(&0x04034b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.extend_from_slice(&0u16.to_le_bytes()); // method: stored
        out.extend_from_slice(&time.to_le_bytes());
        out.extend_from_slice(&date.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&(n.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra length
        out.extend_from_slice(n);
        out.extend_from_slice(data);
        // central directory entry
        central.extend_from_slice(&0x02014b50u32.to_le_bytes());
        central.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes()); // made by: unix
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&time.to_le_bytes());
        central.extend_from_slice(&date.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&(n.len() as u16).to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes()); // extra
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
        central.extend_from_slice(&((0o100644u32) << 16).to_le_bytes()); // external attrs
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(n);
    }
    let cd_offset = out.len() as u32;
    let cd_size = central.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x06054b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// Hex SHA-256 (artifact digests and token hashes use it).
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64_url_nopad(b""), "");
        assert_eq!(base64_url_nopad(b"f"), "Zg");
        assert_eq!(base64_url_nopad(b"fo"), "Zm8");
        assert_eq!(base64_url_nopad(b"foo"), "Zm9v");
        assert_eq!(base64_url_nopad(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn wheel_is_a_zip_python_can_read() {
        let w = wheel().unwrap();
        assert_eq!(&w[..4], b"PK\x03\x04");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(WHEEL_FILE);
        std::fs::write(&p, &w).unwrap();
        // Check with Python's zipfile when an interpreter is around.
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
                 assert z.testzip() is None; print(len(z.namelist()))",
            ])
            .arg(&p)
            .output();
        if let Ok(out) = out {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "4");
        }
    }

    #[test]
    fn artifacts_unpack() {
        let a = with_deps().unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&a[..]));
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            vec![
                "main.py".to_string(),
                "requirements.txt".into(),
                format!("wheels/{WHEEL_FILE}")
            ]
        );
    }
}
