//! 100 wrong passwords in one burst: the limiter answers 429 (envelope and
//! `Retry-After`) past the per-team-and-address quota without hashing, at
//! most two Argon2 hashes run at once, and the process's resident memory
//! stays flat. Alone in its test binary so the RSS is this test's.

mod common;

use common::*;
use minitower_core::api::BootstrapTeamRequest;
use minitower_server::throttle::PER_TEAM_AND_ADDRESS;

fn status_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field} not in /proc/self/status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_wrong_passwords_is_throttled_in_flat_memory() {
    let app = spawn_app().await;
    for slug in ["acme", "warm"] {
        app.anon
            .bootstrap_team(
                BOOTSTRAP,
                &BootstrapTeamRequest {
                    slug: slug.into(),
                    name: slug.into(),
                    password: Some("correct horse".into()),
                },
            )
            .await
            .unwrap();
    }
    // Warm up: two hashes at once, as many as the server ever runs.
    let (a, b) = tokio::join!(
        app.anon.login("warm", "correct horse"),
        app.anon.login("warm", "wrong guess")
    );
    a.unwrap();
    expect_api_err(b, 401, "unauthorized");
    // And a burst of as many plain requests, so connection buffers on both
    // sides of this in-process test are already counted.
    futures::future::join_all(
        (0..100).map(|_| app.raw(None, reqwest::Method::GET, "/health").send()),
    )
    .await;
    let before = status_kib("VmRSS");

    let answers = futures::future::join_all((0..100).map(|i| {
        let rb = app
            .raw(None, reqwest::Method::POST, "/api/v1/teams/login")
            .json(&serde_json::json!({"slug": "acme", "password": format!("guess-{i}")}));
        async move {
            let resp = rb.send().await.unwrap();
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            let (code, message) = envelope(resp, status).await;
            (status, code, message, retry_after)
        }
    }))
    .await;
    let after = status_kib("VmRSS");

    let refused = answers.iter().filter(|a| a.0 == 401).count();
    let limited: Vec<_> = answers.iter().filter(|a| a.0 == 429).collect();
    assert_eq!(refused + limited.len(), 100, "{answers:?}");
    assert!(
        refused >= PER_TEAM_AND_ADDRESS as usize && refused <= PER_TEAM_AND_ADDRESS as usize + 2,
        "{refused} wrong passwords were checked"
    );
    for (_, code, message, retry_after) in &limited {
        assert_eq!(code, "rate_limited");
        assert!(message.contains("too many login attempts"), "{message}");
        assert!(
            retry_after.is_some_and(|s| (1..=60).contains(&s)),
            "{retry_after:?}"
        );
    }
    // Even the right password waits now (from this address).
    expect_api_err(
        app.anon.login("acme", "correct horse").await,
        429,
        "rate_limited",
    );
    let growth = after.saturating_sub(before);
    eprintln!(
        "VmRSS {} MiB before, {} MiB after 100 logins ({refused} checked, {} limited)",
        before / 1024,
        after / 1024,
        limited.len()
    );
    // Each of the two Argon2 threads keeps one 19 MiB buffer (both are
    // normally warm already); without the bound and the reused buffers this
    // grew by about 19 MiB per checked password.
    assert!(growth < 32 * 1024, "RSS grew by {growth} KiB");
}
