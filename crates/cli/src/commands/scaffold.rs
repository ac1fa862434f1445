//! `minitower completions` and `minitower init`: getting started without
//! copying files around.

use super::Ctx;
use crate::cli::{Cli, InitArgs};
use crate::error::{CliError, CliResult};
use crate::output::print_json;
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

/// Writes the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> CliResult<()> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "minitower", &mut buf);
    let mut out = std::io::stdout().lock();
    out.write_all(&buf)
        .and_then(|()| out.flush())
        .map_err(CliError::io("writing the completion script"))
}

/// A slug from a folder name: lowercase, `-` for anything else, starting
/// with a letter.
pub fn slugify(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            s.push(c);
        } else if !s.ends_with('-') {
            s.push('-');
        }
    }
    let s = s.trim_matches('-').to_string();
    let s = if s.starts_with(|c: char| c.is_ascii_lowercase()) {
        s
    } else {
        format!("app-{s}").trim_end_matches('-').to_string()
    };
    s.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

fn towerfile(name: &str) -> String {
    format!(
        r#"[app]
name = "{name}"
script = "main.py"
description = "A new MiniTower app."
# source = ["*.py"]            # files to pack (default: everything but .git, __pycache__, venvs)
# requirements = "requirements.txt"

[[parameters]]
name = "name"
description = "Who to greet"
default = "World"
"#
    )
}

const MAIN_PY: &str = r#"# A MiniTower app: its input arrives as JSON in MINITOWER_INPUT.

import json
import os

params = json.loads(os.environ.get("MINITOWER_INPUT", "{}"))
name = params.get("name", "World")
print(f"Hello, {name}!")
"#;

pub fn init(ctx: &Ctx, args: InitArgs) -> CliResult<()> {
    let dir = &args.dir;
    let name = match &args.name {
        Some(n) => {
            minitower_core::validate::slug(n).map_err(|e| CliError::Usage(e.to_string()))?;
            n.clone()
        }
        None => {
            let abs = std::path::absolute(dir)
                .map_err(CliError::io(format!("resolving {}", dir.display())))?;
            let base = abs
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let slug = slugify(&base);
            minitower_core::validate::slug(&slug).map_err(|e| {
                CliError::Usage(format!(
                    "cannot name the app after its folder ({e}): pass --name"
                ))
            })?;
            slug
        }
    };
    let files = [
        ("Towerfile", towerfile(&name)),
        ("main.py", MAIN_PY.to_string()),
    ];
    let existing: Vec<&str> = files
        .iter()
        .filter(|(f, _)| dir.join(f).exists())
        .map(|(f, _)| *f)
        .collect();
    if !existing.is_empty() {
        return Err(CliError::Usage(format!(
            "{} already has {}: not overwriting (pick another folder)",
            dir.display(),
            existing.join(" and ")
        )));
    }
    std::fs::create_dir_all(dir).map_err(CliError::io(format!("creating {}", dir.display())))?;
    for (file, text) in &files {
        write_new(&dir.join(file), text)?;
    }
    if ctx.json() {
        print_json(&serde_json::json!({
            "dir": dir, "name": name, "files": ["Towerfile", "main.py"],
        }));
    } else {
        let shown = dir.display();
        let _ = writeln!(
            std::io::stdout().lock(),
            "Created app {name} in {shown} (Towerfile, main.py). Next:\n  minitower deploy {shown}\n  minitower run {name} -p name=you"
        );
    }
    Ok(())
}

/// Creates a file that must not exist yet (never overwrites, even racing).
fn write_new(path: &Path, text: &str) -> CliResult<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(CliError::io(format!("creating {}", path.display())))?;
    f.write_all(text.as_bytes())
        .map_err(CliError::io(format!("writing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_become_slugs() {
        assert_eq!(slugify("My App_2"), "my-app-2");
        assert_eq!(slugify("2fast"), "app-2fast");
        assert_eq!(slugify("hello"), "hello");
    }
}
