//! Team administration: tokens, runners, status.

use super::Ctx;
use crate::cli::{RoleArg, TokensCmd};
use crate::error::{CliError, CliResult};
use crate::output::{self, opt, print_json, Table};
use minitower_core::api::{format_ts, CreateTokenRequest, Role, RunnerStatus};
use serde_json::json;

pub async fn tokens(ctx: &Ctx, cmd: TokensCmd) -> CliResult<()> {
    let client = ctx.client()?;
    match cmd {
        TokensCmd::Create {
            name,
            role,
            expires_in,
            app,
            actions,
        } => {
            let role = role.map(|r| match r {
                RoleArg::Admin => Role::Admin,
                RoleArg::Member => Role::Member,
            });
            let t = client
                .create_token_with(&CreateTokenRequest {
                    name: Some(name),
                    role,
                    expires_in,
                    expires_at: None,
                    scope: super::access::scope(app, actions)?,
                })
                .await?;
            if ctx.json() {
                print_json(&t);
            } else {
                println!(
                    "Created {} token {:?} (id {}{}{}). Its secret is shown only now:",
                    t.role.as_str(),
                    t.name,
                    t.id,
                    t.expires_at
                        .map(|at| format!(", expires {}", format_ts(&at)))
                        .unwrap_or_default(),
                    t.scope
                        .as_ref()
                        .map(|s| format!(", scope: {}", s.describe()))
                        .unwrap_or_default(),
                );
                println!("{}", t.token);
            }
        }
        TokensCmd::List => {
            let tokens = client.list_tokens().await?;
            if ctx.json() {
                print_json(&json!({ "tokens": tokens }));
                return Ok(());
            }
            let mut t = Table::new(&[
                "ID",
                "NAME",
                "ROLE",
                "SCOPE",
                "CREATED",
                "EXPIRES",
                "LAST USED",
                "LAST REFUSED",
            ]);
            for k in &tokens {
                t.row(vec![
                    k.id.to_string(),
                    k.name.clone(),
                    k.role.as_str().into(),
                    opt(k.scope.as_ref().map(|s| s.describe())),
                    output::ago(&k.created_at),
                    opt(k.expires_at.as_ref().map(format_ts)),
                    opt(k.last_used_at.as_ref().map(output::ago)),
                    opt(k.last_refused_at.as_ref().map(|at| {
                        format!(
                            "{} ({})",
                            output::ago(at),
                            k.last_refusal.as_deref().unwrap_or("")
                        )
                    })),
                ]);
            }
            t.print_or("No tokens.");
        }
        TokensCmd::Revoke { id } => {
            client.revoke_token(id).await?;
            if ctx.json() {
                print_json(&json!({ "revoked": id }));
            } else {
                println!("Token {id} revoked.");
            }
        }
    }
    Ok(())
}

pub async fn runners(ctx: &Ctx) -> CliResult<()> {
    let client = ctx.client()?;
    let runners = client.list_runners().await?;
    if ctx.json() {
        print_json(&json!({ "runners": runners }));
        return Ok(());
    }
    let mut t = Table::new(&["ID", "NAME", "ENVIRONMENT", "STATUS", "ACTIVE", "LAST SEEN"]);
    for r in &runners {
        t.row(vec![
            r.id.to_string(),
            r.name.clone(),
            r.environment.clone(),
            match r.status {
                RunnerStatus::Online => "online".into(),
                RunnerStatus::Offline => "offline".into(),
            },
            format!("{}/{}", r.active_runs, r.max_concurrency),
            opt(r.last_seen_at.as_ref().map(output::ago)),
        ]);
    }
    t.print_or("No runners registered.");
    Ok(())
}

/// Prints what it could learn, then fails with the first problem found.
pub async fn status(ctx: &Ctx) -> CliResult<()> {
    let server = ctx.server();
    let anon = ctx.anonymous()?;
    let health = anon.health().await;
    let ready = match &health {
        Ok(_) => anon.ready().await.is_ok(),
        Err(_) => false,
    };
    let me = match ctx.token() {
        None => None,
        Some(t) if health.is_ok() => Some(anon.with_token(t).me().await),
        Some(_) => None,
    };
    if ctx.json() {
        print_json(&json!({
            "server": server,
            "profile": ctx.config.profile_name(ctx.global.profile.as_deref()),
            "config": ctx.config_path,
            "health": health.as_ref().ok(),
            "reachable": health.is_ok(),
            "ready": ready,
            "me": me.as_ref().and_then(|m| m.as_ref().ok()),
        }));
    } else {
        println!("{:<9} {server}", "Server");
        match &health {
            Ok(h) => println!(
                "{:<9} {} (version {})",
                "Health",
                h.status,
                h.version.as_deref().unwrap_or("unknown")
            ),
            Err(e) => println!(
                "{:<9} unreachable: {}",
                "Health",
                CliError::from(e.clone_api())
            ),
        }
        if health.is_ok() {
            println!(
                "{:<9} {}",
                "Ready",
                if ready {
                    "yes"
                } else {
                    "no (database not answering)"
                }
            );
        }
        match &me {
            None if ctx.token().is_none() => println!("{:<9} not logged in", "Identity"),
            None => {}
            Some(Ok(m)) => println!(
                "{:<9} team {} ({}), token id {}",
                "Identity",
                m.team.slug,
                m.role.as_str(),
                m.token_id
            ),
            Some(Err(e)) => println!(
                "{:<9} token refused: {}",
                "Identity",
                CliError::from(e.clone_api())
            ),
        }
    }
    health?;
    if let Some(Err(e)) = me {
        return Err(e.into());
    }
    Ok(())
}

/// `ClientError` is not `Clone`; rebuild one for display.
trait CloneApi {
    fn clone_api(&self) -> minitower_client::ClientError;
}

impl CloneApi for minitower_client::ClientError {
    fn clone_api(&self) -> minitower_client::ClientError {
        use minitower_client::ClientError as E;
        match self {
            E::Api {
                status,
                code,
                message,
            } => E::Api {
                status: *status,
                code: code.clone(),
                message: message.clone(),
            },
            E::Transport(m) => E::Transport(m.clone()),
            E::Decode(m) => E::Decode(m.clone()),
        }
    }
}
