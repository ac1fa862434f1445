//! Property tests: any text gives a Towerfile or an error, never a panic,
//! and what parses yields a params schema, module paths and defaults that
//! hold what the parser promised.

use super::*;
use proptest::prelude::*;

/// TOML-ish fragments, so generated text gets past the lexer often.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[app]\n".to_string()),
        Just("[[parameters]]\n".to_string()),
        Just("[app.x]\n".to_string()),
        Just("name = \"hello\"\n".to_string()),
        Just("script = \"main.py\"\n".to_string()),
        Just("source = [\"*.py\", \"lib/**\"]\n".to_string()),
        Just("import_paths = [\"../shared\", \"/abs\", \"..\"]\n".to_string()),
        Just("default = \"World\"\n".to_string()),
        Just("hidden = true\n".to_string()),
        Just("default = 3\n".to_string()),
        Just("retries = 3\n".to_string()),
        Just("retries = 1000\n".to_string()),
        Just("retry_delay = \"2s\"\n".to_string()),
        Just("timeout = \"10m\"\n".to_string()),
        Just("schedule = \"0 0 * * *\"\n".to_string()),
        Just("[[schedules]]\n".to_string()),
        Just("cron = \"*/5 * * * *\"\n".to_string()),
        Just("cron = \"0 0 30 2 *\"\n".to_string()),
        Just("timezone = \"Europe/Berlin\"\n".to_string()),
        Just("input = { a = 1, b = [true] }\n".to_string()),
        Just("enabled = false\n".to_string()),
        Just("name = [1, [2, [3]]]\n".to_string()),
        "[a-z_]{1,8} = \"\\PC{0,12}\"\n",
        "[a-z_]{1,8} = [0-9]{1,30}\n",
        "\\PC{0,20}",
        (1usize..200).prop_map(|n| format!("x = {}{}\n", "[".repeat(n), "]".repeat(n))),
        (1usize..200).prop_map(|n| format!("x = {}\n", "{ a = ".repeat(n))),
        (1usize..60).prop_map(|n| format!("[{}]\n", vec!["t"; n].join("."))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = parse(&text);
    }

    #[test]
    fn toml_like_text_parses_or_errs(parts in prop::collection::vec(fragment(), 0..24)) {
        let text = parts.concat();
        match parse(&text) {
            Ok(p) => {
                let tf = p.towerfile;
                prop_assert!(!tf.app.name.is_empty());
                prop_assert!(!tf.app.script.is_empty());
                if let Some(schema) = tf.params_schema() {
                    prop_assert!(schema.is_object());
                }
                let a = &tf.automation;
                prop_assert!(a.retries.unwrap_or(0) <= crate::retry::MAX_RETRIES);
                if let Some(d) = a.retry_delay {
                    prop_assert!(!d.is_zero() && d <= crate::retry::MAX_RETRY_DELAY);
                }
                if let Some(t) = a.timeout {
                    prop_assert!(t.as_secs() >= 1 && t <= MAX_TIMEOUT);
                }
                for s in &a.schedules {
                    prop_assert!(s.schedule().is_ok(), "{s:?}");
                }
                for m in tf.module_paths() {
                    prop_assert!(m.starts_with("modules/") && !m.contains(".."), "{m}");
                }
                let _ = tf.default_input();
            }
            Err(e) => {
                // Errors point at a line of the text.
                let _ = e.to_string();
            }
        }
    }
}
