//! Environments and secrets. A secret's value is read from stdin when it
//! is not a terminal (pipes, CI) or prompted for without echo; it is never
//! taken from the command line, where `ps` and shell history would keep it.

use super::Ctx;
use crate::cli::{ActionArg, EnvironmentsCmd, SecretsCmd};
use crate::error::{CliError, CliResult};
use crate::output::{self, print_json, Table};
use minitower_core::api::{ScopeAction, TokenScope};
use serde_json::json;
use std::io::{IsTerminal, Read};

/// Largest value read (the server's bound; more is refused before sending).
const MAX_VALUE_BYTES: usize = 64 * 1024;

/// The scope of `tokens create --app/--actions`, if any.
pub fn scope(app: Option<String>, actions: Vec<ActionArg>) -> CliResult<Option<TokenScope>> {
    if actions.is_empty() {
        return match app {
            Some(_) => Err(CliError::Usage(
                "--app needs --actions (e.g. --actions trigger,read)".into(),
            )),
            None => Ok(None),
        };
    }
    let actions = actions
        .into_iter()
        .map(|a| match a {
            ActionArg::Read => ScopeAction::Read,
            ActionArg::Trigger => ScopeAction::Trigger,
            ActionArg::Cancel => ScopeAction::Cancel,
            ActionArg::Deploy => ScopeAction::Deploy,
        })
        .collect();
    Ok(Some(TokenScope { app, actions }))
}

pub async fn environments(ctx: &Ctx, cmd: EnvironmentsCmd) -> CliResult<()> {
    let client = ctx.client()?;
    match cmd {
        EnvironmentsCmd::Create { name } => {
            let env = client.create_environment(&name).await?;
            if ctx.json() {
                print_json(&env);
            } else {
                println!("Created environment {:?}.", env.name);
            }
        }
        EnvironmentsCmd::List => {
            let envs = client.list_environments().await?;
            if ctx.json() {
                print_json(&json!({ "environments": envs }));
                return Ok(());
            }
            let mut t = Table::new(&["NAME", "ONLINE RUNNERS", "RUNNERS", "CREATED"]);
            for e in &envs {
                t.row(vec![
                    e.name.clone(),
                    e.online_runners.to_string(),
                    if e.runner_names.is_empty() {
                        "- (runs wait: no runner online)".into()
                    } else {
                        e.runner_names.join(", ")
                    },
                    output::ago(&e.created_at),
                ]);
            }
            t.print_or("No environments.");
        }
        EnvironmentsCmd::Delete { name } => {
            client.delete_environment(&name).await?;
            if ctx.json() {
                print_json(&json!({ "deleted": name }));
            } else {
                println!("Deleted environment {name:?} and its secrets.");
            }
        }
    }
    Ok(())
}

pub async fn secrets(ctx: &Ctx, cmd: SecretsCmd) -> CliResult<()> {
    let client = ctx.client()?;
    match cmd {
        SecretsCmd::Set { name, environment } => {
            let value = read_value(&name, &environment)?;
            let info = client.put_secret(&name, &environment, &value).await?;
            if ctx.json() {
                print_json(&info);
            } else {
                println!(
                    "Set secret {} in environment {:?} (version {}).",
                    info.name, info.environment, info.version
                );
            }
        }
        SecretsCmd::List { environment } => {
            let list = client.list_secrets(&environment).await?;
            if ctx.json() {
                print_json(&list);
                return Ok(());
            }
            let mut t = Table::new(&["NAME", "VERSION", "UPDATED"]);
            for s in &list.secrets {
                t.row(vec![
                    s.name.clone(),
                    s.version.to_string(),
                    output::ago(&s.updated_at),
                ]);
            }
            t.print_or(&format!("No secrets in environment {environment:?}."));
        }
        SecretsCmd::Delete { name, environment } => {
            client.delete_secret(&name, &environment).await?;
            if ctx.json() {
                print_json(&json!({ "deleted": name, "environment": environment }));
            } else {
                println!("Deleted secret {name} from environment {environment:?}.");
            }
        }
    }
    Ok(())
}

/// The value: stdin when it is not a terminal (one trailing newline
/// dropped, as `echo` adds one), else a prompt without echo.
fn read_value(name: &str, environment: &str) -> CliResult<String> {
    let value = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Value of {name} in {environment}: "))
            .map_err(|e| CliError::Usage(format!("cannot read the value: {e}")))?
    } else {
        let mut buf = Vec::new();
        std::io::stdin()
            .take(MAX_VALUE_BYTES as u64 + 2)
            .read_to_end(&mut buf)
            .map_err(|e| CliError::Usage(format!("cannot read the value from stdin: {e}")))?;
        let mut text = String::from_utf8(buf)
            .map_err(|_| CliError::Usage("the value on stdin is not UTF-8".into()))?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        text
    };
    if value.is_empty() {
        return Err(CliError::Usage("the secret value is empty".into()));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(CliError::Usage(format!(
            "the secret value is larger than {MAX_VALUE_BYTES} bytes"
        )));
    }
    Ok(value)
}
