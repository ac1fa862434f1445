//! After the faults: wait until every acknowledged run is terminal (or a
//! deadline passes), then look at each through the API.

use super::workload::{Account, Acked};
use minitower_client::{Client, ClientError, ClientResult};
use minitower_core::api::{LogLine, RunDetail};
use minitower_core::{AttemptStatus, RunStatus};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

/// Calls `f` on the clients in turn until one answers without a 5xx or a
/// transport error (every answer is recorded in `account`), at most
/// `tries` times with a short pause between rounds.
pub async fn call<T, F, Fut>(
    account: &Account,
    clients: &[Client],
    route: &str,
    tries: usize,
    f: F,
) -> ClientResult<T>
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = ClientResult<T>>,
{
    let mut last = None;
    for i in 0..tries.max(1) {
        let c = clients[i % clients.len()].clone();
        let r = f(c).await;
        account.note(route, &r);
        match r {
            Err(e) if e.is_transient() => last = Some(e),
            other => return other,
        }
        if (i + 1) % clients.len() == 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Err(last.unwrap_or_else(|| ClientError::Transport("no client".into())))
}

/// Polls the runs that are not terminal yet until all are, or `limit`
/// passes. Returns how long it took and the runs still not terminal.
pub async fn settle(
    account: &Account,
    clients: &[Client],
    acked: &[Acked],
    limit: Duration,
) -> (Duration, Vec<i64>) {
    let t0 = Instant::now();
    let mut open: Vec<i64> = acked.iter().map(|a| a.id).collect();
    loop {
        let mut still = Vec::new();
        for id in open {
            let r = call(
                account,
                clients,
                "GET /api/v1/runs/{run}",
                1,
                |c| async move { c.get_run(id).await },
            )
            .await;
            match r {
                Ok(d) if d.run.status.is_terminal() => {}
                // a 404 stays a 404: judged as lost below
                Err(ClientError::Api { status: 404, .. }) => {}
                _ => still.push(id),
            }
        }
        open = still;
        if open.is_empty() || t0.elapsed() > limit {
            return (t0.elapsed(), open);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What the API says about one acknowledged run at the end.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub id: i64,
    pub k: i64,
    /// `None`: not found (404), or no answer at all.
    pub status: Option<RunStatus>,
    pub not_found: bool,
    pub attempts: usize,
    pub completed_attempts: Vec<i64>,
    /// Of the completed attempt's `line 1..k`: how many are absent, and how
    /// many extra copies there are.
    pub missing_lines: i64,
    pub duplicated_lines: i64,
    pub error: Option<String>,
}

/// Reads every acknowledged run and, for completed ones, its log.
pub async fn outcomes(account: &Account, clients: &[Client], acked: &[Acked]) -> Vec<Outcome> {
    let mut out = Vec::with_capacity(acked.len());
    for a in acked {
        let mut o = Outcome {
            id: a.id,
            k: a.k,
            status: None,
            not_found: false,
            attempts: 0,
            completed_attempts: Vec::new(),
            missing_lines: 0,
            duplicated_lines: 0,
            error: None,
        };
        let id = a.id;
        let d: RunDetail = match call(
            account,
            clients,
            "GET /api/v1/runs/{run}",
            10,
            |c| async move { c.get_run(id).await },
        )
        .await
        {
            Ok(d) => d,
            Err(ClientError::Api { status: 404, .. }) => {
                o.not_found = true;
                out.push(o);
                continue;
            }
            Err(e) => {
                o.error = Some(e.to_string());
                out.push(o);
                continue;
            }
        };
        o.status = Some(d.run.status);
        o.attempts = d.attempts.len();
        o.completed_attempts = d
            .attempts
            .iter()
            .filter(|x| x.status == AttemptStatus::Completed)
            .map(|x| x.attempt_no)
            .collect();
        if d.run.status == RunStatus::Completed {
            match all_logs(account, clients, id).await {
                Ok(lines) => {
                    let attempt = o.completed_attempts.last().copied().unwrap_or(-1);
                    let (m, dup) = count_lines(&lines, attempt, a.k);
                    o.missing_lines = m;
                    o.duplicated_lines = dup;
                }
                Err(e) => o.error = Some(format!("reading the log: {e}")),
            }
        }
        out.push(o);
    }
    out
}

async fn all_logs(account: &Account, clients: &[Client], id: i64) -> ClientResult<Vec<LogLine>> {
    let mut lines: Vec<LogLine> = Vec::new();
    let mut after = 0;
    loop {
        let page = call(
            account,
            clients,
            "GET /api/v1/runs/{run}/logs",
            10,
            |c| async move { c.logs(id, after).await },
        )
        .await?;
        let Some(last) = page.last() else {
            return Ok(lines);
        };
        after = last.seq;
        lines.extend(page);
    }
}

/// Of `line 1..=k` printed on stdout by `attempt`: how many are missing and
/// how many extra copies there are.
pub fn count_lines(lines: &[LogLine], attempt: i64, k: i64) -> (i64, i64) {
    let mut seen: BTreeMap<i64, i64> = BTreeMap::new();
    for l in lines {
        if l.attempt_no != attempt {
            continue;
        }
        if let Some(i) = l
            .line
            .trim_end()
            .strip_prefix("line ")
            .and_then(|n| n.parse::<i64>().ok())
        {
            *seen.entry(i).or_default() += 1;
        }
    }
    let mut missing = 0;
    let mut dup = 0;
    for i in 1..=k {
        match seen.get(&i).copied().unwrap_or(0) {
            0 => missing += 1,
            n => dup += n - 1,
        }
    }
    (missing, dup)
}

/// Script processes from the ground truth that are still alive: a pid
/// counts only when its working directory lies under `dir` (the runners'
/// workspaces), so a recycled pid is never taken for a script.
pub fn scripts_alive(pids: &HashSet<u32>, dir: &Path) -> Vec<u32> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut out: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(&dir))
        })
        .collect();
    out.sort_unstable();
    out
}

/// SIGKILLs the given script processes (after [`scripts_alive`] checked them).
pub fn kill_scripts(pids: &[u32], dir: &Path) {
    for pid in scripts_alive(&pids.iter().copied().collect(), dir) {
        // SAFETY: a process whose cwd is inside our own temp dir: a script
        // of a runner this harness started.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(attempt: i64, text: &str) -> LogLine {
        LogLine {
            seq: 0,
            attempt_no: attempt,
            stream: "stdout".into(),
            line: text.into(),
            logged_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn lines_of_the_completed_attempt_only() {
        let lines = vec![
            line(1, "line 1"),
            line(1, "line 2"),
            line(2, "line 1"),
            line(2, "line 1"),
            line(2, "line 3"),
            line(2, "some setup message"),
        ];
        assert_eq!(count_lines(&lines, 2, 3), (1, 1));
        assert_eq!(count_lines(&lines, 1, 2), (0, 0));
        assert_eq!(count_lines(&lines, 1, 4), (2, 0));
    }
}
