//! Prometheus metrics with the seed README's names and labels.
//!
//! HTTP paths are labelled with the route template (`/api/v1/runs/{run}`),
//! never raw ids or slugs, so cardinality stays bounded. The two gauges are
//! read from the store at scrape time so they are right on every replica.

use minitower_store::{Finished, Store, StoreResult};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    path: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    team: String,
    app: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppStatusLabels {
    team: String,
    app: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SkipLabels {
    team: String,
    app: String,
    /// `missed` (a later tick was due), `no_version`, `invalid_input`,
    /// `no_environment`.
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnvLabels {
    environment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PendingLabels {
    team: String,
    app: String,
    environment: String,
}

type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_hist() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}
fn size_hist() -> Histogram {
    Histogram::new(exponential_buckets(64.0, 4.0, 12))
}
fn run_hist() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.5, 16))
}

/// Every metric the control plane exports.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistFamily<RouteLabels>,
    http_request_size: HistFamily<RouteLabels>,
    http_response_size: HistFamily<RouteLabels>,
    runs_created: Family<AppLabels, Counter>,
    runs_completed: Family<AppStatusLabels, Counter>,
    runs_retried: Family<AppLabels, Counter>,
    runs_leased: Family<EnvLabels, Counter>,
    runners_registered: Family<EnvLabels, Counter>,
    queue_wait: HistFamily<AppLabels>,
    execution: HistFamily<AppStatusLabels>,
    total: HistFamily<AppStatusLabels>,
    runs_pending: Family<PendingLabels, Gauge>,
    runners_online: Family<EnvLabels, Gauge>,
    schedule_lag: HistFamily<AppLabels>,
    schedule_fired: Family<AppLabels, Counter>,
    schedule_skipped: Family<SkipLabels, Counter>,
    failure_retries: Family<AppLabels, Counter>,
    webhook_deliveries: Family<OutcomeLabels, Counter>,
    webhook_outbox_depth: Gauge,
    retention_runs: Counter,
    retention_log_lines: Counter,
    artifacts_collected: Counter,
    artifact_bytes_collected: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family.
    pub fn new() -> Self {
        let mut r = Registry::default();
        let m = Metrics {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_hist),
            http_request_size: Family::new_with_constructor(size_hist),
            http_response_size: Family::new_with_constructor(size_hist),
            runs_created: Family::default(),
            runs_completed: Family::default(),
            runs_retried: Family::default(),
            runs_leased: Family::default(),
            runners_registered: Family::default(),
            queue_wait: Family::new_with_constructor(run_hist),
            execution: Family::new_with_constructor(run_hist),
            total: Family::new_with_constructor(run_hist),
            runs_pending: Family::default(),
            runners_online: Family::default(),
            schedule_lag: Family::new_with_constructor(latency_hist),
            schedule_fired: Family::default(),
            schedule_skipped: Family::default(),
            failure_retries: Family::default(),
            webhook_deliveries: Family::default(),
            webhook_outbox_depth: Gauge::default(),
            retention_runs: Counter::default(),
            retention_log_lines: Counter::default(),
            artifacts_collected: Counter::default(),
            artifact_bytes_collected: Counter::default(),
            registry: Registry::default(),
        };
        r.register(
            "minitower_http_requests",
            "Total HTTP requests",
            m.http_requests.clone(),
        );
        r.register(
            "minitower_http_request_duration_seconds",
            "Request latency",
            m.http_duration.clone(),
        );
        r.register(
            "minitower_http_request_size_bytes",
            "Request body size",
            m.http_request_size.clone(),
        );
        r.register(
            "minitower_http_response_size_bytes",
            "Response body size",
            m.http_response_size.clone(),
        );
        r.register(
            "minitower_runs_created",
            "Runs created",
            m.runs_created.clone(),
        );
        r.register(
            "minitower_runs_completed",
            "Runs reaching a terminal state",
            m.runs_completed.clone(),
        );
        r.register(
            "minitower_runs_retried",
            "Runs re-queued by the reaper",
            m.runs_retried.clone(),
        );
        r.register(
            "minitower_runs_leased",
            "Runs leased by runners",
            m.runs_leased.clone(),
        );
        r.register(
            "minitower_runners_registered",
            "Runners registered",
            m.runners_registered.clone(),
        );
        r.register(
            "minitower_run_queue_wait_seconds",
            "Time spent queued (started_at - queued_at)",
            m.queue_wait.clone(),
        );
        r.register(
            "minitower_run_execution_seconds",
            "Execution duration (finished_at - started_at)",
            m.execution.clone(),
        );
        r.register(
            "minitower_run_total_seconds",
            "Total duration (finished_at - queued_at)",
            m.total.clone(),
        );
        r.register(
            "minitower_runs_pending",
            "Current queued run count",
            m.runs_pending.clone(),
        );
        r.register(
            "minitower_runners_online",
            "Current online runner count",
            m.runners_online.clone(),
        );
        r.register(
            "minitower_schedule_lag_seconds",
            "Delay from a schedule tick to its run's creation (now - scheduled_for)",
            m.schedule_lag.clone(),
        );
        r.register(
            "minitower_schedule_ticks_fired",
            "Schedule ticks that started a run",
            m.schedule_fired.clone(),
        );
        r.register(
            "minitower_schedule_ticks_skipped",
            "Schedule ticks that started no run, by reason",
            m.schedule_skipped.clone(),
        );
        r.register(
            "minitower_runs_failure_retried",
            "Failure retries scheduled: a failed attempt put its run back in the queue",
            m.failure_retries.clone(),
        );
        r.register(
            "minitower_webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered, retry, failed)",
            m.webhook_deliveries.clone(),
        );
        r.register(
            "minitower_webhook_outbox_depth",
            "Webhook events waiting for delivery",
            m.webhook_outbox_depth.clone(),
        );
        r.register(
            "minitower_retention_runs_deleted",
            "Finished runs deleted by retention (MINITOWER_RETENTION)",
            m.retention_runs.clone(),
        );
        r.register(
            "minitower_retention_log_lines_deleted",
            "Log lines deleted with their runs by retention",
            m.retention_log_lines.clone(),
        );
        r.register(
            "minitower_artifacts_collected",
            "Stored artifacts deleted because no version references them",
            m.artifacts_collected.clone(),
        );
        r.register(
            "minitower_artifact_bytes_collected",
            "Bytes of the artifacts deleted because no version references them",
            m.artifact_bytes_collected.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// Records one HTTP request.
    pub fn observe_http(
        &self,
        method: &str,
        path: &str,
        status: u16,
        seconds: f64,
        req_bytes: u64,
        resp_bytes: u64,
    ) {
        let route = RouteLabels {
            method: method.to_string(),
            path: path.to_string(),
        };
        self.http_requests
            .get_or_create(&HttpLabels {
                method: route.method.clone(),
                path: route.path.clone(),
                status,
            })
            .inc();
        self.http_duration.get_or_create(&route).observe(seconds);
        self.http_request_size
            .get_or_create(&route)
            .observe(req_bytes as f64);
        self.http_response_size
            .get_or_create(&route)
            .observe(resp_bytes as f64);
    }

    /// A run was queued.
    pub fn run_created(&self, team: &str, app: &str) {
        self.runs_created
            .get_or_create(&app_labels(team, app))
            .inc();
    }

    /// A run was leased; records its queue wait.
    pub fn run_leased(&self, team: &str, app: &str, environment: &str, queue_wait_seconds: f64) {
        self.runs_leased
            .get_or_create(&EnvLabels {
                environment: environment.to_string(),
            })
            .inc();
        self.queue_wait
            .get_or_create(&app_labels(team, app))
            .observe(queue_wait_seconds.max(0.0));
    }

    /// The reaper requeued a run.
    pub fn run_retried(&self, team: &str, app: &str) {
        self.runs_retried
            .get_or_create(&app_labels(team, app))
            .inc();
    }

    /// A schedule tick started a run `lag_seconds` after its time, after
    /// `missed` older ticks were skipped (the control plane was away).
    pub fn schedule_fired(&self, team: &str, app: &str, lag_seconds: f64, missed: u64) {
        let labels = app_labels(team, app);
        self.schedule_fired.get_or_create(&labels).inc();
        self.schedule_lag
            .get_or_create(&labels)
            .observe(lag_seconds.max(0.0));
        if missed > 0 {
            self.schedule_skipped(team, app, "missed", missed);
        }
    }

    /// `n` schedule ticks started no run, for `reason`.
    pub fn schedule_skipped(&self, team: &str, app: &str, reason: &str, n: u64) {
        self.schedule_skipped
            .get_or_create(&SkipLabels {
                team: team.to_string(),
                app: app.to_string(),
                reason: reason.to_string(),
            })
            .inc_by(n);
    }

    /// A failed attempt put its run back in the queue for a failure retry.
    pub fn failure_retry_scheduled(&self, team: &str, app: &str) {
        self.failure_retries
            .get_or_create(&app_labels(team, app))
            .inc();
    }

    /// One webhook delivery attempt ended with `outcome`.
    pub fn webhook_delivery(&self, outcome: &str) {
        self.webhook_deliveries
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Retention deleted `runs` runs with `log_lines` log lines.
    pub fn retention_purged(&self, runs: u64, log_lines: u64) {
        self.retention_runs.inc_by(runs);
        self.retention_log_lines.inc_by(log_lines);
    }

    /// The collector deleted an unreferenced artifact of `bytes` bytes.
    pub fn artifact_collected(&self, bytes: u64) {
        self.artifacts_collected.inc();
        self.artifact_bytes_collected.inc_by(bytes);
    }

    /// A runner registered.
    pub fn runner_registered(&self, environment: &str) {
        self.runners_registered
            .get_or_create(&EnvLabels {
                environment: environment.to_string(),
            })
            .inc();
    }

    /// A run reached a terminal state.
    pub fn run_finished(&self, f: &Finished) {
        let labels = AppStatusLabels {
            team: f.labels.team.clone(),
            app: f.labels.app.clone(),
            status: f.status.as_str().to_string(),
        };
        self.runs_completed.get_or_create(&labels).inc();
        let total = (f.finished_at - f.queued_at).num_milliseconds() as f64 / 1000.0;
        self.total.get_or_create(&labels).observe(total.max(0.0));
        if let Some(started) = f.started_at {
            let exec = (f.finished_at - started).num_milliseconds() as f64 / 1000.0;
            self.execution.get_or_create(&labels).observe(exec.max(0.0));
        }
    }

    /// Renders the text exposition, refreshing the gauges from the store.
    pub async fn render(&self, store: &dyn Store) -> StoreResult<String> {
        let pending = store.pending_counts().await?;
        let online = store.runners_online().await?;
        self.webhook_outbox_depth
            .set(store.webhook_outbox_depth().await?);
        self.runs_pending.clear();
        for p in pending {
            self.runs_pending
                .get_or_create(&PendingLabels {
                    team: p.team,
                    app: p.app,
                    environment: p.environment,
                })
                .set(p.count);
        }
        self.runners_online.clear();
        for (environment, n) in online {
            self.runners_online
                .get_or_create(&EnvLabels { environment })
                .set(n);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|e| minitower_store::StoreError::Database(e.to_string()))?;
        Ok(out)
    }
}

fn app_labels(team: &str, app: &str) -> AppLabels {
    AppLabels {
        team: team.to_string(),
        app: app.to_string(),
    }
}
