//! `minitower run` and `minitower logs`: start runs and follow their logs
//! live over SSE, surviving broken connections.

use super::Ctx;
use crate::cli::{LogsArgs, RunArgs};
use crate::error::{CliError, CliResult};
use crate::output::{self, print_json, print_json_line};
use futures::StreamExt;
use minitower_client::{Client, LogEvent};
use minitower_core::api::{CreateRunRequest, LogLine, Run, TimeoutSpec};
use minitower_core::job::{LimitsInput, PriorityInput, PtyInput, PtySize, SizeInput};
use minitower_core::{params, RunStatus};
use serde_json::{Map, Value};
use std::io::Write;
use std::time::Duration;

/// Consecutive failed reconnects before giving up on a stream.
const MAX_RECONNECTS: u32 = 30;

/// Splits each `-p key=value` (the value may hold `=`).
pub fn parse_pairs(params: &[String]) -> CliResult<Vec<(String, String)>> {
    params
        .iter()
        .map(|p| {
            p.split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| CliError::Usage(format!("-p expects KEY=VALUE, got {p:?}")))
        })
        .collect()
}

/// Builds the run input: `--input` object, then the typed `-p` values over it.
pub fn build_input(input: Option<&str>, params: Map<String, Value>) -> CliResult<Option<Value>> {
    let mut obj = match input {
        None => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(CliError::Usage("--input must be a JSON object".into())),
            Err(e) => return Err(CliError::Usage(format!("--input is not valid JSON: {e}"))),
        },
    };
    obj.extend(params);
    Ok(if obj.is_empty() && input.is_none() {
        None
    } else {
        Some(Value::Object(obj))
    })
}

/// Types `-p` values by the version's schema, fetched first so that a bad
/// value or an unknown name is refused before a run exists. Returns the
/// typed values and the version they were checked against, which the run
/// then pins (a deploy in between cannot change the rules under it).
/// `schedules create` types its `-p` the same way.
pub async fn typed_params(
    client: &Client,
    app: &str,
    version: Option<i64>,
    params: &[String],
) -> CliResult<(Map<String, Value>, Option<i64>)> {
    let pairs = parse_pairs(params)?;
    if pairs.is_empty() {
        return Ok((Map::new(), version));
    }
    let wanted = version;
    let version = match client.get_version(app, wanted).await {
        Ok(v) => v,
        Err(e) if e.status() == Some(404) && wanted.is_none() => {
            return Err(did_you_mean(client, app, e).await)
        }
        Err(e) => return Err(e.into()),
    };
    let typed = params::typed_input(version.params_schema.as_ref(), &pairs).map_err(|e| {
        CliError::Usage(match &e {
            params::InputError::Unknown { name, valid } => {
                let hint = closest(name, valid.iter().map(String::as_str))
                    .map(|c| format!(" (did you mean {c}?)"))
                    .unwrap_or_default();
                format!("{e}{hint}")
            }
            params::InputError::Invalid { .. } => e.to_string(),
        })
    })?;
    Ok((typed, Some(version.version_no)))
}

/// The job flags (`--priority`, `--pty`, `--no-pty`, `--memory`, `--cpus`,
/// `--pids`, `--disk`, `--ref`) as request fields, checked with the
/// server's own rules so a typo is refused before any request.
fn job_flags(
    args: &RunArgs,
) -> CliResult<(Option<PriorityInput>, Option<PtyInput>, Option<LimitsInput>)> {
    let usage = |flag: &str, e: String| CliError::Usage(format!("--{flag}: {e}"));
    let priority = args
        .priority
        .as_deref()
        .map(|p| {
            let input = match p.trim().parse::<i64>() {
                Ok(n) => PriorityInput::Number(n.into()),
                Err(_) => PriorityInput::Name(p.trim().to_ascii_lowercase().replace('-', "_")),
            };
            input.resolve().map_err(|e| usage("priority", e))?;
            Ok::<_, CliError>(input)
        })
        .transpose()?;
    let pty = match (args.no_pty, args.pty.as_deref()) {
        (true, _) => Some(PtyInput::On(false)),
        (false, None) => None,
        (false, Some("on")) => Some(PtyInput::On(true)),
        (false, Some(size)) => {
            let parsed = size
                .split_once('x')
                .and_then(|(c, r)| Some((c.trim().parse().ok()?, r.trim().parse().ok()?)));
            let Some((cols, rows)) = parsed else {
                return Err(usage(
                    "pty",
                    format!("{size:?} is not COLSxROWS, e.g. 120x40"),
                ));
            };
            let input = PtyInput::Size(PtySize { cols, rows });
            input.resolve().map_err(|e| usage("pty", e))?;
            Some(input)
        }
    };
    let limits = LimitsInput {
        memory: args.memory.clone().map(SizeInput::Text),
        cpus: args.cpus,
        pids: args.pids,
        disk: args.disk.clone().map(SizeInput::Text),
    };
    let limits = if limits == LimitsInput::default() {
        None
    } else {
        limits
            .resolve()
            .map_err(|e| CliError::Usage(format!("--{e}").replace("--limits.", "--")))?;
        Some(limits)
    };
    Ok((priority, pty, limits))
}

pub async fn run(ctx: &Ctx, args: RunArgs) -> CliResult<()> {
    // Usage errors in `-p`, `--input` and the job flags come before any request.
    parse_pairs(&args.params)?;
    let (priority, pty, limits) = job_flags(&args)?;
    build_input(args.input.as_deref(), Map::new())?;
    let client = ctx.client()?;
    let (typed, version_no) = typed_params(&client, &args.app, args.version, &args.params).await?;
    let input = build_input(args.input.as_deref(), typed)?;
    let req = CreateRunRequest {
        input,
        version_no,
        priority,
        pty,
        limits,
        git_ref: args.git_ref.clone(),
        git_url: args.git_url.clone(),
        max_retries: args.max_retries,
        environment: args.environment.clone(),
        retries: args.retries,
        retry_delay: args
            .retry_delay
            .clone()
            .map(minitower_core::api::RetryDelaySpec::Text),
        timeout: args.timeout.clone().map(TimeoutSpec::Text),
    };
    let (run, created) = match client
        .create_run(&args.app, &req, args.idempotency_key.as_deref())
        .await
    {
        Ok(r) => r,
        Err(e) if e.status() == Some(404) && args.version.is_none() => {
            return Err(did_you_mean(&client, &args.app, e).await)
        }
        Err(e) => return Err(e.into()),
    };
    if args.detach {
        if ctx.json() {
            print_json(&run);
        } else {
            println!(
                "Run {} queued: {} v{} #{} ({}). Follow it with `minitower logs {} -f`.",
                run.id, run.app, run.version_no, run.run_no, run.status, run.id
            );
        }
        return Ok(());
    }
    if !ctx.json() {
        let what = if created {
            run.status.to_string()
        } else {
            format!("{} (already created with this idempotency key)", run.status)
        };
        say(format_args!(
            "Run {} {what}: {} v{} #{}. Following logs; Ctrl-C stops following, the run continues.",
            run.id, run.app, run.version_no, run.run_no
        ));
    }
    follow_to_end(ctx, &client, &run, 0).await
}

/// A line on stderr; a closed stderr is ignored (never a panic).
fn say(args: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// The 404 of `run APP` for an app that does not exist, with the closest
/// existing slug when one is near.
pub async fn did_you_mean(
    client: &Client,
    app: &str,
    e: minitower_client::ClientError,
) -> CliError {
    let Ok(apps) = client.list_apps().await else {
        return e.into();
    };
    if apps.iter().any(|a| a.slug == app) {
        return e.into(); // the app exists: the 404 is about something else
    }
    let first = CliError::from(e).to_string();
    match closest(app, apps.iter().map(|a| a.slug.as_str())) {
        Some(best) => CliError::NotFound(format!(
            "{first}; did you mean {best:?}? (`minitower apps` lists them)"
        )),
        None => CliError::NotFound(format!(
            "{first} (`minitower apps` lists them; `minitower deploy DIR` creates one)"
        )),
    }
}

/// The candidate nearest to `wanted` by edit distance, if near enough.
pub fn closest<'a>(wanted: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::damerau_levenshtein(wanted, c), c))
        .filter(|(d, c)| *d <= (wanted.len().max(c.len()) / 3).max(1) + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// What the CLI tells about a followed run's progress: when it really
/// starts, how long it queued, and that no runner could take it.
struct Progress {
    run_id: i64,
    started: std::sync::atomic::AtomicBool,
}

impl Progress {
    /// Says "started" once (from a status poll or the first log line).
    fn started(&self, waited: Option<chrono::Duration>) {
        if self.started.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        match waited {
            Some(w) if w.num_milliseconds() >= 1000 => say(format_args!(
                "Run {} started after {} in the queue.",
                self.run_id,
                output::duration(w)
            )),
            _ => say(format_args!("Run {} started.", self.run_id)),
        }
    }
}

/// Polls the run while it waits to start; warns once when no runner of its
/// environment is online (the run detail's `waiting_for_runner`).
async fn watch_start(client: Client, run: Run, progress: std::sync::Arc<Progress>) {
    let mut warned = false;
    let mut checks = 0u32;
    loop {
        let Ok(detail) = client.get_run(run.id).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let waiting = detail.waiting_for_runner;
        let r = detail.run;
        if !matches!(r.status, RunStatus::Queued | RunStatus::Leased) {
            let waited = r.started_at.map(|s| s - r.queued_at);
            if r.started_at.is_some() {
                progress.started(waited);
            }
            return;
        }
        // After about a second in the queue, so a runner about to take it
        // is not reported missing.
        if !warned && checks >= 3 && waiting {
            say(format_args!(
                "Note: no runner online for environment {:?}; the run waits in the queue until one starts.",
                r.environment
            ));
            warned = true;
        }
        checks += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub async fn logs(ctx: &Ctx, args: LogsArgs) -> CliResult<()> {
    let client = ctx.client()?;
    if args.follow {
        let run = client.get_run(args.run).await?.run;
        return follow_to_end(ctx, &client, &run, 0).await;
    }
    // Make sure a missing run is a 404, not an empty list.
    client.get_run(args.run).await?;
    let mut after = 0;
    let mut attempt = 0;
    loop {
        let page = client.logs(args.run, after).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for l in &page {
            if !ctx.json() {
                attempt_separator(&mut attempt, l);
            }
            print_line(ctx.json(), l);
        }
    }
    Ok(())
}

/// Follows until the run ends, then reports; Ctrl-C stops following.
async fn follow_to_end(ctx: &Ctx, client: &Client, run: &Run, after_seq: i64) -> CliResult<()> {
    let json = ctx.json();
    let progress = std::sync::Arc::new(Progress {
        run_id: run.id,
        started: (!matches!(run.status, RunStatus::Queued | RunStatus::Leased)).into(),
    });
    let watcher = (!json && !progress.started.load(std::sync::atomic::Ordering::SeqCst))
        .then(|| tokio::spawn(watch_start(client.clone(), run.clone(), progress.clone())));
    let mut attempt = 0;
    let mut sink = |l: &LogLine| {
        if !json {
            progress.started(None);
            attempt_separator(&mut attempt, l);
        }
        print_line(json, l)
    };
    let followed = tokio::select! {
        s = follow(client, run.id, after_seq, &mut sink) => s,
        _ = tokio::signal::ctrl_c() => Err(CliError::Interrupted),
    };
    if let Some(w) = watcher {
        w.abort();
    }
    let status = match followed {
        Ok(s) => s,
        Err(CliError::Interrupted) => {
            if !json {
                say(format_args!("\nStopped following; run {} continues (`minitower logs {} -f` to resume, `minitower cancel {}` to stop it).", run.id, run.id, run.id));
            }
            return Err(CliError::Interrupted);
        }
        Err(e) => return Err(e),
    };
    let detail = client.get_run(run.id).await?;
    if json {
        print_json_line(&detail);
    } else {
        let r = &detail.run;
        let took = match (r.started_at, r.finished_at) {
            (Some(s), Some(f)) => format!(" in {}", output::duration(f - s)),
            _ => String::new(),
        };
        let mut extra = Vec::new();
        if let Some(c) = r.exit_code {
            extra.push(format!("exit code {c}"));
        }
        if let Some(m) = &r.error_message {
            extra.push(m.clone());
        }
        if r.retry_count > 0 {
            extra.push(format!("{} retries", r.retry_count));
        }
        if let Some(s) = r.started_at {
            let waited = s - r.queued_at;
            if waited.num_milliseconds() >= 1000 {
                extra.push(format!("queued {}", output::duration(waited)));
            }
        }
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(" ({})", extra.join(", "))
        };
        say(format_args!("Run {} {}{took}{extra}", r.id, status));
    }
    if status == RunStatus::Completed {
        Ok(())
    } else {
        Err(CliError::RunEnded { id: run.id, status })
    }
}

/// Prints `--- attempt N ---` (stderr) when the lines of a retried run pass
/// from one attempt to the next.
fn attempt_separator(current: &mut i64, l: &LogLine) {
    if let Some(sep) = separator(current, l) {
        say(format_args!("{sep}"));
    }
}

/// The separator due before `l`, given the attempt of the previous line.
fn separator(current: &mut i64, l: &LogLine) -> Option<String> {
    let sep = (*current != 0 && l.attempt_no != *current)
        .then(|| format!("--- attempt {} ---", l.attempt_no));
    *current = l.attempt_no;
    sep
}

/// Streams a run's logs until its terminal status, reconnecting after
/// `after_seq = last seen` when the stream breaks.
pub async fn follow(
    client: &Client,
    run_id: i64,
    after_seq: i64,
    sink: &mut (dyn FnMut(&LogLine) + Send),
) -> CliResult<RunStatus> {
    let mut last = after_seq;
    let mut failures = 0u32;
    loop {
        let mut last_error: Option<CliError> = None;
        match client.stream_logs(run_id, last).await {
            Ok(stream) => {
                let mut stream = std::pin::pin!(stream);
                while let Some(ev) = stream.next().await {
                    match ev {
                        Ok(LogEvent::Log(l)) => {
                            if l.seq > last {
                                sink(&l);
                                last = l.seq;
                            }
                            failures = 0;
                        }
                        Ok(LogEvent::End(status)) => return Ok(status),
                        Err(e) => {
                            last_error = Some(e.into());
                            break;
                        }
                    }
                }
            }
            Err(e) if !e.is_transient() => return Err(e.into()),
            Err(e) => last_error = Some(e.into()),
        }
        // The stream ended without an `end` event: the connection broke.
        failures += 1;
        if failures > MAX_RECONNECTS {
            return Err(last_error
                .unwrap_or_else(|| CliError::Other("the log stream keeps closing early".into())));
        }
        // If the run is over, the stored logs are complete: drain them.
        if let Ok(detail) = client.get_run(run_id).await {
            if detail.run.status.is_terminal() {
                loop {
                    let page = client.logs(run_id, last).await?;
                    let Some(l) = page.last() else { break };
                    last = l.seq;
                    page.iter().for_each(&mut *sink);
                }
                return Ok(detail.run.status);
            }
        }
        let backoff = Duration::from_millis(200 * u64::from(failures.min(10)));
        tokio::time::sleep(backoff).await;
    }
}

mod print;
use print::print_line;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod input_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_merge_over_input() {
        let pairs = parse_pairs(&["name=b".into(), "x=1=2".into()]).unwrap();
        assert_eq!(pairs[1], ("x".to_string(), "1=2".to_string()));
        let typed = params::typed_input(None, &pairs).unwrap();
        let v = build_input(Some(r#"{"name":"a","n":1}"#), typed).unwrap();
        assert_eq!(v, Some(json!({"name": "b", "n": 1, "x": "1=2"})));
        assert_eq!(build_input(None, Map::new()).unwrap(), None);
        assert_eq!(
            build_input(Some("{}"), Map::new()).unwrap(),
            Some(json!({}))
        );
        assert!(matches!(
            build_input(Some("[1]"), Map::new()),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            parse_pairs(&["novalue".into()]),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            parse_pairs(&["=v".into()]),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn a_new_attempt_gets_a_separator() {
        let line = |attempt_no| LogLine {
            seq: 1,
            attempt_no,
            stream: "stdout".into(),
            line: "x".into(),
            logged_at: chrono::Utc::now(),
        };
        let mut cur = 0;
        let seps: Vec<Option<String>> = [1, 1, 2, 2, 3]
            .into_iter()
            .map(|a| separator(&mut cur, &line(a)))
            .collect();
        assert_eq!(
            seps,
            vec![
                None,
                None,
                Some("--- attempt 2 ---".into()),
                None,
                Some("--- attempt 3 ---".into())
            ]
        );
    }

    #[test]
    fn closest_slug() {
        let apps = ["hello", "countdown", "with-deps"];
        assert_eq!(closest("helo", apps.into_iter()), Some("hello"));
        assert_eq!(closest("countdwn", apps.into_iter()), Some("countdown"));
        assert_eq!(closest("zzz", apps.into_iter()), None);
    }
}
