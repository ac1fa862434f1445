//! The `[app]` keys that say what a version runs (see `crate::job`):
//! exactly one entry among `script`, `command`, `shell`, `[app.git]` and
//! `[app.binary]`, plus `pty`, `priority` and `[app.limits]`.
//!
//! ```toml
//! [app]
//! name = "build"
//! command = ["make", "test"]     # or shell = "make test && make lint"
//! pty = true                     # or { cols = 120, rows = 40 }
//! priority = "background"        # foreground, background, best_effort, or a number
//!
//! [app.git]                      # instead of the archive: a checkout
//! url = "https://github.com/acme/etl.git"
//! ref = "v1.2.0"                 # tag, branch or commit
//! command = ["python", "etl.py"] # or script = "etl.py"
//!
//! [app.limits]
//! memory = "256MiB"
//! cpus = 1.5
//! pids = 256
//! disk = "1GiB"
//! ```

use super::automation::{table_to_json, toml_to_json};
use super::{Cx, Res};
use crate::job::{Entry, JobSpec, Limits, LimitsInput, PriorityInput, PtyInput, Source};
use toml_edit::{Item, TableLike};

/// What `[app]` says about execution.
pub(super) struct JobKeys {
    pub job: JobSpec,
    pub priority: Option<i64>,
}

const GIT_KEYS: &[&str] = &["url", "ref", "command", "script", "secret"];
const BINARY_KEYS: &[&str] = &["url", "sha256", "args"];

impl Cx<'_> {
    pub(super) fn job(
        &mut self,
        t: &dyn TableLike,
        item: &Item,
        secrets: &[String],
    ) -> Res<JobKeys> {
        let given: Vec<&str> = ["script", "command", "shell", "git", "binary"]
            .into_iter()
            .filter(|k| t.contains_key(k))
            .collect();
        let app_line = self.line(item.span());
        let (entry, source) = match given.as_slice() {
            [] => {
                return self.err(
                    app_line,
                    "[app].script",
                    "[app].script is required (or command, shell, [app.git] or [app.binary]: what to run)"
                        .into(),
                )
            }
            [one] => self.entry_and_source(t, item, one)?,
            [a, b, ..] => {
                return self.err(
                    self.key_line(t, item, b),
                    &format!("[app].{b}"),
                    format!("[app] may say only one of script, command, shell, git and binary; it has {a} and {b}"),
                )
            }
        };
        let pty = match t.get("pty") {
            None => None,
            Some(v) => {
                let line = self.key_line(t, item, "pty");
                let json = self.as_json(v, line, "[app].pty")?;
                let input: PtyInput = serde_json::from_value(json).or_else(|_| {
                    self.err(
                        line,
                        "[app].pty",
                        "[app].pty must be true, false or { cols = 120, rows = 40 }".into(),
                    )
                })?;
                match input.resolve() {
                    Ok(p) => p,
                    Err(e) => return self.err(line, "[app].pty", format!("[app].{e}")),
                }
            }
        };
        let priority = match t.get("priority") {
            None => None,
            Some(v) => {
                let line = self.key_line(t, item, "priority");
                let json = self.as_json(v, line, "[app].priority")?;
                let input: Result<PriorityInput, _> = serde_json::from_value(json);
                match input.map_err(|e| e.to_string()).and_then(|p| p.resolve()) {
                    Ok(p) => Some(p),
                    Err(e) => return self.err(line, "[app].priority", format!("[app].{e}")),
                }
            }
        };
        let limits = match t.get("limits") {
            None => Limits::default(),
            Some(v) => {
                let line = self.key_line(t, item, "limits");
                let Some(lt) = v.as_table_like() else {
                    return self.err(line, "[app.limits]", "[app.limits] must be a table".into());
                };
                let json = table_to_json(lt).map_err(|e| self.invalid(line, "[app.limits]", e))?;
                let input: LimitsInput = serde_json::from_value(serde_json::Value::Object(json))
                    .map_err(|e| {
                        self.invalid(line, "[app.limits]", format!("[app.limits]: {e}"))
                    })?;
                input.resolve().map_err(|e| {
                    let field = e.trim_start_matches("limits.");
                    self.invalid(line, "[app.limits]", format!("[app.limits].{field}"))
                })?
            }
        };
        let job = JobSpec {
            entry,
            source,
            pty,
            limits,
        };
        if let Source::Git {
            secret: Some(s), ..
        } = &job.source
        {
            if !secrets.contains(s) {
                return self.err(
                    self.key_line(t, item, "git"),
                    "[app.git].secret",
                    format!("[app.git].secret {s:?} must also be listed in [app].secrets (the runner only receives declared secrets)"),
                );
            }
        }
        if let Err(e) = job.validate() {
            let key = given[0];
            return self.err(
                self.key_line(t, item, key),
                &format!("[app].{key}"),
                format!("[app].{e}"),
            );
        }
        Ok(JobKeys { job, priority })
    }

    fn invalid(&self, line: usize, key: &str, message: String) -> super::TowerfileError {
        super::TowerfileError::Invalid {
            line,
            key: key.to_string(),
            message,
        }
    }

    fn as_json(&self, v: &Item, line: usize, key: &str) -> Res<serde_json::Value> {
        match v {
            Item::Value(v) => {
                toml_to_json(v).map_err(|e| self.invalid(line, key, format!("{key}: {e}")))
            }
            Item::Table(t) => table_to_json(t)
                .map(serde_json::Value::Object)
                .map_err(|e| self.invalid(line, key, format!("{key}: {e}"))),
            _ => self.err(line, key, format!("{key} has the wrong type")),
        }
    }

    /// The argv of a `command` key: a list of strings, never one string
    /// (which would need a shell to split).
    fn argv(&self, t: &dyn TableLike, item: &Item, key: &str, name: &str) -> Res<Vec<String>> {
        if t.get(key).and_then(|v| v.as_str()).is_some() {
            return self.err(
                self.key_line(t, item, key),
                name,
                format!("{name} must be a list of strings (argv, no shell); write shell = \"...\" for a shell line"),
            );
        }
        self.string_list(t, item, key, name)
    }

    fn entry_and_source(
        &mut self,
        t: &dyn TableLike,
        item: &Item,
        key: &str,
    ) -> Res<(Entry, Source)> {
        Ok(match key {
            "script" => (
                Entry::Script {
                    path: self.req_string(t, item, "script", "[app].script")?,
                },
                Source::Archive,
            ),
            "command" => (
                Entry::Command {
                    argv: self.argv(t, item, "command", "[app].command")?,
                },
                Source::Archive,
            ),
            "shell" => (
                Entry::Shell {
                    script: self.req_string(t, item, "shell", "[app].shell")?,
                },
                Source::Archive,
            ),
            "git" => {
                let g_item = t.get("git").expect("present");
                let line = self.key_line(t, item, "git");
                let Some(g) = g_item.as_table_like() else {
                    return self.err(line, "[app.git]", "[app.git] must be a table".into());
                };
                self.warn_unknown_at(g, line, GIT_KEYS, "[app.git]");
                let url = self.req_string(g, g_item, "url", "[app.git].url")?;
                let git_ref = self.req_string(g, g_item, "ref", "[app.git].ref")?;
                let secret = self.opt_string(g, g_item, "secret", "[app.git].secret")?;
                let entry = match (g.contains_key("command"), g.contains_key("script")) {
                    (true, false) => Entry::Command {
                        argv: self.argv(g, g_item, "command", "[app.git].command")?,
                    },
                    (false, true) => Entry::Script {
                        path: self.req_string(g, g_item, "script", "[app.git].script")?,
                    },
                    _ => {
                        return self.err(
                            line,
                            "[app.git]",
                            "[app.git] needs exactly one of command and script (what to run in the checkout)".into(),
                        )
                    }
                };
                (
                    entry,
                    Source::Git {
                        url,
                        git_ref,
                        secret,
                    },
                )
            }
            _ => {
                let b_item = t.get("binary").expect("present");
                let line = self.key_line(t, item, "binary");
                let Some(b) = b_item.as_table_like() else {
                    return self.err(line, "[app.binary]", "[app.binary] must be a table".into());
                };
                self.warn_unknown_at(b, line, BINARY_KEYS, "[app.binary]");
                let url = self.req_string(b, b_item, "url", "[app.binary].url")?;
                let sha256 = self
                    .req_string(b, b_item, "sha256", "[app.binary].sha256")?
                    .to_ascii_lowercase();
                let args = self.argv(b, b_item, "args", "[app.binary].args")?;
                (Entry::Binary { args }, Source::Binary { url, sha256 })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::job::{Entry, Source, DEFAULT_PTY};
    use crate::towerfile::parse;

    fn app(body: &str) -> Result<crate::towerfile::AppSection, String> {
        parse(&format!("[app]\nname = \"a\"\n{body}\n"))
            .map(|p| {
                assert!(p.warnings.is_empty(), "{:?}", p.warnings);
                p.towerfile.app
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn each_entry_kind_parses() {
        let c = app(r#"command = ["make", "test"]"#).unwrap();
        assert_eq!(
            c.job.entry,
            Entry::Command {
                argv: vec!["make".into(), "test".into()]
            }
        );
        assert_eq!(c.script, "make test");
        let s = app(r#"shell = "echo hi | tr a-z A-Z""#).unwrap();
        assert!(matches!(s.job.entry, Entry::Shell { .. }));
        let g = app("[app.git]\nurl = \"file:///srv/r.git\"\nref = \"v1\"\nscript = \"etl.py\"")
            .unwrap();
        assert_eq!(
            g.job.entry,
            Entry::Script {
                path: "etl.py".into()
            }
        );
        assert!(
            matches!(&g.job.source, Source::Git { url, git_ref, secret: None } if url == "file:///srv/r.git" && git_ref == "v1")
        );
        let sha = "AB".repeat(32);
        let b = app(&format!(
            "[app.binary]\nurl = \"http://127.0.0.1:1/tool\"\nsha256 = \"{sha}\"\nargs = [\"-v\"]"
        ))
        .unwrap();
        assert_eq!(
            b.job.entry,
            Entry::Binary {
                args: vec!["-v".into()]
            }
        );
        assert!(
            matches!(&b.job.source, Source::Binary { sha256, .. } if *sha256 == "ab".repeat(32))
        );
        // Tower.dev's own form keeps working, with nothing new set.
        let plain = app(r#"script = "main.py""#).unwrap();
        assert!(plain.job.is_plain_script());
        assert_eq!(plain.priority, None);
    }

    #[test]
    fn pty_priority_and_limits() {
        let a = app("script = \"m.py\"\npty = true\npriority = \"background\"\n[app.limits]\nmemory = \"256MiB\"\ncpus = 1.5\npids = 256\ndisk = \"1GiB\"").unwrap();
        assert_eq!(a.job.pty, Some(DEFAULT_PTY));
        assert_eq!(a.priority, Some(0));
        assert_eq!(a.job.limits.memory, Some(256 << 20));
        assert_eq!(a.job.limits.cpus, Some(1.5));
        assert_eq!(a.job.limits.pids, Some(256));
        assert_eq!(a.job.limits.disk, Some(1 << 30));
        let sized =
            app("script = \"m.py\"\npty = { cols = 120, rows = 40 }\npriority = -5").unwrap();
        assert_eq!(sized.job.pty.map(|p| (p.cols, p.rows)), Some((120, 40)));
        assert_eq!(sized.priority, Some(-5));
        assert_eq!(app("script = \"m.py\"\npty = false").unwrap().job.pty, None);
    }

    #[test]
    fn bad_input_names_the_key_and_line() {
        for (body, want) in [
            (
                r#"command = "make test""#,
                "Towerfile line 3: [app].command must be a list of strings",
            ),
            (r#"command = []"#, "command must name a program"),
            (
                "script = \"m.py\"\ncommand = [\"x\"]",
                "line 4: [app] may say only one of",
            ),
            (r#"shell = 3"#, "[app].shell must be a string"),
            (
                "[app.git]\nurl = \"https://u:pw@h/r.git\"\nref = \"v1\"\ncommand = [\"x\"]",
                "git.url: must not carry a password",
            ),
            (
                "[app.git]\nurl = \"/r\"\nref = \"v1\"",
                "exactly one of command and script",
            ),
            (
                "[app.git]\nurl = \"/r\"\ncommand = [\"x\"]",
                "[app.git].ref is required",
            ),
            (
                "[app.git]\nurl = \"/r\"\nref = \"v1\"\ncommand = [\"x\"]\nsecret = \"TOK\"",
                "must also be listed in [app].secrets",
            ),
            (
                "[app.binary]\nurl = \"http://h/x\"\nsha256 = \"xyz\"",
                "binary.sha256",
            ),
            (
                "script = \"m.py\"\npty = \"yes\"",
                "[app].pty must be true, false",
            ),
            (
                "script = \"m.py\"\npty = { cols = 0, rows = 2 }",
                "pty.cols must be 1 to 1000",
            ),
            (
                "script = \"m.py\"\npriority = \"urgent\"",
                "Towerfile line 4: [app].priority \"urgent\" is not",
            ),
            (
                "script = \"m.py\"\n[app.limits]\nmemory = \"lots\"",
                "[app.limits].memory \"lots\" is not a size",
            ),
            (
                "script = \"m.py\"\n[app.limits]\npids = 0",
                "[app.limits].pids must be 1 to",
            ),
            (
                "script = \"m.py\"\n[app.limits]\nmemroy = \"1GiB\"",
                "unknown field `memroy`",
            ),
        ] {
            let e = app(body).unwrap_err();
            assert!(e.contains(want), "{body:?}: {e}");
        }
        // A git secret that is declared is fine.
        let ok = app("secrets = [\"TOK\"]\n[app.git]\nurl = \"https://h/r.git\"\nref = \"main\"\ncommand = [\"make\"]\nsecret = \"TOK\"").unwrap();
        assert!(matches!(ok.job.source, Source::Git { secret: Some(ref s), .. } if s == "TOK"));
    }
}
