use super::*;
use chrono::Utc;
use serde_json::json;

fn lease(input: serde_json::Value, import_paths: Vec<String>) -> Lease {
    Lease {
        run_id: 42,
        run_no: 3,
        attempt_no: 2,
        lease_token: "lt".into(),
        lease_expires_at: Utc::now(),
        app: "hello".into(),
        version_no: 7,
        entrypoint: "main.py".into(),
        timeout_seconds: 60,
        artifact_sha256: "0".repeat(64),
        input,
        team: "acme".into(),
        last_log_seq: 0,
        import_paths,
        ttl_ms: Some(3000),
        fencing_token: Some(2),
        secrets: Default::default(),
        started: None,
        job: None,
    }
}

fn get<'a>(vars: &'a BTreeMap<OsString, OsString>, k: &str) -> Option<&'a str> {
    vars.get(OsStr::new(k)).and_then(|v| v.to_str())
}

#[test]
fn script_env_has_run_vars_inputs_and_no_secrets() {
    // SAFETY: tests in this module do not read these variables concurrently.
    unsafe { std::env::set_var("MINITOWER_RUNNER_REGISTRATION_TOKEN", "secret") };
    let env = PyEnv {
        dir: "/envs/e1".into(),
    };
    let l = lease(
        json!({"name": "MiniTower", "count": 3, "nested": {"a": [1]}, "bad-key": "x", "MINITOWER_RUN_ID": "spoof"}),
        vec!["modules/lib".into(), "../escape".into()],
    );
    let ws = tempfile::tempdir().unwrap();
    let input = write_input(ws.path(), &l.input).unwrap();
    assert!(input.notes.is_empty(), "{:?}", input.notes);
    let vars = script_env(&l, Path::new("/ws"), &env, &input);
    assert_eq!(get(&vars, "MINITOWER_FENCING_TOKEN"), Some("2"));
    let file = get(&vars, "MINITOWER_INPUT_FILE").unwrap();
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert_eq!(on_disk, l.input);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(get(&vars, "MINITOWER_RUN_ID"), Some("42"));
    assert_eq!(get(&vars, "MINITOWER_RUN_NO"), Some("3"));
    assert_eq!(get(&vars, "MINITOWER_ATTEMPT_NO"), Some("2"));
    assert_eq!(get(&vars, "MINITOWER_VERSION_NO"), Some("7"));
    assert_eq!(get(&vars, "MINITOWER_APP"), Some("hello"));
    assert_eq!(get(&vars, "name"), Some("MiniTower"));
    assert_eq!(get(&vars, "count"), Some("3"));
    assert_eq!(get(&vars, "nested"), Some(r#"{"a":[1]}"#));
    assert_eq!(get(&vars, "bad-key"), None);
    let input: serde_json::Value =
        serde_json::from_str(get(&vars, "MINITOWER_INPUT").unwrap()).unwrap();
    assert_eq!(input["name"], "MiniTower");
    assert_eq!(get(&vars, "PYTHONUNBUFFERED"), Some("1"));
    assert_eq!(get(&vars, "VIRTUAL_ENV"), Some("/envs/e1"));
    assert!(get(&vars, "PATH").unwrap().starts_with("/envs/e1/bin"));
    let pp = get(&vars, "PYTHONPATH").unwrap();
    assert!(pp.starts_with("/ws/modules/lib"), "{pp}");
    assert!(!pp.contains("escape"));
    // base_env() is computed once; whichever test ran first, the secret never shows.
    assert_eq!(get(&vars, "MINITOWER_RUNNER_REGISTRATION_TOKEN"), None);
}

#[test]
fn only_allowlisted_runner_variables_pass() {
    assert!(is_secret(OsStr::new("MINITOWER_RUNNER_REGISTRATION_TOKEN")));
    assert!(is_secret(OsStr::new("MINITOWER_SOME_PASSWORD")));
    assert!(!is_secret(OsStr::new("MINITOWER_RUNNER_NAME")));
    let none: Vec<String> = vec![];
    assert!(is_allowed(OsStr::new("HOME"), &none));
    assert!(is_allowed(OsStr::new("LC_ALL"), &none));
    assert!(!is_allowed(OsStr::new("AWS_SECRET_ACCESS_KEY"), &none));
    assert!(!is_allowed(OsStr::new("PYTHONSTARTUP"), &none));
    let extra = vec!["HTTP_PROXY".to_string(), "MINITOWER_TOKEN".to_string()];
    assert!(is_allowed(OsStr::new("HTTP_PROXY"), &extra));
    // A secret stays out even when named.
    assert!(!is_allowed(OsStr::new("MINITOWER_TOKEN"), &extra));
}

#[test]
fn input_that_cannot_be_an_environment_variable_goes_by_file_only() {
    let ws = tempfile::tempdir().unwrap();
    let big = "x".repeat(200 * 1024);
    let input = json!({"nul": "a\u{0}b", "big": big, "ok": "fine"});
    let d = write_input(ws.path(), &input).unwrap();
    let names: Vec<&str> = d.vars.iter().map(|(k, _)| k.as_str()).collect();
    assert!(names.contains(&"ok"));
    assert!(!names.contains(&"nul"));
    assert!(!names.contains(&"big"));
    // The whole input is over 128 KiB: not in MINITOWER_INPUT either.
    assert!(!names.contains(&"MINITOWER_INPUT"));
    assert_eq!(d.notes.len(), 3, "{:?}", d.notes);
    assert!(d
        .notes
        .iter()
        .any(|n| n.contains("$nul") && n.contains("NUL")));
    let back: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&d.file).unwrap()).unwrap();
    assert_eq!(back, input);
}

#[test]
fn launch_by_extension() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    std::fs::write(ws.join("a.py"), "").unwrap();
    std::fs::write(ws.join("b.sh"), "").unwrap();
    std::fs::write(ws.join("c"), "").unwrap();
    std::fs::write(ws.join("d"), "").unwrap();
    std::fs::set_permissions(ws.join("c"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(matches!(
        Launch::for_entrypoint(ws, "a.py"),
        Ok(Launch::Python { .. })
    ));
    assert!(matches!(
        Launch::for_entrypoint(ws, "b.sh"),
        Ok(Launch::Shell { .. })
    ));
    assert!(matches!(
        Launch::for_entrypoint(ws, "c"),
        Ok(Launch::Executable { .. })
    ));
    assert!(matches!(
        Launch::for_entrypoint(ws, "d"),
        Err(SetupError::NotRunnable(_))
    ));
    assert!(matches!(
        Launch::for_entrypoint(ws, "nope.py"),
        Err(SetupError::MissingEntrypoint(_))
    ));
    assert!(matches!(
        Launch::for_entrypoint(ws, "../x.py"),
        Err(SetupError::MissingEntrypoint(_))
    ));
}

#[tokio::test]
async fn lines_are_split_and_repaired() {
    let (sink, mut read) = LogSink::capture();
    let long = "x".repeat(MAX_LINE_BYTES + 10);
    let mut data = Vec::new();
    data.extend_from_slice(b"hello\r\n");
    data.extend_from_slice(long.as_bytes());
    data.push(b'\n');
    data.extend_from_slice(b"bad \xff byte\n");
    data.extend_from_slice(b"no newline");
    pump_lines(Some(&data[..]), "stdout", sink).await;
    let lines: Vec<String> = read().into_iter().map(|(_, l)| l).collect();
    assert_eq!(lines[0], "hello");
    assert_eq!(lines[1].len(), MAX_LINE_BYTES);
    assert_eq!(lines[2].len(), 10);
    assert_eq!(lines[3], "bad \u{fffd} byte");
    assert_eq!(lines[4], "no newline");
    assert_eq!(lines.len(), 5);
}

#[test]
fn split_keeps_utf8_sequences_whole() {
    let mut b = vec![b'a'; MAX_LINE_BYTES - 1];
    b.extend_from_slice("é".as_bytes());
    assert_eq!(char_boundary(&b, MAX_LINE_BYTES), MAX_LINE_BYTES - 1);
    assert_eq!(signal_name(9), "SIGKILL (9)");
}

#[test]
fn secrets_become_variables_but_never_replace_the_runners_own() {
    let mut l = lease(json!({}), vec![]);
    l.secrets.0.insert("DB_PASSWORD".into(), "hunter22".into());
    l.secrets
        .0
        .insert("MINITOWER_RUN_ID".into(), "spoofed".into());
    let ws = std::env::temp_dir();
    let env = PyEnv {
        dir: ws.join("venv"),
    };
    let input = InputDelivery {
        vars: vec![],
        file: ws.join("input.json"),
        notes: vec![],
    };
    let vars = script_env(&l, &ws, &env, &input);
    assert_eq!(get(&vars, "DB_PASSWORD"), Some("hunter22"));
    assert_eq!(get(&vars, "MINITOWER_RUN_ID"), Some("42"));
}

#[test]
fn commands_resolve_on_path_or_in_the_workspace_and_shells_use_sh() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let bin = dir.path().join("venv").join("bin");
    std::fs::create_dir_all(ws.join("tools")).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    let exe = |p: &Path| {
        std::fs::write(p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    exe(&bin.join("tool"));
    exe(&ws.join("tools").join("run"));
    std::fs::write(bin.join("plain"), "").unwrap();
    let path = std::env::join_paths([bin.clone(), "/usr/bin".into(), "/bin".into()]).unwrap();
    assert_eq!(find_program("tool", &ws, &path), Some(bin.join("tool")));
    // Not executable: skipped, as execvp would.
    assert_eq!(find_program("plain", &ws, &path), None);
    assert_eq!(
        find_program("tools/run", &ws, &path),
        Some(ws.join("tools").join("run"))
    );
    assert_eq!(
        find_program("./tools/run", &ws, &path),
        Some(ws.join("./tools/run"))
    );
    assert_eq!(find_program("/bin/sh", &ws, &path), Some("/bin/sh".into()));
    assert_eq!(find_program("tools/nope", &ws, &path), None);
    assert_eq!(find_program("", &ws, &path), None);

    // The environment's bin comes first on the PATH a command is looked up on.
    let env = PyEnv {
        dir: dir.path().join("venv"),
    };
    let argv = |a: &[&str]| Entry::Command {
        argv: a.iter().map(|s| s.to_string()).collect(),
    };
    let l = Launch::for_entry(&argv(&["tool", "a b", "$X"]), &ws, &env, None).unwrap();
    assert_eq!(
        l.argv(&env),
        vec![OsString::from(bin.join("tool")), "a b".into(), "$X".into()]
    );
    match Launch::for_entry(&argv(&["no-such-tool-xyz"]), &ws, &env, None) {
        Err(SetupError::Spawn(m)) => assert!(m.contains("was not found on PATH"), "{m}"),
        other => panic!("{other:?}"),
    }
    match Launch::for_entry(&argv(&["tools/nope"]), &ws, &env, None) {
        Err(SetupError::Spawn(m)) => assert!(m.contains("is not an executable file"), "{m}"),
        other => panic!("{other:?}"),
    }
    let sh = Entry::Shell {
        script: "echo hi && exit 3".into(),
    };
    assert_eq!(
        Launch::for_entry(&sh, &ws, &env, None).unwrap().argv(&env),
        vec![
            OsString::from("/bin/sh"),
            "-c".into(),
            "echo hi && exit 3".into()
        ]
    );
    // A binary entry runs the file its source fetched.
    let b = Entry::Binary {
        args: vec!["--x".into()],
    };
    assert!(Launch::for_entry(&b, &ws, &env, None).is_err());
    let fetched = dir.path().join("bin-cache").join("abc");
    assert_eq!(
        Launch::for_entry(&b, &ws, &env, Some(&fetched))
            .unwrap()
            .argv(&env),
        vec![OsString::from(&fetched), "--x".into()]
    );
}

#[test]
fn a_terminal_gets_term_unless_the_run_chose_one() {
    let mut l = lease(json!({}), vec![]);
    let none = InputDelivery::default();
    let mut vars = BTreeMap::new();
    vars.insert(OsString::from("TERM"), OsString::from("dumb"));
    terminal_env(&mut vars, &l, &none);
    assert_eq!(get(&vars, "TERM"), Some("xterm-256color"));
    let chosen = InputDelivery {
        vars: vec![("TERM".into(), "vt100".into())],
        ..Default::default()
    };
    let mut vars = BTreeMap::new();
    vars.insert(OsString::from("TERM"), OsString::from("vt100"));
    terminal_env(&mut vars, &l, &chosen);
    assert_eq!(get(&vars, "TERM"), Some("vt100"));
    l.secrets.0.insert("TERM".into(), "screen".into());
    let mut vars = BTreeMap::new();
    vars.insert(OsString::from("TERM"), OsString::from("screen"));
    terminal_env(&mut vars, &l, &none);
    assert_eq!(get(&vars, "TERM"), Some("screen"));
}
