//! The Towerfile: the TOML manifest at the root of every app folder (the
//! same format as Tower's own CLI). The CLI reads it to package an app and
//! the server reads it again from the uploaded archive, so both apply the
//! same rules through [`parse`].
//!
//! ```toml
//! [app]
//! name = "hello"
//! script = "main.py"
//! source = ["*.py", "lib/**"]
//! description = "Says hello"
//! import_paths = ["../shared-lib"]
//!
//! [[parameters]]
//! name = "name"
//! description = "Who to greet"
//! default = "World"
//!
//! [[parameters]]
//! name = "count"
//! type = "integer"          # string (default), integer, number, boolean, json
//! default = "3"             # or 3; typed by `type`
//! enum = [1, 3, 5]          # optional: the allowed values
//! ```
//!
//! Errors name the key and the line so users can fix the file without
//! guessing; unknown keys are only warnings so newer files still deploy.

use crate::job::JobSpec;
use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Component, Path};
use toml_edit::{ImDocument, Item, TableLike, Value};

/// A parsed and validated Towerfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Towerfile {
    pub app: AppSection,
    pub parameters: Vec<Parameter>,
    /// `retries`, `retry_delay`, `timeout`, `schedule` and `[[schedules]]`.
    pub automation: Automation,
}

/// The `[app]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSection {
    /// App slug the version is deployed to.
    pub name: String,
    /// The entrypoint as the API shows it: the script's path relative to
    /// the app folder, else [`JobSpec::entrypoint_label`].
    pub script: String,
    /// What runs and how (`script`, `command`, `shell`, `[app.git]`,
    /// `[app.binary]`, `pty`, `[app.limits]`; towerfile/job.rs).
    pub job: JobSpec,
    /// `priority`: the default priority of the version's runs.
    pub priority: Option<i64>,
    /// Globs (relative to the app folder) selecting what is packed; empty = everything.
    pub source: Vec<String>,
    pub description: Option<String>,
    /// Folders outside the app packed under `modules/<basename>/` and put on `PYTHONPATH`.
    pub import_paths: Vec<String>,
    /// Secrets the app needs, by environment variable name (towerfile/app_secrets.rs).
    pub secrets: Vec<String>,
}

/// A Towerfile plus the non-fatal remarks found while reading it.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub towerfile: Towerfile,
    /// Human-readable, e.g. `Towerfile line 4: unknown key [app].schedule (ignored)`.
    pub warnings: Vec<String>,
}

/// Why a Towerfile was refused. The message always carries the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TowerfileError {
    /// Not valid TOML.
    #[error("Towerfile line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// Valid TOML that breaks a Towerfile rule; `key` is e.g. `[app].script`.
    #[error("Towerfile line {line}: {message}")]
    Invalid {
        line: usize,
        key: String,
        message: String,
    },
}

impl TowerfileError {
    /// The 1-based line the error points at.
    pub fn line(&self) -> usize {
        match self {
            TowerfileError::Syntax { line, .. } | TowerfileError::Invalid { line, .. } => *line,
        }
    }
}

/// Name of the manifest file inside an app folder and an archive.
pub const FILE_NAME: &str = "Towerfile";

/// Folder of the archive holding the import paths.
pub const MODULES_DIR: &str = "modules";

const APP_KEYS: &[&str] = &[
    "name",
    "script",
    "source",
    "description",
    "import_paths",
    "secrets",
    // towerfile/job.rs
    "command",
    "shell",
    "pty",
    "priority",
    "git",
    "binary",
    "limits",
    // towerfile/automation.rs
    "retries",
    "retry_delay",
    "timeout",
    "schedule",
];

/// Parses and validates a Towerfile.
pub fn parse(text: &str) -> Result<Parsed, TowerfileError> {
    let doc = ImDocument::parse(text).map_err(|e| {
        let (line, column) = line_col(text, e.span().map(|s| s.start).unwrap_or(0));
        TowerfileError::Syntax {
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })?;
    let mut cx = Cx {
        text,
        warnings: Vec::new(),
    };
    let root = doc.as_table();
    for (key, _) in root.iter() {
        if key != "app" && key != "parameters" && key != "schedules" {
            let line = cx.line(root.key(key).and_then(|k| k.span()));
            cx.warn(line, format!("unknown key {key:?} (ignored)"));
        }
    }
    let app_item = root.get("app").ok_or_else(|| TowerfileError::Invalid {
        line: 1,
        key: "[app]".into(),
        message: "the [app] section is missing".into(),
    })?;
    let app = cx.app(app_item)?;
    let automation = match app_item.as_table_like() {
        Some(t) => cx.automation(t, cx.line(app_item.span()), root.get("schedules"))?,
        None => Automation::default(),
    };
    let parameters = match root.get("parameters") {
        None => Vec::new(),
        Some(item) => cx.parameters(item)?,
    };
    Ok(Parsed {
        towerfile: Towerfile {
            app,
            parameters,
            automation,
        },
        warnings: cx.warnings,
    })
}

impl Towerfile {
    /// Folders inside the archive (`modules/<basename>`) that the runner
    /// puts on `PYTHONPATH`, in Towerfile order.
    pub fn module_paths(&self) -> Vec<String> {
        self.app
            .import_paths
            .iter()
            .filter_map(|p| import_basename(p))
            .map(|b| format!("{MODULES_DIR}/{b}"))
            .collect()
    }
}

/// Last path component of an import path (`../shared-lib/` → `shared-lib`).
pub fn import_basename(path: &str) -> Option<String> {
    match Path::new(path).components().next_back()? {
        Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
        _ => None,
    }
}

/// Whether a parameter name is usable as an identifier and env variable.
pub fn valid_identifier(name: &str) -> bool {
    crate::validate::env_var_name(name)
}

/// A path that stays inside the app folder: relative, no `..`, not empty.
pub fn is_safe_relative(p: &str) -> bool {
    if p.is_empty() || p.starts_with('/') || p.starts_with('\\') || p.contains('\\') {
        return false;
    }
    let mut normal = 0;
    for c in Path::new(p).components() {
        match c {
            Component::Normal(_) => normal += 1,
            Component::CurDir => {}
            _ => return false,
        }
    }
    normal > 0
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

struct Cx<'a> {
    text: &'a str,
    warnings: Vec<String>,
}

type Res<T> = Result<T, TowerfileError>;

impl Cx<'_> {
    fn line(&self, span: Option<Range<usize>>) -> usize {
        span.map(|s| line_col(self.text, s.start).0).unwrap_or(1)
    }

    fn warn(&mut self, line: usize, msg: String) {
        self.warnings.push(format!("Towerfile line {line}: {msg}"));
    }

    fn err<T>(&self, line: usize, key: &str, message: String) -> Res<T> {
        Err(TowerfileError::Invalid {
            line,
            key: key.to_string(),
            message,
        })
    }

    /// The entries of an `[[array]]` of tables (or an inline array of inline
    /// tables), each with its span; `key` is the array's name in errors.
    /// Parameters and schedules are both read through it.
    #[allow(clippy::type_complexity)]
    fn tables_of<'i>(
        &self,
        item: &'i Item,
        key: &str,
    ) -> Res<Vec<(&'i dyn TableLike, Option<Range<usize>>)>> {
        let mut tables: Vec<(&dyn TableLike, Option<Range<usize>>)> = Vec::new();
        match item {
            Item::ArrayOfTables(a) => {
                tables.extend(a.iter().map(|t| (t as &dyn TableLike, t.span())))
            }
            Item::Value(Value::Array(a)) => {
                for v in a.iter() {
                    match v {
                        Value::InlineTable(t) => tables.push((t, t.span())),
                        _ => {
                            return self.err(
                                self.line(v.span()),
                                &format!("[[{key}]]"),
                                format!("each entry of {key} must be a table"),
                            )
                        }
                    }
                }
            }
            _ => {
                return self.err(
                    self.line(item.span()),
                    &format!("[[{key}]]"),
                    format!("{key} must be written as [[{key}]] tables"),
                )
            }
        }
        Ok(tables)
    }

    /// Line of `key` in `table`, else of the table itself.
    fn key_line(&self, table: &dyn TableLike, table_item: &Item, key: &str) -> usize {
        self.key_line_at(table, self.line(table_item.span()), key)
    }

    fn opt_string(
        &self,
        table: &dyn TableLike,
        item: &Item,
        key: &str,
        name: &str,
    ) -> Res<Option<String>> {
        match table.get(key) {
            None => Ok(None),
            Some(v) => match v.as_str() {
                Some(s) => Ok(Some(s.to_string())),
                None => self.err(
                    self.key_line(table, item, key),
                    name,
                    format!("{name} must be a string"),
                ),
            },
        }
    }

    fn req_string(&self, table: &dyn TableLike, item: &Item, key: &str, name: &str) -> Res<String> {
        match self.opt_string(table, item, key, name)? {
            Some(s) => Ok(s),
            None => self.err(self.line(item.span()), name, format!("{name} is required")),
        }
    }

    fn string_list(
        &self,
        table: &dyn TableLike,
        item: &Item,
        key: &str,
        name: &str,
    ) -> Res<Vec<String>> {
        let Some(v) = table.get(key) else {
            return Ok(Vec::new());
        };
        let line = self.key_line(table, item, key);
        if let Some(s) = v.as_str() {
            return Ok(vec![s.to_string()]);
        }
        let Some(arr) = v.as_array() else {
            return self.err(line, name, format!("{name} must be a list of strings"));
        };
        arr.iter()
            .enumerate()
            .map(|(i, e)| match e {
                Value::String(s) => Ok(s.value().clone()),
                _ => self.err(
                    e.span().map(|s| self.line(Some(s))).unwrap_or(line),
                    name,
                    format!("{name}[{i}] must be a string"),
                ),
            })
            .collect()
    }

    fn app(&mut self, item: &Item) -> Res<AppSection> {
        let Some(t) = item.as_table_like() else {
            return self.err(
                self.line(item.span()),
                "[app]",
                "[app] must be a table".into(),
            );
        };
        let app_line = self.line(item.span());
        self.warn_unknown_at(t, app_line, APP_KEYS, "[app]");
        let name = self.req_string(t, item, "name", "[app].name")?;
        if let Err(e) = crate::validate::slug(&name) {
            return self.err(
                self.key_line(t, item, "name"),
                "[app].name",
                format!("[app].name is not a valid app name: {e}"),
            );
        }
        if let Some(script) = t.get("script").and_then(|v| v.as_str()) {
            if !is_safe_relative(script) {
                return self.err(
                    self.key_line(t, item, "script"),
                    "[app].script",
                    format!("[app].script {script:?} must be a relative path inside the app folder (no leading '/', no '..')"),
                );
            }
        }
        let description = self.opt_string(t, item, "description", "[app].description")?;
        let source = self.string_list(t, item, "source", "[app].source")?;
        if let Some(i) = source.iter().position(|s| s.trim().is_empty()) {
            return self.err(
                self.key_line(t, item, "source"),
                "[app].source",
                format!("[app].source[{i}] is empty"),
            );
        }
        let import_paths = self.string_list(t, item, "import_paths", "[app].import_paths")?;
        let mut seen = BTreeSet::new();
        for (i, p) in import_paths.iter().enumerate() {
            let line = self.key_line(t, item, "import_paths");
            let Some(base) = import_basename(p) else {
                return self.err(
                    line,
                    "[app].import_paths",
                    format!("[app].import_paths[{i}] {p:?} must name a folder (its last component is packed as modules/<name>)"),
                );
            };
            if !seen.insert(base.clone()) {
                return self.err(
                    line,
                    "[app].import_paths",
                    format!("[app].import_paths[{i}] {p:?}: two import paths end in the same folder name {base:?}"),
                );
            }
        }
        let secrets = self.app_secrets(t, item)?;
        let job::JobKeys { job, priority } = self.job(t, item, &secrets)?;
        Ok(AppSection {
            name,
            script: job.entrypoint_label(),
            job,
            priority,
            source,
            description,
            import_paths,
            secrets,
        })
    }

    fn key_line_at(&self, table: &dyn TableLike, fallback: usize, key: &str) -> usize {
        match table.key(key).and_then(|k| k.span()) {
            Some(s) => self.line(Some(s)),
            None => fallback,
        }
    }

    fn warn_unknown_at(
        &mut self,
        table: &dyn TableLike,
        line: usize,
        known: &[&str],
        prefix: &str,
    ) {
        let unknown: Vec<String> = table
            .iter()
            .map(|(k, _)| k.to_string())
            .filter(|k| !known.contains(&k.as_str()))
            .collect();
        for k in unknown {
            let l = self.key_line_at(table, line, &k);
            self.warn(l, format!("unknown key {prefix}.{k} (ignored)"));
        }
    }
}

mod app_secrets;
mod job;
mod parameters;
pub use parameters::{Parameter, MAX_ENUM};
mod automation;
pub use automation::{Automation, ScheduleSpec, MAX_INPUT_BYTES, MAX_SCHEDULES, MAX_TIMEOUT};

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
