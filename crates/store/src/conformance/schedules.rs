//! Schedules: CRUD, team scoping, the due scan, and a tick firing once.

use super::*;
use crate::{FireOutcome, FireTick, NewSchedule, ScheduleRecord, ScheduleUpdate};
use minitower_core::api::ScheduleSource;
use minitower_core::towerfile::ScheduleSpec;

/// An every-minute API schedule of the fixture app, created at `t(secs)`.
fn every_minute(f: &Fixture, secs: i64) -> NewSchedule {
    NewSchedule {
        team_id: f.team.id,
        app_id: f.app.id,
        cron: "* * * * *".into(),
        timezone: "UTC".into(),
        input: json!({"from": "schedule"}),
        version_no: None,
        environment: "default".into(),
        enabled: true,
        source: ScheduleSource::Api,
        now: t(secs),
    }
}

fn fire(s: &ScheduleRecord, f: &Fixture, tick: i64, now: i64) -> FireTick {
    FireTick {
        schedule_id: s.id,
        tick: t(tick),
        version_id: f.version.id,
        input: s.input.clone(),
        max_retries: 2,
        now: t(now),
    }
}

/// Create, list, get, update (pause, resume, new cron, pin) and delete.
pub async fn schedules_create_list_get_update_delete(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let s = store.create_schedule(every_minute(&f, 30)).await.unwrap();
    assert_eq!((s.app.as_str(), s.team.as_str()), ("hello", "acme"));
    assert_eq!(s.cron, "* * * * *");
    assert_eq!(s.input, json!({"from": "schedule"}));
    assert_eq!(s.source, ScheduleSource::Api);
    assert!(s.enabled);
    assert_eq!(s.last_tick_at, t(30));
    assert_eq!(s.next_due_at, Some(t(60)), "the first tick after creation");
    let listed = store.list_schedules(f.team.id, f.app.id).await.unwrap();
    assert_eq!(listed, vec![s.clone()]);
    assert_eq!(
        store.get_schedule(f.team.id, s.id).await.unwrap(),
        Some(s.clone())
    );

    // Pause: no due tick. Resume at t(200): counts from then.
    let paused = store
        .update_schedule(
            f.team.id,
            s.id,
            ScheduleUpdate {
                enabled: Some(false),
                ..Default::default()
            },
            t(100),
        )
        .await
        .unwrap();
    assert!(!paused.enabled);
    assert_eq!(paused.next_due_at, None);
    assert_eq!(paused.updated_at, t(100));
    let resumed = store
        .update_schedule(
            f.team.id,
            s.id,
            ScheduleUpdate {
                enabled: Some(true),
                ..Default::default()
            },
            t(200),
        )
        .await
        .unwrap();
    assert_eq!(
        resumed.last_tick_at,
        t(200),
        "ticks while paused never fire"
    );
    assert_eq!(resumed.next_due_at, Some(t(240)));

    // New cron and zone, input and a pinned version.
    let v2 = Fixture::add_version(&store, f.team.id, f.app.id).await;
    let changed = store
        .update_schedule(
            f.team.id,
            s.id,
            ScheduleUpdate {
                cron: Some("0 9 * * *".into()),
                timezone: Some("Europe/Berlin".into()),
                input: Some(json!({"n": 2})),
                version_no: Some(Some(v2.version.version_no)),
                ..Default::default()
            },
            t(300),
        )
        .await
        .unwrap();
    assert_eq!(changed.cron, "0 9 * * *");
    assert_eq!(changed.timezone, "Europe/Berlin");
    assert_eq!(changed.version_no, Some(2));
    assert_eq!(changed.input, json!({"n": 2}));
    // 09:00 in Berlin on 2026-01-01 (winter, UTC+1) is 08:00 UTC.
    assert_eq!(changed.next_due_at, Some(t(8 * 3600)));
    // An unknown pinned version changes nothing.
    let r = store
        .update_schedule(
            f.team.id,
            s.id,
            ScheduleUpdate {
                version_no: Some(Some(99)),
                cron: Some("*/5 * * * *".into()),
                ..Default::default()
            },
            t(400),
        )
        .await;
    assert_not_found(r);
    assert_eq!(
        store.get_schedule(f.team.id, s.id).await.unwrap(),
        Some(changed.clone())
    );
    // Back to the latest version.
    let latest = store
        .update_schedule(
            f.team.id,
            s.id,
            ScheduleUpdate {
                version_no: Some(None),
                ..Default::default()
            },
            t(500),
        )
        .await
        .unwrap();
    assert_eq!(latest.version_no, None);
    assert_eq!(latest.last_tick_at, changed.last_tick_at);

    store.delete_schedule(f.team.id, s.id).await.unwrap();
    assert_not_found(store.delete_schedule(f.team.id, s.id).await);
    assert_eq!(store.get_schedule(f.team.id, s.id).await.unwrap(), None);
    assert!(store
        .list_schedules(f.team.id, f.app.id)
        .await
        .unwrap()
        .is_empty());
    // A pinned version the app does not have, or another team's app: nothing.
    let mut bad = every_minute(&f, 0);
    bad.version_no = Some(7);
    assert_not_found(store.create_schedule(bad).await);
}

/// One team never sees or changes another's schedules.
pub async fn schedules_are_team_scoped(store: Arc<dyn Store>) {
    let a = Fixture::new(store.clone()).await;
    let b = Fixture::with_team(store.clone(), "beta").await;
    let s = store.create_schedule(every_minute(&a, 0)).await.unwrap();
    assert_eq!(store.get_schedule(b.team.id, s.id).await.unwrap(), None);
    assert!(store
        .list_schedules(b.team.id, a.app.id)
        .await
        .unwrap()
        .is_empty());
    let pause = ScheduleUpdate {
        enabled: Some(false),
        ..Default::default()
    };
    assert_not_found(store.update_schedule(b.team.id, s.id, pause, t(1)).await);
    assert_not_found(store.delete_schedule(b.team.id, s.id).await);
    // Team b cannot schedule team a's app.
    let mut foreign = every_minute(&a, 0);
    foreign.team_id = b.team.id;
    assert_not_found(store.create_schedule(foreign).await);
    assert_eq!(
        store.get_schedule(a.team.id, s.id).await.unwrap(),
        Some(s),
        "unchanged"
    );
}

/// Firing a tick creates its run once; firing it again (another replica,
/// a restart) changes nothing; the due scan moves past it.
pub async fn fire_tick_is_idempotent(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let s = store.create_schedule(every_minute(&f, 30)).await.unwrap();
    let (due, next) = store.due_schedules(t(59), 10).await.unwrap();
    assert!(due.is_empty());
    assert_eq!(next, Some(t(60)));
    let (due, _) = store.due_schedules(t(61), 10).await.unwrap();
    assert_eq!(due, vec![s.clone()]);

    let run = match store
        .fire_schedule_tick(fire(&s, &f, 60, 61))
        .await
        .unwrap()
    {
        FireOutcome::Fired(run) => *run,
        other => panic!("expected a run, got {other:?}"),
    };
    assert_eq!(run.schedule_id, Some(s.id));
    assert_eq!(run.scheduled_for, Some(t(60)));
    assert_eq!(run.queued_at, t(61));
    assert_eq!(run.input, json!({"from": "schedule"}));
    assert_eq!(run.status, minitower_core::status::RunStatus::Queued);
    assert_eq!(
        store
            .fire_schedule_tick(fire(&s, &f, 60, 62))
            .await
            .unwrap(),
        FireOutcome::AlreadyDone
    );
    // An older tick is done too.
    assert_eq!(
        store.fire_schedule_tick(fire(&s, &f, 0, 62)).await.unwrap(),
        FireOutcome::AlreadyDone
    );
    assert_eq!(f.runs().await, vec![run.clone()]);
    let after = store.get_schedule(f.team.id, s.id).await.unwrap().unwrap();
    assert_eq!(after.last_tick_at, t(60));
    assert_eq!(after.next_due_at, Some(t(120)));
    let (due, next) = store.due_schedules(t(62), 10).await.unwrap();
    assert!(due.is_empty());
    assert_eq!(next, Some(t(120)));

    // A skipped tick is processed without a run, once.
    assert!(store.skip_schedule_tick(s.id, t(120)).await.unwrap());
    assert!(!store.skip_schedule_tick(s.id, t(120)).await.unwrap());
    assert_eq!(
        store
            .fire_schedule_tick(fire(&s, &f, 120, 125))
            .await
            .unwrap(),
        FireOutcome::AlreadyDone
    );
    // A paused or deleted schedule fires nothing.
    let pause = ScheduleUpdate {
        enabled: Some(false),
        ..Default::default()
    };
    store
        .update_schedule(f.team.id, s.id, pause, t(150))
        .await
        .unwrap();
    assert_eq!(
        store
            .fire_schedule_tick(fire(&s, &f, 180, 181))
            .await
            .unwrap(),
        FireOutcome::Stale
    );
    store.delete_schedule(f.team.id, s.id).await.unwrap();
    assert_eq!(
        store
            .fire_schedule_tick(fire(&s, &f, 240, 241))
            .await
            .unwrap(),
        FireOutcome::Stale
    );
    // The run keeps the id of the schedule that started it.
    assert_eq!(f.get(run.id).await.run.schedule_id, Some(s.id));
}

/// Many tasks firing one tick at once: one run.
pub async fn racing_fires_create_one_run(store: Arc<dyn Store>) {
    let f = Arc::new(Fixture::new(store.clone()).await);
    let s = store.create_schedule(every_minute(&f, 0)).await.unwrap();
    let mut tasks = vec![];
    for i in 0..16 {
        let (f, s) = (f.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            f.store.fire_schedule_tick(fire(&s, &f, 60, 60 + i)).await
        }));
    }
    let mut fired = 0;
    for r in futures::future::join_all(tasks).await {
        match r.unwrap().unwrap() {
            FireOutcome::Fired(_) => fired += 1,
            FireOutcome::AlreadyDone => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(fired, 1);
    let runs = f.runs().await;
    assert_eq!(runs.len(), 1);
}

fn spec(cron: &str, enabled: bool) -> ScheduleSpec {
    ScheduleSpec {
        cron: cron.into(),
        timezone: "UTC".into(),
        input: Default::default(),
        enabled,
    }
}

/// A version's Towerfile schedules replace the app's Towerfile-sourced
/// ones (an unchanged entry keeps its row); API schedules stay; a version
/// without a Towerfile changes nothing.
pub async fn towerfile_schedules_follow_deploys(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let api = store.create_schedule(every_minute(&f, 0)).await.unwrap();
    let deploy = |specs: Option<Vec<ScheduleSpec>>, secs: i64| {
        let store = store.clone();
        let (team, app) = (f.team.id, f.app.id);
        async move {
            let mut v = new_version(&unique("sha"));
            v.schedules = specs;
            store.create_version(team, app, v, t(secs)).await.unwrap();
            let mut all = store.list_schedules(team, app).await.unwrap();
            all.retain(|s| s.source == ScheduleSource::Towerfile);
            all
        }
    };
    let first = deploy(
        Some(vec![spec("0 0 * * *", true), spec("*/5 * * * *", true)]),
        10,
    )
    .await;
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].cron, "0 0 * * *");
    assert_eq!(
        first[0].version_no, None,
        "Towerfile schedules run the latest"
    );
    assert_eq!(first[0].next_due_at, Some(t(86_400)));

    // Same daily entry, now disabled; the other replaced by a new one.
    let second = deploy(
        Some(vec![spec("0 0 * * *", false), spec("@hourly", true)]),
        20,
    )
    .await;
    assert_eq!(second.len(), 2);
    assert_eq!(
        second[0].id, first[0].id,
        "an unchanged entry keeps its row"
    );
    assert!(!second[0].enabled);
    assert_eq!(second[0].next_due_at, None);
    assert_eq!(second[1].cron, "@hourly");
    assert_ne!(second[1].id, first[1].id);

    // No Towerfile: untouched. A Towerfile without schedules: none left.
    assert_eq!(deploy(None, 30).await, second);
    assert!(deploy(Some(vec![]), 40).await.is_empty());
    let all = store.list_schedules(f.team.id, f.app.id).await.unwrap();
    assert_eq!(
        all,
        vec![api],
        "API schedules are never touched by a deploy"
    );
}
