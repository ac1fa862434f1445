//! The ground truth the workload's scripts write, and what it says about
//! executions that overlapped.
//!
//! Every script appends, with `O_APPEND` and an fsync per line:
//! `start <run> <attempt> <pid> <time_ns>` when it starts,
//! `tick <run> <attempt> <time_ns>` after each of its log lines (about every
//! 100 ms) and `end <run> <attempt> <pid> <time_ns>` when it is done; the
//! times are `time.time_ns()` on the one host, so one clock. An execution
//! killed midway has no `end`: its last tick bounds it (it died less than a
//! tick interval later, so overlaps shorter than that can be missed, never
//! invented).

use serde::Serialize;
use std::collections::BTreeMap;

/// One line of the ground truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Start {
        run: i64,
        attempt: i64,
        pid: u32,
        t: i64,
    },
    Tick {
        run: i64,
        attempt: i64,
        t: i64,
    },
    End {
        run: i64,
        attempt: i64,
        pid: u32,
        t: i64,
    },
}

/// Parses the file; lines that do not parse are counted, not fatal.
pub fn parse(text: &str) -> (Vec<Event>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
        let ev = match (f.first().copied(), f.len()) {
            (Some("start"), 5) | (Some("end"), 5) => match (num(1), num(2), num(3), num(4)) {
                (Some(run), Some(attempt), Some(pid), Some(t)) if pid >= 0 => {
                    let pid = pid as u32;
                    Some(if f[0] == "start" {
                        Event::Start {
                            run,
                            attempt,
                            pid,
                            t,
                        }
                    } else {
                        Event::End {
                            run,
                            attempt,
                            pid,
                            t,
                        }
                    })
                }
                _ => None,
            },
            (Some("tick"), 4) => match (num(1), num(2), num(3)) {
                (Some(run), Some(attempt), Some(t)) => Some(Event::Tick { run, attempt, t }),
                _ => None,
            },
            _ => None,
        };
        match ev {
            Some(e) => out.push(e),
            None if line.trim().is_empty() => {}
            None => bad += 1,
        }
    }
    (out, bad)
}

/// One execution of an attempt's script: from its `start` to its `end`, or
/// to its last tick when it never ended.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Execution {
    pub attempt: i64,
    pub pid: u32,
    pub start_ns: i64,
    /// `end`, else the last tick, else the start.
    pub last_ns: i64,
    pub ended: bool,
}

/// The executions of every run, by run id, in order of start.
///
/// Ticks carry no pid: a tick belongs to the execution of its attempt that
/// started last before it (two executions of one attempt would be a finding
/// of their own, see [`Summary::attempts_started_twice`]).
pub fn executions(events: &[Event]) -> BTreeMap<i64, Vec<Execution>> {
    let mut evs: Vec<&Event> = events.iter().collect();
    let time = |e: &Event| match *e {
        Event::Start { t, .. } | Event::Tick { t, .. } | Event::End { t, .. } => t,
    };
    // Starts first at equal times, ends last.
    let rank = |e: &Event| match e {
        Event::Start { .. } => 0,
        Event::Tick { .. } => 1,
        Event::End { .. } => 2,
    };
    evs.sort_by_key(|e| (time(e), rank(e)));
    let mut out: BTreeMap<i64, Vec<Execution>> = BTreeMap::new();
    for e in evs {
        match *e {
            Event::Start {
                run,
                attempt,
                pid,
                t,
            } => out.entry(run).or_default().push(Execution {
                attempt,
                pid,
                start_ns: t,
                last_ns: t,
                ended: false,
            }),
            Event::Tick { run, attempt, t } => {
                if let Some(x) = out
                    .get_mut(&run)
                    .and_then(|v| v.iter_mut().rev().find(|x| x.attempt == attempt))
                {
                    x.last_ns = x.last_ns.max(t);
                }
            }
            Event::End {
                run,
                attempt,
                pid,
                t,
            } => {
                if let Some(x) = out.get_mut(&run).and_then(|v| {
                    v.iter_mut()
                        .rev()
                        .find(|x| x.attempt == attempt && x.pid == pid)
                }) {
                    x.last_ns = x.last_ns.max(t);
                    x.ended = true;
                }
            }
        }
    }
    out
}

/// Two executions of one run that ran at the same time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Overlap {
    pub run: i64,
    pub first_attempt: i64,
    pub second_attempt: i64,
    pub first_pid: u32,
    pub second_pid: u32,
    /// How long both ran as far as the ground truth shows (0 when the
    /// later one had not ticked yet when the earlier one last did).
    pub overlap_ms: f64,
    /// Whether the first one had ended (else it was bounded by its last tick).
    pub first_ended: bool,
}

/// Every pair of executions of the same run where the later one started
/// before the earlier one's last sign of life (its `end` or last tick).
pub fn overlaps(runs: &BTreeMap<i64, Vec<Execution>>) -> Vec<Overlap> {
    let mut out = Vec::new();
    for (run, xs) in runs {
        // `executions` lists them in order of start.
        for (i, a) in xs.iter().enumerate() {
            for b in &xs[i + 1..] {
                let from = b.start_ns;
                let to = a.last_ns.min(b.last_ns).max(from);
                if b.start_ns < a.last_ns {
                    out.push(Overlap {
                        run: *run,
                        first_attempt: a.attempt,
                        second_attempt: b.attempt,
                        first_pid: a.pid,
                        second_pid: b.pid,
                        overlap_ms: (to - from) as f64 / 1e6,
                        first_ended: a.ended,
                    });
                }
            }
        }
    }
    out
}

/// What the ground truth says, in figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub lines: usize,
    pub malformed_lines: usize,
    pub runs: usize,
    pub executions: usize,
    pub executions_without_end: usize,
    /// Runs with at least one pair of overlapping executions.
    pub runs_executed_concurrently: usize,
    pub longest_overlap_ms: f64,
    /// One attempt number started by two processes.
    pub attempts_started_twice: usize,
    /// Runs whose script ran to its end more than once.
    pub runs_ended_twice: usize,
    pub overlaps: Vec<Overlap>,
}

/// Analyses the ground-truth text.
pub fn summarize(text: &str) -> (Summary, BTreeMap<i64, Vec<Execution>>) {
    let (events, malformed_lines) = parse(text);
    let runs = executions(&events);
    let ov = overlaps(&runs);
    let mut concurrent: Vec<i64> = ov.iter().map(|o| o.run).collect();
    concurrent.dedup();
    let mut s = Summary {
        lines: events.len() + malformed_lines,
        malformed_lines,
        runs: runs.len(),
        executions: runs.values().map(Vec::len).sum(),
        executions_without_end: runs.values().flatten().filter(|x| !x.ended).count(),
        runs_executed_concurrently: concurrent.len(),
        longest_overlap_ms: ov.iter().map(|o| o.overlap_ms).fold(0.0, f64::max),
        ..Default::default()
    };
    for xs in runs.values() {
        let mut attempts: Vec<i64> = xs.iter().map(|x| x.attempt).collect();
        attempts.sort_unstable();
        let n = attempts.len();
        attempts.dedup();
        s.attempts_started_twice += n - attempts.len();
        if xs.iter().filter(|x| x.ended).count() > 1 {
            s.runs_ended_twice += 1;
        }
    }
    s.overlaps = ov;
    (s, runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[test]
    fn parses_and_skips_garbage() {
        let text = "start 1 1 100 1000\ntick 1 1 2000\nend 1 1 100 3000\nstart 1\n\nbogus x y\n";
        let (ev, bad) = parse(text);
        assert_eq!(ev.len(), 3);
        assert_eq!(bad, 2);
        assert_eq!(
            ev[2],
            Event::End {
                run: 1,
                attempt: 1,
                pid: 100,
                t: 3000
            }
        );
    }

    #[test]
    fn sequential_attempts_do_not_overlap() {
        // attempt 1 killed after its tick at 500 ms; attempt 2 starts at 600 ms
        let text = format!(
            "start 7 1 10 {}\ntick 7 1 {}\nstart 7 2 11 {}\ntick 7 2 {}\nend 7 2 11 {}\n",
            0,
            500 * MS,
            600 * MS,
            700 * MS,
            800 * MS
        );
        let (s, runs) = summarize(&text);
        assert_eq!(s.runs_executed_concurrently, 0);
        assert_eq!(s.executions, 2);
        assert_eq!(s.executions_without_end, 1);
        assert_eq!(runs[&7][0].last_ns, 500 * MS);
        assert!(runs[&7][1].ended);
    }

    #[test]
    fn an_orphan_still_ticking_overlaps_the_retry() {
        // attempt 1's runner died; its script ticks on until 4 s, attempt 2 starts at 3 s
        let mut text = format!("start 3 1 20 {}\n", 0);
        for i in 1..=40 {
            text.push_str(&format!("tick 3 1 {}\n", i * 100 * MS));
        }
        text.push_str(&format!("end 3 1 20 {}\n", 4000 * MS));
        text.push_str(&format!(
            "start 3 2 21 {}\ntick 3 2 {}\nend 3 2 21 {}\n",
            3000 * MS,
            3100 * MS,
            5000 * MS
        ));
        // an unrelated run, no overlap
        text.push_str(&format!("start 4 1 30 {}\nend 4 1 30 {}\n", 0, 10 * MS));
        let (s, _) = summarize(&text);
        assert_eq!(s.runs_executed_concurrently, 1);
        assert_eq!(s.runs_ended_twice, 1);
        assert_eq!(s.overlaps.len(), 1);
        let o = &s.overlaps[0];
        assert_eq!((o.run, o.first_attempt, o.second_attempt), (3, 1, 2));
        assert!((o.overlap_ms - 1000.0).abs() < 1e-6, "{o:?}");
        assert!(o.first_ended);
    }

    #[test]
    fn interleaved_lines_of_several_runs() {
        // ticks of run 5 attempt 1 arrive after run 5 attempt 2 started: overlap by ticks alone
        let text = format!(
            "start 5 1 1 {}\nstart 6 1 2 {}\nstart 5 2 3 {}\ntick 5 1 {}\ntick 6 1 {}\n",
            0,
            MS,
            2 * MS,
            9 * MS,
            10 * MS
        );
        let (s, runs) = summarize(&text);
        assert_eq!(s.runs_executed_concurrently, 1);
        assert_eq!(s.longest_overlap_ms, 0.0);
        // attempt 2 has no ticks, yet started before attempt 1's last tick
        assert_eq!(runs[&5][0].last_ns, 9 * MS);
        assert_eq!(runs[&5][1].last_ns, 2 * MS);
    }

    #[test]
    fn one_attempt_started_by_two_processes() {
        let text = "start 9 1 1 0\nend 9 1 1 10\nstart 9 1 2 20\nend 9 1 2 30\n";
        let (s, _) = summarize(text);
        assert_eq!(s.attempts_started_twice, 1);
        assert_eq!(s.runs_executed_concurrently, 0);
    }
}
