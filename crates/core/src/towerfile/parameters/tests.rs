//! Typed `[[parameters]]`: types, defaults, enums, `required`, the schema
//! they become, and errors that name the parameter and its line.

use crate::params::ParamType;
use crate::towerfile::{parse, TowerfileError};
use serde_json::json;

const HEAD: &str = "[app]\nname = \"a\"\nscript = \"m.py\"\n";

fn err(params: &str) -> TowerfileError {
    parse(&format!("{HEAD}{params}")).expect_err("should be refused")
}

#[test]
fn typed_parameters_become_a_closed_schema() {
    let text = format!(
        r#"{HEAD}
[[parameters]]
name = "count"
type = "integer"
default = "3"

[[parameters]]
name = "ratio"
type = "number"
default = 0.5

[[parameters]]
name = "loud"
type = "boolean"
default = "true"

[[parameters]]
name = "extra"
type = "json"
default = '{{"k": [1, 2]}}'

[[parameters]]
name = "opts"
type = "json"
default = {{ a = 1, b = ["x"] }}

[[parameters]]
name = "color"
enum = ["red", "green"]
default = "green"

[[parameters]]
name = "level"
type = "integer"
enum = [1, "2", 3]

[[parameters]]
name = "note"
required = false
"#
    );
    let p = parse(&text).unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let tf = p.towerfile;
    assert_eq!(tf.parameters[0].kind, ParamType::Integer);
    assert_eq!(
        tf.params_schema().unwrap(),
        json!({
            "type": "object",
            "properties": {
                "count": {"type": "integer", "default": 3},
                "ratio": {"type": "number", "default": 0.5},
                "loud": {"type": "boolean", "default": true},
                "extra": {"x-type": "json", "default": {"k": [1, 2]}},
                "opts": {"x-type": "json", "default": {"a": 1, "b": ["x"]}},
                "color": {"type": "string", "default": "green", "enum": ["red", "green"]},
                "level": {"type": "integer", "enum": [1, 2, 3]},
                "note": {"type": "string"},
            },
            "required": ["level"],
            "additionalProperties": false,
        })
    );
    assert_eq!(
        serde_json::Value::Object(tf.default_input()),
        json!({"count": 3, "ratio": 0.5, "loud": true, "extra": {"k": [1, 2]},
               "opts": {"a": 1, "b": ["x"]}, "color": "green"})
    );
}

#[test]
fn a_tower_towerfile_deploys_unchanged() {
    // Tower's own format: string defaults, `hidden`, no types.
    let text = r#"
[app]
name = "etl"
script = "./main.py"
source = ["./**/*.py"]

[[parameters]]
name = "start_date"
description = "First day"
default = "2024-01-01"

[[parameters]]
name = "internal"
description = ""
default = ""
hidden = true
"#;
    let p = parse(text).unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let s = p.towerfile.params_schema().unwrap();
    assert_eq!(s["properties"]["start_date"]["default"], "2024-01-01");
    assert_eq!(s["properties"]["internal"]["x-hidden"], true);
    assert_eq!(s["required"], json!([]));
}

#[test]
fn a_default_that_is_not_of_the_type_names_the_parameter() {
    let e = err("[[parameters]]\nname = \"count\"\ntype = \"integer\"\ndefault = \"x\"\n");
    assert_eq!(e.line(), 7);
    assert_eq!(
        e.to_string(),
        r#"Towerfile line 7: parameter "count": default must be an integer (integer), got "x""#
    );
    let e = err("[[parameters]]\nname = \"n\"\ntype = \"integer\"\ndefault = 1.5\n");
    assert!(
        e.to_string().contains("default 1.5 is not an integer"),
        "{e}"
    );
    let e = err("[[parameters]]\nname = \"b\"\ntype = \"boolean\"\ndefault = \"yes\"\n");
    assert!(
        e.to_string()
            .contains(r#"parameter "b": default must be true or false"#),
        "{e}"
    );
    let e = err("[[parameters]]\nname = \"j\"\ntype = \"json\"\ndefault = \"{\"\n");
    assert!(
        e.to_string()
            .contains(r#"parameter "j": default must be JSON"#),
        "{e}"
    );
    let e = err("[[parameters]]\nname = \"f\"\ntype = \"number\"\ndefault = nan\n");
    assert!(
        e.to_string()
            .contains(r#"parameter "f": default nan is not a number"#),
        "{e}"
    );
}

#[test]
fn bad_type_enum_and_required_are_refused() {
    let e = err("[[parameters]]\nname = \"x\"\ntype = \"int\"\n");
    assert_eq!(e.line(), 6);
    assert!(
        e.to_string()
            .contains("type must be one of string, integer, number, boolean, json"),
        "{e}"
    );
    match &e {
        TowerfileError::Invalid { key, .. } => assert_eq!(key, "parameters[1].type"),
        other => panic!("{other:?}"),
    }
    for (params, want) in [
        ("enum = []\n", "enum must list 1 to 200 values"),
        ("enum = \"a\"\n", "enum must be a list of values"),
        (
            "type = \"integer\"\nenum = [1, \"x\"]\n",
            "enum[1] must be an integer",
        ),
        ("enum = [\"a\", \"a\"]\n", "enum lists \"a\" twice"),
        (
            "enum = [\"a\"]\ndefault = \"b\"\n",
            "default \"b\" is not one of enum",
        ),
        ("required = \"yes\"\n", "required must be true or false"),
        (
            "required = true\ndefault = \"a\"\n",
            "required = true and a default contradict",
        ),
    ] {
        let e = err(&format!("[[parameters]]\nname = \"x\"\n{params}"));
        assert!(e.to_string().contains(want), "{params}: {e}");
        assert!(e.to_string().contains("parameter \"x\""), "{params}: {e}");
    }
    let many: Vec<String> = (0..201).map(|i| format!("\"v{i}\"")).collect();
    let e = err(&format!(
        "[[parameters]]\nname = \"x\"\nenum = [{}]\n",
        many.join(",")
    ));
    assert!(e.to_string().contains("1 to 200"), "{e}");
}

#[test]
fn required_defaults_to_having_no_default() {
    let text = format!(
        "{HEAD}[[parameters]]\nname = \"a\"\n[[parameters]]\nname = \"b\"\ndefault = \"\"\n[[parameters]]\nname = \"c\"\nrequired = true\n"
    );
    let tf = parse(&text).unwrap().towerfile;
    let req: Vec<bool> = tf.parameters.iter().map(|p| p.required).collect();
    assert_eq!(req, vec![true, false, true]);
}
