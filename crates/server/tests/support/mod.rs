//! Shared by the scale-out tests (PostgreSQL replicas, S3 artifacts):
//! control planes in-process or as `minitowerd` processes, an app to run,
//! and runners that speak the protocol.
#![allow(dead_code)]

pub mod procs;

use flate2::write::GzEncoder;
use flate2::Compression;
use minitower_client::{Client, VersionUpload};
use minitower_core::api::*;
use minitower_server::{AppState, Application, ServerConfig, StartupError, SystemClock};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const BOOTSTRAP: &str = "boot";
pub const REGISTRATION: &str = "reg";

/// One in-process `minitowerd` on the shared database.
pub struct Replica {
    pub base: String,
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), StartupError>>>,
}

/// The test configuration pointed at `database_url`, data under `dir`
/// (artifacts in a directory every replica shares).
pub fn config(database_url: &str, dir: &Path, name: &str) -> ServerConfig {
    let mut c = ServerConfig::for_tests(&dir.join(name));
    c.database_url = Some(database_url.to_string());
    c.objects_dir = dir.join("objects");
    c.expiry_check_interval = Duration::from_secs(3600);
    c
}

impl Replica {
    /// Builds and serves a replica on 127.0.0.1:0.
    pub async fn start(config: ServerConfig) -> Replica {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = Application::build_with_clock(config, listener, Arc::new(SystemClock))
            .await
            .expect("replica builds");
        let base = format!("http://{}", app.local_addr());
        let state = app.state();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Replica {
            base,
            state,
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    /// A client of this replica with `token`.
    pub fn client(&self, token: Option<&str>) -> Client {
        Client::new(&self.base, token.map(str::to_string)).unwrap()
    }

    /// Stops serving and waits for the shutdown to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }
}

/// A gzipped tarball holding `main.py`.
pub fn artifact() -> Vec<u8> {
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    let body = b"print('hello')\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(body.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "main.py", &body[..]).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

/// Bootstraps team `acme` through the control plane at `base` and deploys
/// app `hello`; returns the admin token.
pub async fn deploy(base: &str) -> String {
    let team = Client::new(base, None)
        .unwrap()
        .bootstrap_team(
            BOOTSTRAP,
            &BootstrapTeamRequest {
                slug: "acme".into(),
                name: "Acme".into(),
                password: None,
            },
        )
        .await
        .unwrap();
    let admin = Client::new(base, Some(team.token.clone())).unwrap();
    admin.create_app("hello", None).await.unwrap();
    let bytes = artifact();
    let len = bytes.len() as u64;
    admin
        .upload_version(
            "hello",
            VersionUpload {
                artifact: bytes.into(),
                artifact_len: Some(len),
                entrypoint: Some("main.py".into()),
                timeout_seconds: Some(60),
                params_schema: None,
            },
        )
        .await
        .unwrap();
    team.token
}

/// Registers runner `name` through the control plane at `base`; returns
/// its token.
pub async fn register(base: &str, name: &str, max_concurrency: i64) -> String {
    Client::new(base, None)
        .unwrap()
        .register_runner(
            REGISTRATION,
            &RegisterRunnerRequest {
                name: name.into(),
                environment: None,
                max_concurrency: Some(max_concurrency),
            },
        )
        .await
        .unwrap()
        .token
}

/// One stdout line.
pub fn line(seq: i64, text: &str) -> NewLogLine {
    NewLogLine {
        seq,
        stream: "stdout".into(),
        line: text.into(),
        logged_at: None,
    }
}
