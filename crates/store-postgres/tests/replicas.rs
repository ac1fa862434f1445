//! Several replicas (stores with their own pools) on one database: leases,
//! reapers and notifications behave as if there were one.

use minitower_store_postgres::testing;

use minitower_core::status::{AttemptStatus, RunStatus};
use minitower_store::conformance::{lease, t, Fixture};
use minitower_store::Store;
use minitower_store_postgres::{listen, Event, Events};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

const REPLICAS: usize = 3;

async fn replicas(db: &testing::TestDb) -> Vec<Arc<dyn Store>> {
    let mut out: Vec<Arc<dyn Store>> = vec![];
    for _ in 0..REPLICAS {
        out.push(Arc::new(db.open().await));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_across_replicas_never_double_lease() {
    let Some(db) = testing::test_db().await else {
        return;
    };
    const RUNS: usize = 300;
    const CAP: i64 = 50;
    let stores = replicas(&db).await;
    let f = Fixture::new(stores[0].clone()).await;
    for i in 0..RUNS {
        f.run(i as i64 % 5).await;
    }
    let mut runners = vec![];
    for _ in 0..6 {
        runners.push(f.runner("default", CAP).await);
    }
    let mut tasks = vec![];
    for task in 0..24 {
        // each runner leases through every replica, as behind a balancer
        let store = stores[task % REPLICAS].clone();
        let runner = runners[task % runners.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut got = vec![];
            while let Some(h) = lease(&store, &runner, 100).await {
                got.push(h.run_id());
            }
            got
        }));
    }
    let mut leased = vec![];
    for t in futures::future::join_all(tasks).await {
        leased.extend(t.unwrap());
    }
    let distinct: HashSet<i64> = leased.iter().copied().collect();
    assert_eq!((leased.len(), distinct.len()), (RUNS, RUNS));
    let list = stores[1].list_runners().await.unwrap();
    assert!(list.iter().all(|r| r.active_runs <= CAP));
    assert_eq!(list.iter().map(|r| r.active_runs).sum::<i64>(), RUNS as i64);
    for id in distinct.iter().take(20) {
        assert_eq!(f.get(*id).await.attempts.len(), 1);
    }
}

/// The reaper runs on every replica at once: each expired lease is
/// requeued exactly once (one retry, one expired attempt), then, when the
/// retries are used up, killed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reapers_on_every_replica_expire_each_lease_once() {
    let Some(db) = testing::test_db().await else {
        return;
    };
    const RUNS: i64 = 90;
    let stores = replicas(&db).await;
    let f = Fixture::new(stores[0].clone()).await;
    let runner = f.runner("default", RUNS).await;
    for i in 0..RUNS {
        f.run_with(i, |r| r.max_retries = 1).await;
    }
    for round in 0..2 {
        let base = 1000 * (round + 1);
        let mut n = 0;
        // Started attempts: their expiry spends a retry.
        while let Some(h) = lease(&stores[n % REPLICAS], &runner, base).await {
            h.start(base).await.unwrap();
            n += 1;
        }
        assert_eq!(n as i64, RUNS);
        let mut tasks = vec![];
        for task in 0..REPLICAS * 2 {
            let store = stores[task % REPLICAS].clone();
            // small batches so the sweeps interleave
            tasks.push(tokio::spawn(async move {
                let mut all = vec![];
                loop {
                    let got = store.reap_expired(t(base + 500), 7).await.unwrap();
                    if got.is_empty() {
                        return all;
                    }
                    all.extend(got);
                }
            }));
        }
        let mut reaped = vec![];
        for t in futures::future::join_all(tasks).await {
            reaped.extend(t.unwrap());
        }
        let ids: HashSet<i64> = reaped.iter().map(|r| r.labels.run_id).collect();
        assert_eq!((reaped.len() as i64, ids.len() as i64), (RUNS, RUNS));
        let want = if round == 0 {
            RunStatus::Queued
        } else {
            RunStatus::Dead
        };
        assert!(reaped.iter().all(|r| r.run_status == want));
        for id in &ids {
            let d = f.get(*id).await;
            assert_eq!(d.run.status, want);
            assert_eq!(d.run.retry_count, 1);
            assert_eq!(d.attempts.len(), round as usize + 1);
            assert!(d
                .attempts
                .iter()
                .all(|a| a.status == AttemptStatus::Expired));
        }
        assert_eq!(stores[2].list_runners().await.unwrap()[0].active_runs, 0);
    }
}

/// Waits for the first event matching `want`, skipping others.
async fn expect(events: &mut Events, what: &str, want: impl Fn(&Event) -> bool) {
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.next().await {
                Ok(e) if want(&e) => return,
                Ok(_) => {}
                Err(e) => {
                    eprintln!("listener error (retrying): {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
    .await;
    assert!(found.is_ok(), "no {what} notification within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notifications_reach_other_replicas() {
    let Some(db) = testing::test_db().await else {
        return;
    };
    let stores = replicas(&db).await;
    let mut events = listen(&db.url).await.unwrap();
    let f = Fixture::new(stores[0].clone()).await;
    let run = f.run_with(1, |r| r.environment = "gpu".into()).await;
    expect(&mut events, "queued", |e| *e == Event::Queue("gpu".into())).await;

    let runner = f.runner("gpu", 1).await;
    let h = lease(&stores[1], &runner, 2).await.unwrap();
    expect(&mut events, "leased", |e| *e == Event::Run(run.id)).await;
    h.logs(&[1, 2, 3], 3).await.unwrap();
    expect(&mut events, "logs", |e| *e == Event::Run(run.id)).await;

    // an expiry that requeues wakes the queue again
    stores[2].reap_expired(t(100), 10).await.unwrap();
    expect(&mut events, "requeued", |e| {
        *e == Event::Queue("gpu".into())
    })
    .await;

    // a lost listener connection is reported, then notifications resume
    let pid: i32 = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND query LIKE 'LISTEN%' LIMIT 1",
    )
    .fetch_one(db.open().await.pool())
    .await
    .unwrap();
    let admin = db.open().await;
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(admin.pool())
        .await
        .unwrap();
    expect(&mut events, "reconnected", |e| *e == Event::Reconnected).await;
    f.run(200).await;
    expect(&mut events, "queued after reconnect", |e| {
        *e == Event::Queue("default".into())
    })
    .await;
}

/// Replicas whose clocks disagree by hours still agree on lease expiry: with
/// the database clock every lease, heartbeat and reap takes `now()` from
/// PostgreSQL and ignores the time the replica passes in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_with_skewed_clocks_use_the_database_clock() {
    let Some(db) = testing::test_db().await else {
        return;
    };
    let fast: Arc<dyn Store> = Arc::new(db.open().await.with_database_clock());
    let slow: Arc<dyn Store> = Arc::new(db.open().await.with_database_clock());
    let f = Fixture::new(fast.clone()).await;
    let run = f.run(0).await;
    let runner = f.runner("default", 1).await;
    // The fixture's clock says 2026-01-01; the database says today.
    let h = lease(&slow, &runner, 0).await.unwrap();
    let expires = h.leased.lease.lease_expires_at;
    let real = chrono::Utc::now() + chrono::Duration::seconds(30);
    assert!(
        (expires - real).num_seconds().abs() < 60,
        "expiry {expires} should be the database's now + TTL (about {real})"
    );
    // A replica whose clock runs days ahead cannot reap the live lease.
    assert!(fast
        .reap_expired(t(86_400 * 400), 10)
        .await
        .unwrap()
        .is_empty());
    let d = f.get(run.id).await;
    assert_eq!(d.run.status, RunStatus::Leased);
    assert_eq!(d.attempts[0].status, AttemptStatus::Leased);
}
