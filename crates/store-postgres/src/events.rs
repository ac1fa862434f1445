//! Cross-replica wake-ups: the schema's triggers NOTIFY at commit, and a
//! listener in every replica turns the notifications into [`Event`]s that the
//! server forwards to its in-process waiters.

use crate::connect_options;
use minitower_store::{StoreError, StoreResult};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

/// Channel whose payload is an environment where a run became leasable.
pub const QUEUE_CHANNEL: &str = "minitower_queue";
/// Channel whose payload is the id of a run with a new status or new logs.
pub const RUN_CHANNEL: &str = "minitower_run";
/// Channel telling that a token, runner or team identity changed (a token
/// revoked, a runner token rotated): cached identities are stale.
pub const AUTH_CHANNEL: &str = "minitower_auth";

/// One notification from any replica (this one included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A run was queued or requeued in this environment.
    Queue(String),
    /// A run changed status or received log lines.
    Run(i64),
    /// A token, runner or team identity changed somewhere.
    Auth,
    /// The connection was lost and re-established: notifications sent in
    /// between are gone, so every waiter should re-read the store.
    Reconnected,
}

/// A live subscription to both channels on its own connection.
pub struct Events {
    options: PgConnectOptions,
    /// `None` after an error: the next call connects afresh.
    listener: Option<PgListener>,
}

/// Subscribes to the store's notifications on the database at `url`.
pub async fn listen(url: &str) -> StoreResult<Events> {
    let options = connect_options(url)?;
    let listener = subscribe(options.clone()).await?;
    Ok(Events {
        options,
        listener: Some(listener),
    })
}

async fn subscribe(options: PgConnectOptions) -> StoreResult<PgListener> {
    // A dedicated one-connection pool: the listener reconnects through it,
    // and it never competes with queries for a pooled connection.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(options);
    let mut listener = PgListener::connect_with(&pool)
        .await
        .map_err(|e| StoreError::Database(format!("LISTEN connection: {e}")))?;
    listener
        .listen_all([QUEUE_CHANNEL, RUN_CHANNEL, AUTH_CHANNEL])
        .await
        .map_err(|e| StoreError::Database(format!("LISTEN: {e}")))?;
    Ok(listener)
}

impl Events {
    /// The next event. An error means the database is unreachable right
    /// now; calling again reconnects, and the first event after a recovery
    /// is [`Event::Reconnected`].
    pub async fn next(&mut self) -> StoreResult<Event> {
        loop {
            let Some(listener) = self.listener.as_mut() else {
                self.listener = Some(subscribe(self.options.clone()).await?);
                return Ok(Event::Reconnected);
            };
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    if let Some(ev) = parse(n.channel(), n.payload()) {
                        return Ok(ev);
                    }
                }
                // sqlx reconnected on its own; what was sent meanwhile is lost
                Ok(None) => return Ok(Event::Reconnected),
                Err(e) => {
                    self.listener = None;
                    return Err(StoreError::Database(format!("notification listener: {e}")));
                }
            }
        }
    }
}

/// Decodes one notification; unknown channels or bad payloads are ignored.
fn parse(channel: &str, payload: &str) -> Option<Event> {
    match channel {
        QUEUE_CHANNEL => Some(Event::Queue(payload.to_string())),
        RUN_CHANNEL => payload.parse().ok().map(Event::Run),
        AUTH_CHANNEL => Some(Event::Auth),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_decode() {
        assert_eq!(
            parse(QUEUE_CHANNEL, "gpu"),
            Some(Event::Queue("gpu".into()))
        );
        assert_eq!(parse(RUN_CHANNEL, "42"), Some(Event::Run(42)));
        assert_eq!(parse(RUN_CHANNEL, "x"), None);
        assert_eq!(parse(AUTH_CHANNEL, "tokens"), Some(Event::Auth));
        assert_eq!(parse("other", "1"), None);
    }
}
