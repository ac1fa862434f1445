use super::*;
use serde_json::json;

fn git(url: &str, r: &str) -> JobSpec {
    JobSpec {
        entry: Entry::Command {
            argv: vec!["make".into()],
        },
        source: Source::Git {
            url: url.into(),
            git_ref: r.into(),
            secret: None,
        },
        pty: None,
        limits: Limits::default(),
    }
}

#[test]
fn json_shape_is_the_documented_one() {
    let spec = JobSpec {
        entry: Entry::Binary {
            args: vec!["-v".into()],
        },
        source: Source::Binary {
            url: "https://example.org/tool".into(),
            sha256: "a".repeat(64),
        },
        pty: Some(DEFAULT_PTY),
        limits: Limits {
            memory: Some(256 << 20),
            cpus: Some(1.5),
            pids: None,
            disk: None,
        },
    };
    let v = serde_json::to_value(&spec).unwrap();
    assert_eq!(
        v,
        json!({"entry":{"kind":"binary","args":["-v"]},
               "source":{"kind":"binary","url":"https://example.org/tool","sha256":"a".repeat(64)},
               "pty":{"cols":80,"rows":24},
               "limits":{"memory":268435456u64,"cpus":1.5}})
    );
    assert_eq!(serde_json::from_value::<JobSpec>(v).unwrap(), spec);
    let g = serde_json::to_value(git("/r", "v1")).unwrap();
    assert_eq!(g["source"], json!({"kind":"git","url":"/r","ref":"v1"}));
    // A spec with only an entry reads back with an archive source.
    let s: JobSpec =
        serde_json::from_value(json!({"entry":{"kind":"shell","script":"ls"}})).unwrap();
    assert_eq!(s.source, Source::Archive);
}

#[test]
fn plain_scripts_are_recognised() {
    assert!(JobSpec::script("main.py").is_plain_script());
    let mut s = JobSpec::script("main.py");
    s.pty = Some(DEFAULT_PTY);
    assert!(!s.is_plain_script());
    assert!(!git("/r", "main").is_plain_script());
    assert_eq!(
        JobSpec::script("a/b.py").script_in_archive(),
        Some("a/b.py")
    );
    assert_eq!(git("/r", "main").script_in_archive(), None);
}

#[test]
fn validation_names_the_field() {
    let cmd = |argv: Vec<&str>| JobSpec {
        entry: Entry::Command {
            argv: argv.into_iter().map(String::from).collect(),
        },
        ..JobSpec::default()
    };
    assert!(cmd(vec!["make", "test"]).validate().is_ok());
    assert!(cmd(vec![]).validate().unwrap_err().contains("command"));
    assert!(cmd(vec![""]).validate().unwrap_err().contains("command[0]"));
    assert!(cmd(vec!["a", "b\0"])
        .validate()
        .unwrap_err()
        .contains("command[1]"));
    let sh = |s: &str| JobSpec {
        entry: Entry::Shell { script: s.into() },
        ..JobSpec::default()
    };
    assert!(sh("echo hi").validate().is_ok());
    assert!(sh("  ").validate().unwrap_err().contains("shell"));
    assert!(JobSpec::script("../x.py").validate().is_err());
    assert!(git("https://user:tok@host/r.git", "v1")
        .validate()
        .unwrap_err()
        .contains("git.url"));
    assert!(git("https://tok@host/r.git", "v1").validate().is_err());
    assert!(git("ssh://git@host/r.git", "v1").validate().is_ok());
    assert!(git("git@host:r.git", "v1").validate().is_ok());
    assert!(git("file:///tmp/r", "v1").validate().is_ok());
    assert!(git("ftp://host/r", "v1").validate().is_err());
    assert!(git("/r", "--upload-pack=x")
        .validate()
        .unwrap_err()
        .contains("git.ref"));
    assert!(git("/r", "a..b").validate().is_err());
    assert!(git("/r", "refs/tags/v1.0").validate().is_ok());
    let bin = |url: &str, sha: &str| JobSpec {
        entry: Entry::Binary { args: vec![] },
        source: Source::Binary {
            url: url.into(),
            sha256: sha.into(),
        },
        pty: None,
        limits: Limits::default(),
    };
    assert!(bin("http://127.0.0.1:9/x", &"0".repeat(64))
        .validate()
        .is_ok());
    assert!(bin("http://127.0.0.1:9/x", "abc")
        .validate()
        .unwrap_err()
        .contains("binary.sha256"));
    assert!(bin("file:///bin/ls", &"0".repeat(64))
        .validate()
        .unwrap_err()
        .contains("binary.url"));
    // Entries and sources must fit together.
    let mut wrong = bin("http://h/x", &"0".repeat(64));
    wrong.entry = Entry::Command {
        argv: vec!["ls".into()],
    };
    assert!(wrong.validate().is_err());
    let wrong = JobSpec {
        entry: Entry::Binary { args: vec![] },
        ..JobSpec::default()
    };
    assert!(wrong.validate().is_err());
}

#[test]
fn sizes_and_limits() {
    assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
    assert_eq!(parse_size("1 GiB").unwrap(), 1 << 30);
    assert_eq!(parse_size("1024").unwrap(), 1024);
    assert!(parse_size("lots").is_err());
    assert!(parse_size("").is_err());
    let input: LimitsInput = serde_json::from_value(
        json!({"memory":"256MiB","cpus":1.5,"pids":64,"disk":1073741824u64}),
    )
    .unwrap();
    let l = input.resolve().unwrap();
    assert_eq!(
        (l.memory, l.cpus, l.pids, l.disk),
        (Some(256 << 20), Some(1.5), Some(64), Some(1 << 30))
    );
    for bad in [
        json!({"memory":"1KiB"}),
        json!({"cpus":0}),
        json!({"pids":0}),
        json!({"disk":"12"}),
        json!({"memory":"much"}),
    ] {
        let i: LimitsInput = serde_json::from_value(bad.clone()).unwrap();
        let e = i.resolve().unwrap_err();
        assert!(e.contains("limits."), "{bad}: {e}");
    }
    assert!(serde_json::from_value::<LimitsInput>(json!({"memroy":"1GiB"})).is_err());
    let merged = Limits {
        memory: Some(1 << 30),
        pids: Some(10),
        ..Limits::default()
    }
    .merged(&Limits {
        pids: Some(20),
        ..Limits::default()
    });
    assert_eq!((merged.memory, merged.pids), (Some(1 << 30), Some(20)));
}

#[test]
fn overrides_apply_and_are_checked() {
    let base = git("/r", "main");
    let o: JobOverrides =
        serde_json::from_value(json!({"pty":true,"limits":{"memory":"64MiB"},"ref":"v2"})).unwrap();
    let s = base.with_overrides(&o).unwrap();
    assert_eq!(s.pty, Some(DEFAULT_PTY));
    assert_eq!(s.limits.memory, Some(64 << 20));
    assert!(matches!(&s.source, Source::Git { git_ref, .. } if git_ref == "v2"));
    let off: JobOverrides = serde_json::from_value(json!({"pty":false})).unwrap();
    assert_eq!(s.with_overrides(&off).unwrap().pty, None);
    let sized: JobOverrides =
        serde_json::from_value(json!({"pty":{"cols":120,"rows":40}})).unwrap();
    assert_eq!(
        base.with_overrides(&sized).unwrap().pty,
        Some(PtySize {
            cols: 120,
            rows: 40
        })
    );
    let zero: JobOverrides = serde_json::from_value(json!({"pty":{"cols":0,"rows":40}})).unwrap();
    assert!(base.with_overrides(&zero).unwrap_err().contains("pty.cols"));
    let r: JobOverrides = serde_json::from_value(json!({"ref":"v1"})).unwrap();
    assert!(JobSpec::default()
        .with_overrides(&r)
        .unwrap_err()
        .contains("ref"));
    let bad_ref: JobOverrides = serde_json::from_value(json!({"ref":"-x"})).unwrap();
    assert!(base.with_overrides(&bad_ref).is_err());
    assert!(JobOverrides::default().is_empty());
}

#[test]
fn priorities_by_name_and_number() {
    let p = |v: serde_json::Value| {
        serde_json::from_value::<PriorityInput>(v)
            .unwrap()
            .resolve()
    };
    assert_eq!(p(json!("foreground")), Ok(100));
    assert_eq!(p(json!("background")), Ok(0));
    assert_eq!(p(json!("best_effort")), Ok(-100));
    assert!(
        p(json!("best-effort")).is_err(),
        "only the documented names"
    );
    assert_eq!(p(json!(7)), Ok(7));
    assert_eq!(p(json!(7.0)), Ok(7));
    assert!(p(json!("12")).is_err(), "a number is written as a number");
    assert!(p(json!("urgent")).unwrap_err().contains("foreground"));
    assert!(p(json!(7.5)).is_err());
    assert!(p(json!(2_000_000)).is_err());
    assert_eq!(priority_name(100), Some("foreground"));
    assert_eq!(priority_name(0), Some("background"));
    assert_eq!(priority_name(-100), Some("best_effort"));
    assert_eq!(priority_name(5), None);
}

#[test]
fn labels_describe_the_entry() {
    assert_eq!(JobSpec::script("main.py").entrypoint_label(), "main.py");
    let c = JobSpec {
        entry: Entry::Command {
            argv: vec!["make".into(), "test".into()],
        },
        ..JobSpec::default()
    };
    assert_eq!(c.entrypoint_label(), "make test");
    let long = JobSpec {
        entry: Entry::Shell {
            script: "é".repeat(300),
        },
        ..JobSpec::default()
    };
    assert!(long.entrypoint_label().ends_with('…'));
}

#[test]
fn a_run_may_point_at_a_repository() {
    let o = |v: serde_json::Value| serde_json::from_value::<JobOverrides>(v).unwrap();
    // An archive script runs in a checkout instead.
    let s = JobSpec::script("etl.py")
        .with_overrides(&o(json!({"git_url": "file:///srv/other.git", "ref": "v3"})))
        .unwrap();
    assert_eq!(
        s.entry,
        Entry::Script {
            path: "etl.py".into()
        }
    );
    assert_eq!(
        s.source,
        Source::Git {
            url: "file:///srv/other.git".into(),
            git_ref: "v3".into(),
            secret: None
        }
    );
    // A git version keeps its ref (and secret) unless the run names one.
    let g = git("/r", "main")
        .with_overrides(&o(json!({"git_url": "/fork"})))
        .unwrap();
    assert!(
        matches!(&g.source, Source::Git { url, git_ref, .. } if url == "/fork" && git_ref == "main")
    );
    // Refused: no ref for an archive version, credentials, a binary version, a shell line.
    let e = JobSpec::script("a.py")
        .with_overrides(&o(json!({"git_url": "/r"})))
        .unwrap_err();
    assert!(e.contains("needs a ref"), "{e}");
    let e = JobSpec::script("a.py")
        .with_overrides(&o(json!({"git_url": "https://u:p@h/r.git", "ref": "v1"})))
        .unwrap_err();
    assert!(e.contains("git.url"), "{e}");
    let shell = JobSpec {
        entry: Entry::Shell {
            script: "ls".into(),
        },
        ..JobSpec::default()
    };
    assert!(shell
        .with_overrides(&o(json!({"git_url": "/r", "ref": "v1"})))
        .is_err());
    assert!(!o(json!({"git_url": "/r"})).is_empty());
}
