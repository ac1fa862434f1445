//! Webhook endpoints as teams manage them, their delivery history and the
//! "send test event" action. Deliveries themselves: `crate::webhooks`.

use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_id, JsonBody, RequiredJsonBody, State, TeamAuth};
use crate::routes::apps::app_of;
use axum::extract::{Path, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use minitower_core::api::*;
use minitower_core::webhook::Secret;
use minitower_store::{NewWebhook, WebhookUpdate};
use serde::Deserialize;

/// Delivery attempts listed by default and at most.
const DEFAULT_DELIVERIES: i64 = 50;
const MAX_DELIVERIES: i64 = 500;

/// A 400 naming the field.
fn bad(message: impl Into<String>) -> ApiError {
    ApiError::invalid_request(message)
}

fn events(text: Option<&str>) -> ApiResult<Option<WebhookEvents>> {
    text.map(|t| WebhookEvents::parse(t).map_err(bad))
        .transpose()
}

/// A fresh signing secret: 32 random bytes, `whsec_<base64>`.
fn new_secret() -> String {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the OS random source failed");
    Secret::from_bytes(&key)
        .expect("32 bytes is a valid key length")
        .to_whsec()
}

/// The team's webhook endpoints, oldest first.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = WebhookList)), security(("team" = [])))]
pub async fn list_webhooks(
    AxState(st): AxState<State>,
    auth: TeamAuth,
) -> ApiResult<Json<WebhookList>> {
    Ok(Json(WebhookList {
        webhooks: st.store.list_webhooks(auth.team.id).await?,
    }))
}

/// Adds an endpoint; the answer carries its signing secret, shown once.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = CreateWebhookRequest,
    responses((status = 201, body = CreatedWebhook), (status = 400, body = ErrorEnvelope)),
    security(("team" = [])))]
pub async fn create_webhook(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    RequiredJsonBody(req): RequiredJsonBody<CreateWebhookRequest>,
) -> ApiResult<impl IntoResponse> {
    let events = events(req.events.as_deref())?.unwrap_or(WebhookEvents::Terminal);
    let url = crate::webhooks::check_endpoint(&st, &req.url)
        .await
        .map_err(bad)?;
    let app_id = match &req.app {
        None => None,
        Some(slug) => Some(
            app_of(&st, &auth, slug)
                .await
                .map_err(|_| bad(format!("app: the team has no app {slug:?}")))?
                .id,
        ),
    };
    let secret = new_secret();
    // Stored sealed, like the team's secrets: a copy of the database alone
    // cannot forge deliveries.
    let sealed = crate::webhooks::seal_secret(&st, auth.team.id, &secret)?;
    let webhook = st
        .store
        .create_webhook(NewWebhook {
            team_id: auth.team.id,
            app_id,
            url: url.to_string(),
            secret: sealed,
            events,
            enabled: req.enabled.unwrap_or(true),
            now: st.now(),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook { webhook, secret }),
    ))
}

/// One endpoint.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = i64, Path)),
    responses((status = 200, body = Webhook), (status = 404, body = ErrorEnvelope)), security(("team" = [])))]
pub async fn get_webhook(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Webhook>> {
    let id = parse_id(&id, "webhook")?;
    let w = st
        .store
        .get_webhook(auth.team.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    Ok(Json(w))
}

/// Changes an endpoint's URL, events or enabled state.
#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = i64, Path)),
    request_body = UpdateWebhookRequest,
    responses((status = 200, body = Webhook), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("team" = [])))]
pub async fn update_webhook(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UpdateWebhookRequest>,
) -> ApiResult<Json<Webhook>> {
    let id = parse_id(&id, "webhook")?;
    // 404 before 400: another team's endpoint is not there at all.
    if st.store.get_webhook(auth.team.id, id).await?.is_none() {
        return Err(ApiError::not_found("webhook"));
    }
    let events = events(req.events.as_deref())?;
    let url = match &req.url {
        None => None,
        Some(u) => Some(
            crate::webhooks::check_endpoint(&st, u)
                .await
                .map_err(bad)?
                .to_string(),
        ),
    };
    let update = WebhookUpdate {
        url,
        events,
        enabled: req.enabled,
    };
    Ok(Json(
        st.store
            .update_webhook(auth.team.id, id, update, st.now())
            .await?,
    ))
}

/// Deletes an endpoint, its pending events and its delivery history.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = i64, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorEnvelope)), security(("team" = [])))]
pub async fn delete_webhook(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id, "webhook")?;
    st.store.delete_webhook(auth.team.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Paging of the delivery list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// How many attempts, newest first (default 50, at most 500).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
}

/// An endpoint's delivery attempts, newest first.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = i64, Path), DeliveriesQuery),
    responses((status = 200, body = WebhookDeliveryList), (status = 404, body = ErrorEnvelope)),
    security(("team" = [])))]
pub async fn list_deliveries(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(id): Path<String>,
    q: Result<Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<WebhookDeliveryList>> {
    let id = parse_id(&id, "webhook")?;
    let Query(q) = q.map_err(|e| bad(format!("invalid query string: {}", e.body_text())))?;
    let limit = q.limit.unwrap_or(DEFAULT_DELIVERIES);
    if limit < 1 {
        return Err(bad("limit must be >= 1"));
    }
    let deliveries = st
        .store
        .list_webhook_deliveries(auth.team.id, id, limit.min(MAX_DELIVERIES))
        .await?;
    Ok(Json(WebhookDeliveryList { deliveries }))
}

/// Queues a `webhook.test` event for the endpoint (sent like any other
/// event; its attempts show up in the deliveries).
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/test", tag = "webhooks", params(("id" = i64, Path)),
    responses((status = 202, body = QueuedEvent), (status = 404, body = ErrorEnvelope)), security(("team" = [])))]
pub async fn send_test(
    AxState(st): AxState<State>,
    auth: TeamAuth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_id(&id, "webhook")?;
    let outbox_id = st
        .store
        .enqueue_test_event(auth.team.id, id, st.now())
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(QueuedEvent {
            event_id: event_id(outbox_id),
            event_type: TEST_EVENT.to_string(),
        }),
    ))
}
