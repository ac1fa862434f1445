//! The commit a git source resolved to, recorded on the attempt.

use super::*;
use minitower_core::status::RunStatus;

/// The commit lands on the attempt the lease token holds, and only there:
/// a forged token, another runner, another run, or the token of an attempt
/// that has expired is `LeaseGone` and changes nothing; a finished
/// attempt's commit is not replaced by a repeated result.
pub async fn source_commit_lands_on_the_held_attempt(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let run = f.run(1).await;
    let runner = f.runner("default", 1).await;
    let intruder = f.runner("default", 1).await;
    let (a, b) = ("a1".repeat(20), "b2".repeat(32));
    let done = ResultRequest {
        status: ResultStatus::Completed,
        exit_code: Some(0),
        error_message: None,
    };
    let finish = |runner_id: i64, run_id: i64, hash: String, commit: String, secs: i64| {
        let (store, done) = (store.clone(), done.clone());
        async move {
            store
                .finish_attempt(
                    end(runner_id, run_id, &hash, &done, &[], Some(&commit), secs),
                    None,
                )
                .await
                .map(|d| d.outcome)
        }
    };
    let commits = || async {
        let d = f.get(run.id).await;
        let c: Vec<Option<String>> = d.attempts.iter().map(|x| x.source_commit.clone()).collect();
        (d.run.status, c)
    };
    let first = lease(&store, &runner, 2).await.unwrap();
    first.start(3).await.unwrap();
    let forged = [
        (first.runner_id, run.id, "wrong".to_string()),
        (intruder.runner_id, run.id, first.token_hash.clone()),
        (runner.runner_id, 999_999, first.token_hash.clone()),
    ];
    for (runner_id, run_id, hash) in forged {
        assert_gone(finish(runner_id, run_id, hash, a.clone(), 4).await);
    }
    assert_eq!(commits().await, (RunStatus::Running, vec![None]));

    // The first attempt expires; its token is stale from then on.
    store.reap_expired(t(100), 10).await.unwrap();
    assert_gone(
        finish(
            runner.runner_id,
            run.id,
            first.token_hash.clone(),
            a.clone(),
            100,
        )
        .await,
    );
    assert_eq!(commits().await, (RunStatus::Queued, vec![None]));

    let second = lease(&store, &runner, 101).await.unwrap();
    assert_eq!(second.leased.lease.attempt_no, 2);
    finish(
        runner.runner_id,
        run.id,
        second.token_hash.clone(),
        b.clone(),
        102,
    )
    .await
    .unwrap();
    let landed = (RunStatus::Completed, vec![None, Some(b.clone())]);
    assert_eq!(commits().await, landed);
    // The same result again (its answer was lost) with another commit.
    finish(
        runner.runner_id,
        run.id,
        second.token_hash.clone(),
        a.clone(),
        103,
    )
    .await
    .unwrap();
    assert_eq!(commits().await, landed);
}

/// The fast path's end of an attempt stores its last lines, its commit and
/// its result together; a repeat stores nothing new and answers the same;
/// a stale or forged token stores nothing at all.
pub async fn finish_attempt_is_one_transaction(store: Arc<dyn Store>) {
    let f = Fixture::new(store.clone()).await;
    let run = f.run(1).await;
    let runner = f.runner("default", 1).await;
    let held = lease(&store, &runner, 2).await.unwrap();
    held.start(3).await.unwrap();
    held.logs(&[1], 4).await.unwrap();
    let line = |seq: i64| NewLogLine {
        seq,
        stream: "stdout".to_string(),
        line: format!("tail {seq}"),
        logged_at: None,
    };
    // seq 1 was sent in a batch already; 2 and 3 are new.
    let tail = [line(1), line(2), line(3)];
    let commit = "c3".repeat(20);
    let done = ResultRequest {
        status: ResultStatus::Completed,
        exit_code: Some(0),
        error_message: None,
    };
    assert_gone(
        store
            .finish_attempt(
                end(
                    runner.runner_id,
                    run.id,
                    "forged",
                    &done,
                    &tail,
                    Some(&commit),
                    5,
                ),
                None,
            )
            .await
            .map(|d| d.outcome),
    );
    let d = f.get(run.id).await;
    assert_eq!(d.run.status, RunStatus::Running);
    assert_eq!(d.attempts[0].source_commit, None);
    let first = store
        .finish_attempt(
            end(
                runner.runner_id,
                run.id,
                &held.token_hash,
                &done,
                &tail,
                Some(&commit),
                5,
            ),
            None,
        )
        .await
        .unwrap();
    let (outcome, stored) = (first.outcome, first.stored);
    assert_eq!(stored, 2);
    assert_eq!(outcome.ack.run_status, RunStatus::Completed);
    let finished = outcome.finished.expect("the run finished");
    assert_eq!(finished.labels.run_id, run.id);
    assert_eq!(finished.labels.app, run.app);
    // What the run holds: its status, its attempt's commit, its lines.
    let stored_now = || async {
        let d = f.get(run.id).await;
        let logs = store.get_logs(Some(f.team.id), run.id, 0, 100).await;
        let lines: Vec<String> = logs.unwrap().into_iter().map(|l| l.line).collect();
        (d.run.status, d.attempts[0].source_commit.clone(), lines)
    };
    let after_first = stored_now().await;
    assert_eq!(
        after_first,
        (
            RunStatus::Completed,
            Some(commit.clone()),
            vec!["line 1".into(), "tail 2".into(), "tail 3".into()]
        )
    );

    // The same call again (its answer was lost): nothing new, same answer.
    let more = [line(4)];
    let repeat = store
        .finish_attempt(
            end(
                runner.runner_id,
                run.id,
                &held.token_hash,
                &done,
                &more,
                Some("d4d4d4d4"),
                6,
            ),
            None,
        )
        .await
        .unwrap();
    let (again, stored) = (repeat.outcome, repeat.stored);
    assert_eq!(stored, 0);
    assert_eq!(
        (again.ack.status, again.ack.run_status),
        (outcome.ack.status, outcome.ack.run_status)
    );
    assert!(again.finished.is_none());
    assert_eq!(stored_now().await, after_first);
}
