//! Property tests over generated hostile archives: long names, PAX bodies,
//! deep paths, many tiny entries, every link kind, devices and fifos,
//! truncated and garbled gzip. Whatever the input, `inspect` and `unpack`
//! return (no panic), what they accept stays inside the limits and the
//! destination, and `unpack` never accepts what `inspect` refuses.

use super::*;
use flate2::{write::GzEncoder, Compression};
use proptest::prelude::*;
use std::io::Write;

const LIMITS: Limits = Limits {
    max_unpacked_bytes: 64 << 10,
    max_entries: 24,
};

/// One record of a generated archive, written byte for byte.
#[derive(Debug, Clone)]
enum Piece {
    File(String, usize),
    Dir(String),
    Symlink(String, String),
    HardLink(String, String),
    /// A header of another type flag: devices, fifos, contiguous, unknown.
    Special(String, u8),
    /// GNU long name (`L`) with a body of this many bytes of a path.
    LongName(String),
    /// GNU long link (`K`).
    LongLink(String),
    /// PAX local (`x`) or global (`g`) records.
    Pax(bool, Vec<(String, String)>),
    /// A PAX or long-name record whose body is this many filler bytes.
    BigRecord(u8, usize),
    /// GNU sparse file of this real size with 512 stored bytes.
    Sparse(String, u64),
    /// 512 arbitrary bytes where a header belongs.
    Garbage(Vec<u8>),
}

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("..".to_string()),
        Just(".".to_string()),
        Just(String::new()),
        Just("Towerfile".to_string()),
        Just("main.py".to_string()),
        "[a-z]{1,3}",
        (1usize..300).prop_map(|n| "d".repeat(n)),
        "\\PC{1,4}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    (
        prop::bool::weighted(0.1),
        prop::collection::vec(component(), 1..6),
        0usize..3,
    )
        .prop_map(|(abs, parts, deep)| {
            let mut p = parts.join("/");
            // Now and then a very deep path.
            for _ in 0..deep * 200 {
                p.push_str("/x");
            }
            if abs {
                p.insert(0, '/');
            }
            p
        })
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        4 => (path(), 0usize..4096).prop_map(|(p, n)| Piece::File(p, n)),
        1 => path().prop_map(Piece::Dir),
        2 => (path(), path()).prop_map(|(p, t)| Piece::Symlink(p, t)),
        2 => (path(), path()).prop_map(|(p, t)| Piece::HardLink(p, t)),
        1 => (path(), prop::sample::select(b"0123456789ACDGIKLMNSVxg\0Z".to_vec()))
            .prop_map(|(p, k)| Piece::Special(p, k)),
        2 => path().prop_map(Piece::LongName),
        1 => path().prop_map(Piece::LongLink),
        2 => (any::<bool>(), prop::collection::vec(
                (prop_oneof![Just("path".to_string()), Just("linkpath".to_string()),
                             Just("size".to_string()), Just("uid".to_string()),
                             Just("GNU.sparse.map".to_string()), "[a-z.]{1,8}"],
                 prop_oneof![path(), "[0-9]{1,20}", "\\PC{0,16}"]),
                0..4))
            .prop_map(|(g, r)| Piece::Pax(g, r)),
        1 => (prop::sample::select(b"xgLK".to_vec()), 0usize..(3 << 20))
            .prop_map(|(k, n)| Piece::BigRecord(k, n)),
        1 => (path(), 512u64..(1 << 24)).prop_map(|(p, n)| Piece::Sparse(p, n)),
        1 => prop::collection::vec(any::<u8>(), 512).prop_map(Piece::Garbage),
    ]
}

/// How the gzip stream is damaged.
#[derive(Debug, Clone)]
enum Damage {
    None,
    /// Cut at this fraction (per mille) of the length.
    Truncate(u16),
    /// Overwrite the byte at this fraction (per mille) with a value.
    Flip(u16, u8),
    /// Not gzip at all: the raw tar.
    Raw,
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        6 => Just(Damage::None),
        1 => (0u16..1000).prop_map(Damage::Truncate),
        1 => (0u16..1000, any::<u8>()).prop_map(|(a, b)| Damage::Flip(a, b)),
        1 => Just(Damage::Raw),
    ]
}

fn header(name: &[u8], kind: u8, size: u64, link: &[u8]) -> [u8; 512] {
    let mut h = tar::Header::new_gnu();
    {
        let gnu = h.as_gnu_mut().unwrap();
        let n = name.len().min(100);
        gnu.name = [0; 100];
        gnu.name[..n].copy_from_slice(&name[..n]);
        let l = link.len().min(100);
        gnu.linkname = [0; 100];
        gnu.linkname[..l].copy_from_slice(&link[..l]);
    }
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    *h.as_bytes()
}

fn record(out: &mut Vec<u8>, name: &[u8], kind: u8, body: &[u8], link: &[u8]) {
    out.extend_from_slice(&header(name, kind, body.len() as u64, link));
    out.extend_from_slice(body);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn pax_body(records: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let rest = format!(" {k}={v}\n");
        let mut len = rest.len() + 1;
        while format!("{len}{rest}").len() != len {
            len += 1;
        }
        out.extend_from_slice(format!("{len}{rest}").as_bytes());
    }
    out
}

fn tar_bytes(pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pieces {
        match p {
            Piece::File(name, n) => record(&mut out, name.as_bytes(), b'0', &vec![b'x'; *n], b""),
            Piece::Dir(name) => record(&mut out, name.as_bytes(), b'5', b"", b""),
            Piece::Symlink(name, t) => record(&mut out, name.as_bytes(), b'2', b"", t.as_bytes()),
            Piece::HardLink(name, t) => record(&mut out, name.as_bytes(), b'1', b"", t.as_bytes()),
            Piece::Special(name, k) => record(&mut out, name.as_bytes(), *k, b"", b""),
            Piece::LongName(name) => record(&mut out, b"././@LongLink", b'L', name.as_bytes(), b""),
            Piece::LongLink(name) => record(&mut out, b"././@LongLink", b'K', name.as_bytes(), b""),
            Piece::Pax(global, recs) => record(
                &mut out,
                b"pax",
                if *global { b'g' } else { b'x' },
                &pax_body(recs),
                b"",
            ),
            Piece::BigRecord(kind, n) => {
                let mut body = pax_body(&[("comment".into(), String::new())]);
                body.resize(*n, b'a');
                record(&mut out, b"big", *kind, &body, b"");
            }
            Piece::Sparse(name, real) => {
                let mut h = tar::Header::new_gnu();
                h.set_path(name.get(..90).unwrap_or("s")).unwrap_or(());
                h.set_mode(0o644);
                h.set_entry_type(tar::EntryType::GNUSparse);
                h.set_size(512);
                let gnu = h.as_gnu_mut().unwrap();
                gnu.sparse[0].set_offset(real - 512);
                gnu.sparse[0].set_length(512);
                gnu.set_real_size(*real);
                h.set_cksum();
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(&[b'y'; 512]);
            }
            Piece::Garbage(bytes) => out.extend_from_slice(bytes),
        }
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn damaged(pieces: &[Piece], d: &Damage) -> Vec<u8> {
    let tar = tar_bytes(pieces);
    if let Damage::Raw = d {
        return tar;
    }
    let mut gz = gzip(&tar);
    match d {
        Damage::Truncate(f) => gz.truncate(gz.len() * *f as usize / 1000),
        Damage::Flip(f, v) => {
            let i = (gz.len() - 1) * *f as usize / 1000;
            gz[i] = *v;
        }
        _ => {}
    }
    gz
}

/// Every accepted name is a clean relative path.
fn assert_clean(s: &Summary) -> Result<(), TestCaseError> {
    prop_assert!(s.files.len() as u64 <= LIMITS.max_entries);
    prop_assert!(s.unpacked_bytes <= LIMITS.max_unpacked_bytes);
    for f in &s.files {
        prop_assert!(!f.is_empty() && !f.starts_with('/'), "{f:?}");
        prop_assert!(f.split('/').all(|c| c != ".." && !c.is_empty()), "{f:?}");
        prop_assert!(f.len() <= MAX_PATH_BYTES);
    }
    Ok(())
}

/// Nothing outside `dest` in `root`, and every symlink under `dest`
/// resolves (lexically) inside it.
fn assert_contained(root: &Path, dest: &Path) -> Result<(), TestCaseError> {
    let outside: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p != dest)
        .collect();
    prop_assert!(outside.is_empty(), "written outside: {outside:?}");
    let mut stack = vec![dest.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                prop_assert!(!target.is_absolute(), "{p:?} -> {target:?}");
                let rel = p
                    .parent()
                    .unwrap()
                    .strip_prefix(dest)
                    .unwrap()
                    .join(&target);
                prop_assert!(normalize(&rel).is_some(), "{p:?} -> {target:?}");
            } else if meta.is_dir() {
                stack.push(p);
            } else {
                prop_assert!(meta.is_file(), "{p:?} is {:?}", meta.file_type());
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn hostile_archives_are_refused_or_contained(
        pieces in prop::collection::vec(piece(), 0..12),
        d in damage(),
    ) {
        let bytes = damaged(&pieces, &d);
        let inspected = inspect(&bytes[..], LIMITS);
        if let Ok(s) = &inspected {
            assert_clean(s)?;
        }
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("ws");
        std::fs::create_dir(&dest).unwrap();
        let unpacked = unpack(&bytes[..], &dest, LIMITS);
        assert_contained(root.path(), &dest)?;
        match (&inspected, &unpacked) {
            (Ok(a), Ok(b)) => {
                assert_clean(b)?;
                prop_assert_eq!(&a.files, &b.files);
            }
            (Err(e), Ok(_)) => prop_assert!(false, "inspect refused ({e}) but unpack accepted"),
            _ => {}
        }
    }

    #[test]
    fn many_tiny_entries_hit_the_entry_limit(n in 0u64..60, pax_each in any::<bool>()) {
        let mut pieces = Vec::new();
        for i in 0..n {
            if pax_each {
                pieces.push(Piece::Pax(false, vec![("mtime".into(), "1.5".into())]));
            }
            pieces.push(Piece::File(format!("f{i}"), 1));
        }
        let r = inspect(&gzip(&tar_bytes(&pieces))[..], LIMITS);
        let counted = if pax_each { 2 * n } else { n };
        if counted > LIMITS.max_entries {
            prop_assert!(matches!(r, Err(ArchiveError::TooManyEntries { .. })), "{r:?}");
        } else {
            prop_assert_eq!(r.unwrap().files.len() as u64, n);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = inspect(&bytes[..], LIMITS);
        let _ = inspect(&gzip(&bytes)[..], LIMITS);
    }
}

#[test]
fn oversized_extension_records_are_refused_before_they_are_buffered() {
    let big = Limits::for_artifact_size(1 << 30);
    for kind in [b'x', b'L', b'K'] {
        let d = gzip(&tar_bytes(&[
            Piece::BigRecord(kind, (MAX_HEADER_BYTES + 1) as usize),
            Piece::File("main.py".into(), 1),
        ]));
        let r = inspect(&d[..], big);
        assert!(
            matches!(r, Err(ArchiveError::HeadersTooLarge { .. })),
            "{}: {r:?}",
            kind as char
        );
    }
    // A global PAX record is an entry of its own: its size counts as content.
    let d = gzip(&tar_bytes(&[Piece::BigRecord(b'g', 100 << 10)]));
    assert!(matches!(
        inspect(&d[..], LIMITS),
        Err(ArchiveError::TooLarge { .. })
    ));
    // Below the cap a long name is read, and too long a path is refused.
    let d = gzip(&tar_bytes(&[
        Piece::LongName("a/".repeat(2100) + "x"),
        Piece::File("short".into(), 1),
    ]));
    assert!(matches!(
        inspect(&d[..], big),
        Err(ArchiveError::PathTooLong { .. })
    ));
    let d = gzip(&tar_bytes(&[
        Piece::LongName("d".repeat(200) + "/main.py"),
        Piece::File("short".into(), 1),
    ]));
    let s = inspect(&d[..], big).unwrap();
    assert_eq!(s.files, vec!["d".repeat(200) + "/main.py"]);
}

#[test]
fn pax_size_counts_not_the_header_size() {
    // The header says 1 byte, PAX says 1 MiB: the 1 MiB is what counts.
    let mut tar = Vec::new();
    record(
        &mut tar,
        b"pax",
        b'x',
        &pax_body(&[("size".into(), (1u64 << 20).to_string())]),
        b"",
    );
    tar.extend_from_slice(&header(b"blob", b'0', 1, b""));
    tar.extend_from_slice(&vec![0u8; 1 << 20]);
    tar.extend_from_slice(&[0u8; 1024]);
    assert!(matches!(
        inspect(&gzip(&tar)[..], LIMITS),
        Err(ArchiveError::TooLarge { .. })
    ));
}

#[test]
fn the_capped_reader_fails_past_its_cap_instead_of_ending() {
    let meter: SharedMeter = Rc::new(RefCell::new(Meter {
        read: 0,
        total_cap: 1000,
        window_start: None,
        tripped: None,
    }));
    let mut r = Capped {
        inner: &[7u8; 1001][..],
        meter: meter.clone(),
    };
    let mut out = Vec::new();
    let e = r.read_to_end(&mut out).unwrap_err();
    assert!(e.to_string().contains("1000"), "{e}");
    assert_eq!(out.len(), 1000);
    assert!(matches!(meter.borrow().tripped, Some(Trip::Total(1000))));
    // Exactly at the cap is fine.
    meter.borrow_mut().read = 0;
    meter.borrow_mut().tripped = None;
    let mut r = Capped {
        inner: &[7u8; 1000][..],
        meter,
    };
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    assert_eq!(out.len(), 1000);
}

#[test]
fn truncated_and_garbage_gzip_is_corrupt() {
    let good = gzip(&tar_bytes(&[Piece::File("main.py".into(), 3000)]));
    inspect(&good[..], LIMITS).unwrap();
    for cut in [0, 5, 10, 20, good.len() / 2, good.len() - 9] {
        let r = inspect(&good[..cut], LIMITS);
        assert!(matches!(r, Err(ArchiveError::Corrupt(_))), "{cut}: {r:?}");
    }
}
