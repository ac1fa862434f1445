use super::*;
use crate::archive::{inspect, Limits};
use std::fs;

fn write(dir: &Path, rel: &str, content: &str) {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

fn towerfile(text: &str) -> Towerfile {
    crate::towerfile::parse(text).unwrap().towerfile
}

const BASIC: &str = "[app]\nname = \"hello\"\nscript = \"main.py\"\n";

fn app_dir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "Towerfile", BASIC);
    write(d, "main.py", "print('hi')\n");
    write(d, "lib/util.py", "X = 1\n");
    write(d, "lib/data/info.txt", "data\n");
    write(d, "README.md", "readme\n");
    write(d, ".git/config", "[core]\n");
    write(d, "__pycache__/main.cpython-312.pyc", "bytecode");
    write(d, "lib/__pycache__/util.cpython-312.pyc", "bytecode");
    write(d, "lib/old.pyc", "bytecode");
    write(d, ".venv/bin/python", "#!");
    write(d, ".minitower/state", "x");
    tmp
}

fn paths(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.archive_path.as_str()).collect()
}

fn pack_to_vec(dir: &Path, tf: &Towerfile) -> (Vec<u8>, PackInfo) {
    let mut buf = Vec::new();
    let info = pack(dir, tf, &mut buf).unwrap();
    (buf, info)
}

#[test]
fn default_selection_excludes_caches_and_vcs() {
    let tmp = app_dir();
    let entries = resolve(tmp.path(), &towerfile(BASIC)).unwrap();
    assert_eq!(
        paths(&entries),
        vec![
            "README.md",
            "Towerfile",
            "lib/data/info.txt",
            "lib/util.py",
            "main.py"
        ]
    );
}

#[test]
fn globs_select_and_always_keep_towerfile_and_script() {
    let tmp = app_dir();
    let tf = towerfile(
        "[app]\nname = \"hello\"\nscript = \"main.py\"\nsource = [\"lib/*.py\", \"./README.md\"]\n",
    );
    let entries = resolve(tmp.path(), &tf).unwrap();
    assert_eq!(
        paths(&entries),
        vec!["README.md", "Towerfile", "lib/util.py", "main.py"]
    );

    // `*` does not cross folders; `**` does; a bare folder means its contents.
    let tf = towerfile("[app]\nname = \"a\"\nscript = \"main.py\"\nsource = [\"*.md\"]\n");
    let entries = resolve(tmp.path(), &tf).unwrap();
    assert_eq!(paths(&entries), vec!["README.md", "Towerfile", "main.py"]);
    let tf = towerfile("[app]\nname = \"a\"\nscript = \"main.py\"\nsource = [\"**/*.txt\"]\n");
    let entries = resolve(tmp.path(), &tf).unwrap();
    assert_eq!(
        paths(&entries),
        vec!["Towerfile", "lib/data/info.txt", "main.py"]
    );
    let tf = towerfile("[app]\nname = \"a\"\nscript = \"main.py\"\nsource = [\"lib\"]\n");
    let entries = resolve(tmp.path(), &tf).unwrap();
    assert_eq!(
        paths(&entries),
        vec!["Towerfile", "lib/data/info.txt", "lib/util.py", "main.py"]
    );
    // Excluded names stay out even when a glob asks for everything.
    let tf = towerfile("[app]\nname = \"a\"\nscript = \"main.py\"\nsource = [\"**\"]\n");
    let entries = resolve(tmp.path(), &tf).unwrap();
    assert_eq!(entries.len(), 5);
}

#[test]
fn escaping_patterns_are_refused() {
    let tmp = app_dir();
    for pat in ["../*", "/etc/passwd", "lib/../../x", "..", "./../secret"] {
        let tf = towerfile(&format!(
            "[app]\nname = \"a\"\nscript = \"main.py\"\nsource = [\"{pat}\"]\n"
        ));
        let e = resolve(tmp.path(), &tf).unwrap_err();
        assert!(
            matches!(e, PackageError::PatternOutside(ref p) if p == pat),
            "{pat}: {e}"
        );
        assert!(e.to_string().contains(pat), "{e}");
    }
}

#[test]
fn invalid_pattern_is_reported() {
    let tmp = app_dir();
    let tf = towerfile("[app]\nname = \"a\"\nscript = \"main.py\"\nsource = [\"lib/[\"]\n");
    let e = resolve(tmp.path(), &tf).unwrap_err();
    assert!(matches!(e, PackageError::BadPattern { .. }), "{e}");
}

#[cfg(unix)]
#[test]
fn symlinks_leaving_the_folder_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret.txt", "secret");
    write(outside.path(), "dir/key.pem", "key");

    let tmp = app_dir();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        tmp.path().join("leak.txt"),
    )
    .unwrap();
    let e = resolve(tmp.path(), &towerfile(BASIC)).unwrap_err();
    assert!(
        matches!(e, PackageError::LinkOutside { ref path, .. } if path == "leak.txt"),
        "{e}"
    );
    // Not selected by the globs: fine.
    let tf = towerfile("[app]\nname = \"a\"\nscript = \"main.py\"\nsource = [\"lib\"]\n");
    assert!(resolve(tmp.path(), &tf).is_ok());
    // Named explicitly: refused.
    let tf = towerfile("[app]\nname = \"a\"\nscript = \"main.py\"\nsource = [\"leak.txt\"]\n");
    assert!(resolve(tmp.path(), &tf).is_err());

    let tmp = app_dir();
    std::os::unix::fs::symlink(outside.path().join("dir"), tmp.path().join("lib/ext")).unwrap();
    let e = resolve(tmp.path(), &towerfile(BASIC)).unwrap_err();
    assert!(
        matches!(e, PackageError::LinkOutside { ref path, .. } if path == "lib/ext"),
        "{e}"
    );
    let tf = towerfile("[app]\nname = \"a\"\nscript = \"main.py\"\nsource = [\"lib/**/*.pem\"]\n");
    assert!(resolve(tmp.path(), &tf).is_err());
    let tf = towerfile("[app]\nname = \"a\"\nscript = \"main.py\"\nsource = [\"*.md\"]\n");
    assert!(resolve(tmp.path(), &tf).is_ok());
}

#[cfg(unix)]
#[test]
fn symlinks_inside_the_folder_are_packed_as_files() {
    let tmp = app_dir();
    std::os::unix::fs::symlink("lib/util.py", tmp.path().join("util_link.py")).unwrap();
    std::os::unix::fs::symlink("lib", tmp.path().join("lib_link")).unwrap();
    std::os::unix::fs::symlink("missing", tmp.path().join("dangling")).unwrap();
    let tf = towerfile("[app]\nname = \"a\"\nscript = \"main.py\"\nsource = [\"*.py\"]\n");
    let entries = resolve(tmp.path(), &tf).unwrap();
    assert_eq!(
        paths(&entries),
        vec!["Towerfile", "main.py", "util_link.py"]
    );
    let (buf, _) = pack_to_vec(tmp.path(), &tf);
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&buf[..]));
    for e in ar.entries().unwrap() {
        assert_eq!(e.unwrap().header().entry_type(), tar::EntryType::Regular);
    }
    // A dangling link is an error only when selected.
    assert!(resolve(tmp.path(), &towerfile(BASIC)).is_err());
}

#[test]
fn missing_script_is_an_error() {
    let tmp = app_dir();
    let tf = towerfile("[app]\nname = \"a\"\nscript = \"nope.py\"\n");
    let e = resolve(tmp.path(), &tf).unwrap_err();
    assert!(matches!(e, PackageError::MissingScript(_)), "{e}");
    fs::remove_file(tmp.path().join("Towerfile")).unwrap();
    let e = resolve(tmp.path(), &towerfile(BASIC)).unwrap_err();
    assert!(matches!(e, PackageError::MissingTowerfile(_)), "{e}");
}

#[test]
fn import_paths_go_under_modules() {
    let base = tempfile::tempdir().unwrap();
    let app = base.path().join("app");
    write(&app, "Towerfile", BASIC);
    write(&app, "main.py", "import shared\n");
    write(base.path(), "shared-lib/shared/__init__.py", "X = 1\n");
    write(base.path(), "shared-lib/shared/__pycache__/x.pyc", "b");
    let tf = towerfile(
        "[app]\nname = \"a\"\nscript = \"main.py\"\nimport_paths = [\"../shared-lib\"]\n",
    );
    assert_eq!(tf.module_paths(), vec!["modules/shared-lib"]);
    let entries = resolve(&app, &tf).unwrap();
    assert_eq!(
        paths(&entries),
        vec![
            "Towerfile",
            "main.py",
            "modules/shared-lib/shared/__init__.py"
        ]
    );
    let tf =
        towerfile("[app]\nname = \"a\"\nscript = \"main.py\"\nimport_paths = [\"../nowhere\"]\n");
    let e = resolve(&app, &tf).unwrap_err();
    assert!(matches!(e, PackageError::ImportPath { .. }), "{e}");
}

#[test]
fn packing_is_deterministic() {
    let tmp = app_dir();
    let tf = towerfile(BASIC);
    let (a, info_a) = pack_to_vec(tmp.path(), &tf);
    let (b, info_b) = pack_to_vec(tmp.path(), &tf);
    assert_eq!(a, b);
    assert_eq!(info_a, info_b);
    assert_eq!(info_a.size, a.len() as u64);
    assert_eq!(info_a.sha256, sha256_hex(&a[..]).unwrap());
    assert_eq!(info_a.files, 5);

    // Touching a file changes nothing.
    let f = fs::File::options()
        .write(true)
        .open(tmp.path().join("main.py"))
        .unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(12345))
        .unwrap();
    drop(f);
    let (_, info_touched) = pack_to_vec(tmp.path(), &tf);
    assert_eq!(info_touched.sha256, info_a.sha256);

    // The same content in another folder gives the same hash.
    let other = app_dir();
    assert_eq!(pack_to_vec(other.path(), &tf).1.sha256, info_a.sha256);

    // Changing content changes the hash.
    write(tmp.path(), "main.py", "print('bye')\n");
    let (_, info_changed) = pack_to_vec(tmp.path(), &tf);
    assert_ne!(info_changed.sha256, info_a.sha256);
}

#[test]
fn archive_headers_are_normalised() {
    let tmp = app_dir();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(
            tmp.path().join("main.py"),
            fs::Permissions::from_mode(0o775),
        )
        .unwrap();
    }
    let (buf, _) = pack_to_vec(tmp.path(), &towerfile(BASIC));
    // gzip header: magic, method, flags = 0 (no name), mtime = 0.
    assert_eq!(&buf[..4], &[0x1f, 0x8b, 8, 0]);
    assert_eq!(&buf[4..8], &[0, 0, 0, 0]);
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&buf[..]));
    let mut names = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        assert_eq!(h.mtime().unwrap(), 0);
        assert_eq!(h.uid().unwrap(), 0);
        assert_eq!(h.gid().unwrap(), 0);
        assert_eq!(h.username().unwrap(), Some(""));
        assert_eq!(h.groupname().unwrap(), Some(""));
        let want = if cfg!(unix) && name == "main.py" {
            0o755
        } else {
            0o644
        };
        assert_eq!(h.mode().unwrap(), want, "{name}");
        names.push(name);
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[test]
fn packed_archive_passes_server_checks() {
    let tmp = app_dir();
    write(
        tmp.path(),
        &format!("lib/{}/deep.py", "d".repeat(120)),
        "x = 1\n",
    );
    let (buf, _) = pack_to_vec(tmp.path(), &towerfile(BASIC));
    let summary = inspect(&buf[..], Limits::for_artifact_size(1 << 20)).unwrap();
    assert!(summary.contains("main.py"));
    assert!(summary.contains(&format!("lib/{}/deep.py", "d".repeat(120))));
    assert_eq!(summary.towerfile.as_deref(), Some(BASIC));
    let parsed = crate::towerfile::parse(summary.towerfile.as_deref().unwrap()).unwrap();
    assert_eq!(parsed.towerfile.app.script, "main.py");
}
