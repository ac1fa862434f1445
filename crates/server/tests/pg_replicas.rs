//! Three `minitowerd` processes on one PostgreSQL database, as behind a load
//! balancer: 500 runs created through random replicas, protocol-level
//! runners spread over the replicas, one replica SIGKILLed mid-way. Every
//! run must complete exactly once; runners of the dead replica re-point and
//! carry on. Skipped without `MINITOWER_TEST_POSTGRES_URL`.

mod support;

use minitower_client::{Client, ClientError, ClientResult};
use minitower_core::api::{CreateRunRequest, ResultRequest};
use minitower_core::status::ResultStatus;
use minitower_store_postgres::testing;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::procs::Minitowerd;

const REPLICAS: usize = 3;
const RUNS: usize = 500;
const RUNNERS: usize = 12;
const CREATORS: usize = 6;
/// Runs completed before replica 1 is killed.
const KILL_AFTER: usize = 200;
/// Whole-test hang detector.
const DEADLINE: Duration = Duration::from_secs(240);

/// Calls `f` against the replica at `*at`, moving on to the next replica
/// whenever one cannot be reached, as a runner behind a balancer would.
async fn failover<T, F, Fut>(bases: &[String], at: &mut usize, mut f: F) -> ClientResult<T>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = ClientResult<T>>,
{
    let mut tries = 0;
    loop {
        match f(bases[*at].clone()).await {
            Err(ClientError::Transport(_) | ClientError::Decode(_)) if tries < 30 => {
                tries += 1;
                *at = (*at + 1) % bases.len();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// Shared bookkeeping of the simulated runners.
#[derive(Default)]
struct Tally {
    /// run id -> runner that completed it
    completed: Mutex<HashMap<i64, usize>>,
    done: AtomicUsize,
    /// results that had to be retried on another replica
    failovers: AtomicUsize,
}

/// One runner: lease, start, log, complete, forever, through its replica.
async fn runner(
    i: usize,
    token: String,
    bases: Arc<Vec<String>>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    // Runners start on replicas 1 and 2, so the first runs, queued through
    // replica 0, can only reach them through cross-replica wake-ups.
    let mut at = 1 + i % 2;
    let client = |base: String| Client::new(&base, Some(token.clone())).unwrap();
    while !stop.load(Ordering::Relaxed) {
        let lease = failover(&bases, &mut at, |b| async move {
            client(b).lease(Duration::from_secs(1)).await
        })
        .await
        .expect("lease");
        let Some(lease) = lease else { continue };
        let (id, lt) = (lease.run_id, lease.lease_token.clone());
        let home = at;
        failover(&bases, &mut at, |b| {
            let lt = lt.clone();
            async move { client(b).start(id, &lt).await }
        })
        .await
        .expect("start");
        failover(&bases, &mut at, |b| {
            let lt = lt.clone();
            let lines = vec![support::line(1, &format!("run {id} on runner {i}"))];
            async move { client(b).send_logs(id, &lt, lines).await }
        })
        .await
        .expect("logs");
        let done = ResultRequest {
            status: ResultStatus::Completed,
            exit_code: Some(0),
            error_message: None,
        };
        failover(&bases, &mut at, |b| {
            let (lt, done) = (lt.clone(), done.clone());
            async move { client(b).result(id, &lt, &done).await }
        })
        .await
        .expect("result");
        if at != home {
            tally.failovers.fetch_add(1, Ordering::Relaxed);
        }
        let before = tally.completed.lock().unwrap().insert(id, i);
        assert_eq!(before, None, "run {id} completed twice");
        tally.done.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_run_500_runs_exactly_once_through_a_replica_kill() {
    let Some(db) = testing::test_db().await else {
        return;
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = vec![];
    for i in 0..REPLICAS {
        let env = [
            ("MINITOWER_DATABASE_URL", db.url.clone()),
            ("MINITOWER_LEASE_TTL", "10s".to_string()),
            // one shared artifact directory stands in for S3 here
            (
                "MINITOWER_OBJECTS_DIR",
                dir.path().join("objects").display().to_string(),
            ),
            (
                "MINITOWER_DB_PATH",
                dir.path()
                    .join(format!("unused-{i}.db"))
                    .display()
                    .to_string(),
            ),
        ];
        replicas.push(Minitowerd::spawn(&env).await);
    }
    let bases: Arc<Vec<String>> = Arc::new(replicas.iter().map(|r| r.base.clone()).collect());
    let admin_token = support::deploy(&bases[0]).await;

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut runners = vec![];
    for i in 0..RUNNERS {
        let token = support::register(&bases[1 + i % 2], &format!("runner-{i}"), 1).await;
        runners.push(tokio::spawn(runner(
            i,
            token,
            bases.clone(),
            tally.clone(),
            stop.clone(),
        )));
    }

    // Cross-replica wake-up: every runner is long-polling replica 1 or 2;
    // a run queued through replica 0 is taken at once, not after a poll.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let admin0 = Client::new(&bases[0], Some(admin_token.clone())).unwrap();
    let queued = Instant::now();
    admin0
        .create_run("hello", &CreateRunRequest::default(), Some("first"))
        .await
        .unwrap();
    while tally.done.load(Ordering::Relaxed) < 1 {
        assert!(
            queued.elapsed() < Duration::from_secs(10),
            "first run not taken"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first_latency = queued.elapsed();

    // The rest, through random replicas; an idempotency key per run makes
    // a retry after a lost answer return the same run.
    let created = Arc::new(AtomicUsize::new(1));
    let mut creators = vec![];
    for c in 0..CREATORS {
        let (bases, token, created) = (bases.clone(), admin_token.clone(), created.clone());
        creators.push(tokio::spawn(async move {
            let mut seed = 0x9E37_79B9u32.wrapping_mul(c as u32 + 1);
            for n in (1 + c..RUNS).step_by(CREATORS) {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let mut at = seed as usize % REPLICAS;
                let key = format!("run-{n}");
                failover(&bases, &mut at, |b| {
                    let (token, key) = (token.clone(), key.clone());
                    async move {
                        let admin = Client::new(&b, Some(token)).unwrap();
                        admin
                            .create_run("hello", &CreateRunRequest::default(), Some(&key))
                            .await
                    }
                })
                .await
                .expect("create");
                created.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // Kill replica 1 mid-way, without warning.
    while tally.done.load(Ordering::Relaxed) < KILL_AFTER {
        assert!(started.elapsed() < DEADLINE, "stuck before the kill");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    replicas[1].kill();
    let killed_at = tally.done.load(Ordering::Relaxed);

    for c in creators {
        c.await.unwrap();
    }
    assert_eq!(created.load(Ordering::Relaxed), RUNS);
    while tally.done.load(Ordering::Relaxed) < RUNS {
        assert!(
            started.elapsed() < DEADLINE,
            "only {} of {RUNS} runs completed",
            tally.done.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for r in runners {
        r.await.unwrap();
    }

    // The database's view: 500 completed runs, one completed attempt each.
    let store = db.open().await;
    let pool = store.pool();
    let by_status: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM runs GROUP BY status")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(by_status, vec![("completed".to_string(), RUNS as i64)]);
    let completed_attempts: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM run_attempts WHERE status = 'completed'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(completed_attempts, RUNS as i64);
    // A lease committed in the instant the replica died has no one to
    // answer to: it expires and the run is retried, at most once per runner
    // that was polling the dead replica. Anything else is a double lease.
    let extra: Vec<(i64, String)> = sqlx::query_as(
        "SELECT run_id, status FROM run_attempts WHERE status <> 'completed' ORDER BY run_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(
        extra.iter().all(|(_, s)| s == "expired") && extra.len() <= RUNNERS / 2,
        "unexpected extra attempts {extra:?}"
    );
    let completed = tally.completed.lock().unwrap();
    let runners_used: HashSet<usize> = completed.values().copied().collect();
    assert_eq!(completed.len(), RUNS);
    assert_eq!(runners_used.len(), RUNNERS, "every runner took part");
    eprintln!(
        "{RUNS} runs through {REPLICAS} replicas in {:?}: first cross-replica wake {:?}, \
         replica 1 killed after {killed_at} runs, {} results sent after a failover, \
         {} lost lease(s) retried",
        started.elapsed(),
        first_latency,
        tally.failovers.load(Ordering::Relaxed),
        extra.len()
    );
    assert!(
        first_latency < Duration::from_secs(5),
        "woken, not polled: {first_latency:?}"
    );
}
