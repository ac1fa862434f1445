//! Hostile archives against a real server in this process: ~4 MB uploads
//! that expand to a 4 GiB PAX record, a 4 GiB GNU long name, a 4 GiB file
//! and 200k tiny entries are refused with 413, nothing
//! is stored, and the process's peak RSS (`VmHWM`, reset before the
//! uploads) stays under 100 MiB. Alone in its test binary so the peak is
//! this test's.

mod common;

use common::*;
use flate2::write::DeflateEncoder;
use flate2::Compression;
use std::io::Write;

const MIB: u64 = 1 << 20;

/// A field of /proc/self/status in KiB.
fn status_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field} not in /proc/self/status"))
}

/// A self-contained run of deflate blocks for `data`: a fresh encoder (no
/// history to refer to) ending in a sync flush (byte aligned, not final),
/// so the same bytes can be repeated to stand for `data` many times.
fn deflate_piece(data: &[u8]) -> Vec<u8> {
    let mut e = DeflateEncoder::new(Vec::new(), Compression::best());
    e.write_all(data).unwrap();
    e.flush().unwrap();
    e.get_ref().clone()
}

/// A well-formed gzip member of `head` followed by `reps` copies of `chunk`
/// (CRC and length included), built without compressing the whole.
fn gzip_repeated(head: &[u8], chunk: &[u8], reps: u64) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend_from_slice(&deflate_piece(head));
    let piece = deflate_piece(chunk);
    let mut crc = flate2::Crc::new();
    crc.update(head);
    for _ in 0..reps {
        out.extend_from_slice(&piece);
        crc.update(chunk);
    }
    // Final empty fixed-Huffman block, then CRC-32 and length mod 2^32.
    out.extend_from_slice(&[0x03, 0x00]);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    let len = head.len() as u64 + chunk.len() as u64 * reps;
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out
}

fn header(name: &str, kind: tar::EntryType, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// A 512-byte header of `kind` announcing `body` bytes, then that body.
fn bomb(kind: tar::EntryType, body: u64) -> Vec<u8> {
    assert_eq!(body % MIB, 0);
    gzip_repeated(
        &header("big", kind, body),
        &vec![b'a'; MIB as usize],
        body / MIB,
    )
}

#[tokio::test]
async fn hostile_archives_are_refused_in_bounded_memory() {
    let app = spawn_app().await;
    let team = team_with_app(&app).await;
    // Build every archive first so only the server's work is measured.
    let uploads = [
        (
            "PAX record of 4 GiB",
            bomb(tar::EntryType::XHeader, 4096 * MIB),
        ),
        (
            "GNU long name of 4 GiB",
            bomb(tar::EntryType::GNULongName, 4096 * MIB),
        ),
        (
            "GNU long link of 1 GiB",
            bomb(tar::EntryType::GNULongLink, 1024 * MIB),
        ),
        (
            "gzip bomb: one 4 GiB file",
            bomb(tar::EntryType::Regular, 4096 * MIB),
        ),
        ("200k tiny entries", {
            let dir = header("d/", tar::EntryType::Directory, 0);
            let chunk: Vec<u8> = dir.iter().copied().cycle().take(MIB as usize).collect();
            gzip_repeated(&header("main.py", tar::EntryType::Regular, 0), &chunk, 100)
        }),
    ];
    for (what, bytes) in &uploads {
        assert!(bytes.len() < 8 << 20, "{what}: {} bytes", bytes.len());
    }
    // Start the peak over (writing 5 to clear_refs resets VmHWM).
    std::fs::write("/proc/self/clear_refs", "5").expect("reset peak RSS");
    let base = status_kib("VmHWM");
    for (what, bytes) in uploads {
        let len = bytes.len();
        let resp = team
            .raw(reqwest::Method::POST, "/api/v1/apps/hello/versions")
            .multipart(
                reqwest::multipart::Form::new()
                    .part("artifact", reqwest::multipart::Part::bytes(bytes))
                    .text("entrypoint", "main.py"),
            )
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let (code, message) = envelope(resp, status).await;
        assert!(
            (status, code.as_str()) == (413, "payload_too_large")
                || (status, code.as_str()) == (400, "invalid_artifact"),
            "{what} ({len} bytes): {status} {code} {message}"
        );
        eprintln!(
            "{what}: {len} bytes -> {status} {message}; VmHWM {} MiB",
            status_kib("VmHWM") / 1024
        );
    }
    let peak = status_kib("VmHWM");
    eprintln!(
        "peak RSS {} MiB (was {} MiB before the uploads)",
        peak / 1024,
        base / 1024
    );
    assert!(peak < 100 * 1024, "peak RSS {} KiB", peak);
    assert!(team.list_versions("hello").await.unwrap().is_empty());
    assert_eq!(app.object_files(), Vec::<String>::new());
    // The server is fine afterwards.
    upload(&team, "hello", hello_targz(), Some("main.py"), None)
        .await
        .unwrap();
}
