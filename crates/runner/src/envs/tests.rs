use super::*;

#[test]
fn detects_dependency_files() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    assert_eq!(detect(ws).unwrap(), Deps::None);
    std::fs::write(
        ws.join("pyproject.toml"),
        "[project]\nname='x'\ndependencies=[]\n",
    )
    .unwrap();
    assert_eq!(detect(ws).unwrap(), Deps::None);
    std::fs::write(
        ws.join("pyproject.toml"),
        "[project]\nname='x'\ndependencies=['requests>=2']\n",
    )
    .unwrap();
    assert!(
        matches!(detect(ws).unwrap(), Deps::Project { ref deps, lock: None, .. } if deps == &["requests>=2"])
    );
    std::fs::write(ws.join("uv.lock"), "version = 1\n").unwrap();
    assert!(matches!(
        detect(ws).unwrap(),
        Deps::Project { lock: Some(_), .. }
    ));
    std::fs::write(ws.join("requirements.txt"), "# nothing\n\n").unwrap();
    assert_eq!(detect(ws).unwrap(), Deps::None);
    std::fs::write(ws.join("requirements.txt"), "six\n").unwrap();
    assert_eq!(detect(ws).unwrap(), Deps::Requirements("six\n".into()));
    std::fs::remove_file(ws.join("requirements.txt")).unwrap();
    std::fs::write(ws.join("pyproject.toml"), "not toml [").unwrap();
    assert!(matches!(detect(ws), Err(SetupError::EnvBuild(_))));
}

#[test]
fn keys_depend_on_contents_and_interpreter() {
    let a = hash_key(&["x", "yz"]);
    assert_ne!(a, hash_key(&["xy", "z"]));
    assert_eq!(a, hash_key(&["x", "yz"]));
}

/// Builds a real environment from a local wheel with pip, then reuses it;
/// a directory without the marker is rebuilt, never used.
#[tokio::test]
async fn builds_once_and_reuses() {
    let data = tempfile::tempdir().unwrap();
    let interp = Interpreter::resolve("python3").await.unwrap();
    let cache = EnvCache::open(data.path().join("envs"), interp, None)
        .await
        .unwrap();
    assert!(cache.empty().dir.join(MARKER).exists());
    assert!(cache.empty().python().exists());

    let ws = data.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let wheel = crate::test_support::write_wheel(&ws, "tinydep", "VALUE = 42\n");
    std::fs::write(
        ws.join("requirements.txt"),
        format!("{}\n", wheel.display()),
    )
    .unwrap();
    let deps = detect(&ws).unwrap();
    let (sink, mut read) = LogSink::capture();
    let env = cache.ensure(&deps, &ws, &sink).await.unwrap();
    let lines = read();
    assert!(
        lines
            .iter()
            .any(|(s, l)| s == "setup" && l.starts_with("building environment")),
        "{lines:?}"
    );
    let out = std::process::Command::new(env.python())
        .args([
            "-c",
            "import tinydep, sys; print(tinydep.VALUE); print(tinydep.__cached__)",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("42"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pycache = env.dir.join("lib");
    let compiled = walk_count(&pycache, ".pyc");
    assert!(compiled > 0, "no bytecode compiled at build time");

    let inode =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(env.dir.join(MARKER)).unwrap());
    let again = cache.ensure(&deps, &ws, &sink).await.unwrap();
    assert_eq!(again.dir, env.dir);
    assert!(read()
        .iter()
        .any(|(_, l)| l.starts_with("using cached environment")));
    let inode2 =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(env.dir.join(MARKER)).unwrap());
    assert_eq!(inode, inode2);

    // A half-built environment (no marker) is thrown away and rebuilt.
    std::fs::remove_file(env.dir.join(MARKER)).unwrap();
    std::fs::write(env.dir.join("junk"), "x").unwrap();
    let rebuilt = cache.ensure(&deps, &ws, &sink).await.unwrap();
    assert!(rebuilt.dir.join(MARKER).exists());
    assert!(!rebuilt.dir.join("junk").exists());
    assert!(read()
        .iter()
        .any(|(_, l)| l.ends_with("is incomplete: rebuilding it")));

    // A complete environment changed since it was built is rebuilt too.
    let planted = rebuilt.dir.join("lib").join("planted.py");
    std::fs::write(&planted, "x").unwrap();
    assert!(!manifest_matches(&rebuilt.dir));
    let again = cache.ensure(&deps, &ws, &sink).await.unwrap();
    assert!(!planted.exists());
    assert!(manifest_matches(&again.dir));
    assert!(read()
        .iter()
        .any(|(_, l)| l.ends_with("was changed since it was built: rebuilding it")));
}

fn walk_count(dir: &Path, suffix: &str) -> usize {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                n += walk_count(&p, suffix);
            } else if p.to_string_lossy().ends_with(suffix) {
                n += 1;
            }
        }
    }
    n
}

/// The uv path: `uv venv` + `uv pip install --compile-bytecode`, from a
/// pyproject.toml this time. Skipped when uv is not installed.
#[tokio::test]
async fn builds_with_uv_when_available() {
    let Some(uv) = crate::python::find_uv(None) else {
        eprintln!("uv not found on PATH; skipping the uv build test");
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let interp = Interpreter::resolve("python3").await.unwrap();
    let cache = EnvCache::open(data.path().join("envs"), interp, Some(uv))
        .await
        .unwrap();
    assert_eq!(cache.installer(), "uv");
    let ws = data.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let wheel = crate::test_support::write_wheel(&ws, "uvdep", "VALUE = 7\n");
    let pyproject = format!(
        "[project]\nname = \"app\"\nversion = \"0.1\"\ndependencies = [\"uvdep @ file://{}\"]\n",
        wheel.display()
    );
    std::fs::write(ws.join("pyproject.toml"), pyproject).unwrap();
    let deps = detect(&ws).unwrap();
    assert!(matches!(deps, Deps::Project { lock: None, .. }));
    let (sink, mut read) = LogSink::capture();
    let env = cache
        .ensure(&deps, &ws, &sink)
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", read()));
    let out = std::process::Command::new(env.python())
        .args(["-c", "import uvdep; print(uvdep.VALUE)"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");
    assert!(
        walk_count(&env.dir.join("lib"), ".pyc") > 0,
        "no bytecode compiled at build time"
    );
    assert!(read()
        .iter()
        .any(|(s, l)| s == "setup" && l.contains("with uv")));
}

#[test]
fn pip_versions() {
    assert!(pip_supports_python_flag("pip 23.2.1 from /x (python 3.11)"));
    assert!(pip_supports_python_flag("pip 22.3 from /x"));
    assert!(!pip_supports_python_flag("pip 22.2.2 from /x"));
    assert!(!pip_supports_python_flag("garbage"));
}
