//! What a run executes and under which limits: the entry (a script in the
//! archive, an argv, a shell line, a downloaded binary), where its files come
//! from (the uploaded archive, a git checkout, a binary by URL), whether it
//! gets a pseudo-terminal, and its resource limits.
//!
//! One type, [`JobSpec`], is read from the Towerfile (`towerfile/job.rs`),
//! from the upload form, stored with the version as JSON, merged with a
//! run's [`JobOverrides`] and handed to the runner in the lease, so every
//! place applies the same validation ([`JobSpec::validate`]). A plain
//! archive script with no PTY and no limits is the default and travels as
//! before (the lease leaves `job` out), so older runners keep working.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

mod limits;
pub use limits::{human, parse_size, Limits, LimitsInput, SizeInput};
mod priority;
pub use priority::{priority_name, Priority, PriorityInput};
mod source;
pub use source::{check_git_ref, check_git_url, check_sha256, check_url};
#[cfg(test)]
mod tests;

/// Longest `command` argv (entries) and longest entry, in bytes.
pub const MAX_ARGS: usize = 256;
pub const MAX_ARG_BYTES: usize = 4096;
/// Longest `shell` line.
pub const MAX_SHELL_BYTES: usize = 64 * 1024;
/// Default and largest PTY window.
pub const DEFAULT_PTY: PtySize = PtySize { cols: 80, rows: 24 };
pub const MAX_PTY_SIDE: u16 = 1000;

/// Everything about how a version's runs execute, beyond the archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobSpec {
    pub entry: Entry,
    #[serde(default)]
    pub source: Source,
    /// A pseudo-terminal of this size instead of pipes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pty: Option<PtySize>,
    #[serde(default, skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
}

/// What the runner starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// A `.py` (run by the app's Python), `.sh` (by `sh`) or executable,
    /// relative to the workspace.
    Script { path: String },
    /// An argv, no shell; `argv[0]` is looked up on `PATH` or is relative
    /// to the workspace when it contains a `/`.
    Command { argv: Vec<String> },
    /// A line for `/bin/sh -c`.
    Shell { script: String },
    /// The binary of a [`Source::Binary`], with these arguments.
    Binary {
        #[serde(default)]
        args: Vec<String>,
    },
}

/// Where the workspace's files come from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// The version's uploaded archive, unpacked (the default).
    #[default]
    Archive,
    /// A checkout of `ref` (a tag, a branch or a commit SHA) of `url`: the
    /// workspace is the checkout and the resolved commit is recorded on the
    /// attempt. `secret` names a secret of the run's environment used as the
    /// HTTPS password or token (never part of the URL).
    Git {
        url: String,
        #[serde(rename = "ref")]
        git_ref: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
    },
    /// A binary downloaded once by URL into the runner's content-addressed
    /// cache and checked against `sha256` before every use.
    Binary { url: String, sha256: String },
}

/// A terminal window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PtySize {
    pub cols: u16,
    pub rows: u16,
}

/// `pty` as users write it: `true`, `false` or `{cols, rows}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PtyInput {
    On(bool),
    Size(PtySize),
}

impl PtyInput {
    /// The window, or `None` for pipes; a size is checked.
    pub fn resolve(self) -> Result<Option<PtySize>, String> {
        match self {
            PtyInput::On(false) => Ok(None),
            PtyInput::On(true) => Ok(Some(DEFAULT_PTY)),
            PtyInput::Size(s) => {
                for (name, v) in [("cols", s.cols), ("rows", s.rows)] {
                    if v == 0 || v > MAX_PTY_SIDE {
                        return Err(format!("pty.{name} must be 1 to {MAX_PTY_SIDE}, got {v}"));
                    }
                }
                Ok(Some(s))
            }
        }
    }
}

/// What one run may change of its version's [`JobSpec`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobOverrides {
    /// `true`, `false` or a window size: replaces the version's choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pty: Option<PtyInput>,
    /// Each limit given replaces the version's; the others stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsInput>,
    /// Another ref of a git version's repository, or the ref of `git_url`.
    #[serde(
        default,
        rename = "ref",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_string"
    )]
    pub git_ref: Option<String>,
    /// A repository to check out instead of the version's archive (or its
    /// own repository), at `ref`; the version's script or command runs in
    /// the checkout.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_string"
    )]
    pub git_url: Option<String>,
}

fn some_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Some(String::deserialize(d)?))
}

impl JobOverrides {
    pub fn is_empty(&self) -> bool {
        self.pty.is_none()
            && self.limits.is_none()
            && self.git_ref.is_none()
            && self.git_url.is_none()
    }
}

impl Default for JobSpec {
    fn default() -> Self {
        JobSpec::script("main.py")
    }
}

impl JobSpec {
    /// A plain archive script.
    pub fn script(path: &str) -> JobSpec {
        JobSpec {
            entry: Entry::Script {
                path: path.to_string(),
            },
            source: Source::Archive,
            pty: None,
            limits: Limits::default(),
        }
    }

    /// Whether this is what versions did before jobs had kinds: the lease
    /// then leaves `job` out and any runner can execute it.
    pub fn is_plain_script(&self) -> bool {
        matches!(self.entry, Entry::Script { .. })
            && self.source == Source::Archive
            && self.pty.is_none()
            && self.limits.is_empty()
    }

    /// The archive must hold the entry's file (only an archive script).
    pub fn script_in_archive(&self) -> Option<&str> {
        match (&self.entry, &self.source) {
            (Entry::Script { path }, Source::Archive) => Some(path),
            _ => None,
        }
    }

    /// The version's `entrypoint` as the API shows it: the script's path,
    /// else a short description (`make test`, `sh -c '…'`, `binary <url>`).
    pub fn entrypoint_label(&self) -> String {
        let label = match &self.entry {
            Entry::Script { path } => path.clone(),
            Entry::Command { argv } => argv.join(" "),
            Entry::Shell { script } => format!("sh -c {script:?}"),
            Entry::Binary { args } => {
                let url = match &self.source {
                    Source::Binary { url, .. } => url.as_str(),
                    _ => "?",
                };
                std::iter::once(url)
                    .chain(args.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        truncate(label, 200)
    }

    /// Checks every rule; the message names the field as the Towerfile and
    /// the API spell it (`command[2]`, `git.url`, `limits.memory`).
    pub fn validate(&self) -> Result<(), String> {
        match &self.entry {
            Entry::Script { path } => {
                if !crate::towerfile::is_safe_relative(path) {
                    return Err(format!(
                        "script {path:?} must be a relative path inside the app folder (no leading '/', no '..')"
                    ));
                }
            }
            Entry::Command { argv } => check_args("command", argv, true)?,
            Entry::Shell { script } => {
                if script.trim().is_empty() {
                    return Err("shell must not be empty".into());
                }
                if script.len() > MAX_SHELL_BYTES {
                    return Err(format!("shell is longer than {MAX_SHELL_BYTES} bytes"));
                }
                if script.contains('\0') {
                    return Err("shell must not contain NUL".into());
                }
            }
            Entry::Binary { args } => check_args("binary.args", args, false)?,
        }
        match (&self.entry, &self.source) {
            (Entry::Binary { .. }, Source::Binary { .. }) => {}
            (Entry::Binary { .. }, _) => {
                return Err(
                    "a binary entry needs a binary source (binary.url, binary.sha256)".into(),
                )
            }
            (_, Source::Binary { .. }) => {
                return Err(
                    "a binary source runs the binary itself: no script, command or shell".into(),
                )
            }
            (Entry::Shell { .. }, Source::Git { .. }) => {
                return Err("a git source runs git.command or git.script".into())
            }
            _ => {}
        }
        match &self.source {
            Source::Archive => {}
            Source::Git {
                url,
                git_ref,
                secret,
            } => {
                check_git_url(url).map_err(|e| format!("git.url: {e}"))?;
                check_git_ref(git_ref).map_err(|e| format!("git.ref: {e}"))?;
                if let Some(s) = secret {
                    if !crate::validate::env_var_name(s) {
                        return Err(format!("git.secret {s:?} is not a valid secret name"));
                    }
                }
            }
            Source::Binary { url, sha256 } => {
                check_url(url).map_err(|e| format!("binary.url: {e}"))?;
                check_sha256(sha256).map_err(|e| format!("binary.sha256: {e}"))?;
            }
        }
        if let Some(p) = self.pty {
            PtyInput::Size(p).resolve()?;
        }
        self.limits.validate()
    }

    /// The spec one run executes: the version's with the run's overrides.
    pub fn with_overrides(&self, o: &JobOverrides) -> Result<JobSpec, String> {
        let mut spec = self.clone();
        if let Some(p) = o.pty {
            spec.pty = p.resolve()?;
        }
        if let Some(l) = &o.limits {
            spec.limits = spec.limits.merged(&l.resolve()?);
        }
        if let Some(url) = &o.git_url {
            spec.source = match spec.source {
                Source::Binary { .. } => {
                    return Err("git_url is not for a version that runs a binary".into())
                }
                Source::Git {
                    git_ref, secret, ..
                } => Source::Git {
                    url: url.clone(),
                    git_ref: o.git_ref.clone().unwrap_or(git_ref),
                    secret,
                },
                Source::Archive => Source::Git {
                    url: url.clone(),
                    git_ref: o
                        .git_ref
                        .clone()
                        .ok_or("git_url needs a ref (a tag, branch or commit)")?,
                    secret: None,
                },
            };
        } else if let Some(r) = &o.git_ref {
            match &mut spec.source {
                Source::Git { git_ref, .. } => *git_ref = r.clone(),
                _ => {
                    return Err(
                        "ref is only for a version with a git source (or with git_url)".into(),
                    )
                }
            }
        }
        spec.validate()?;
        Ok(spec)
    }
}

fn check_args(field: &str, argv: &[String], need_one: bool) -> Result<(), String> {
    if need_one && argv.is_empty() {
        return Err(format!("{field} must name a program (a non-empty list)"));
    }
    if argv.len() > MAX_ARGS {
        return Err(format!("{field} has more than {MAX_ARGS} entries"));
    }
    for (i, a) in argv.iter().enumerate() {
        if a.contains('\0') {
            return Err(format!("{field}[{i}] must not contain NUL"));
        }
        if a.len() > MAX_ARG_BYTES {
            return Err(format!("{field}[{i}] is longer than {MAX_ARG_BYTES} bytes"));
        }
    }
    if need_one && argv[0].trim().is_empty() {
        return Err(format!("{field}[0] (the program) must not be empty"));
    }
    Ok(())
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}
