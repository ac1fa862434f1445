//! `minitower login`: checks the credentials, then saves them as a profile.

use super::Ctx;
use crate::cli::LoginArgs;
use crate::config::Profile;
use crate::error::{CliError, CliResult};
use crate::output::print_json;
use minitower_client::Client;
use std::io::IsTerminal;

pub async fn login(ctx: &mut Ctx, args: LoginArgs) -> CliResult<()> {
    let server = ctx
        .global
        .server
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CliError::Usage("login needs --server URL".into()))?;
    super::check_server_url(&server)?;
    let flag_token = ctx.global.token.clone().filter(|t| !t.is_empty());
    let anon = Client::new(&server, None)?;
    let (token, team, role) = match (flag_token, args.team) {
        (Some(_), Some(_)) => {
            return Err(CliError::Usage(
                "give either --token or --team, not both".into(),
            ))
        }
        (None, None) => {
            return Err(CliError::Usage(
                "login needs --token TOKEN, or --team SLUG (and a password)".into(),
            ))
        }
        (Some(token), None) => {
            let me = anon.with_token(token.clone()).me().await?;
            (token, me.team.slug, me.role)
        }
        (None, Some(slug)) => {
            let password = match args.password {
                Some(p) => p,
                None => read_password(&slug)?,
            };
            let tw = anon.login(&slug, &password).await?;
            let me = anon.with_token(tw.token.clone()).me().await?;
            (tw.token, tw.team.slug, me.role)
        }
    };
    let name = ctx
        .global
        .profile
        .clone()
        .unwrap_or_else(|| ctx.config.profile_name(None).to_string());
    ctx.config.profiles.insert(
        name.clone(),
        Profile {
            server: server.clone(),
            token: Some(token),
            team: Some(team.clone()),
        },
    );
    ctx.config.current = Some(name.clone());
    ctx.config.save_to(&ctx.config_path)?;
    if ctx.json() {
        print_json(&serde_json::json!({
            "server": server,
            "team": team,
            "role": role,
            "profile": name,
            "config": ctx.config_path,
        }));
    } else {
        println!(
            "Logged in to {server} as team {team} ({}). Profile {name:?} saved in {}.",
            role.as_str(),
            ctx.config_path.display()
        );
    }
    Ok(())
}

/// Prompts without echo on a terminal; reads one line from piped stdin.
fn read_password(team: &str) -> CliResult<String> {
    let pw = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Password for team {team}: "))
            .map_err(CliError::io("reading the password"))?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(CliError::io("reading the password from stdin"))?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if pw.is_empty() {
        return Err(CliError::Usage("empty password".into()));
    }
    Ok(pw)
}
