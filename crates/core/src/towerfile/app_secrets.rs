//! `[app] secrets = ["DB_PASSWORD"]`: the secrets an app needs, by the
//! environment variable name the runner sets them under. The server checks
//! at lease time that each exists in the run's environment (a missing one
//! fails the run at once, naming it; see the server's `lease_secrets`); the
//! values never pass through here.

use super::{AppSection, Cx, Res};
use toml_edit::{Item, TableLike};

/// Most secrets one app may declare.
pub const MAX_APP_SECRETS: usize = 100;

/// Variables the runner sets itself, which a secret must not replace.
const RESERVED: &[&str] = &["PATH", "PYTHONPATH", "HOME", "VIRTUAL_ENV"];

impl AppSection {
    /// Whether `name` may be declared as a secret: an environment variable
    /// name that is not the runner's own (`MINITOWER_*`, `PATH`, ...).
    pub fn secret_name_ok(name: &str) -> Result<(), String> {
        if !crate::validate::env_var_name(name) {
            return Err("is not an environment variable name (letters, digits and '_', not starting with a digit)".into());
        }
        if name.len() > 128 {
            return Err("is longer than 128 characters".into());
        }
        if name.starts_with("MINITOWER_") || RESERVED.contains(&name) {
            return Err("is set by the runner itself".into());
        }
        Ok(())
    }
}

impl Cx<'_> {
    pub(super) fn app_secrets(&self, t: &dyn TableLike, item: &Item) -> Res<Vec<String>> {
        let key = "[app].secrets";
        let names = self.string_list(t, item, "secrets", key)?;
        let line = self.key_line(t, item, "secrets");
        if names.len() > MAX_APP_SECRETS {
            return self.err(
                line,
                key,
                format!("{key} lists more than {MAX_APP_SECRETS} names"),
            );
        }
        for (i, n) in names.iter().enumerate() {
            if let Err(why) = AppSection::secret_name_ok(n) {
                return self.err(line, key, format!("{key}[{i}] {n:?} {why}"));
            }
            if names[..i].contains(n) {
                return self.err(line, key, format!("{key} lists {n:?} twice"));
            }
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use crate::towerfile::parse;

    fn parsed(secrets: &str) -> Result<Vec<String>, String> {
        let text = format!("[app]\nname = \"a\"\nscript = \"m.py\"\nsecrets = {secrets}\n");
        parse(&text)
            .map(|p| {
                assert!(p.warnings.is_empty(), "{:?}", p.warnings);
                p.towerfile.app.secrets
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn declared_secrets_are_env_var_names() {
        assert_eq!(
            parsed(r#"["DB_PASSWORD", "api_key"]"#).unwrap(),
            vec!["DB_PASSWORD", "api_key"]
        );
        assert_eq!(parsed(r#""TOKEN""#).unwrap(), vec!["TOKEN"]);
        let none = parse("[app]\nname = \"a\"\nscript = \"m.py\"\n").unwrap();
        assert!(none.towerfile.app.secrets.is_empty());
        for (bad, want) in [
            (
                r#"["DB-PASSWORD"]"#,
                r#"[app].secrets[0] "DB-PASSWORD" is not an environment variable name"#,
            ),
            (r#"["1X"]"#, "is not an environment variable name"),
            (r#"["A", ""]"#, r#"[app].secrets[1] """#),
            (r#"["MINITOWER_INPUT"]"#, "is set by the runner itself"),
            (r#"["PATH"]"#, "is set by the runner itself"),
            (r#"["A", "A"]"#, r#"lists "A" twice"#),
            ("[1]", "[app].secrets[0] must be a string"),
            ("3", "[app].secrets must be a list of strings"),
        ] {
            let e = parsed(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
            assert!(e.starts_with("Towerfile line 4: "), "{bad}: {e}");
        }
        let many: Vec<String> = (0..101).map(|i| format!("\"S{i}\"")).collect();
        let e = parsed(&format!("[{}]", many.join(","))).unwrap_err();
        assert!(e.contains("more than 100"), "{e}");
    }
}
