//! The upload form's job fields (`command`, `shell`, `git`, `binary`,
//! `pty`, `priority`, `limits`), read with the same rules as the
//! Towerfile's keys (core `job`): a field given in the form wins over the
//! archive's Towerfile, and a bad one is a 400 naming it before anything
//! is stored.

use crate::error::{ApiError, ApiResult};
use minitower_core::job::{Entry, JobSpec, LimitsInput, PriorityInput, PtyInput, Source};
use minitower_core::towerfile::Towerfile;
use serde::Deserialize;

/// The job fields of one upload form, as text.
#[derive(Debug, Default)]
pub struct JobFields {
    pub command: Option<String>,
    pub shell: Option<String>,
    pub git: Option<String>,
    pub binary: Option<String>,
    pub pty: Option<String>,
    pub priority: Option<String>,
    pub limits: Option<String>,
}

impl JobFields {
    /// Takes `name`'s text when it is a job field.
    pub fn take(&mut self, name: &str, text: String) -> bool {
        let slot = match name {
            "command" => &mut self.command,
            "shell" => &mut self.shell,
            "git" => &mut self.git,
            "binary" => &mut self.binary,
            "pty" => &mut self.pty,
            "priority" => &mut self.priority,
            "limits" => &mut self.limits,
            _ => return false,
        };
        *slot = Some(text);
        true
    }
}

/// `git` form field: `{"url", "ref", "command" | "script", "secret"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GitField {
    url: String,
    #[serde(rename = "ref")]
    git_ref: String,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    script: Option<String>,
    #[serde(default)]
    secret: Option<String>,
}

/// `binary` form field: `{"url", "sha256", "args"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BinaryField {
    url: String,
    sha256: String,
    #[serde(default)]
    args: Vec<String>,
}

fn json<T: serde::de::DeserializeOwned>(field: &str, text: &str, shape: &str) -> ApiResult<T> {
    serde_json::from_str(text.trim())
        .map_err(|e| ApiError::invalid_request(format!("{field} must be {shape}: {e}")))
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::invalid_request(msg.into())
}

/// The version's job and default priority: the Towerfile's, with the form's
/// fields applied. `entrypoint` is the form's (already trimmed, `./`-less)
/// entrypoint field, which names an archive script.
pub fn resolve(
    f: &JobFields,
    entrypoint: Option<&str>,
    tf: Option<&Towerfile>,
) -> ApiResult<(JobSpec, Option<i64>)> {
    let given: Vec<&str> = [
        ("entrypoint", entrypoint.is_some()),
        ("command", f.command.is_some()),
        ("shell", f.shell.is_some()),
        ("git", f.git.is_some()),
        ("binary", f.binary.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, g)| g.then_some(n))
    .collect();
    if given.len() > 1 {
        return Err(bad(format!(
            "only one of entrypoint, command, shell, git and binary may be given; got {}",
            given.join(" and ")
        )));
    }
    let mut job = match (given.first(), tf) {
        (Some(_), _) => entry_from_form(f, entrypoint)?,
        (None, Some(tf)) => tf.app.job.clone(),
        (None, None) => {
            return Err(bad(
                "entrypoint is required when the archive has no Towerfile (or give command, shell, git or binary)",
            ))
        }
    };
    if given.is_empty() {
        // The Towerfile's entry: its pty and limits come with it below.
    } else if let Some(tf) = tf {
        job.pty = tf.app.job.pty;
        job.limits = tf.app.job.limits;
    }
    if let Some(p) = &f.pty {
        let input: PtyInput = json("pty", p, "true, false or {\"cols\":N,\"rows\":N}")?;
        job.pty = input.resolve().map_err(bad)?;
    }
    if let Some(l) = &f.limits {
        let input: LimitsInput = json("limits", l, "a JSON object of memory, cpus, pids, disk")?;
        job.limits = job.limits.merged(&input.resolve().map_err(bad)?);
    }
    let mut priority = tf.and_then(|t| t.app.priority);
    if let Some(p) = &f.priority {
        let p = p.trim();
        let input = match p.parse::<i64>() {
            Ok(n) => PriorityInput::Number(n.into()),
            Err(_) => PriorityInput::Name(p.to_string()),
        };
        priority = Some(input.resolve().map_err(bad)?);
    }
    job.validate().map_err(bad)?;
    if let Source::Git {
        secret: Some(s), ..
    } = &job.source
    {
        let declared = tf.is_some_and(|t| t.app.secrets.contains(s));
        if !declared {
            return Err(bad(format!(
                "git.secret {s:?} must be listed in the Towerfile's [app].secrets (the runner only receives declared secrets)"
            )));
        }
    }
    Ok((job, priority))
}

fn entry_from_form(f: &JobFields, entrypoint: Option<&str>) -> ApiResult<JobSpec> {
    let (entry, source) = if let Some(e) = entrypoint {
        (
            Entry::Script {
                path: e.to_string(),
            },
            Source::Archive,
        )
    } else if let Some(c) = &f.command {
        let argv: Vec<String> = json("command", c, "a JSON list of strings (argv)")?;
        (Entry::Command { argv }, Source::Archive)
    } else if let Some(s) = &f.shell {
        (Entry::Shell { script: s.clone() }, Source::Archive)
    } else if let Some(g) = &f.git {
        let g: GitField = json(
            "git",
            g,
            "a JSON object {url, ref, command or script, secret}",
        )?;
        let entry = match (g.command, g.script) {
            (Some(argv), None) => Entry::Command { argv },
            (None, Some(path)) => Entry::Script { path },
            _ => return Err(bad("git needs exactly one of command and script")),
        };
        (
            entry,
            Source::Git {
                url: g.url,
                git_ref: g.git_ref,
                secret: g.secret,
            },
        )
    } else {
        let b: BinaryField = json(
            "binary",
            f.binary.as_deref().unwrap_or_default(),
            "a JSON object {url, sha256, args}",
        )?;
        (
            Entry::Binary { args: b.args },
            Source::Binary {
                url: b.url,
                sha256: b.sha256.to_ascii_lowercase(),
            },
        )
    };
    Ok(JobSpec {
        entry,
        source,
        pty: None,
        limits: Default::default(),
    })
}
