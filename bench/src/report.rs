//! What a benchmark run produces: a Markdown table on stdout and the same
//! figures (plus details) as JSON. Goals are shown next to the figures for
//! the reader; nothing here ever fails on a time.

use serde::Serialize;
use serde_json::Value;

/// How a figure compares with its goal.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Cmp {
    /// Lower is better: the goal is met when value < target.
    Below,
    /// Higher is better: the goal is met when value >= target.
    AtLeast,
}

/// A target a figure is compared with.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Goal {
    pub cmp: Cmp,
    pub target: f64,
}

impl Goal {
    /// Goal "under `target`".
    pub fn below(target: f64) -> Goal {
        Goal {
            cmp: Cmp::Below,
            target,
        }
    }
    /// Goal "at least `target`".
    pub fn at_least(target: f64) -> Goal {
        Goal {
            cmp: Cmp::AtLeast,
            target,
        }
    }
    /// Whether `value` meets the goal.
    pub fn met(&self, value: f64) -> bool {
        match self.cmp {
            Cmp::Below => value < self.target,
            Cmp::AtLeast => value >= self.target,
        }
    }
}

/// One figure of a scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goal: Option<Goal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goal_met: Option<bool>,
}

impl Metric {
    /// A figure without a goal.
    pub fn new(name: impl Into<String>, value: f64, unit: &str) -> Metric {
        Metric {
            name: name.into(),
            value,
            unit: unit.into(),
            goal: None,
            goal_met: None,
        }
    }
    /// The same figure with a goal.
    pub fn goal(mut self, goal: Goal) -> Metric {
        self.goal_met = Some(goal.met(self.value));
        self.goal = Some(goal);
        self
    }
}

/// Everything one scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub scenario: String,
    pub metrics: Vec<Metric>,
    /// Notes for the reader (what was measured how, caveats).
    pub notes: Vec<String>,
    /// Raw figures and breakdowns beyond the table.
    pub details: Value,
}

impl ScenarioReport {
    /// An empty report for `scenario`.
    pub fn new(scenario: &str) -> ScenarioReport {
        ScenarioReport {
            scenario: scenario.into(),
            metrics: Vec::new(),
            notes: Vec::new(),
            details: Value::Object(Default::default()),
        }
    }
    /// Adds a figure.
    pub fn metric(&mut self, m: Metric) {
        self.metrics.push(m);
    }
    /// Adds a note.
    pub fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }
    /// Sets a detail field.
    pub fn detail(&mut self, key: &str, value: impl Serialize) {
        if let Value::Object(map) = &mut self.details {
            map.insert(
                key.to_string(),
                serde_json::to_value(value).unwrap_or(Value::Null),
            );
        }
    }
    /// The value of a figure by name.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }
}

/// Where and on what the figures were taken.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub date: String,
    pub commit: String,
    pub cpus: usize,
    pub machine: String,
    pub load_average_before: String,
    pub load_average_after: String,
    pub server_rust_log: String,
    pub runner_rust_log: String,
    /// Extra variables given with `--server-env` / `--runner-env` (experiments).
    pub server_env: Vec<String>,
    pub runner_env: Vec<String>,
    pub server_binary: String,
    pub runner_binary: String,
    pub python: String,
    pub total_seconds: f64,
}

/// The whole output.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub meta: Meta,
    pub scenarios: Vec<ScenarioReport>,
}

/// A number with a sensible precision for its size.
pub fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        return "n/a".into();
    }
    let a = v.abs();
    if a >= 10_000.0 {
        group_thousands(v.round() as i64)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A count (no unit, whole number) without decimals; anything else as [`fmt_num`].
fn fmt_value(m: &Metric) -> String {
    if m.unit.is_empty() && m.value.fract() == 0.0 && m.value.abs() < 1e15 {
        group_thousands(m.value as i64)
    } else {
        fmt_num(m.value)
    }
}

fn group_thousands(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let groups: Vec<&str> = s
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|c| std::str::from_utf8(c).unwrap_or("?"))
        .collect();
    let out = groups.join(",");
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn fmt_goal(m: &Metric) -> String {
    match (&m.goal, m.goal_met) {
        (Some(g), Some(met)) => {
            let op = match g.cmp {
                Cmp::Below => "<",
                Cmp::AtLeast => "≥",
            };
            format!(
                "{op} {} {} ({})",
                fmt_num(g.target),
                m.unit,
                if met { "met" } else { "missed" }
            )
        }
        _ => String::new(),
    }
}

impl Report {
    /// The figures as a Markdown table, followed by the notes.
    pub fn markdown(&self) -> String {
        let m = &self.meta;
        let mut out = format!(
            "MiniTower benchmarks, {}, commit {}, {} ({} CPUs), load average before {} / after {}, \
             RUST_LOG server={} runner={}, {:.0} s in all\n",
            m.date,
            m.commit,
            m.machine,
            m.cpus,
            m.load_average_before,
            m.load_average_after,
            m.server_rust_log,
            m.runner_rust_log,
            m.total_seconds
        );
        if !m.server_env.is_empty() || !m.runner_env.is_empty() {
            out.push_str(&format!(
                "Experiment: server env {:?}, runner env {:?}\n",
                m.server_env, m.runner_env
            ));
        }
        out.push('\n');
        out.push_str("| Scenario | Metric | Value | Goal |\n|---|---|---:|---|\n");
        for s in &self.scenarios {
            for x in &s.metrics {
                out.push_str(&format!(
                    "| {} | {} | {} {} | {} |\n",
                    s.scenario,
                    x.name,
                    fmt_value(x),
                    x.unit,
                    fmt_goal(x)
                ));
            }
        }
        let notes: Vec<_> = self
            .scenarios
            .iter()
            .flat_map(|s| {
                s.notes
                    .iter()
                    .map(move |n| format!("- {}: {n}", s.scenario))
            })
            .collect();
        if !notes.is_empty() {
            out.push_str("\nNotes:\n");
            for n in notes {
                out.push_str(&n);
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_goals() {
        assert_eq!(fmt_num(20000.4), "20,000");
        assert_eq!(fmt_num(1234567.0), "1,234,567");
        assert_eq!(fmt_num(512.3), "512");
        assert_eq!(fmt_num(12.34), "12.3");
        assert_eq!(fmt_num(1.234), "1.23");
        let m = Metric::new("p50", 4.0, "ms").goal(Goal::below(5.0));
        assert_eq!(m.goal_met, Some(true));
        assert_eq!(fmt_goal(&m), "< 5.00 ms (met)");
        let m = Metric::new("rate", 100.0, "runs/s").goal(Goal::at_least(120.0));
        assert_eq!(m.goal_met, Some(false));
        assert_eq!(fmt_value(&Metric::new("runs", 3.0, "")), "3");
        assert_eq!(fmt_value(&Metric::new("runs", 12345.0, "")), "12,345");
        assert_eq!(fmt_value(&Metric::new("per run", 2.5, "")), "2.50");
        assert_eq!(fmt_value(&Metric::new("wall", 3.0, "s")), "3.00");
    }
}
