//! The fault harness itself works: three fault rounds on SQLite with few
//! runs, against the real `minitowerd` and `minitower-runner` binaries of
//! the same profile (so it is ignored by default):
//!
//! ```text
//! cargo build --release -p minitower-server -p minitower-runner
//! cargo test --release -p minitower-bench --test chaos -- --ignored
//! ```
//!
//! `MINITOWER_BENCH_BIN_DIR` points at other binaries. Nothing here looks
//! at times; the harness waits by polling against deadlines (about 15 s).

use minitower_bench::scenarios::chaos::{self, metric};
use minitower_bench::{ChaosBackend, Options, Scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs minitowerd and minitower-runner built in the same profile (cargo test --release -p minitower-bench --test chaos -- --ignored) or MINITOWER_BENCH_BIN_DIR"]
async fn three_rounds_on_sqlite_report_and_lose_nothing() {
    let mut opts = Options::defaults(Scenario::Chaos);
    opts.backend = ChaosBackend::Sqlite;
    opts.rounds = 3;
    opts.seed = Some(20261129);
    opts.chaos_runs_per_round = 2;
    opts.chaos_runners = 2;
    opts.chaos_settle = 60;
    opts.bin_dir = std::env::var_os("MINITOWER_BENCH_BIN_DIR").map(Into::into);
    let reports = chaos::run(&opts).await.expect("the harness ran");
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!(r.scenario, "chaos sqlite");
    assert_eq!(r.value(metric::ROUNDS), Some(3.0), "{:#?}", r.metrics);
    let acked = r.value(metric::ACKED).expect("acknowledged runs reported");
    assert!(acked > 0.0, "{:#?}", r.metrics);
    assert_eq!(r.value(metric::LOST), Some(0.0), "{:#?}", r.notes);
    // Every figure of the issue is there.
    for m in [
        metric::STUCK,
        metric::COMPLETED_TWICE,
        metric::CONCURRENT,
        metric::MISSING,
        metric::DUPLICATED,
        metric::SERVER_ERRORS,
    ] {
        assert!(r.value(m).is_some(), "no {m:?} in {:#?}", r.metrics);
    }
    assert!(r.notes[0].starts_with("CLEAN") || r.notes[0].starts_with("FOUND"));
}
