//! The workload: an app whose script writes ground truth, the runs the
//! harness creates over HTTP, and the account of every answer it got.

use crate::artifacts;
use anyhow::Result;
use minitower_client::{Client, ClientError, ClientResult};
use minitower_core::api::CreateRunRequest;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// The script. Input: `{"truth": PATH, "k": K, "step_ms": MS}`. It appends
/// `start`, a `tick` after every log line and `end` to the ground-truth file
/// (`O_APPEND`, one `write` and an fsync per line) and prints `line 1` ..
/// `line K`, one per step. When its stdout goes away (its runner died) it
/// goes on silently, as a script that does not log would: only the ground
/// truth can then tell whether it was stopped.
pub const SCRIPT: &str = r#"import json
import os
import sys
import time


def load_input():
    path = os.environ.get("MINITOWER_INPUT_FILE")
    if path:
        try:
            with open(path) as f:
                return json.load(f)
        except OSError:
            pass
    return json.loads(os.environ.get("MINITOWER_INPUT") or "{}")


params = load_input()
run = os.environ["MINITOWER_RUN_ID"]
attempt = os.environ["MINITOWER_ATTEMPT_NO"]
pid = os.getpid()
fd = os.open(params["truth"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)


def truth(kind, with_pid):
    who = f" {pid}" if with_pid else ""
    os.write(fd, f"{kind} {run} {attempt}{who} {time.time_ns()}\n".encode())
    os.fsync(fd)


truth("start", True)
step = params.get("step_ms", 100) / 1000.0
printing = True
for i in range(1, int(params["k"]) + 1):
    if printing:
        try:
            print(f"line {i}", flush=True)
        except OSError:
            printing = False
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except OSError:
                pass
    truth("tick", False)
    time.sleep(step)
truth("end", True)
"#;

/// The app's archive.
pub fn artifact() -> Result<Vec<u8>> {
    artifacts::tar_gz(&[("main.py", SCRIPT.as_bytes())])
}

/// One run the server acknowledged (201).
#[derive(Debug, Clone, Serialize)]
pub struct Acked {
    pub id: i64,
    /// Log lines its script prints.
    pub k: i64,
    /// Fault round it was created in.
    pub round: usize,
}

/// Everything the harness saw over HTTP.
#[derive(Debug, Default)]
pub struct Account {
    inner: Mutex<AccountInner>,
    /// When the fault rounds began (5xx answers are timed from it).
    origin: OnceLock<Instant>,
}

/// One 5xx answer.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorSample {
    /// Seconds since the fault rounds began.
    pub at_s: f64,
    pub what: String,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct AccountInner {
    pub acked: Vec<Acked>,
    /// 5xx answers by `METHOD route`.
    pub server_errors: BTreeMap<String, u64>,
    /// The first few 5xx answers: when, route, status, error code and message.
    pub server_error_samples: Vec<ErrorSample>,
    /// Other error answers (4xx) by `METHOD route: status`.
    pub client_errors: BTreeMap<String, u64>,
    /// Requests that got no answer (server down, connection reset).
    pub unanswered: BTreeMap<String, u64>,
    /// Creates that were not acknowledged (no answer, 5xx or another error).
    pub creates_not_acked: u64,
    pub requests: u64,
}

impl Account {
    /// Marks the start of the fault rounds (the origin of `Done::at_s` too).
    pub fn start_clock(&self, t0: Instant) {
        let _ = self.origin.set(t0);
    }

    /// Records the outcome of one request.
    pub fn note<T>(&self, route: &str, r: &ClientResult<T>) {
        let mut a = self.inner.lock().expect("account lock");
        a.requests += 1;
        match r {
            Ok(_) => {}
            Err(ClientError::Api {
                status,
                code,
                message,
            }) if *status >= 500 => {
                *a.server_errors.entry(route.to_string()).or_default() += 1;
                if a.server_error_samples.len() < 20 {
                    let at_s = self
                        .origin
                        .get()
                        .map(|t| t.elapsed().as_secs_f64())
                        .unwrap_or(0.0);
                    a.server_error_samples.push(ErrorSample {
                        at_s,
                        what: format!("{route}: {status} {code}: {message}"),
                    });
                }
            }
            Err(ClientError::Api { status, .. }) => {
                *a.client_errors
                    .entry(format!("{route}: {status}"))
                    .or_default() += 1;
            }
            Err(ClientError::Transport(_)) | Err(ClientError::Decode(_)) => {
                *a.unanswered.entry(route.to_string()).or_default() += 1;
            }
        }
    }

    /// A copy of what was recorded so far.
    pub fn snapshot(&self) -> AccountInner {
        self.inner.lock().expect("account lock").clone()
    }

    /// Sum of the 5xx answers.
    pub fn server_errors(&self) -> u64 {
        self.inner
            .lock()
            .expect("account lock")
            .server_errors
            .values()
            .sum()
    }

    /// Ids and line counts of the acknowledged runs.
    pub fn acked(&self) -> Vec<Acked> {
        self.inner.lock().expect("account lock").acked.clone()
    }

    /// Creates a run of `app` on the first of `clients` that answers (a
    /// connection refused moves on to the next, as a client behind a load
    /// balancer would; an answered error does not, as the run may exist).
    pub async fn create(
        &self,
        clients: &[&Client],
        app: &str,
        truth: &Path,
        k: i64,
        round: usize,
    ) -> Option<i64> {
        let req = CreateRunRequest {
            input: Some(serde_json::json!({
                "truth": truth.display().to_string(),
                "k": k,
                "step_ms": 100,
            })),
            max_retries: Some(MAX_RETRIES),
            ..Default::default()
        };
        for c in clients {
            let r = c.create_run(app, &req, None).await;
            self.note("POST /api/v1/apps/{app}/runs", &r);
            match r {
                Ok((run, true)) => {
                    let mut a = self.inner.lock().expect("account lock");
                    a.acked.push(Acked {
                        id: run.id,
                        k,
                        round,
                    });
                    return Some(run.id);
                }
                Ok((_, false)) => break,
                // Nothing was sent: safe to try the next server.
                Err(ClientError::Transport(m)) if m.contains("Connection refused") => continue,
                Err(_) => break,
            }
        }
        self.inner.lock().expect("account lock").creates_not_acked += 1;
        None
    }
}

/// Retries each run may spend: faults hit a run more than twice now and
/// then, and a run that ends `dead` is not what is being measured.
pub const MAX_RETRIES: i64 = 8;
