use super::probe::{choose, own_dir, own_v1_path, parse_mountinfo, Found, V1Mount};
use super::*;

/// This machine's kind: v1 hierarchies plus a controller-less v2 mount.
const MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
36 30 0:32 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
37 30 0:33 /docker/abc /sys/fs/cgroup/blkio ro,relatime - cgroup cgroup rw,blkio
";

const PROC_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/9da4
2:cpu,cpuacct:/svc
0::/
";

#[test]
fn mountinfo_finds_v1_hierarchies_and_the_v2_mount() {
    let (v1, v2) = parse_mountinfo(MOUNTINFO);
    assert_eq!(v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
    let memory = v1
        .iter()
        .find(|m| m.controllers == ["memory"])
        .expect("memory hierarchy");
    assert_eq!(memory.point, PathBuf::from("/sys/fs/cgroup/memory"));
    assert_eq!(memory.root, "/");
    // name=systemd carries no controller; tmpfs is not a cgroup.
    assert!(v1
        .iter()
        .any(|m| m.point.ends_with("systemd") && m.controllers.is_empty()));
    assert!(!v1.iter().any(|m| m.point == Path::new("/sys/fs/cgroup")));
    let blkio = v1.iter().find(|m| m.controllers == ["blkio"]).unwrap();
    assert_eq!(blkio.root, "/docker/abc");
}

#[test]
fn own_cgroup_paths_per_controller() {
    assert_eq!(
        own_v1_path(PROC_CGROUP, "memory").as_deref(),
        Some("/process_api/9da4")
    );
    assert_eq!(own_v1_path(PROC_CGROUP, "pids").as_deref(), Some("/"));
    // A combined hierarchy names both controllers.
    assert_eq!(own_v1_path(PROC_CGROUP, "cpu").as_deref(), Some("/svc"));
    assert_eq!(own_v1_path(PROC_CGROUP, "cpuacct").as_deref(), Some("/svc"));
    assert_eq!(own_v1_path(PROC_CGROUP, "blkio"), None);
    // "name=systemd" is not the "systemd" controller... nor memory.
    assert_eq!(own_v1_path("9:name=systemd:/x\n", "memory"), None);
}

#[test]
fn own_dir_is_relative_to_a_bind_mounted_root() {
    let host = V1Mount {
        point: "/sys/fs/cgroup/memory".into(),
        root: "/".into(),
        controllers: vec!["memory".into()],
    };
    assert_eq!(
        own_dir(&host, "/process_api/9da4"),
        PathBuf::from("/sys/fs/cgroup/memory/process_api/9da4")
    );
    assert_eq!(own_dir(&host, "/"), PathBuf::from("/sys/fs/cgroup/memory"));
    // In a container the mount shows only its own subtree.
    let container = V1Mount {
        root: "/docker/abc".into(),
        ..host
    };
    assert_eq!(
        own_dir(&container, "/docker/abc/job"),
        PathBuf::from("/sys/fs/cgroup/memory/job")
    );
    assert_eq!(
        own_dir(&container, "/docker/abc"),
        PathBuf::from("/sys/fs/cgroup/memory")
    );
}

#[test]
fn the_mechanism_is_v2_then_v1_then_rlimit() {
    let v1 = Found {
        v1_memory: Some("/m".into()),
        v1_pids: Some("/p".into()),
        v1_cpu: Some("/c".into()),
        ..Found::default()
    };
    let v2 = |controllers: &[&str]| Found {
        v2_base: Some("/u/minitower-x".into()),
        v2_controllers: controllers.iter().map(|c| c.to_string()).collect(),
        ..v1.clone()
    };
    // A v2 base handing out memory and pids wins; cpu is optional.
    assert_eq!(
        choose(&v2(&["cpu", "memory", "pids"]), false),
        Mechanism::V2 {
            base: "/u/minitower-x".into(),
            cpu: true
        }
    );
    assert_eq!(
        choose(&v2(&["memory", "pids"]), false),
        Mechanism::V2 {
            base: "/u/minitower-x".into(),
            cpu: false
        }
    );
    // This machine: a v2 mount without controllers, writable v1.
    let expected_v1 = Mechanism::V1 {
        memory: "/m".into(),
        pids: "/p".into(),
        cpu: Some("/c".into()),
    };
    assert_eq!(choose(&v2(&[]), false), expected_v1);
    assert_eq!(choose(&v2(&["memory", "cpu"]), false), expected_v1);
    assert_eq!(choose(&v1, false), expected_v1);
    // v1 without a writable pids hierarchy is not enough.
    let no_pids = Found {
        v1_pids: None,
        ..v1.clone()
    };
    assert_eq!(choose(&no_pids, false), Mechanism::Rlimit);
    assert_eq!(choose(&Found::default(), false), Mechanism::Rlimit);
    // MINITOWER_CGROUPS=off leaves rlimits.
    assert_eq!(
        choose(&v2(&["cpu", "memory", "pids"]), true),
        Mechanism::Rlimit
    );
    let modes: Vec<&str> = [
        Mechanism::V2 {
            base: "/b".into(),
            cpu: true,
        },
        expected_v1,
        Mechanism::Rlimit,
    ]
    .into_iter()
    .map(|mech| Limiter { mech }.mode())
    .collect();
    assert_eq!(modes, ["cgroup v2", "cgroup v1", "rlimit"]);
}

#[test]
fn kernel_counters_are_read_by_key() {
    let v2_events = "low 0\nhigh 0\nmax 17\noom 2\noom_kill 1\noom_group_kill 0\n";
    assert_eq!(keyed(v2_events, "oom_kill"), Some(1));
    assert_eq!(keyed(v2_events, "oom"), Some(2));
    assert_eq!(keyed(v2_events, "max"), Some(17));
    let v1_oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
    assert_eq!(keyed(v1_oom, "oom_kill"), Some(3));
    assert_eq!(keyed(v1_oom, "oom_kill_disable"), Some(0));
    // Kernels before 4.13 have no oom_kill line.
    assert_eq!(keyed("oom_kill_disable 0\nunder_oom 0\n", "oom_kill"), None);
    assert_eq!(keyed("max 5\n", "max"), Some(5));
    assert_eq!(keyed("max 5\nmax.imposed 2\n", "max.imposed"), Some(2));
    assert_eq!(keyed("", "max"), None);
    assert_eq!(keyed("max lots\n", "max"), None);
}

#[test]
fn reasons_name_the_limit() {
    let l = Limits {
        memory: Some(256 << 20),
        cpus: Some(1.5),
        pids: Some(64),
        disk: Some(1 << 30),
    };
    let o = Observed::default();
    assert_eq!(verdict(&l, &o), None);
    let oom = Observed { oom_kills: 1, ..o };
    assert_eq!(
        verdict(&l, &oom).as_deref(),
        Some("memory limit 256 MiB exceeded")
    );
    // Even when the script survived a killed child: part of the tree died.
    assert!(verdict(
        &l,
        &Observed {
            failed: false,
            ..oom
        }
    )
    .is_some());
    let disk = Observed {
        disk_over: true,
        failed: true,
        ..o
    };
    assert_eq!(
        verdict(&l, &disk).as_deref(),
        Some("disk limit 1 GiB exceeded")
    );
    let forks = Observed {
        pids_refused: 3,
        failed: true,
        ..o
    };
    assert_eq!(
        verdict(&l, &forks).as_deref(),
        Some("pids limit 64 reached")
    );
    // Refused forks a script handled and then succeeded: no reason.
    assert_eq!(
        verdict(
            &l,
            &Observed {
                failed: false,
                ..forks
            }
        ),
        None
    );
    // A counter without the limit (an OOM kill by the host) is no reason.
    let unlimited = Limits::default();
    assert_eq!(verdict(&unlimited, &oom), None);
    assert_eq!(verdict(&unlimited, &disk), None);
    // Sizes read as written.
    let small = Limits {
        memory: Some(64 << 20),
        disk: Some(8 << 20),
        ..Limits::default()
    };
    assert_eq!(
        verdict(&small, &oom).as_deref(),
        Some("memory limit 64 MiB exceeded")
    );
    assert_eq!(
        verdict(&small, &disk).as_deref(),
        Some("disk limit 8 MiB exceeded")
    );
    let odd = Limits {
        memory: Some(1536 << 20),
        ..Limits::default()
    };
    assert_eq!(
        verdict(&odd, &oom).as_deref(),
        Some("memory limit 1.5 GiB exceeded")
    );
}

#[test]
fn cpu_quota_is_cores_times_the_period() {
    assert_eq!(quota_us(1.5), 150_000);
    assert_eq!(quota_us(1.0), 100_000);
    assert_eq!(quota_us(0.25), 25_000);
    assert_eq!(quota_us(0.001), 1000);
    assert_eq!(quota_us(8.0), 800_000);
}

#[test]
fn confine_travels_compactly() {
    assert_eq!(serde_json::to_string(&Confine::default()).unwrap(), "{}");
    let c = Confine {
        cgroups: vec!["/sys/fs/cgroup/pids/minitower-x/1-1".into()],
        address_space: Some(64 << 20),
    };
    let back: Confine = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    assert!(!c.is_empty());
    assert!(Confine::default().is_empty());
}

#[test]
fn disk_usage_counts_blocks_once_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = disk::usage(dir.path());
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let data = vec![7u8; 3 << 20];
    std::fs::write(dir.path().join("sub/a"), &data).unwrap();
    std::fs::hard_link(dir.path().join("sub/a"), dir.path().join("b")).unwrap();
    std::os::unix::fs::symlink("/usr", dir.path().join("link")).unwrap();
    // A sparse file uses (almost) nothing.
    let f = std::fs::File::create(dir.path().join("sparse")).unwrap();
    f.set_len(1 << 30).unwrap();
    let used = disk::usage(dir.path()) - empty;
    assert!(
        (3 << 20..(3 << 20) + (1 << 20)).contains(&used),
        "{used} bytes"
    );
}

#[tokio::test]
async fn a_run_without_limits_gets_nothing() {
    let limiter = Limiter {
        mech: Mechanism::Rlimit,
    };
    let ws = tempfile::tempdir().unwrap();
    let a = limiter
        .prepare("1-1", &Limits::default(), None, ws.path())
        .unwrap();
    assert_eq!(a.mode(), "none");
    assert!(a.confine().is_empty());
    assert!(!a.needs_plain_start());
    assert!(a.notes().is_empty());
    // rlimit mode: memory as RLIMIT_AS, the rest said to be unenforced.
    let l = Limits {
        memory: Some(64 << 20),
        cpus: Some(1.0),
        pids: Some(10),
        disk: None,
    };
    let a = limiter.prepare("1-1", &l, None, ws.path()).unwrap();
    assert_eq!(a.mode(), "rlimit");
    assert_eq!(a.confine().address_space, Some(64 << 20));
    assert!(a.needs_plain_start());
    assert_eq!(a.notes().len(), 2, "{:?}", a.notes());
    assert!(a.notes()[0].starts_with("pids limit not enforced"));
    assert!(a.notes()[1].starts_with("cpus limit not enforced"));
}

#[tokio::test]
async fn the_disk_watcher_sees_a_workspace_grow() {
    let ws = tempfile::tempdir().unwrap();
    let limiter = Limiter {
        mech: Mechanism::Rlimit,
    };
    let l = Limits {
        disk: Some(1 << 20),
        ..Limits::default()
    };
    let a = limiter.prepare("1-1", &l, None, ws.path()).unwrap();
    let mut ending = Ending {
        code: Some(0),
        ..Ending::default()
    };
    a.finish(&mut ending).await;
    assert_eq!(ending.reason, None);
    std::fs::write(ws.path().join("big"), vec![1u8; 2 << 20]).unwrap();
    tokio::time::timeout(Duration::from_secs(10), a.disk_exceeded())
        .await
        .expect("the watcher notices within its period");
    a.finish(&mut ending).await;
    assert_eq!(ending.reason.as_deref(), Some("disk limit 1 MiB exceeded"));
}

/// What a crashed runner leaves (an attempt's directories with a process
/// inside) is killed and removed by the next start of the same scope.
#[test]
fn a_crashed_runners_attempt_dirs_are_swept_at_the_next_start() {
    let scope = format!("unit-{}", std::process::id());
    let limiter = Limiter::detect(&scope, None, false);
    let Mechanism::V1 { pids, .. } = &limiter.mech else {
        eprintln!(
            "skipped: no writable cgroup v1 memory and pids hierarchies here ({})",
            limiter.mode()
        );
        limiter.remove_bases();
        return;
    };
    let ws = tempfile::tempdir().unwrap();
    let l = Limits {
        memory: Some(64 << 20),
        pids: Some(8),
        ..Limits::default()
    };
    let a = limiter.prepare("7-1", &l, None, ws.path()).unwrap();
    let dir = pids.join("7-1");
    assert_eq!(
        std::fs::read_to_string(dir.join("pids.max"))
            .unwrap()
            .trim(),
        "8"
    );
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    for d in &a.confine().cgroups {
        std::fs::write(d.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
    }
    // The runner dies: nothing removes the directories.
    std::mem::forget(a);
    assert!(dir.is_dir());
    let next = Limiter::detect(&scope, None, false);
    let killed = next.clean_stale();
    assert!(
        killed
            .iter()
            .any(|k| k.starts_with(&format!("{} ", sleeper.id()))),
        "{killed:?}"
    );
    let status = sleeper.wait().unwrap();
    assert!(!status.success());
    assert!(!dir.exists());
    next.remove_bases();
    assert!(!pids.exists(), "{} left behind", pids.display());
}
