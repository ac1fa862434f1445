//! Cached identities never outlive a revoke: a revoked team token and a
//! runner token replaced by a new registration are refused at once on the
//! replica that changed them, and promptly (through PostgreSQL's NOTIFY) on
//! another replica that was serving them from its cache.

mod common;
mod support;

use common::{expect_api_err, spawn_app};
use minitower_client::ClientError;
use minitower_core::api::Role;
use minitower_store_postgres::testing;
use std::time::{Duration, Instant};
use support::{config, deploy, register, Replica};

/// A hang detector, never a timing assertion.
const HANG: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_revoked_token_is_refused_at_once() {
    let app = spawn_app().await;
    let admin = app.team("acme").await;
    let t = admin.create_token("ci", Some(Role::Member)).await.unwrap();
    let member = app.client(&t.token);
    // Used twice: the second use is served from the cache.
    member.me().await.unwrap();
    member.me().await.unwrap();
    admin.revoke_token(t.id).await.unwrap();
    expect_api_err(member.me().await, 401, "unauthorized");
    admin.me().await.expect("other tokens are unaffected");
}

#[tokio::test]
async fn a_replaced_runner_token_is_refused_at_once() {
    let app = spawn_app().await;
    let old = app.runner("r1", None).await;
    assert!(old.lease(Duration::ZERO).await.unwrap().is_none());
    assert!(old.lease(Duration::ZERO).await.unwrap().is_none());
    // A second process registers under the same name: the token rotates.
    let new = app.runner("r1", None).await;
    expect_api_err(old.lease(Duration::ZERO).await, 401, "unauthorized");
    assert!(new.lease(Duration::ZERO).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_revoked_through_one_replica_is_refused_by_another() {
    let Some(db) = testing::test_db().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::start(config(&db.url, dir.path(), "a")).await;
    let b = Replica::start(config(&db.url, dir.path(), "b")).await;
    let admin_token = deploy(&a.base).await;
    let admin_a = a.client(Some(&admin_token));
    let t = admin_a
        .create_token("ci", Some(Role::Member))
        .await
        .unwrap();
    let member_b = b.client(Some(&t.token));
    member_b.me().await.unwrap();
    member_b.me().await.unwrap(); // now cached on B
    admin_a.revoke_token(t.id).await.unwrap();
    refused_within(HANG, || member_b.me()).await;

    // The same for a runner token rotated by a registration through A.
    let old = b.client(Some(&register(&b.base, "r1", 1).await));
    assert!(old.lease(Duration::ZERO).await.unwrap().is_none());
    assert!(old.lease(Duration::ZERO).await.unwrap().is_none());
    let new = b.client(Some(&register(&a.base, "r1", 1).await));
    refused_within(HANG, || old.lease(Duration::ZERO)).await;
    assert!(new.lease(Duration::ZERO).await.unwrap().is_none());
    a.stop().await;
    b.stop().await;
}

/// Polls `call` until it is refused with 401; fails after `hang`.
async fn refused_within<T, F, Fut>(hang: Duration, mut call: F)
where
    T: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let start = Instant::now();
    loop {
        match call().await {
            Err(e) if e.status() == Some(401) => return,
            other => {
                assert!(
                    start.elapsed() < hang,
                    "still accepted after {hang:?}: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
