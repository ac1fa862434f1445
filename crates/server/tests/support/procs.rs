//! `minitowerd` as a real process (the binary cargo built for these
//! tests), configured only through its environment like a deployment.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `minitowerd`; killed when dropped.
pub struct Minitowerd {
    pub base: String,
    child: Child,
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Minitowerd {
    /// Starts the binary with the test secrets plus `env`, and waits until
    /// `/health` answers.
    pub async fn spawn(env: &[(&str, String)]) -> Minitowerd {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_minitowerd"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MINITOWER_LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("MINITOWER_BOOTSTRAP_TOKEN", super::BOOTSTRAP)
            .env("MINITOWER_RUNNER_REGISTRATION_TOKEN", super::REGISTRATION)
            .env("MINITOWER_LEASE_TTL", "5s")
            .env("MINITOWER_EXPIRY_CHECK_INTERVAL", "1s")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            // expected errors (a killed peer, a missing object) would only
            // be noise; MINITOWER_TEST_SERVER_LOGS=1 shows them
            .stderr(
                if std::env::var_os("MINITOWER_TEST_SERVER_LOGS").is_some() {
                    Stdio::inherit()
                } else {
                    Stdio::null()
                },
            );
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("minitowerd starts");
        let base = format!("http://127.0.0.1:{port}");
        let mut server = Minitowerd { base, child };
        server.wait_healthy().await;
        server
    }

    async fn wait_healthy(&mut self) {
        let client = minitower_client::Client::new(&self.base, None).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if client.health().await.is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("minitowerd exited during startup: {status}");
            }
            assert!(Instant::now() < deadline, "minitowerd not healthy in 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process at once (SIGKILL: no graceful shutdown).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks for a graceful stop (SIGTERM) and waits for the exit.
    pub fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait();
    }
}

impl Drop for Minitowerd {
    fn drop(&mut self) {
        self.kill();
    }
}
