//! `minitower schedules create|list|pause|resume|delete`.

use super::run::{build_input, parse_pairs, typed_params};
use super::Ctx;
use crate::cli::{ScheduleCreateArgs, SchedulesCmd};
use crate::error::CliResult;
use crate::output::{print_json, Table};
use minitower_core::api::{CreateScheduleRequest, Schedule, UpdateScheduleRequest};
use serde_json::{json, Map};

pub async fn schedules(ctx: &Ctx, cmd: SchedulesCmd) -> CliResult<()> {
    match cmd {
        SchedulesCmd::Create(a) => create(ctx, a).await,
        SchedulesCmd::List(a) => list(ctx, &a.app).await,
        SchedulesCmd::Pause(r) => set_enabled(ctx, r.id, false).await,
        SchedulesCmd::Resume(r) => set_enabled(ctx, r.id, true).await,
        SchedulesCmd::Delete(r) => {
            ctx.client()?.delete_schedule(r.id).await?;
            if ctx.json() {
                print_json(&json!({ "deleted": r.id }));
            } else {
                println!("Schedule {} deleted.", r.id);
            }
            Ok(())
        }
    }
}

async fn create(ctx: &Ctx, a: ScheduleCreateArgs) -> CliResult<()> {
    // Usage errors in `-p` and `--input` come before any request.
    parse_pairs(&a.params)?;
    build_input(a.input.as_deref(), Map::new())?;
    let client = ctx.client()?;
    // `-p` is typed by the version the schedule runs now; the schedule
    // itself follows the latest version unless --version pins one.
    let (typed, _) = typed_params(&client, &a.app, a.version, &a.params).await?;
    let req = CreateScheduleRequest {
        cron: a.cron,
        timezone: a.timezone,
        input: build_input(a.input.as_deref(), typed)?,
        version_no: a.version,
        environment: a.environment,
        enabled: a.paused.then_some(false),
    };
    let s = client.create_schedule(&a.app, &req).await?;
    if ctx.json() {
        print_json(&s);
        return Ok(());
    }
    println!(
        "Schedule {} created: {} runs {:?} in {}.",
        s.id, s.app, s.cron, s.timezone
    );
    print_next(&s);
    Ok(())
}

/// The next fire times on the schedule's wall clock.
fn print_next(s: &Schedule) {
    if !s.enabled {
        println!("It is paused: `minitower schedules resume {}`.", s.id);
        return;
    }
    println!("Next runs ({}):", s.timezone);
    for t in &s.next_runs_local {
        println!("  {t}");
    }
}

async fn list(ctx: &Ctx, app: &str) -> CliResult<()> {
    let schedules = ctx.client()?.list_schedules(app).await?;
    if ctx.json() {
        print_json(&json!({ "schedules": schedules }));
        return Ok(());
    }
    let mut t = Table::new(&[
        "ID", "CRON", "TIMEZONE", "STATE", "VERSION", "SOURCE", "NEXT RUN", "INPUT",
    ]);
    for s in &schedules {
        t.row(vec![
            s.id.to_string(),
            s.cron.clone(),
            s.timezone.clone(),
            if s.enabled { "active" } else { "paused" }.into(),
            s.version_no
                .map(|v| format!("v{v}"))
                .unwrap_or_else(|| "latest".into()),
            s.source.as_str().into(),
            s.next_runs_local
                .first()
                .cloned()
                .unwrap_or_else(|| "-".into()),
            crate::output::truncate(&s.input.to_string(), 40),
        ]);
    }
    t.print_or(&format!(
        "No schedules: add one to the Towerfile or `minitower schedules create {app} --cron ...`."
    ));
    Ok(())
}

async fn set_enabled(ctx: &Ctx, id: i64, enabled: bool) -> CliResult<()> {
    let req = UpdateScheduleRequest {
        enabled: Some(enabled),
        ..Default::default()
    };
    let s = ctx.client()?.update_schedule(id, &req).await?;
    if ctx.json() {
        print_json(&s);
        return Ok(());
    }
    let state = if enabled { "resumed" } else { "paused" };
    println!("Schedule {id} ({} {:?}) {state}.", s.app, s.cron);
    if enabled {
        print_next(&s);
    }
    Ok(())
}
