//! Cross-replica wake-ups. With PostgreSQL, the database NOTIFYs every
//! replica when a run is queued or a run changes; this task forwards those
//! notifications into the local [`Notifier`](crate::state::Notifier), so a
//! runner long-polling on one replica gets a run queued through another at
//! once, and log streams see lines written through another replica. With
//! SQLite there is one process and nothing to listen to.

use crate::state::AppState;
use crate::StartupError;
use minitower_store_postgres::{listen, Event, Events};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Longest pause between reconnect attempts while the database is away.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Subscribes (when the store is PostgreSQL) before returning, so nothing
/// committed after the server starts serving is missed, then forwards
/// events until shutdown.
pub async fn start(st: Arc<AppState>) -> Result<Option<JoinHandle<()>>, StartupError> {
    let Some(url) = st.config.postgres_url() else {
        return Ok(None);
    };
    let events = listen(url).await?;
    Ok(Some(tokio::spawn(forward(st, events))))
}

async fn forward(st: Arc<AppState>, mut events: Events) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let next = tokio::select! {
            _ = st.shutdown.cancelled() => return,
            next = events.next() => next,
        };
        match next {
            Ok(Event::Queue(env)) => st.notifier.queue_changed(&env),
            Ok(Event::Run(run_id)) => st.notifier.run_changed(run_id),
            Ok(Event::Auth) => st.auth.invalidate(),
            Ok(Event::Reconnected) => {
                st.auth.trust();
                backoff = Duration::from_millis(100);
                tracing::info!("database notifications resumed");
                wake_everyone(&st).await;
            }
            Err(e) => {
                st.auth.distrust();
                tracing::warn!(error = %e, retry_in = ?backoff, "database notifications lost");
                tokio::select! {
                    _ = st.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// After a gap in notifications every lease poll re-reads the store (log
/// streams re-read on their own every few seconds).
async fn wake_everyone(st: &AppState) {
    match st.store.list_runners().await {
        Ok(runners) => {
            let envs: BTreeSet<String> = runners.into_iter().map(|r| r.environment).collect();
            for env in envs {
                st.notifier.queue_changed(&env);
            }
        }
        Err(e) => tracing::warn!(error = %e, "listing environments to wake failed"),
    }
}
