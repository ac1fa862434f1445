//! Harness of the CLI tests: a real control plane on 127.0.0.1:0 and a real
//! runner in this process, and the real `minitower` binary driven as a child
//! process with its config isolated in a temp dir.
#![allow(dead_code)]

use minitower_client::Client;
use minitower_core::api::BootstrapTeamRequest;
use minitower_server::{Application, ServerConfig};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

pub const BIN: &str = env!("CARGO_BIN_EXE_minitower");

/// Folder of a bundled example.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

/// A `minitower` invocation environment: its own HOME and config file.
#[derive(Clone)]
pub struct CliEnv {
    pub home: PathBuf,
    pub config: PathBuf,
}

impl CliEnv {
    pub fn new(dir: &Path) -> CliEnv {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        CliEnv {
            config: home.join("config.toml"),
            home,
        }
    }

    /// A command with the environment cleaned of anything pointing elsewhere.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("HOME", &self.home)
            .env("MINITOWER_CONFIG", &self.config)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("MINITOWER_SERVER_URL")
            .env_remove("MINITOWER_TOKEN")
            .env_remove("MINITOWER_PROFILE")
            .env_remove("MINITOWER_PASSWORD")
            .stdin(Stdio::null());
        c
    }

    /// Runs the CLI to completion off the async runtime.
    pub async fn run(&self, args: &[&str]) -> Out {
        let mut cmd = self.command(args);
        let out = tokio::task::spawn_blocking(move || cmd.output().expect("minitower starts"))
            .await
            .unwrap();
        Out::from(out)
    }
}

/// A finished CLI invocation.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Out {
    fn from(o: Output) -> Out {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Out {
    /// Asserts the exit code, showing the output when it differs.
    pub fn expect(self, code: i32) -> Out {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// A control plane plus a runner, with a bootstrapped team.
pub struct Stack {
    pub url: String,
    pub token: String,
    pub cli: CliEnv,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    runner: tokio::task::JoinHandle<()>,
    pub dir: TempDir,
}

impl Stack {
    pub async fn start() -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let server_dir = dir.path().join("server");
        std::fs::create_dir_all(&server_dir).unwrap();
        let config = ServerConfig::for_tests(&server_dir);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = Application::build(config, listener)
            .await
            .expect("server builds");
        let url = format!("http://{}", app.local_addr());
        let stop = CancellationToken::new();
        let server = tokio::spawn({
            let stop = stop.clone();
            async move {
                app.run_until(stop.cancelled_owned())
                    .await
                    .expect("server runs");
            }
        });
        let anon = Client::new(&url, None).unwrap();
        let team = anon
            .bootstrap_team(
                "boot",
                &BootstrapTeamRequest {
                    slug: "acme".into(),
                    name: "Acme".into(),
                    password: Some("hunter22".into()),
                },
            )
            .await
            .expect("bootstrap");
        let mut rc = minitower_runner::RunnerConfig::new(
            url.clone(),
            "cli-test-runner".into(),
            "reg".into(),
            dir.path().join("runner"),
        );
        rc.poll_interval = Duration::from_millis(500);
        rc.kill_grace_period = Duration::from_secs(2);
        rc.drain_timeout = Duration::from_secs(2);
        // This test binary is not a supervisor; the CLI binary is one.
        rc.supervisor_bin = Some(env!("CARGO_BIN_EXE_minitower").into());
        let runner = tokio::spawn({
            let stop = stop.clone();
            async move {
                if let Err(e) = minitower_runner::run(rc, stop).await {
                    eprintln!("runner stopped: {e:#}");
                }
            }
        });
        Stack {
            cli: CliEnv::new(dir.path()),
            url,
            token: team.token,
            stop,
            server,
            runner,
            dir,
        }
    }

    /// Logs the CLI in with the team token.
    pub async fn login(&self) {
        self.cli
            .run(&["login", "--server", &self.url, "--token", &self.token])
            .await
            .expect(0);
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.runner).await;
        let _ = tokio::time::timeout(Duration::from_secs(20), self.server).await;
    }
}

/// Writes an app folder with a Towerfile and a `main.py`.
pub fn write_app(dir: &Path, name: &str, main_py: &str) -> PathBuf {
    let app = dir.join(name);
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("Towerfile"),
        format!("[app]\nname = \"{name}\"\nscript = \"main.py\"\n"),
    )
    .unwrap();
    std::fs::write(app.join("main.py"), main_py).unwrap();
    app
}
