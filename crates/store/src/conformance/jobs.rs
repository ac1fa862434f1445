//! Job kinds (issue 14): a version's job and default priority are stored
//! as given and read back; a plain archive script stays what versions from
//! before job kinds were (the lease leaves `job` out); a run's overrides
//! are stored with it and merged into its lease.

use super::*;
use minitower_core::job::{
    Entry, JobOverrides, JobSpec, Limits, LimitsInput, PtyInput, SizeInput, Source, DEFAULT_PTY,
};

fn git_job() -> JobSpec {
    JobSpec {
        entry: Entry::Command {
            argv: vec!["make".into(), "test".into()],
        },
        source: Source::Git {
            url: "file:///srv/repo.git".into(),
            git_ref: "main".into(),
            secret: None,
        },
        pty: None,
        limits: Limits {
            memory: Some(1 << 30),
            cpus: Some(2.0),
            ..Limits::default()
        },
    }
}

pub async fn versions_keep_their_job_and_priority(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    // The fixture's version is a plain script: read back as one.
    assert_eq!(f.version.version.job, JobSpec::script("main.py"));
    assert_eq!(f.version.version.priority, None);
    let mut nv = new_version(&unique("sha"));
    nv.entrypoint = "make test".into();
    nv.job = git_job();
    nv.priority = Some(-100);
    let created = store
        .create_version(f.team.id, f.app.id, nv, t(1))
        .await
        .unwrap();
    assert_eq!(created.job, git_job());
    assert_eq!(
        (created.priority, created.priority_name.as_deref()),
        (Some(-100), Some("best_effort"))
    );
    let read = store
        .get_version(f.team.id, f.app.id, Some(created.version_no))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.version.job, git_job());
    assert_eq!(read.version.priority_name.as_deref(), Some("best_effort"));
    let listed = store.list_versions(f.team.id, f.app.id).await.unwrap();
    assert_eq!(listed[0].job, git_job());
    assert_eq!(listed[1].job, JobSpec::script("main.py"));
}

pub async fn leases_carry_the_merged_job_only_when_needed(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let runner = f.runner("default", 4).await;
    // Plain script: no job in the lease.
    let plain = f.run(1).await;
    let h = lease(&store, &runner, 2).await.unwrap();
    assert_eq!(h.run_id(), plain.id);
    assert!(h.leased.lease.job.is_none());
    // A git version, with a run that overrides pty, memory and the ref.
    let mut nv = new_version(&unique("sha"));
    nv.job = git_job();
    let v = store
        .create_version(f.team.id, f.app.id, nv, t(3))
        .await
        .unwrap();
    let v = store
        .get_version(f.team.id, f.app.id, Some(v.version_no))
        .await
        .unwrap()
        .unwrap();
    let overrides = JobOverrides {
        pty: Some(PtyInput::On(true)),
        limits: Some(LimitsInput {
            memory: Some(SizeInput::Text("64MiB".into())),
            ..LimitsInput::default()
        }),
        git_ref: Some("v2".into()),
        git_url: None,
    };
    let run = f
        .run_with(4, |r| {
            r.version_id = v.id;
            r.job_overrides = Some(overrides.clone());
        })
        .await;
    assert_eq!(run.job_overrides.as_ref(), Some(&overrides));
    assert_eq!(f.get(run.id).await.run.job_overrides, Some(overrides));
    let h = lease(&store, &runner, 5).await.unwrap();
    assert_eq!(h.run_id(), run.id);
    let job = h.leased.lease.job.clone().expect("a git job travels");
    assert_eq!(job.pty, Some(DEFAULT_PTY));
    assert_eq!(
        (job.limits.memory, job.limits.cpus),
        (Some(64 << 20), Some(2.0))
    );
    assert!(matches!(&job.source, Source::Git { git_ref, .. } if git_ref == "v2"));
    // A run without overrides gets the version's job as it is.
    let same = f.run_with(6, |r| r.version_id = v.id).await;
    assert_eq!(same.job_overrides, None);
    let h = lease(&store, &runner, 7).await.unwrap();
    assert_eq!(h.run_id(), same.id);
    assert_eq!(h.leased.lease.job, Some(git_job()));
}
