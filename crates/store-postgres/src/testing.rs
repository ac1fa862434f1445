//! Test support for this crate and the server's: a throwaway database per
//! test on the server named by `MINITOWER_TEST_POSTGRES_URL`, dropped
//! (connections and all) when the guard goes, even when the test panics.
//! Without the variable the helpers say "skipping" and return `None`.

use crate::{connect_options, PgStore};
use sqlx::{ConnectOptions, Connection};
use std::io::Write;
use std::sync::Once;

/// Where the test server is.
pub const URL_VAR: &str = "MINITOWER_TEST_POSTGRES_URL";

/// A database that exists until this is dropped.
pub struct TestDb {
    admin_url: String,
    pub name: String,
    /// URL of the test database itself.
    pub url: String,
}

/// The admin URL, or `None` (with a message) when Postgres tests are off.
pub fn admin_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            eprintln!("skipping: {URL_VAR} is unset");
            // Also once past the test harness's capture, so a plain
            // `cargo test` shows that these tests did not really run.
            static ONCE: Once = Once::new();
            ONCE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "skipping: {URL_VAR} is unset (PostgreSQL store tests pass without running)"
                );
            });
            None
        }
    }
}

/// Creates `mt_test_<random>`; `None` when the tests are off.
pub async fn test_db() -> Option<TestDb> {
    let admin_url = admin_url()?;
    let mut buf = [0u8; 8];
    getrandom::fill(&mut buf).unwrap();
    let name = format!("mt_test_{:016x}", u64::from_le_bytes(buf));
    let mut admin = connect_options(&admin_url)
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{URL_VAR}: cannot connect: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let url = with_database(&admin_url, &name);
    Some(TestDb {
        admin_url,
        name,
        url,
    })
}

impl TestDb {
    /// Opens a store (one replica) on this database.
    pub async fn open(&self) -> PgStore {
        let options = connect_options(&self.url).unwrap();
        crate::open_with(options, 8).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // A thread of its own: this may run inside (or outside) a runtime.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let mut admin = connect_options(&url).unwrap().connect().await?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await?;
                    admin.close().await
                })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let authority_end = base[after_scheme..]
        .find('/')
        .map(|i| after_scheme + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
#[test]
fn database_names_are_replaced() {
    assert_eq!(
        with_database("postgres://u@h:5432/postgres", "x"),
        "postgres://u@h:5432/x"
    );
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    assert_eq!(
        with_database("postgres://u@h/db?sslmode=disable", "x"),
        "postgres://u@h/x?sslmode=disable"
    );
}
