//! Typed client for the MiniTower HTTP API.
//!
//! One client serves the runner, the CLI, the benchmark and the black-box
//! tests, so the wire contract is exercised the same way everywhere. Non-2xx
//! answers become [`ClientError::Api`] carrying the server's error envelope.

mod sse;

use minitower_core::api::*;
use reqwest::{header, Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

pub use sse::LogEvent;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error envelope (or a bare error status).
    #[error("{message} (HTTP {status}, {code})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The server could not be reached or the connection broke.
    #[error("cannot reach the server: {0}")]
    Transport(String),
    /// The server answered something that is not the expected JSON.
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
}

impl ClientError {
    /// HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
    /// The lease is gone (410): a runner must fence itself.
    pub fn is_lease_gone(&self) -> bool {
        self.status() == Some(410)
    }
    /// A transport failure worth retrying (as opposed to a refusal).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport(_) => true,
            ClientError::Api { status, .. } => *status >= 500 || *status == 429,
            ClientError::Decode(_) => false,
        }
    }
}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_decode() {
            ClientError::Decode(e.to_string())
        } else {
            ClientError::Transport(format_reqwest(&e))
        }
    }
}

fn format_reqwest(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Shorthand for client results.
pub type ClientResult<T> = Result<T, ClientError>;

/// Default per-call timeout for ordinary calls.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A handle on one server with one bearer token. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// Filters for `GET /api/v1/runs`.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub status: Option<String>,
    pub app: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// A version upload: the archive plus the optional form fields.
pub struct VersionUpload {
    pub artifact: reqwest::Body,
    pub artifact_len: Option<u64>,
    pub entrypoint: Option<String>,
    pub timeout_seconds: Option<i64>,
    pub params_schema: Option<serde_json::Value>,
}

impl Client {
    /// A client for `base_url` (e.g. `http://127.0.0.1:8080`), optionally authenticated.
    pub fn new(base_url: &str, token: Option<String>) -> ClientResult<Client> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Client {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// The same connection pool with another token.
    pub fn with_token(&self, token: impl Into<String>) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base.clone(),
            token: Some(token.into()),
        }
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The bearer token in use.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        let mut rb = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .timeout(CALL_TIMEOUT);
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        rb
    }

    async fn send(rb: RequestBuilder) -> ClientResult<reqwest::Response> {
        let resp = rb.send().await?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(error_from(resp).await)
        }
    }

    async fn json<T: DeserializeOwned>(rb: RequestBuilder) -> ClientResult<T> {
        let resp = Self::send(rb).await?;
        let bytes = resp.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> ClientResult<T> {
        Self::json(self.req(Method::GET, path)).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> ClientResult<T> {
        Self::json(self.req(Method::POST, path).json(body)).await
    }

    fn leased(&self, method: Method, run_id: i64, what: &str, lease_token: &str) -> RequestBuilder {
        self.req(method, &format!("/api/v1/runs/{run_id}/{what}"))
            .header(LEASE_TOKEN_HEADER, lease_token)
    }

    // ---- health ----

    /// `GET /health`.
    pub async fn health(&self) -> ClientResult<Health> {
        self.get("/health").await
    }

    /// `GET /ready`: Ok when the server's database answers.
    pub async fn ready(&self) -> ClientResult<()> {
        Self::send(self.req(Method::GET, "/ready"))
            .await
            .map(|_| ())
    }

    // ---- teams and tokens ----

    /// Creates a team with the bootstrap token.
    pub async fn bootstrap_team(
        &self,
        bootstrap_token: &str,
        req: &BootstrapTeamRequest,
    ) -> ClientResult<TeamWithToken> {
        self.with_token(bootstrap_token)
            .post("/api/v1/bootstrap/team", req)
            .await
    }

    /// Exchanges a team password for an admin token.
    pub async fn login(&self, slug: &str, password: &str) -> ClientResult<TeamWithToken> {
        let body = LoginRequest {
            slug: slug.into(),
            password: password.into(),
        };
        self.post("/api/v1/teams/login", &body).await
    }

    /// Who the token belongs to.
    pub async fn me(&self) -> ClientResult<Me> {
        self.get("/api/v1/me").await
    }

    /// Mints a token (members always get member tokens).
    pub async fn create_token(&self, name: &str, role: Option<Role>) -> ClientResult<CreatedToken> {
        let body = CreateTokenRequest {
            name: Some(name.into()),
            role,
            expires_in: None,
            expires_at: None,
            scope: None,
        };
        self.post("/api/v1/tokens", &body).await
    }

    /// Mints a token with every option (expiry, scope).
    pub async fn create_token_with(&self, req: &CreateTokenRequest) -> ClientResult<CreatedToken> {
        self.post("/api/v1/tokens", req).await
    }

    // ---- environments and secrets ----

    /// The team's environments with their online runners.
    pub async fn list_environments(&self) -> ClientResult<Vec<Environment>> {
        Ok(self
            .get::<EnvironmentList>("/api/v1/environments")
            .await?
            .environments)
    }

    /// Adds an environment.
    pub async fn create_environment(&self, name: &str) -> ClientResult<Environment> {
        let body = CreateEnvironmentRequest { name: name.into() };
        self.post("/api/v1/environments", &body).await
    }

    /// Deletes an environment (refused for `default` and while runs use it).
    pub async fn delete_environment(&self, name: &str) -> ClientResult<()> {
        Self::send(self.req(Method::DELETE, &format!("/api/v1/environments/{name}")))
            .await
            .map(|_| ())
    }

    /// Names, versions and times of an environment's secrets (no values).
    pub async fn list_secrets(&self, environment: &str) -> ClientResult<SecretList> {
        Self::json(
            self.req(Method::GET, "/api/v1/secrets")
                .query(&[("environment", environment)]),
        )
        .await
    }

    /// Sets a secret's value (a new version).
    pub async fn put_secret(
        &self,
        name: &str,
        environment: &str,
        value: &str,
    ) -> ClientResult<SecretInfo> {
        let body = PutSecretRequest {
            value: value.to_string(),
        };
        Self::json(
            self.req(Method::PUT, &format!("/api/v1/secrets/{name}"))
                .query(&[("environment", environment)])
                .json(&body),
        )
        .await
    }

    /// Deletes a secret of an environment.
    pub async fn delete_secret(&self, name: &str, environment: &str) -> ClientResult<()> {
        Self::send(
            self.req(Method::DELETE, &format!("/api/v1/secrets/{name}"))
                .query(&[("environment", environment)]),
        )
        .await
        .map(|_| ())
    }

    /// Tokens of the team.
    pub async fn list_tokens(&self) -> ClientResult<Vec<TokenInfo>> {
        Ok(self.get::<TokenList>("/api/v1/tokens").await?.tokens)
    }

    /// Revokes a token at once.
    pub async fn revoke_token(&self, id: i64) -> ClientResult<()> {
        Self::send(self.req(Method::DELETE, &format!("/api/v1/tokens/{id}")))
            .await
            .map(|_| ())
    }

    // ---- apps and versions ----

    /// Creates an app.
    pub async fn create_app(&self, slug: &str, description: Option<&str>) -> ClientResult<App> {
        let body = CreateAppRequest {
            slug: slug.into(),
            description: description.map(Into::into),
        };
        self.post("/api/v1/apps", &body).await
    }

    /// Apps of the team.
    pub async fn list_apps(&self) -> ClientResult<Vec<App>> {
        Ok(self.get::<AppList>("/api/v1/apps").await?.apps)
    }

    /// One app; `Ok(None)` when it does not exist.
    pub async fn get_app(&self, slug: &str) -> ClientResult<Option<App>> {
        match self.get(&format!("/api/v1/apps/{slug}")).await {
            Ok(app) => Ok(Some(app)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Uploads a new version (multipart, streamed).
    pub async fn upload_version(&self, slug: &str, up: VersionUpload) -> ClientResult<Version> {
        use reqwest::multipart::{Form, Part};
        let part = match up.artifact_len {
            Some(len) => Part::stream_with_length(up.artifact, len),
            None => Part::stream(up.artifact),
        }
        .file_name("artifact.tar.gz")
        .mime_str("application/gzip")
        .map_err(|e| ClientError::Decode(e.to_string()))?;
        let mut form = Form::new().part("artifact", part);
        if let Some(e) = up.entrypoint {
            form = form.text("entrypoint", e);
        }
        if let Some(t) = up.timeout_seconds {
            form = form.text("timeout_seconds", t.to_string());
        }
        if let Some(s) = up.params_schema {
            form = form.text("params_schema", s.to_string());
        }
        let rb = self
            .req(Method::POST, &format!("/api/v1/apps/{slug}/versions"))
            .timeout(Duration::from_secs(600))
            .multipart(form);
        Self::json(rb).await
    }

    /// Versions of an app, newest first.
    pub async fn list_versions(&self, slug: &str) -> ClientResult<Vec<Version>> {
        Ok(self
            .get::<VersionList>(&format!("/api/v1/apps/{slug}/versions"))
            .await?
            .versions)
    }

    /// One version of an app: `None` for the latest. 404 when the app or
    /// the version does not exist (or the app has no version yet).
    pub async fn get_version(&self, slug: &str, version_no: Option<i64>) -> ClientResult<Version> {
        let v = version_no.map_or_else(|| "latest".to_string(), |n| n.to_string());
        self.get(&format!("/api/v1/apps/{slug}/versions/{v}")).await
    }

    // ---- schedules ----

    /// Schedules of an app, oldest first.
    pub async fn list_schedules(&self, slug: &str) -> ClientResult<Vec<Schedule>> {
        Ok(self
            .get::<ScheduleList>(&format!("/api/v1/apps/{slug}/schedules"))
            .await?
            .schedules)
    }

    /// Creates a schedule of an app.
    pub async fn create_schedule(
        &self,
        slug: &str,
        req: &CreateScheduleRequest,
    ) -> ClientResult<Schedule> {
        self.post(&format!("/api/v1/apps/{slug}/schedules"), req)
            .await
    }

    /// One schedule.
    pub async fn get_schedule(&self, id: i64) -> ClientResult<Schedule> {
        self.get(&format!("/api/v1/schedules/{id}")).await
    }

    /// Changes a schedule (absent fields stay); `enabled` pauses or resumes.
    pub async fn update_schedule(
        &self,
        id: i64,
        req: &UpdateScheduleRequest,
    ) -> ClientResult<Schedule> {
        Self::json(
            self.req(Method::PATCH, &format!("/api/v1/schedules/{id}"))
                .json(req),
        )
        .await
    }

    /// Deletes a schedule.
    pub async fn delete_schedule(&self, id: i64) -> ClientResult<()> {
        Self::send(self.req(Method::DELETE, &format!("/api/v1/schedules/{id}")))
            .await
            .map(|_| ())
    }

    // ---- webhooks ----

    /// The team's webhook endpoints.
    pub async fn list_webhooks(&self) -> ClientResult<Vec<Webhook>> {
        Ok(self.get::<WebhookList>("/api/v1/webhooks").await?.webhooks)
    }

    /// Adds an endpoint; the answer holds its signing secret (shown once).
    pub async fn create_webhook(&self, req: &CreateWebhookRequest) -> ClientResult<CreatedWebhook> {
        self.post("/api/v1/webhooks", req).await
    }

    /// One endpoint.
    pub async fn get_webhook(&self, id: i64) -> ClientResult<Webhook> {
        self.get(&format!("/api/v1/webhooks/{id}")).await
    }

    /// Changes an endpoint (absent fields stay).
    pub async fn update_webhook(
        &self,
        id: i64,
        req: &UpdateWebhookRequest,
    ) -> ClientResult<Webhook> {
        Self::json(
            self.req(Method::PATCH, &format!("/api/v1/webhooks/{id}"))
                .json(req),
        )
        .await
    }

    /// Deletes an endpoint.
    pub async fn delete_webhook(&self, id: i64) -> ClientResult<()> {
        Self::send(self.req(Method::DELETE, &format!("/api/v1/webhooks/{id}")))
            .await
            .map(|_| ())
    }

    /// An endpoint's delivery attempts, newest first.
    pub async fn webhook_deliveries(
        &self,
        id: i64,
        limit: Option<i64>,
    ) -> ClientResult<Vec<WebhookDelivery>> {
        let path = match limit {
            Some(n) => format!("/api/v1/webhooks/{id}/deliveries?limit={n}"),
            None => format!("/api/v1/webhooks/{id}/deliveries"),
        };
        Ok(self.get::<WebhookDeliveryList>(&path).await?.deliveries)
    }

    /// Queues a `webhook.test` event for the endpoint.
    pub async fn test_webhook(&self, id: i64) -> ClientResult<QueuedEvent> {
        Self::json(self.req(Method::POST, &format!("/api/v1/webhooks/{id}/test"))).await
    }

    // ---- runs ----

    /// Queues a run; returns the run and whether it was newly created
    /// (false when an idempotency key matched an earlier run).
    pub async fn create_run(
        &self,
        slug: &str,
        req: &CreateRunRequest,
        idempotency_key: Option<&str>,
    ) -> ClientResult<(Run, bool)> {
        let mut rb = self
            .req(Method::POST, &format!("/api/v1/apps/{slug}/runs"))
            .json(req);
        if let Some(k) = idempotency_key {
            rb = rb.header(IDEMPOTENCY_HEADER, k);
        }
        let resp = Self::send(rb).await?;
        let created = resp.status() == StatusCode::CREATED;
        let run = resp.json().await?;
        Ok((run, created))
    }

    /// Runs of the team, newest first.
    pub async fn list_runs(&self, q: &RunQuery) -> ClientResult<Vec<Run>> {
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(s) = &q.status {
            params.push(("status", s.clone()));
        }
        if let Some(a) = &q.app {
            params.push(("app", a.clone()));
        }
        if let Some(l) = q.limit {
            params.push(("limit", l.to_string()));
        }
        if let Some(o) = q.offset {
            params.push(("offset", o.to_string()));
        }
        let rb = self.req(Method::GET, "/api/v1/runs").query(&params);
        Ok(Self::json::<RunList>(rb).await?.runs)
    }

    /// Runs of one app, newest first.
    pub async fn list_app_runs(
        &self,
        slug: &str,
        limit: i64,
        offset: i64,
    ) -> ClientResult<Vec<Run>> {
        let rb = self
            .req(Method::GET, &format!("/api/v1/apps/{slug}/runs"))
            .query(&[("limit", limit), ("offset", offset)]);
        Ok(Self::json::<RunList>(rb).await?.runs)
    }

    /// Count of runs per status.
    pub async fn runs_summary(&self) -> ClientResult<std::collections::BTreeMap<String, i64>> {
        self.get("/api/v1/runs/summary").await
    }

    /// Dashboard figures for the last `hours`.
    pub async fn run_stats(&self, hours: i64) -> ClientResult<RunStats> {
        self.get(&format!("/api/v1/runs/stats?hours={hours}")).await
    }

    /// A run with its attempts.
    pub async fn get_run(&self, id: i64) -> ClientResult<RunDetail> {
        self.get(&format!("/api/v1/runs/{id}")).await
    }

    /// Requests cancellation.
    pub async fn cancel_run(&self, id: i64) -> ClientResult<Run> {
        Self::json(self.req(Method::POST, &format!("/api/v1/runs/{id}/cancel"))).await
    }

    /// Stored log lines after `after_seq`.
    pub async fn logs(&self, id: i64, after_seq: i64) -> ClientResult<Vec<LogLine>> {
        Ok(self
            .get::<LogList>(&format!("/api/v1/runs/{id}/logs?after_seq={after_seq}"))
            .await?
            .logs)
    }

    /// Follows a run's logs over SSE: stored lines after `after_seq`, then live
    /// ones, then an `End` with the terminal status.
    pub async fn stream_logs(
        &self,
        id: i64,
        after_seq: i64,
    ) -> ClientResult<impl futures::Stream<Item = ClientResult<LogEvent>> + Send + 'static> {
        let mut rb = self
            .http
            .get(format!(
                "{}/api/v1/runs/{id}/logs/stream?after_seq={after_seq}",
                self.base
            ))
            .header(header::ACCEPT, "text/event-stream");
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        let resp = Self::send(rb).await?;
        Ok(sse::log_events(resp))
    }

    // ---- runner protocol ----

    /// Registers (or re-registers) a runner with the registration token.
    pub async fn register_runner(
        &self,
        registration_token: &str,
        req: &RegisterRunnerRequest,
    ) -> ClientResult<RegisteredRunner> {
        self.with_token(registration_token)
            .post("/api/v1/runners/register", req)
            .await
    }

    /// Tells the control plane this runner stopped (it shows offline at once).
    pub async fn runner_offline(&self) -> ClientResult<()> {
        let rb = self
            .req(Method::POST, "/api/v1/runners/offline")
            .timeout(Duration::from_secs(3));
        Self::send(rb).await.map(|_| ())
    }

    /// Asks for work, long-polling up to `wait` (at most 30 s). `None` = nothing to do.
    pub async fn lease(&self, wait: Duration) -> ClientResult<Option<Lease>> {
        self.lease_with(wait, false).await
    }

    /// [`Client::lease`] that also acknowledges the lease in the same call
    /// (`leased -> running`): `Lease::started` is then set. A server without
    /// this fast path leaves it `None`, and the caller calls [`Client::start`].
    pub async fn lease_and_start(&self, wait: Duration) -> ClientResult<Option<Lease>> {
        self.lease_with(wait, true).await
    }

    async fn lease_with(&self, wait: Duration, start: bool) -> ClientResult<Option<Lease>> {
        let body = LeaseRequest {
            wait_seconds: Some(wait.as_secs_f64()),
            start,
        };
        let rb = self
            .req(Method::POST, "/api/v1/runs/lease")
            .timeout(wait + Duration::from_secs(15))
            .json(&body);
        let resp = Self::send(rb).await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        Ok(Some(resp.json().await?))
    }

    /// Acknowledges a lease (`leased -> running`).
    pub async fn start(&self, run_id: i64, lease_token: &str) -> ClientResult<AttemptState> {
        Self::json(self.leased(Method::POST, run_id, "start", lease_token)).await
    }

    /// Extends the lease and learns about cancellation.
    pub async fn heartbeat(&self, run_id: i64, lease_token: &str) -> ClientResult<AttemptState> {
        Self::json(self.leased(Method::POST, run_id, "heartbeat", lease_token)).await
    }

    /// Sends a batch of log lines.
    pub async fn send_logs(
        &self,
        run_id: i64,
        lease_token: &str,
        logs: Vec<NewLogLine>,
    ) -> ClientResult<LogBatchAck> {
        let rb = self
            .leased(Method::POST, run_id, "logs", lease_token)
            .json(&LogBatch { logs });
        Self::json(rb).await
    }

    /// Reports the attempt's outcome.
    pub async fn result(
        &self,
        run_id: i64,
        lease_token: &str,
        req: &ResultRequest,
    ) -> ClientResult<ResultAck> {
        Self::json(
            self.leased(Method::POST, run_id, "result", lease_token)
                .json(req),
        )
        .await
    }

    /// Reports the attempt's outcome together with its last log lines, stored
    /// first in the same call. Only for a server that announced the fast
    /// path (`Lease::started` set): an older one would ignore `logs`.
    pub async fn result_with_logs(
        &self,
        run_id: i64,
        lease_token: &str,
        report: &ResultReport,
    ) -> ClientResult<ResultAck> {
        Self::json(
            self.leased(Method::POST, run_id, "result", lease_token)
                .json(report),
        )
        .await
    }

    /// Hands a leased or running attempt back without spending a retry
    /// (the runner shuts down); the run is queued again.
    pub async fn release(&self, run_id: i64, lease_token: &str) -> ClientResult<ResultAck> {
        Self::json(self.leased(Method::POST, run_id, "release", lease_token)).await
    }

    /// Starts downloading the run's artifact; the caller streams the body
    /// (`bytes_stream`) and checks it against the `X-Artifact-SHA256` header.
    pub async fn artifact(
        &self,
        run_id: i64,
        lease_token: &str,
    ) -> ClientResult<reqwest::Response> {
        let rb = self
            .leased(Method::GET, run_id, "artifact", lease_token)
            .timeout(Duration::from_secs(600));
        Self::send(rb).await
    }

    /// Every runner (admin tokens only).
    pub async fn list_runners(&self) -> ClientResult<Vec<RunnerInfo>> {
        Ok(self
            .get::<RunnerList>("/api/v1/admin/runners")
            .await?
            .runners)
    }

    /// A raw request for tests that need to send malformed input.
    pub fn raw(&self, method: Method, path: &str) -> RequestBuilder {
        self.req(method, path)
    }
}

/// Turns a non-2xx response into an [`ClientError::Api`], keeping the
/// server's code and message when it sent the envelope.
pub async fn error_from(resp: reqwest::Response) -> ClientError {
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    match serde_json::from_slice::<ErrorEnvelope>(&body) {
        Ok(env) => ClientError::Api {
            status: status.as_u16(),
            code: env.error.code,
            message: env.error.message,
        },
        Err(_) => ClientError::Api {
            status: status.as_u16(),
            code: status
                .canonical_reason()
                .unwrap_or("error")
                .to_lowercase()
                .replace(' ', "_"),
            message: String::from_utf8_lossy(&body)
                .trim()
                .chars()
                .take(500)
                .collect(),
        },
    }
}
