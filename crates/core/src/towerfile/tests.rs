use super::*;
use serde_json::json;

fn err(text: &str) -> TowerfileError {
    parse(text).expect_err("should be refused")
}

#[test]
fn minimal_file() {
    let p = parse("[app]\nname = \"hello\"\nscript = \"main.py\"\n").unwrap();
    assert!(p.warnings.is_empty());
    let tf = p.towerfile;
    assert_eq!(tf.app.name, "hello");
    assert_eq!(tf.app.script, "main.py");
    assert!(tf.app.source.is_empty());
    assert!(tf.app.import_paths.is_empty());
    assert_eq!(tf.app.description, None);
    assert!(tf.parameters.is_empty());
    assert_eq!(tf.params_schema(), None);
    assert!(tf.module_paths().is_empty());
}

#[test]
fn full_file() {
    let text = r#"
[app]
name = "hello"
script = "src/main.py"
source = ["*.py", "lib/**"]
description = "Says hello"
import_paths = ["../shared-lib", "/opt/common/"]

[[parameters]]
name = "name"
description = "Who to greet"
default = "World"

[[parameters]]
name = "secret_level"
hidden = true
"#;
    let p = parse(text).unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let tf = p.towerfile;
    assert_eq!(tf.app.source, vec!["*.py", "lib/**"]);
    assert_eq!(tf.app.description.as_deref(), Some("Says hello"));
    assert_eq!(
        tf.module_paths(),
        vec!["modules/shared-lib", "modules/common"]
    );
    assert_eq!(tf.parameters.len(), 2);
    assert_eq!(
        tf.parameters[0],
        Parameter {
            name: "name".into(),
            description: Some("Who to greet".into()),
            kind: crate::params::ParamType::String,
            default: Some(json!("World")),
            required: false,
            choices: None,
            hidden: false,
        }
    );
    assert!(tf.parameters[1].hidden);
    assert_eq!(
        tf.params_schema().unwrap(),
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "Who to greet", "default": "World"},
                "secret_level": {"type": "string", "x-hidden": true},
            },
            "required": ["secret_level"],
            "additionalProperties": false,
        })
    );
    assert_eq!(
        tf.default_input(),
        json!({"name": "World"}).as_object().unwrap().clone()
    );
}

#[test]
fn inline_forms_are_accepted() {
    let text = r#"
app = { name = "x", script = "./run.py", source = "*.py" }
parameters = [{ name = "a", default = "1" }]
"#;
    let tf = parse(text).unwrap().towerfile;
    assert_eq!(tf.app.source, vec!["*.py"]);
    assert_eq!(tf.parameters[0].default, Some(json!("1")));
}

#[test]
fn syntax_error_has_line_and_column() {
    let e = err("[app]\nname = \"hello\"\nscript = main.py\n");
    match &e {
        TowerfileError::Syntax { line, column, .. } => {
            assert_eq!(*line, 3);
            assert!(*column >= 10, "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().starts_with("Towerfile line 3, column"), "{e}");
}

#[test]
fn missing_app_section() {
    let e = err("[[parameters]]\nname = \"x\"\n");
    assert!(e.to_string().contains("[app] section is missing"), "{e}");
}

#[test]
fn missing_script_names_key_and_line() {
    let e = err("# comment\n\n[app]\nname = \"hello\"\n");
    assert_eq!(e.to_string(), "Towerfile line 3: [app].script is required (or command, shell, [app.git] or [app.binary]: what to run)");
    assert_eq!(e.line(), 3);
}

#[test]
fn missing_name() {
    let e = err("[app]\nscript = \"main.py\"\n");
    assert_eq!(e.to_string(), "Towerfile line 1: [app].name is required");
}

#[test]
fn bad_app_name() {
    for bad in ["Hello", "1app", "api", "a_b"] {
        let e = err(&format!("[app]\nscript = \"main.py\"\nname = \"{bad}\"\n"));
        assert_eq!(e.line(), 3, "{e}");
        assert!(e.to_string().contains("[app].name"), "{e}");
    }
}

#[test]
fn wrong_types() {
    let e = err("[app]\nname = 1\nscript = \"main.py\"\n");
    assert_eq!(
        e.to_string(),
        "Towerfile line 2: [app].name must be a string"
    );
    let e = err("[app]\nname = \"a\"\nscript = \"main.py\"\nsource = [\"*.py\", 3]\n");
    assert!(
        e.to_string().contains("[app].source[1] must be a string"),
        "{e}"
    );
    assert_eq!(e.line(), 4);
    let e = err("[app]\nname = \"a\"\nscript = \"main.py\"\nimport_paths = 5\n");
    assert!(e.to_string().contains("import_paths must be a list"), "{e}");
    let e = err("app = 3\n");
    assert!(e.to_string().contains("[app] must be a table"), "{e}");
}

#[test]
fn unsafe_script_paths() {
    for bad in [
        "/etc/passwd",
        "../main.py",
        "a/../../b.py",
        "",
        ".",
        "a\\b.py",
    ] {
        let e = err(&format!(
            "[app]\nname = \"a\"\nscript = \"{}\"\n",
            bad.replace('\\', "\\\\")
        ));
        assert!(e.to_string().contains("[app].script"), "{bad}: {e}");
        assert_eq!(e.line(), 3, "{bad}");
    }
    assert!(parse("[app]\nname = \"a\"\nscript = \"./src/main.py\"\n").is_ok());
}

#[test]
fn bad_import_paths() {
    let e = err("[app]\nname = \"a\"\nscript = \"m.py\"\nimport_paths = [\"..\"]\n");
    assert!(e.to_string().contains("import_paths[0]"), "{e}");
    let e = err(
        "[app]\nname = \"a\"\nscript = \"m.py\"\nimport_paths = [\"../x/lib\", \"../y/lib\"]\n",
    );
    assert!(e.to_string().contains("same folder name"), "{e}");
}

#[test]
fn invalid_parameter_name() {
    let text = "[app]\nname = \"a\"\nscript = \"m.py\"\n[[parameters]]\nname = \"1x\"\n";
    let e = err(text);
    assert_eq!(
        e.to_string(),
        "Towerfile line 5: parameter name \"1x\" is not a valid identifier (letters, digits and '_', not starting with a digit)"
    );
    match e {
        TowerfileError::Invalid { key, .. } => assert_eq!(key, "parameters[1].name"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn duplicate_parameter() {
    let text = "[app]\nname = \"a\"\nscript = \"m.py\"\n[[parameters]]\nname = \"x\"\n[[parameters]]\nname = \"x\"\n";
    let e = err(text);
    assert_eq!(e.line(), 7);
    assert!(e.to_string().contains("declared twice"), "{e}");
}

#[test]
fn parameter_without_name() {
    let text = "[app]\nname = \"a\"\nscript = \"m.py\"\n\n[[parameters]]\ndescription = \"x\"\n";
    let e = err(text);
    assert_eq!(
        e.to_string(),
        "Towerfile line 5: parameters[1].name is required"
    );
}

#[test]
fn untyped_default_must_be_text() {
    let text = "[app]\nname = \"a\"\nscript = \"m.py\"\n[[parameters]]\nname = \"seconds\"\ndefault = 10\n";
    let e = err(text);
    assert_eq!(e.line(), 6);
    assert!(
        e.to_string()
            .contains(r#"default 10 is not a string (string); quote it"#),
        "{e}"
    );
    let text =
        "[app]\nname = \"a\"\nscript = \"m.py\"\n[[parameters]]\nname = \"s\"\nhidden = \"yes\"\n";
    assert!(err(text)
        .to_string()
        .contains("hidden must be true or false"));
}

#[test]
fn parameters_must_be_tables() {
    let e = err("parameters = 3\n[app]\nname = \"a\"\nscript = \"m.py\"\n");
    assert!(e.to_string().contains("[[parameters]]"), "{e}");
    assert_eq!(e.line(), 1);
}

#[test]
fn unknown_keys_are_warnings() {
    let text = r#"[app]
name = "a"
script = "m.py"
colour = "blue"

[build]
x = 1

[[parameters]]
name = "p"
widget = "slider"
"#;
    let p = parse(text).unwrap();
    assert_eq!(
        p.warnings,
        vec![
            "Towerfile line 6: unknown key \"build\" (ignored)",
            "Towerfile line 4: unknown key [app].colour (ignored)",
            "Towerfile line 11: unknown key parameters[1].widget (ignored)",
        ]
    );
}

#[test]
fn safe_relative_paths() {
    assert!(is_safe_relative("a.py"));
    assert!(is_safe_relative("./a/b.py"));
    assert!(!is_safe_relative("a/../../b"));
    assert!(!is_safe_relative("/a"));
    assert!(!is_safe_relative("./"));
}
