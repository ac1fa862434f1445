//! Read-mostly commands: runs, show, cancel, apps, versions.

use super::Ctx;
use crate::cli::RunsArgs;
use crate::error::{CliError, CliResult};
use crate::output::{self, opt, print_json, Table};
use minitower_client::RunQuery;
use minitower_core::api::Run;
use minitower_core::RunStatus;
use serde_json::json;

fn run_duration(r: &Run) -> String {
    match (r.started_at, r.finished_at) {
        (Some(s), Some(f)) => output::duration(f - s),
        (Some(s), None) => format!("{}…", output::duration(chrono::Utc::now() - s)),
        _ => "-".into(),
    }
}

pub async fn runs(ctx: &Ctx, args: RunsArgs) -> CliResult<()> {
    if let Some(s) = &args.status {
        s.parse::<RunStatus>().map_err(|_| {
            CliError::Usage(format!(
                "unknown status {s:?} (queued, leased, running, cancelling, completed, failed, cancelled, dead)"
            ))
        })?;
    }
    if args.limit < 1 {
        return Err(CliError::Usage("--limit must be at least 1".into()));
    }
    let client = ctx.client()?;
    let runs = client
        .list_runs(&RunQuery {
            status: args.status.clone(),
            app: args.app.clone(),
            limit: Some(args.limit),
            offset: None,
        })
        .await?;
    if ctx.json() {
        print_json(&json!({ "runs": runs }));
        return Ok(());
    }
    let mut t = Table::new(&[
        "ID", "APP", "RUN", "VER", "STATUS", "QUEUED", "DURATION", "EXIT", "SCHEDULE",
    ]);
    for r in &runs {
        t.row(vec![
            r.id.to_string(),
            r.app.clone(),
            format!("#{}", r.run_no),
            format!("v{}", r.version_no),
            r.status.to_string(),
            output::ago(&r.queued_at),
            run_duration(r),
            opt(r.exit_code),
            opt(r.schedule_id),
        ]);
    }
    t.print_or("No runs.");
    Ok(())
}

pub async fn show(ctx: &Ctx, id: i64) -> CliResult<()> {
    let client = ctx.client()?;
    let d = client.get_run(id).await?;
    if ctx.json() {
        print_json(&d);
        return Ok(());
    }
    let r = &d.run;
    let field = |k: &str, v: String| println!("{k:<12} {v}");
    field(
        "Run",
        format!(
            "{} ({} #{}, version {})",
            r.id, r.app, r.run_no, r.version_no
        ),
    );
    field(
        "Status",
        r.status.to_string()
            + if r.cancel_requested && !r.status.is_terminal() {
                " (cancel requested)"
            } else {
                ""
            },
    );
    field("Input", r.input.to_string());
    field(
        "Priority",
        match &r.priority_name {
            Some(n) => format!("{n} ({})", r.priority),
            None => r.priority.to_string(),
        },
    );
    if let Some(o) = r.job_overrides.as_ref().filter(|o| !o.is_empty()) {
        field("Overrides", serde_json::to_string(o).unwrap_or_default());
    }
    field("Retries", format!("{} of {}", r.retry_count, r.max_retries));
    field("Attempt", attempt_line(r, d.attempts.len()));
    field("Environment", r.environment.clone());
    if let (Some(id), Some(tick)) = (r.schedule_id, r.scheduled_for) {
        field("Schedule", format!("{id} (tick {})", output::local(&tick)));
    }
    if let Some(t) = r.timeout_seconds {
        field("Timeout", format!("{t}s (this run's own)"));
    }
    field("Queued", output::local_ago(&r.queued_at));
    field("Started", opt(r.started_at.as_ref().map(output::local_ago)));
    field(
        "Finished",
        opt(r.finished_at.as_ref().map(output::local_ago)),
    );
    field("Duration", run_duration(r));
    field("Exit code", opt(r.exit_code));
    if let Some(m) = &r.error_message {
        field("Error", m.clone());
    }
    println!();
    let mut t = Table::new(&[
        "ATTEMPT", "STATUS", "RUNNER", "STARTED", "DURATION", "EXIT", "ERROR", "COMMIT",
    ]);
    for a in &d.attempts {
        t.row(vec![
            a.attempt_no.to_string(),
            a.status.to_string(),
            a.runner.clone(),
            output::local(&a.started_at),
            a.finished_at
                .map(|f| output::duration(f - a.started_at))
                .unwrap_or_else(|| "-".into()),
            opt(a.exit_code),
            a.error_message
                .as_deref()
                .map(|m| output::truncate(m, 60))
                .unwrap_or_else(|| "-".into()),
            a.source_commit
                .as_deref()
                .map(|c| c.chars().take(12).collect())
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    t.print_or("No attempts yet.");
    Ok(())
}

/// "attempt 2 of 4 (1 failure retry of 3 used), retry at …": where the
/// run stands in its failure-retry budget, and when a waiting run goes next.
fn attempt_line(r: &minitower_core::api::Run, attempts: usize) -> String {
    let waiting = r.status == minitower_core::RunStatus::Queued
        && r.not_before.is_some_and(|t| t > chrono::Utc::now());
    // A queued run's next attempt is the one that counts.
    let n = attempts + usize::from(r.status == minitower_core::RunStatus::Queued);
    let mut line = format!(
        "{} of {} ({} of {} failure retries used, first delay {})",
        n.max(1),
        1 + r.failure_retries,
        r.failure_retry_count,
        r.failure_retries,
        output::duration(chrono::Duration::milliseconds(r.retry_delay_ms)),
    );
    if let (true, Some(at)) = (waiting, r.not_before) {
        line.push_str(&format!(", retry at {}", output::local_ago(&at)));
    }
    line
}

pub async fn cancel(ctx: &Ctx, id: i64) -> CliResult<()> {
    let client = ctx.client()?;
    let r = client.cancel_run(id).await?;
    if ctx.json() {
        print_json(&r);
    } else if r.status == RunStatus::Cancelling {
        println!("Run {id} is cancelling: its runner stops it at the next heartbeat.");
    } else {
        println!("Run {id} is {}.", r.status);
    }
    Ok(())
}

pub async fn apps(ctx: &Ctx) -> CliResult<()> {
    let client = ctx.client()?;
    let apps = client.list_apps().await?;
    if ctx.json() {
        print_json(&json!({ "apps": apps }));
        return Ok(());
    }
    let mut t = Table::new(&["APP", "LATEST", "CREATED", "DESCRIPTION"]);
    for a in &apps {
        t.row(vec![
            a.slug.clone(),
            a.latest_version
                .map(|v| format!("v{v}"))
                .unwrap_or_else(|| "-".into()),
            output::ago(&a.created_at),
            a.description
                .as_deref()
                .map(|d| output::truncate(d, 60))
                .unwrap_or_default(),
        ]);
    }
    t.print_or("No apps yet: deploy one with `minitower deploy DIR`.");
    Ok(())
}

pub async fn versions(ctx: &Ctx, app: &str) -> CliResult<()> {
    let client = ctx.client()?;
    let versions = client.list_versions(app).await?;
    if ctx.json() {
        print_json(&json!({ "versions": versions }));
        return Ok(());
    }
    let mut t = Table::new(&[
        "VERSION", "SHA256", "RUNS", "PRIORITY", "TIMEOUT", "PARAMS", "CREATED",
    ]);
    for v in &versions {
        let params = v
            .params_schema
            .as_ref()
            .and_then(|s| s.get("properties"))
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect::<Vec<_>>().join(","))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "-".into());
        t.row(vec![
            format!("v{}", v.version_no),
            v.artifact_sha256.chars().take(12).collect(),
            job_summary(&v.job),
            match (&v.priority_name, v.priority) {
                (Some(n), _) => n.clone(),
                (None, Some(p)) => p.to_string(),
                (None, None) => "-".into(),
            },
            format!("{}s", v.timeout_seconds),
            params,
            output::ago(&v.created_at),
        ]);
    }
    t.print_or("No versions yet.");
    Ok(())
}

/// One cell for what a version runs: `script main.py`, `command make test`,
/// `git <url>@<ref>`, `binary <url>`, plus `pty` and the limits set.
fn job_summary(job: &minitower_core::job::JobSpec) -> String {
    use minitower_core::job::{Entry, Source};
    let entry = match &job.entry {
        Entry::Script { path } => format!("script {path}"),
        Entry::Command { argv } => format!("command {}", argv.join(" ")),
        Entry::Shell { script } => format!("shell {script}"),
        Entry::Binary { args } => format!("binary {}", args.join(" ")),
    };
    let mut parts = vec![match &job.source {
        Source::Archive => entry,
        Source::Git { url, git_ref, .. } => format!("git {url}@{git_ref}: {entry}"),
        Source::Binary { url, .. } => format!("binary {url}"),
    }];
    if let Some(p) = job.pty {
        parts.push(format!("pty {}x{}", p.cols, p.rows));
    }
    let l = &job.limits;
    let size = minitower_core::job::human;
    if let Some(m) = l.memory {
        parts.push(format!("mem {}", size(m)));
    }
    if let Some(c) = l.cpus {
        parts.push(format!("cpus {c}"));
    }
    if let Some(p) = l.pids {
        parts.push(format!("pids {p}"));
    }
    if let Some(d) = l.disk {
        parts.push(format!("disk {}", size(d)));
    }
    output::truncate(&parts.join(", "), 80)
}
