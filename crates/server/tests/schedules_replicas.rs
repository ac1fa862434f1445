//! A schedule firing every second, with `minitowerd` as real processes:
//! three replicas on one PostgreSQL (one SIGKILLed mid-way) start exactly
//! one run per tick, none twice; a SQLite control plane SIGKILLed and
//! restarted after several ticks starts one catch-up run for the most
//! recent missed tick, not one per missed tick. The proof is the data: the
//! runs' `(schedule_id, scheduled_for)` pairs, unique by the schema, must
//! be consecutive seconds. PostgreSQL part skipped without
//! `MINITOWER_TEST_POSTGRES_URL`.

mod support;

use chrono::{DateTime, Utc};
use minitower_client::{Client, RunQuery};
use minitower_core::api::{CreateScheduleRequest, UpdateScheduleRequest};
use minitower_store_postgres::testing;
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};
use support::procs::Minitowerd;

/// Whole-test hang detector.
const DEADLINE: Duration = Duration::from_secs(120);

/// The ticks of every run the schedule started, ascending; panics on a
/// tick with two runs.
async fn ticks(client: &Client, schedule_id: i64) -> Vec<DateTime<Utc>> {
    let runs = client
        .list_runs(&RunQuery {
            app: Some("hello".into()),
            limit: Some(500),
            ..Default::default()
        })
        .await
        .expect("list runs");
    let mut seen = HashSet::new();
    let mut out: Vec<_> = runs
        .iter()
        .filter(|r| r.schedule_id == Some(schedule_id))
        .map(|r| {
            let tick = r.scheduled_for.expect("a scheduled run has its tick");
            assert!(seen.insert(tick), "tick {tick} has two runs");
            tick
        })
        .collect();
    out.sort();
    out
}

/// Polls until the schedule has at least `n` runs (through `client`).
async fn wait_for_runs(client: &Client, schedule_id: i64, n: usize, started: Instant) {
    loop {
        if ticks(client, schedule_id).await.len() >= n {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "fewer than {n} scheduled runs"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates the every-second schedule of app `hello`.
async fn every_second(client: &Client) -> i64 {
    let req = CreateScheduleRequest {
        cron: "* * * * * *".into(),
        ..Default::default()
    };
    client.create_schedule("hello", &req).await.unwrap().id
}

/// Pauses the schedule, so the run list stops growing.
async fn pause(client: &Client, id: i64) {
    let req = UpdateScheduleRequest {
        enabled: Some(false),
        ..Default::default()
    };
    client.update_schedule(id, &req).await.unwrap();
}

/// Asserts `ticks` are consecutive seconds.
#[track_caller]
fn assert_consecutive(ticks: &[DateTime<Utc>]) {
    for w in ticks.windows(2) {
        assert_eq!(
            w[1] - w[0],
            chrono::Duration::seconds(1),
            "a tick is missing between {} and {}: {ticks:?}",
            w[0],
            w[1]
        );
    }
}

fn env(dir: &Path, i: usize, database_url: Option<&str>) -> Vec<(&'static str, String)> {
    let mut env = vec![
        (
            "MINITOWER_OBJECTS_DIR",
            dir.join("objects").display().to_string(),
        ),
        (
            "MINITOWER_DB_PATH",
            dir.join(format!("db-{i}.sqlite")).display().to_string(),
        ),
    ];
    if let Some(url) = database_url {
        env.push(("MINITOWER_DATABASE_URL", url.to_string()));
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_fire_each_second_once_through_a_replica_kill() {
    let Some(db) = testing::test_db().await else {
        return;
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = vec![];
    for i in 0..3 {
        replicas.push(Minitowerd::spawn(&env(dir.path(), i, Some(&db.url))).await);
    }
    let token = support::deploy(&replicas[0].base).await;
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    let client = |i: usize| Client::new(&bases[i], Some(token.clone())).unwrap();
    let id = every_second(&client(0)).await;

    wait_for_runs(&client(2), id, 6, started).await;
    replicas[1].kill();
    let at_kill = ticks(&client(0), id).await.len();
    wait_for_runs(&client(2), id, at_kill + 12, started).await;
    pause(&client(0), id).await;

    let all = ticks(&client(2), id).await;
    assert!(all.len() >= 18, "{} ticks", all.len());
    assert_consecutive(&all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_sqlite_control_plane_catches_up_with_one_run() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Minitowerd::spawn(&env(dir.path(), 0, None)).await;
    let token = support::deploy(&server.base).await;
    let id = every_second(&Client::new(&server.base, Some(token.clone())).unwrap()).await;
    let before_client = Client::new(&server.base, Some(token.clone())).unwrap();
    wait_for_runs(&before_client, id, 3, started).await;
    server.kill();

    // Down for at least four ticks.
    let down_until = Utc::now() + chrono::Duration::seconds(4);
    while Utc::now() < down_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restarted_at = Utc::now();
    let server = Minitowerd::spawn(&env(dir.path(), 0, None)).await;
    let client = Client::new(&server.base, Some(token)).unwrap();
    let before = ticks(&client, id).await;
    wait_for_runs(&client, id, before.len() + 4, started).await;
    pause(&client, id).await;

    let all = ticks(&client, id).await;
    let gaps: Vec<_> = all
        .windows(2)
        .filter(|w| w[1] - w[0] > chrono::Duration::seconds(1))
        .collect();
    assert_eq!(gaps.len(), 1, "one jump over the downtime: {all:?}");
    let (last_before, catch_up) = (gaps[0][0], gaps[0][1]);
    assert!(
        catch_up - last_before >= chrono::Duration::seconds(4),
        "the downtime's ticks did not fire: {all:?}"
    );
    // The one catch-up run is for the most recent missed tick (at the
    // restart), not the oldest: nothing ran for the ticks in between.
    assert!(
        catch_up >= restarted_at - chrono::Duration::seconds(1),
        "catch-up tick {catch_up} is older than the restart at {restarted_at}"
    );
    let split = all.iter().position(|t| *t == catch_up).unwrap();
    assert_consecutive(&all[..split]);
    assert_consecutive(&all[split..]);
}
