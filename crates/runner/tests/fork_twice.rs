//! The fork server's fallback: where it cannot clone a run as its
//! supervisor's child (not x86-64 with glibc), it forks twice. That path
//! keeps the same promise; `MINITOWER_FORK_TWICE` makes a fork server take
//! it here. A test binary of its own, because the variable must be in the
//! runner's environment before it is first read.

mod common;

#[tokio::test(flavor = "multi_thread")]
async fn the_double_fork_is_indistinguishable_too() {
    std::env::set_var("MINITOWER_PASS_ENV", "MINITOWER_FORK_TWICE");
    std::env::set_var("MINITOWER_FORK_TWICE", "1");
    common::probe::forked_and_fresh_runs_compared(true).await;
}
