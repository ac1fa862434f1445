//! `minitower webhooks create|list|delete|deliveries|test`.

use super::Ctx;
use crate::cli::{WebhookCreateArgs, WebhookDeliveriesArgs, WebhooksCmd};
use crate::error::CliResult;
use crate::output::{self, print_json, Table};
use minitower_core::api::CreateWebhookRequest;
use serde_json::json;

pub async fn webhooks(ctx: &Ctx, cmd: WebhooksCmd) -> CliResult<()> {
    match cmd {
        WebhooksCmd::Create(a) => create(ctx, a).await,
        WebhooksCmd::List => list(ctx).await,
        WebhooksCmd::Delete(r) => {
            ctx.client()?.delete_webhook(r.id).await?;
            if ctx.json() {
                print_json(&json!({ "deleted": r.id }));
            } else {
                println!("Webhook {} deleted.", r.id);
            }
            Ok(())
        }
        WebhooksCmd::Deliveries(a) => deliveries(ctx, a).await,
        WebhooksCmd::Test(r) => {
            let q = ctx.client()?.test_webhook(r.id).await?;
            if ctx.json() {
                print_json(&q);
            } else {
                println!(
                    "Test event {} queued; see `minitower webhooks deliveries {}`.",
                    q.event_id, r.id
                );
            }
            Ok(())
        }
    }
}

async fn create(ctx: &Ctx, a: WebhookCreateArgs) -> CliResult<()> {
    let req = CreateWebhookRequest {
        url: a.url,
        app: a.app,
        events: a.events,
        enabled: None,
    };
    let w = ctx.client()?.create_webhook(&req).await?;
    if ctx.json() {
        print_json(&w);
        return Ok(());
    }
    println!(
        "Webhook {} created: {} events of {} to {}.",
        w.webhook.id,
        w.webhook.events.as_str(),
        w.webhook.app.as_deref().unwrap_or("every app"),
        w.webhook.url
    );
    println!("Signing secret (shown once; verify webhook-signature with it):");
    println!("{}", w.secret);
    Ok(())
}

async fn list(ctx: &Ctx) -> CliResult<()> {
    let hooks = ctx.client()?.list_webhooks().await?;
    if ctx.json() {
        print_json(&json!({ "webhooks": hooks }));
        return Ok(());
    }
    let mut t = Table::new(&["ID", "URL", "APP", "EVENTS", "STATE", "CREATED"]);
    for w in &hooks {
        t.row(vec![
            w.id.to_string(),
            w.url.clone(),
            w.app.clone().unwrap_or_else(|| "*".into()),
            w.events.as_str().to_string(),
            if w.enabled { "enabled" } else { "disabled" }.to_string(),
            output::local(&w.created_at),
        ]);
    }
    t.print_or("No webhooks.");
    Ok(())
}

async fn deliveries(ctx: &Ctx, a: WebhookDeliveriesArgs) -> CliResult<()> {
    let list = ctx
        .client()?
        .webhook_deliveries(a.id, Some(a.limit))
        .await?;
    if ctx.json() {
        print_json(&json!({ "deliveries": list }));
        return Ok(());
    }
    let mut t = Table::new(&[
        "AT", "EVENT", "TYPE", "TRY", "STATUS", "LATENCY", "OUTCOME", "ANSWER",
    ]);
    for d in &list {
        t.row(vec![
            output::local(&d.at),
            d.event_id.clone(),
            d.event_type.clone(),
            d.attempt_no.to_string(),
            d.status_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            format!("{} ms", d.latency_ms),
            d.outcome.as_str().to_string(),
            output::truncate(
                d.error
                    .as_deref()
                    .or(d.response_excerpt.as_deref())
                    .unwrap_or("-"),
                50,
            ),
        ]);
    }
    t.print_or("No deliveries yet.");
    Ok(())
}
