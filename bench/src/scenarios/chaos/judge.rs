//! The verdict of one backend: the figures, the notes and the details of
//! the report, from what the API, the ground truth and the harness's own
//! account of the HTTP answers say.

use super::workload::AccountInner;
use super::world::{self, Fault};
use super::{metric, truth, Backend, Driven};
use crate::report::{Metric, ScenarioReport};
use crate::Options;
use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

/// Everything one backend's run collected.
pub(super) struct Collected<'a> {
    pub opts: &'a Options,
    pub backend: Backend,
    pub seed: u64,
    pub label: &'a str,
    pub driven: Driven,
    pub truth_text: String,
    pub snap: AccountInner,
    pub alive_after_settle: Vec<u32>,
    pub alive_after_stop: Vec<u32>,
    pub unexpected: Vec<String>,
    pub escalations: usize,
    pub started: Instant,
}

/// The report of one backend.
pub(super) fn report(c: Collected<'_>) -> ScenarioReport {
    let Collected {
        opts,
        backend,
        seed,
        label,
        driven: d,
        truth_text,
        snap,
        alive_after_settle,
        alive_after_stop,
        unexpected,
        escalations,
        started: t0,
    } = c;
    let (gt, executions) = truth::summarize(&truth_text);
    let acked_ids: HashSet<i64> = snap.acked.iter().map(|a| a.id).collect();
    let lost: Vec<i64> = d
        .outcomes
        .iter()
        .filter(|o| o.not_found)
        .map(|o| o.id)
        .collect();
    let stuck: Vec<(i64, String)> = d
        .outcomes
        .iter()
        .filter(|o| !o.not_found && !o.status.is_some_and(|s| s.is_terminal()))
        .map(|o| {
            (
                o.id,
                o.status
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|| o.error.clone().unwrap_or_default()),
            )
        })
        .collect();
    let completed_twice: Vec<i64> = d
        .outcomes
        .iter()
        .filter(|o| o.completed_attempts.len() > 1)
        .map(|o| o.id)
        .collect();
    let missing: i64 = d.outcomes.iter().map(|o| o.missing_lines).sum();
    let duplicated: i64 = d.outcomes.iter().map(|o| o.duplicated_lines).sum();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for o in &d.outcomes {
        let k = o.status.map(|s| s.as_str()).unwrap_or("not found");
        *statuses.entry(k.to_string()).or_default() += 1;
    }
    // A completed attempt must have run its script to the end.
    let completed_without_end: Vec<i64> = d
        .outcomes
        .iter()
        .filter(|o| {
            o.completed_attempts.iter().any(|a| {
                !executions
                    .get(&o.id)
                    .is_some_and(|xs| xs.iter().any(|x| x.attempt == *a && x.ended))
            })
        })
        .map(|o| o.id)
        .collect();
    let executed_not_acked = executions
        .keys()
        .filter(|id| !acked_ids.contains(id))
        .count();
    let server_errors: u64 = snap.server_errors.values().sum();
    let unanswered: u64 = snap.unanswered.values().sum();
    let mut faults: BTreeMap<Fault, usize> = BTreeMap::new();
    for f in &d.done {
        *faults.entry(f.fault).or_default() += 1;
    }

    let mut r = ScenarioReport::new(label);
    let n = |v: usize| v as f64;
    r.metric(Metric::new(metric::ROUNDS, n(d.done.len()), ""));
    r.metric(Metric::new(metric::ACKED, n(snap.acked.len()), ""));
    r.metric(Metric::new(metric::LOST, n(lost.len()), ""));
    r.metric(Metric::new(metric::STUCK, n(stuck.len()), ""));
    r.metric(Metric::new(
        metric::COMPLETED_TWICE,
        n(completed_twice.len()),
        "",
    ));
    r.metric(Metric::new(
        metric::CONCURRENT,
        n(gt.runs_executed_concurrently),
        "",
    ));
    r.metric(Metric::new(
        "longest concurrent execution",
        gt.longest_overlap_ms,
        "ms",
    ));
    r.metric(Metric::new(metric::MISSING, missing as f64, ""));
    r.metric(Metric::new(metric::DUPLICATED, duplicated as f64, ""));
    r.metric(Metric::new(metric::SERVER_ERRORS, server_errors as f64, ""));
    r.metric(Metric::new(
        "completed without a ground-truth end",
        n(completed_without_end.len()),
        "",
    ));
    r.metric(Metric::new(
        "runs whose script ran to its end more than once",
        n(gt.runs_ended_twice),
        "",
    ));
    r.metric(Metric::new(
        "executions killed before their end",
        n(gt.executions_without_end),
        "",
    ));
    r.metric(Metric::new(
        "scripts alive after every run ended",
        n(alive_after_settle.len()),
        "",
    ));
    for s in ["completed", "failed", "cancelled", "dead"] {
        r.metric(Metric::new(
            format!("ended {s}"),
            n(statuses.get(s).copied().unwrap_or(0)),
            "",
        ));
    }
    r.metric(Metric::new(
        "requests without an answer (target down)",
        unanswered as f64,
        "",
    ));
    r.metric(Metric::new(
        "creates not acknowledged",
        snap.creates_not_acked as f64,
        "",
    ));
    r.metric(Metric::new(
        "runs executed without an acknowledged create",
        n(executed_not_acked),
        "",
    ));
    r.metric(Metric::new("settle time", d.settle.as_secs_f64(), "s"));

    let violations = [
        ("lost", lost.len()),
        ("stuck", stuck.len()),
        ("completed twice", completed_twice.len()),
        ("executed concurrently", gt.runs_executed_concurrently),
        ("log lines missing", missing as usize),
        ("log lines duplicated", duplicated as usize),
        ("5xx", server_errors as usize),
        ("completed without end", completed_without_end.len()),
        ("scripts outliving their run", alive_after_settle.len()),
    ];
    let bad: Vec<String> = violations
        .iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    let verdict = if bad.is_empty() {
        "CLEAN: nothing lost, stuck, completed twice or executed concurrently; no missing or \
         duplicated lines; no 5xx"
            .to_string()
    } else {
        format!("FOUND: {}", bad.join(", "))
    };
    r.note(verdict);
    r.note(format!(
        "seed {seed}; {} rounds in {:.0} s ({} runners with concurrency {}, lease TTL {}, \
         reaper every {}); faults: {}",
        d.done.len(),
        d.rounds_time.as_secs_f64(),
        opts.chaos_runners,
        opts.chaos_concurrency,
        world_ttl(opts),
        world_interval(opts),
        faults
            .iter()
            .map(|(f, c)| format!("{f:?} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let created_in: BTreeMap<i64, usize> = snap.acked.iter().map(|a| (a.id, a.round)).collect();
    let fault_of = |round: usize| -> String {
        d.done
            .iter()
            .filter(|f| f.round == round || f.round == round + 1)
            .map(|f| format!("round {}: {:?} {}", f.round, f.fault, f.target))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for o in gt.overlaps.iter().take(10) {
        let when = created_in
            .get(&o.run)
            .map(|r| format!(" (faults after its create: {})", fault_of(*r)))
            .unwrap_or_default();
        r.note(format!(
            "run {}: attempts {} (pid {}) and {} (pid {}) ran at the same time for {:.0} ms{}{when}",
            o.run,
            o.first_attempt,
            o.first_pid,
            o.second_attempt,
            o.second_pid,
            o.overlap_ms,
            if o.first_ended {
                ""
            } else {
                " (the first never ended: bounded by its last tick)"
            }
        ));
    }
    if !lost.is_empty() {
        r.note(format!("lost runs: {lost:?}"));
    }
    if !stuck.is_empty() {
        r.note(format!("stuck runs: {stuck:?}"));
    }
    if !completed_twice.is_empty() {
        r.note(format!("runs completed twice: {completed_twice:?}"));
    }
    if server_errors > 0 {
        r.note(format!("5xx by route: {:?}", snap.server_errors));
        for e in snap.server_error_samples.iter().take(5) {
            // The fault going on then, or the last one before.
            let fault = d
                .done
                .iter()
                .rev()
                .find(|f| f.at_s - f.down_ms / 1000.0 <= e.at_s)
                .map(|f| {
                    let from = f.at_s - f.down_ms / 1000.0;
                    if e.at_s <= f.at_s {
                        format!(
                            "during round {}: {:?} {} ({:.1} s in)",
                            f.round,
                            f.fault,
                            f.target,
                            e.at_s - from
                        )
                    } else {
                        format!(
                            "{:.1} s after round {}: {:?} {} ended",
                            e.at_s - f.at_s,
                            f.round,
                            f.fault,
                            f.target
                        )
                    }
                })
                .unwrap_or_else(|| "before the first fault".into());
            r.note(format!("5xx at {:.1} s, {fault}: {}", e.at_s, e.what));
        }
    }
    if !unexpected.is_empty() {
        r.note(format!(
            "processes that died without being killed (restarted): {unexpected:?}"
        ));
    }
    if !alive_after_stop.is_empty() {
        r.note(format!(
            "{} script processes were still running after every runner stopped (killed by pid): \
             {alive_after_stop:?}",
            alive_after_stop.len()
        ));
    }
    r.detail("seed", seed);
    r.detail("backend", backend.name());
    r.detail("faults", &d.done);
    r.detail("ground_truth", &gt);
    r.detail("lost", &lost);
    r.detail("stuck", &stuck);
    r.detail("completed_twice", &completed_twice);
    r.detail("completed_without_end", &completed_without_end);
    r.detail("statuses", &statuses);
    r.detail("server_errors", &snap.server_errors);
    r.detail("server_error_samples", &snap.server_error_samples);
    r.detail("client_errors", &snap.client_errors);
    r.detail("unanswered", &snap.unanswered);
    r.detail("requests", snap.requests);
    r.detail("unexpected_exits", &unexpected);
    r.detail("term_escalations", escalations);
    r.detail("scripts_alive_after_settle", &alive_after_settle);
    r.detail("scripts_alive_after_stop", &alive_after_stop);
    r.detail(
        "runs_with_log_problems",
        d.outcomes
            .iter()
            .filter(|o| o.missing_lines > 0 || o.duplicated_lines > 0)
            .collect::<Vec<_>>(),
    );
    r.detail("wall_seconds", t0.elapsed().as_secs_f64());
    eprintln!("[{label}] {}", r.notes[0]);
    r
}

fn world_ttl(opts: &Options) -> String {
    env_or(opts, "MINITOWER_LEASE_TTL", world::LEASE_TTL)
}

fn world_interval(opts: &Options) -> String {
    env_or(
        opts,
        "MINITOWER_EXPIRY_CHECK_INTERVAL",
        world::EXPIRY_CHECK_INTERVAL,
    )
}

fn env_or(opts: &Options, key: &str, default: &str) -> String {
    opts.server_env
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| default.to_string())
}
