//! Storage types of webhooks (issue 12): endpoints, the transactional outbox
//! and its delivery attempts. The SQL lives once in `minitower-store-sql`
//! (`webhooks.rs`), the conformance tests in `conformance/webhooks.rs`.

use chrono::{DateTime, Utc};
use minitower_core::api::{DeliveryOutcome, WebhookEvents};

/// An endpoint to insert (URL and secret already checked by the caller).
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub team_id: i64,
    /// `None`: every app of the team.
    pub app_id: Option<i64>,
    pub url: String,
    /// `whsec_<base64>`.
    pub secret: String,
    pub events: WebhookEvents,
    pub enabled: bool,
    pub now: DateTime<Utc>,
}

/// A change to an endpoint; `None` fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct WebhookUpdate {
    pub url: Option<String>,
    pub events: Option<WebhookEvents>,
    pub enabled: Option<bool>,
}

/// An outbox event claimed for one delivery attempt. The claim is the
/// deliverer's until it records the attempt or the claim runs out.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedEvent {
    pub outbox_id: i64,
    /// Which claim of the row this is; recording needs it to still match.
    pub claim: i64,
    pub webhook_id: i64,
    /// The endpoint's team: its sealed secret is bound to it.
    pub team_id: i64,
    pub url: String,
    /// The signing secret as stored: sealed by the server's key ring
    /// (`v1.<key id>.…`), or `whsec_…` as endpoints made before sealing
    /// stored it.
    pub secret: String,
    pub event_type: String,
    /// The body to send, as stored when the event happened.
    pub payload: String,
    /// Attempts already recorded (this one is `attempts + 1`).
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
}

/// One delivery attempt's result, to record against its claim.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub outbox_id: i64,
    pub claim: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    /// At most 1 KiB.
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
    /// `Retry` needs `next_attempt_at`.
    pub outcome: DeliveryOutcome,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
}
