//! Wire types of webhooks (issue 12): endpoints, their deliveries, and the
//! events they receive.

use crate::status::RunStatus;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Which run events an endpoint receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvents {
    /// A run finished: `run.completed`, `run.failed`, `run.cancelled`, `run.dead`.
    Terminal,
    /// A run finished badly: `run.failed`, `run.dead`.
    Failures,
    /// Every transition (see [`RunEvent`]).
    All,
}

impl WebhookEvents {
    /// Wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvents::Terminal => "terminal",
            WebhookEvents::Failures => "failures",
            WebhookEvents::All => "all",
        }
    }

    /// Parses a request value; the error names the field.
    pub fn parse(s: &str) -> Result<WebhookEvents, String> {
        match s {
            "terminal" => Ok(WebhookEvents::Terminal),
            "failures" => Ok(WebhookEvents::Failures),
            "all" => Ok(WebhookEvents::All),
            other => Err(format!(
                "events must be one of terminal, failures, all; got {other:?}"
            )),
        }
    }

    /// Whether an endpoint with this filter receives `event`.
    pub fn includes(self, event: RunEvent) -> bool {
        match self {
            WebhookEvents::All => true,
            WebhookEvents::Terminal => event.is_terminal(),
            WebhookEvents::Failures => event.is_failure(),
        }
    }
}

/// A run event an endpoint may receive, named `run.<what>` in payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunEvent {
    /// Created (queued).
    Queued,
    /// Handed to a runner.
    Leased,
    /// Its script started.
    Started,
    /// A cancel was requested while it ran.
    Cancelling,
    /// An attempt failed and the run waits for a failure retry.
    Retrying,
    /// Back in the queue after a lost runner or a hand-back.
    Requeued,
    Completed,
    Failed,
    Cancelled,
    Dead,
}

impl RunEvent {
    /// Every event, in lifecycle order.
    pub const ALL: [RunEvent; 10] = [
        RunEvent::Queued,
        RunEvent::Leased,
        RunEvent::Started,
        RunEvent::Cancelling,
        RunEvent::Retrying,
        RunEvent::Requeued,
        RunEvent::Completed,
        RunEvent::Failed,
        RunEvent::Cancelled,
        RunEvent::Dead,
    ];

    /// The payload's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunEvent::Queued => "run.queued",
            RunEvent::Leased => "run.leased",
            RunEvent::Started => "run.started",
            RunEvent::Cancelling => "run.cancelling",
            RunEvent::Retrying => "run.retrying",
            RunEvent::Requeued => "run.requeued",
            RunEvent::Completed => "run.completed",
            RunEvent::Failed => "run.failed",
            RunEvent::Cancelled => "run.cancelled",
            RunEvent::Dead => "run.dead",
        }
    }

    /// The event of a run reaching `status`; `Queued` is `run.queued` for
    /// a new run (a requeue says which kind it is itself).
    pub fn of(status: RunStatus) -> RunEvent {
        match status {
            RunStatus::Queued => RunEvent::Queued,
            RunStatus::Leased => RunEvent::Leased,
            RunStatus::Running => RunEvent::Started,
            RunStatus::Cancelling => RunEvent::Cancelling,
            RunStatus::Completed => RunEvent::Completed,
            RunStatus::Failed => RunEvent::Failed,
            RunStatus::Cancelled => RunEvent::Cancelled,
            RunStatus::Dead => RunEvent::Dead,
        }
    }

    /// The run finished.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunEvent::Completed | RunEvent::Failed | RunEvent::Cancelled | RunEvent::Dead
        )
    }

    /// The run finished badly.
    pub fn is_failure(self) -> bool {
        matches!(self, RunEvent::Failed | RunEvent::Dead)
    }
}

/// `type` of the event `POST /api/v1/webhooks/{id}/test` sends.
pub const TEST_EVENT: &str = "webhook.test";

/// A webhook endpoint (never its secret, which is shown once at creation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    pub id: i64,
    pub url: String,
    /// The app whose runs it hears about; `null`: every app of the team.
    pub app: Option<String>,
    pub events: WebhookEvents,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Answer of `POST /api/v1/webhooks`: the endpoint and its signing secret,
/// shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_<base64>`: verify `webhook-signature` with it (Standard
    /// Webhooks). Not shown again.
    pub secret: String,
}

/// Body of `POST /api/v1/webhooks`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateWebhookRequest {
    /// An absolute `http` or `https` URL whose host does not resolve to a
    /// loopback, link-local or the control plane's own address.
    #[schema(min_length = 1, max_length = 2048)]
    pub url: String,
    /// Only this app's runs (a slug); default every app of the team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// `terminal` (default), `failures` or `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<WebhookEvents>)]
    pub events: Option<String>,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Body of `PATCH /api/v1/webhooks/{id}`: what is given changes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UpdateWebhookRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<WebhookEvents>)]
    pub events: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `GET /api/v1/webhooks`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// A 2xx answer: the event is delivered.
    Delivered,
    /// Refused, an error answer or no answer: it is sent again later.
    Retry,
    /// The last attempt failed: the event is given up.
    Failed,
}

impl DeliveryOutcome {
    /// Wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retry => "retry",
            DeliveryOutcome::Failed => "failed",
        }
    }
    /// Parses the database spelling.
    pub fn parse(s: &str) -> Option<DeliveryOutcome> {
        match s {
            "delivered" => Some(DeliveryOutcome::Delivered),
            "retry" => Some(DeliveryOutcome::Retry),
            "failed" => Some(DeliveryOutcome::Failed),
            _ => None,
        }
    }
}

/// One delivery attempt of one event to one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookDelivery {
    pub id: i64,
    /// The event's `webhook-id` header: the same for every attempt.
    pub event_id: String,
    /// The payload's `type`, e.g. `run.failed`.
    pub event_type: String,
    /// The run the event is about (`null` for a test event).
    pub run_id: Option<i64>,
    /// 1 for the first attempt of this event.
    pub attempt_no: i64,
    /// The HTTP status answered; `null` when no answer came.
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    /// The start of the answer's body, at most 1 KiB.
    pub response_excerpt: Option<String>,
    /// Why no good answer came (refused address, timeout, connection error).
    pub error: Option<String>,
    pub outcome: DeliveryOutcome,
    pub at: DateTime<Utc>,
}

/// `GET /api/v1/webhooks/{id}/deliveries`, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookDeliveryList {
    pub deliveries: Vec<WebhookDelivery>,
}

/// Answer of `POST /api/v1/webhooks/{id}/test` (202): the event queued for
/// delivery; its attempts show up in the deliveries.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueuedEvent {
    /// The `webhook-id` its deliveries carry.
    pub event_id: String,
    pub event_type: String,
}

/// What an endpoint receives: the body of every delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookPayload {
    /// `run.completed`, `run.failed`, … or `webhook.test`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the event happened.
    pub timestamp: DateTime<Utc>,
    /// The run as it was right after the event (a test event: a note).
    #[schema(value_type = Object)]
    pub data: Value,
}

/// The `webhook-id` of an outbox event.
pub fn event_id(outbox_id: i64) -> String {
    format!("msg_{outbox_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_pick_their_events() {
        for e in RunEvent::ALL {
            assert!(WebhookEvents::All.includes(e));
            assert_eq!(WebhookEvents::Terminal.includes(e), e.is_terminal());
            assert_eq!(WebhookEvents::Failures.includes(e), e.is_failure());
            // every failure is terminal
            assert!(!e.is_failure() || e.is_terminal());
        }
        for s in RunStatus::ALL {
            assert_eq!(RunEvent::of(s).is_terminal(), s.is_terminal());
        }
    }

    #[test]
    fn events_values_round_trip_and_others_name_the_field() {
        for e in [
            WebhookEvents::Terminal,
            WebhookEvents::Failures,
            WebhookEvents::All,
        ] {
            assert_eq!(WebhookEvents::parse(e.as_str()), Ok(e));
        }
        assert!(WebhookEvents::parse("sometimes")
            .unwrap_err()
            .starts_with("events"));
        for o in [
            DeliveryOutcome::Delivered,
            DeliveryOutcome::Retry,
            DeliveryOutcome::Failed,
        ] {
            assert_eq!(DeliveryOutcome::parse(o.as_str()), Some(o));
        }
    }
}
