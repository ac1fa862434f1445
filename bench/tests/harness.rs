//! The harness itself works: a tiny dispatch against an in-process control
//! plane. Nothing here looks at how fast it was.

use minitower_bench::scenarios::dispatch::{self, Protocol};
use minitower_bench::{artifacts, stack};
use minitower_server::{bind, Application, ServerConfig};
use tokio::sync::oneshot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_dispatch_completes_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::for_tests(dir.path());
    config.bootstrap_token = minitower_bench::procs::BOOTSTRAP_TOKEN.into();
    config.runner_registration_token = Some(minitower_bench::procs::REGISTRATION_TOKEN.into());
    let listener = bind(&config).await.unwrap();
    let app = Application::build(config, listener).await.unwrap();
    let url = format!("http://{}", app.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));

    let admin = stack::bootstrap(&url).await.unwrap();
    stack::deploy(&admin, "noop", artifacts::hello().unwrap(), "main.py")
        .await
        .unwrap();
    let runners = dispatch::register_runners(&url, 4, "t").await.unwrap();
    let admins = std::slice::from_ref(&admin);
    let out = dispatch::drive(admins, &runners, "noop", 50, 2, 8, Protocol::Classic)
        .await
        .unwrap();
    assert_eq!(out.runs, 50);
    assert_eq!(out.end_to_end.len(), 50);
    for calls in [
        &out.calls.create,
        &out.calls.lease,
        &out.calls.start,
        &out.calls.logs,
        &out.calls.result,
    ] {
        assert_eq!(calls.len(), 50);
    }
    let summary = admin.runs_summary().await.unwrap();
    assert_eq!(summary.get("completed"), Some(&50));
    assert_eq!(summary.get("queued"), Some(&0));

    // A second drive on the same runners (as after a warm-up) works too,
    // on the fast path: no start or logs call, the line goes with the result.
    let again = dispatch::drive(admins, &runners, "noop", 10, 1, 4, Protocol::Fast)
        .await
        .unwrap();
    assert_eq!(again.end_to_end.len(), 10);
    assert_eq!(again.calls.result.len(), 10);
    assert!(again.calls.start.is_empty() && again.calls.logs.is_empty());
    let summary = admin.runs_summary().await.unwrap();
    assert_eq!(summary.get("completed"), Some(&60));

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
