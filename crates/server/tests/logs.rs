//! Stored logs and the live SSE stream.

mod common;

use common::*;
use futures::StreamExt;
use minitower_client::LogEvent;
use minitower_core::api::*;
use minitower_core::{ResultStatus, RunStatus};
use reqwest::Method;
use std::time::Duration;

fn log_line(ev: &SseEvent) -> LogLine {
    assert_eq!(ev.event, "log", "{ev:?}");
    let l: LogLine = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(
        ev.id.as_deref(),
        Some(l.seq.to_string().as_str()),
        "id must be the seq"
    );
    l
}

fn end_status(ev: &SseEvent) -> RunStatus {
    assert_eq!(ev.event, "end", "{ev:?}");
    serde_json::from_str::<StreamEnd>(&ev.data).unwrap().status
}

#[tokio::test]
async fn logs_after_seq() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    let t = &l.lease.lease_token;
    l.runner.start(l.run.id, t).await.unwrap();
    let lines: Vec<NewLogLine> = (1..=5).map(|i| line(i, &format!("line {i}"))).collect();
    l.runner.send_logs(l.run.id, t, lines).await.unwrap();
    let after2 = l.team.logs(l.run.id, 2).await.unwrap();
    assert_eq!(after2.iter().map(|x| x.seq).collect::<Vec<_>>(), [3, 4, 5]);
    assert!(l.team.logs(l.run.id, 5).await.unwrap().is_empty());
    let (status, body) = send_json(l.team.raw(
        Method::GET,
        &format!("/api/v1/runs/{}/logs?after_seq=0", l.run.id),
    ))
    .await;
    assert_eq!(status, 200);
    let first = &body["logs"][0];
    assert_eq!(first["seq"], 1);
    assert_eq!(first["attempt_no"], 1);
    assert_eq!(first["stream"], "stdout");
    assert_eq!(first["line"], "line 1");
    assert!(first["logged_at"].is_string());
    let resp = l
        .team
        .raw(
            Method::GET,
            &format!("/api/v1/runs/{}/logs?after_seq=x", l.run.id),
        )
        .send()
        .await
        .unwrap();
    envelope(resp, 400).await;
}

#[tokio::test]
async fn stream_replays_then_follows_then_ends() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    let (run_id, t) = (l.run.id, l.lease.lease_token.clone());
    l.runner.start(run_id, &t).await.unwrap();
    l.runner
        .send_logs(
            run_id,
            &t,
            vec![line(1, "stored one"), line(2, "stored two")],
        )
        .await
        .unwrap();

    let mut sse = open_stream(&l.team, run_id, "", None).await;
    let a = log_line(&sse.next().await.unwrap());
    let b = log_line(&sse.next().await.unwrap());
    assert_eq!((a.seq, a.line.as_str()), (1, "stored one"));
    assert_eq!((b.seq, b.line.as_str()), (2, "stored two"));

    // A line posted while the stream is open arrives live.
    l.runner
        .send_logs(run_id, &t, vec![line(3, "live three")])
        .await
        .unwrap();
    let c = log_line(&sse.next().await.unwrap());
    assert_eq!((c.seq, c.line.as_str()), (3, "live three"));

    l.runner
        .send_logs(run_id, &t, vec![line(4, "last words")])
        .await
        .unwrap();
    l.runner
        .result(run_id, &t, &result_req(ResultStatus::Completed, Some(0)))
        .await
        .unwrap();
    let d = log_line(&sse.next().await.unwrap());
    assert_eq!(d.seq, 4);
    assert_eq!(end_status(&sse.next().await.unwrap()), RunStatus::Completed);
    assert_eq!(sse.next().await, None, "the stream closes after end");
}

#[tokio::test]
async fn stream_resumes_from_last_event_id_or_after_seq() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    let (run_id, t) = (l.run.id, l.lease.lease_token.clone());
    let lines: Vec<NewLogLine> = (1..=4).map(|i| line(i, &format!("l{i}"))).collect();
    l.runner.send_logs(run_id, &t, lines).await.unwrap();
    l.runner
        .result(run_id, &t, &result_req(ResultStatus::Failed, Some(2)))
        .await
        .unwrap();

    let mut sse = open_stream(&l.team, run_id, "", Some("2")).await;
    assert_eq!(log_line(&sse.next().await.unwrap()).seq, 3);
    assert_eq!(log_line(&sse.next().await.unwrap()).seq, 4);
    assert_eq!(end_status(&sse.next().await.unwrap()), RunStatus::Failed);
    assert_eq!(sse.next().await, None);

    // Last-Event-ID wins over the query (it is what a reconnecting browser sends).
    let mut sse = open_stream(&l.team, run_id, "?after_seq=1", Some("3")).await;
    assert_eq!(log_line(&sse.next().await.unwrap()).seq, 4);
    assert_eq!(end_status(&sse.next().await.unwrap()), RunStatus::Failed);

    let mut sse = open_stream(&l.team, run_id, "?after_seq=3", None).await;
    assert_eq!(log_line(&sse.next().await.unwrap()).seq, 4);
    assert_eq!(end_status(&sse.next().await.unwrap()), RunStatus::Failed);
}

#[tokio::test]
async fn terminal_run_replays_and_ends_at_once() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let run = queue_run(&team, "hello", None).await;
    team.cancel_run(run.id).await.unwrap();
    let mut sse = open_stream(&team, run.id, "", None).await;
    assert_eq!(end_status(&sse.next().await.unwrap()), RunStatus::Cancelled);
    assert_eq!(sse.next().await, None);
}

#[tokio::test]
async fn typed_client_stream_sees_lines_across_attempts() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    let run_id = l.run.id;
    l.runner
        .send_logs(run_id, &l.lease.lease_token, vec![line(1, "attempt one")])
        .await
        .unwrap();
    // The attempt expires and the run is retried; the new attempt continues the seqs.
    app.advance(app.lease_ttl() + Duration::from_secs(1));
    app.reap().await;
    let l2 = lease_now(&l.runner).await;
    assert_eq!((l2.attempt_no, l2.last_log_seq), (2, 1));
    let mut stream = Box::pin(l.team.stream_logs(run_id, 0).await.unwrap());
    let first = stream.next().await.unwrap().unwrap();
    assert!(
        matches!(&first, LogEvent::Log(x) if x.seq == 1 && x.attempt_no == 1),
        "{first:?}"
    );
    l.runner
        .send_logs(run_id, &l2.lease_token, vec![line(2, "attempt two")])
        .await
        .unwrap();
    let second = tokio::time::timeout(HANG, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(&second, LogEvent::Log(x) if x.seq == 2 && x.attempt_no == 2),
        "{second:?}"
    );
    l.runner
        .result(
            run_id,
            &l2.lease_token,
            &result_req(ResultStatus::Completed, Some(0)),
        )
        .await
        .unwrap();
    let end = tokio::time::timeout(HANG, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(end, LogEvent::End(RunStatus::Completed));
}

#[tokio::test]
async fn stream_of_unknown_run_is_404() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    for p in [
        "/api/v1/runs/777/logs/stream",
        "/api/v1/runs/abc/logs/stream",
    ] {
        let resp = team.raw(Method::GET, p).send().await.unwrap();
        envelope(resp, 404).await;
    }
    let resp = app
        .anon
        .raw(Method::GET, "/api/v1/runs/1/logs/stream")
        .send()
        .await
        .unwrap();
    envelope(resp, 401).await;
}

#[tokio::test]
async fn stream_of_a_queued_run_ends_when_it_is_cancelled() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let run = queue_run(&team, "hello", None).await;
    let mut sse = open_stream(&team, run.id, "", None).await;
    team.cancel_run(run.id).await.unwrap();
    assert_eq!(end_status(&sse.next().await.unwrap()), RunStatus::Cancelled);
    assert_eq!(sse.next().await, None);
}

#[tokio::test]
async fn stream_follows_retries_and_ends_dead() {
    let app = spawn_app().await;
    let team = app.team("acme").await;
    app_with_version(&team, "hello").await;
    let runner = app.runner("r1", None).await;
    let (run, _) = team
        .create_run(
            "hello",
            &CreateRunRequest {
                max_retries: Some(1),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let mut sse = open_stream(&team, run.id, "", None).await;
    let l1 = lease_started(&runner).await;
    runner
        .send_logs(run.id, &l1.lease_token, vec![line(1, "first try")])
        .await
        .unwrap();
    assert_eq!(log_line(&sse.next().await.unwrap()).seq, 1);
    app.advance(app.lease_ttl() + Duration::from_secs(1));
    app.reap().await;
    // Requeued, not terminal: the stream stays open for the next attempt.
    let l2 = lease_started(&runner).await;
    runner
        .send_logs(run.id, &l2.lease_token, vec![line(2, "second try")])
        .await
        .unwrap();
    let second = log_line(&sse.next().await.unwrap());
    assert_eq!((second.seq, second.attempt_no), (2, 2));
    app.advance(app.lease_ttl() + Duration::from_secs(1));
    app.reap().await;
    assert_eq!(end_status(&sse.next().await.unwrap()), RunStatus::Dead);
    assert_eq!(sse.next().await, None);
}

#[tokio::test]
async fn long_histories_replay_in_order_across_pages() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    let (run_id, t) = (l.run.id, l.lease.lease_token.clone());
    for chunk in 0..3 {
        let lines: Vec<NewLogLine> = (1..=1000)
            .map(|i| chunk * 1000 + i)
            .map(|seq| line(seq, &format!("line {seq}")))
            .collect();
        let ack = l.runner.send_logs(run_id, &t, lines).await.unwrap();
        assert_eq!(ack.accepted, 1000);
    }
    l.runner
        .send_logs(run_id, &t, vec![line(3001, "last")])
        .await
        .unwrap();
    l.runner
        .result(run_id, &t, &result_req(ResultStatus::Completed, Some(0)))
        .await
        .unwrap();
    let mut sse = open_stream(&l.team, run_id, "?after_seq=500", None).await;
    let mut want = 501;
    loop {
        let ev = sse.next().await.unwrap();
        if ev.event == "end" {
            assert_eq!(end_status(&ev), RunStatus::Completed);
            break;
        }
        assert_eq!(log_line(&ev).seq, want);
        want += 1;
    }
    assert_eq!(want, 3002, "every stored line after 500 was replayed");
    assert_eq!(l.team.logs(run_id, 0).await.unwrap().len(), 3001);
}

#[tokio::test]
async fn oversized_lines_are_cut_and_batches_bounded() {
    let app = spawn_app().await;
    let l = leased_run(&app).await;
    let (run_id, t) = (l.run.id, l.lease.lease_token.clone());
    // 100 000 bytes of a 3-byte character: cut on a character boundary.
    let long = "€".repeat(100_000 / 3 + 1);
    l.runner
        .send_logs(run_id, &t, vec![line(1, &long)])
        .await
        .unwrap();
    let stored = &l.team.logs(run_id, 0).await.unwrap()[0].line;
    assert!(
        stored.len() <= 64 * 1024 && stored.len() > 60 * 1024,
        "{}",
        stored.len()
    );
    assert!(long.starts_with(stored.as_str()));
    let too_many: Vec<NewLogLine> = (2..=5002).map(|i| line(i, "x")).collect();
    expect_api_err(
        l.runner.send_logs(run_id, &t, too_many).await,
        400,
        "invalid_request",
    );
    assert_eq!(l.team.logs(run_id, 0).await.unwrap().len(), 1);
}
