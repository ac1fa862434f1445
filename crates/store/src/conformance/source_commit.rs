//! The commit a git source resolved to, recorded on the attempt.

use super::*;

/// The commit lands on the attempt the lease token holds, and only there:
/// a forged token, another runner, or the token of an attempt that has
/// ended (expired, or finished) is `LeaseGone` and changes nothing.
pub async fn source_commit_lands_on_the_held_attempt(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let run = f.run(1).await;
    let runner = f.runner("default", 1).await;
    let intruder = f.runner("default", 1).await;
    let (a, b) = ("a1".repeat(20), "b2".repeat(32));
    let first = lease(&store, &runner, 2).await.unwrap();
    first.start(3).await.unwrap();
    assert_eq!(f.get(run.id).await.attempts[0].source_commit, None);
    let forged = [
        (first.runner_id, "wrong".to_string()),
        (intruder.runner_id, first.token_hash.clone()),
    ];
    for (runner_id, hash) in &forged {
        assert_gone(store.set_source_commit(*runner_id, run.id, hash, &a).await);
    }
    assert_gone(
        store
            .set_source_commit(runner.runner_id, 999_999, &first.token_hash, &a)
            .await,
    );
    assert_eq!(f.get(run.id).await.attempts[0].source_commit, None);

    store
        .set_source_commit(runner.runner_id, run.id, &first.token_hash, &a)
        .await
        .unwrap();
    assert_eq!(
        f.get(run.id).await.attempts[0].source_commit.as_deref(),
        Some(a.as_str())
    );

    // The first attempt expires; its token is stale from then on.
    store.reap_expired(t(100), 10).await.unwrap();
    assert_gone(
        store
            .set_source_commit(runner.runner_id, run.id, &first.token_hash, &b)
            .await,
    );
    let second = lease(&store, &runner, 101).await.unwrap();
    assert_eq!(second.leased.lease.attempt_no, 2);
    store
        .set_source_commit(runner.runner_id, run.id, &second.token_hash, &b)
        .await
        .unwrap();
    let d = f.get(run.id).await;
    let commits: Vec<Option<&str>> = d
        .attempts
        .iter()
        .map(|x| x.source_commit.as_deref())
        .collect();
    assert_eq!(commits, [Some(a.as_str()), Some(b.as_str())]);

    second
        .finish(ResultStatus::Completed, Some(0), 102)
        .await
        .unwrap();
    assert_gone(
        store
            .set_source_commit(runner.runner_id, run.id, &second.token_hash, &a)
            .await,
    );
    let d = f.get(run.id).await;
    assert_eq!(d.attempts[1].source_commit.as_deref(), Some(b.as_str()));
}
