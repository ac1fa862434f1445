use super::*;
use flate2::{write::GzEncoder, Compression};

const LIMITS: Limits = Limits {
    max_unpacked_bytes: 1 << 20,
    max_entries: 100,
};

/// Builds a tar.gz from raw entries, writing names straight into the header
/// so tests can produce archives `tar::Builder` itself would refuse.
fn targz(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name = [0; 100];
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        }
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        if let Some(l) = link {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.linkname = [0; 100];
            gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

use tar::EntryType as T;

#[test]
fn accepts_a_plain_archive_and_reads_the_towerfile() {
    let data = targz(&[
        ("./", T::Directory, b"", None),
        ("./main.py", T::Regular, b"print('hi')\n", None),
        ("./Towerfile", T::Regular, b"[app]\nname='x'\n", None),
        ("./lib/", T::Directory, b"", None),
        ("./lib/util.py", T::Regular, b"x=1\n", None),
        ("./lib/alias.py", T::Symlink, b"", Some("util.py")),
    ]);
    let s = inspect(&data[..], LIMITS).unwrap();
    assert!(s.contains("main.py"));
    assert!(s.contains("./lib/util.py"));
    assert!(!s.contains("missing.py"));
    assert_eq!(s.towerfile.as_deref(), Some("[app]\nname='x'\n"));
    assert_eq!(s.unpacked_bytes, 12 + 15 + 4);
}

#[test]
fn rejects_absolute_and_parent_paths() {
    let abs = targz(&[("/etc/passwd", T::Regular, b"x", None)]);
    assert!(matches!(
        inspect(&abs[..], LIMITS),
        Err(ArchiveError::UnsafePath(_))
    ));
    let up = targz(&[("a/../../x", T::Regular, b"x", None)]);
    assert!(matches!(
        inspect(&up[..], LIMITS),
        Err(ArchiveError::UnsafePath(_))
    ));
}

#[test]
fn rejects_links_leaving_the_archive() {
    for target in ["/etc/passwd", "../outside", "a/../../x"] {
        let d = targz(&[("link", T::Symlink, b"", Some(target))]);
        assert!(
            matches!(inspect(&d[..], LIMITS), Err(ArchiveError::UnsafeLink(_))),
            "{target}"
        );
    }
    let hard = targz(&[("h", T::Link, b"", Some("../x"))]);
    assert!(matches!(
        inspect(&hard[..], LIMITS),
        Err(ArchiveError::UnsafeLink(_))
    ));
    // A link that names the archive root itself (found by the property test).
    for (name, kind) in [(".", T::Symlink), ("./", T::Symlink), (".", T::Link)] {
        let root = targz(&[(name, kind, b"", Some("."))]);
        assert!(
            matches!(inspect(&root[..], LIMITS), Err(ArchiveError::UnsafePath(_))),
            "{name} {kind:?}"
        );
    }
    // A link that climbs but stays inside is fine.
    let ok = targz(&[("a/b", T::Symlink, b"", Some("../c"))]);
    inspect(&ok[..], LIMITS).unwrap();
}

#[test]
fn rejects_devices_and_fifos() {
    for kind in [T::Char, T::Block, T::Fifo] {
        let d = targz(&[("dev", kind, b"", None)]);
        assert!(matches!(
            inspect(&d[..], LIMITS),
            Err(ArchiveError::Unsupported(_))
        ));
    }
}

#[test]
fn rejects_garbage_and_size_bombs() {
    assert!(matches!(
        inspect(&b"not an archive"[..], LIMITS),
        Err(ArchiveError::Corrupt(_))
    ));
    let big = vec![0u8; 2 << 20];
    let d = targz(&[("big", T::Regular, &big, None)]);
    assert!(matches!(
        inspect(&d[..], LIMITS),
        Err(ArchiveError::TooLarge { .. })
    ));
    let many: Vec<(String, T, &[u8], Option<&str>)> = (0..101)
        .map(|i| (format!("f{i}"), T::Regular, &b""[..], None))
        .collect();
    let refs: Vec<_> = many
        .iter()
        .map(|(n, k, d, l)| (n.as_str(), *k, *d, *l))
        .collect();
    let d = targz(&refs);
    assert!(matches!(
        inspect(&d[..], LIMITS),
        Err(ArchiveError::TooManyEntries { .. })
    ));
}

#[test]
fn unpack_writes_files_inside_dest() {
    let dir = tempfile::tempdir().unwrap();
    let data = targz(&[
        ("main.py", T::Regular, b"print(1)\n", None),
        ("pkg/mod.py", T::Regular, b"y=2\n", None),
    ]);
    let s = unpack(&data[..], dir.path(), LIMITS).unwrap();
    assert_eq!(s.files.len(), 2);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("pkg/mod.py")).unwrap(),
        "y=2\n"
    );
    let bad = targz(&[("../escape", T::Regular, b"x", None)]);
    assert!(unpack(&bad[..], dir.path(), LIMITS).is_err());
    assert!(!dir.path().parent().unwrap().join("escape").exists());
}
