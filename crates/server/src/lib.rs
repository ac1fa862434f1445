//! The MiniTower control plane as a library: [`Application::build`] turns a
//! configuration and a bound listener into a running server, so the binary
//! stays thin and tests can start many servers on port 0 in parallel.

pub mod auth_cache;
pub mod config;
pub mod error;
pub mod events;
pub mod extract;
pub mod lease_secrets;
pub mod metrics;
pub mod objects;
pub mod objects_s3;
pub mod openapi;
pub mod password;
pub mod reaper;
pub mod retention;
pub mod routes;
pub mod scheduler;
pub mod scope;
pub mod secrets_crypto;
pub mod state;
pub mod telemetry;
pub mod throttle;
pub mod ui;
pub mod upload;
pub mod webhooks;

pub use config::{LogFormat, ServerConfig};
pub use state::{AppState, Clock, ManualClock, SystemClock};

use minitower_store::Store;
use objects::Objects;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("database: {0}")]
    Store(#[from] minitower_store::StoreError),
    #[error("secrets key: {0}")]
    Secrets(#[from] secrets_crypto::SecretsError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartupError {
    let context = context.into();
    move |source| StartupError::Io { context, source }
}

/// A built, not yet serving, control plane.
pub struct Application {
    state: Arc<AppState>,
    listener: TcpListener,
    local_addr: SocketAddr,
}

/// Binds the configured listen address.
pub async fn bind(config: &ServerConfig) -> Result<TcpListener, StartupError> {
    let addr = config.socket_addr()?;
    TcpListener::bind(&addr).await.map_err(io_err(format!(
        "cannot listen on {addr} (MINITOWER_LISTEN_ADDR)"
    )))
}

/// Opens the configured store and applies migrations: PostgreSQL when the
/// database URL names it (replicas share it), else the SQLite file.
pub async fn open_store(config: &ServerConfig) -> Result<Arc<dyn Store>, StartupError> {
    if let Some(url) = config.postgres_url() {
        let store = minitower_store_postgres::open(url)
            .await?
            .with_database_clock();
        return Ok(Arc::new(store));
    }
    let path = config.sqlite_path();
    let store = minitower_store_sqlite::open(&path).await?;
    Ok(Arc::new(store))
}

impl Application {
    /// Opens the store and objects and prepares the routes, using the system clock.
    pub async fn build(
        config: ServerConfig,
        listener: TcpListener,
    ) -> Result<Application, StartupError> {
        Self::build_with_clock(config, listener, Arc::new(SystemClock)).await
    }

    /// Like [`Application::build`] with an injected clock (tests).
    pub async fn build_with_clock(
        config: ServerConfig,
        listener: TcpListener,
        clock: Arc<dyn Clock>,
    ) -> Result<Application, StartupError> {
        config.validate()?;
        let keys = Arc::new(secrets_crypto::KeyRing::load(
            config.secrets_key.as_deref(),
            config.secrets_old_keys.as_deref(),
            &config.key_file(),
        )?);
        let store = open_store(&config).await?;
        let objects: Arc<dyn Objects> = objects_s3::open_objects(&config)?;
        let local_addr = listener.local_addr().map_err(io_err("listener address"))?;
        let state = Arc::new(AppState::new(
            config,
            store,
            objects,
            clock,
            CancellationToken::new(),
            keys,
        ));
        Ok(Application {
            state,
            listener,
            local_addr,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The shared state (tests use it to run the reaper on demand).
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight
    /// requests finish (streams and long-polls are told to end), stops the
    /// reaper, the scheduler and retention and closes the database.
    pub async fn run_until<F>(self, shutdown: F) -> Result<(), StartupError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let state = self.state;
        let events = events::start(state.clone()).await?;
        let reaper = tokio::spawn(reaper::run(state.clone()));
        let scheduler = tokio::spawn(scheduler::run(state.clone()));
        let deliverer = tokio::spawn(webhooks::run(state.clone()));
        let retention = tokio::spawn(retention::run(state.clone()));
        let app = routes::router(state.clone());
        let token = state.shutdown.clone();
        tracing::info!(addr = %self.local_addr, "minitowerd listening");
        // Without TCP_NODELAY a small answer (an SSE `end` event) waits for
        // the client's delayed ACK: ~40 ms added to every streamed run.
        let listener = axum::serve::ListenerExt::tap_io(self.listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        // The peer address feeds the login limiter.
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down: finishing in-flight requests");
                token.cancel();
            })
            .await;
        state.shutdown.cancel();
        let _ = reaper.await;
        let _ = scheduler.await;
        let _ = deliverer.await;
        let _ = retention.await;
        if let Some(events) = events {
            let _ = events.await;
        }
        state.store.close().await;
        tracing::info!("minitowerd stopped");
        served.map_err(io_err("server"))
    }
}
