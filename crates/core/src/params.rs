//! Typed run parameters: how a declared type turns text (a Towerfile
//! default written as a string, a CLI `-p key=value`) into a JSON value,
//! and how a version's JSON Schema is read back into per-parameter rules.
//!
//! Design note. The invariant: text accepted here for a parameter yields a
//! value that the version's schema accepts for that property, and text
//! refused here names the parameter and what it expected; nothing else
//! decides how `-p count=3` is typed. The Towerfile parser writes schemas
//! with [`ParamType::schema`] and types its defaults with [`parse_text`];
//! the CLI reads the schema back with [`typed_input`]. The unit tests below
//! and `towerfile::tests` check both directions; the CLI test
//! `typed_params` proves it end to end (an integer reaches the script).

use serde_json::{Map, Number, Value};

/// The `type` of a `[[parameters]]` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParamType {
    /// Any text (the default, and Tower's only kind).
    #[default]
    String,
    /// A whole number that fits in 64 bits.
    Integer,
    /// Any finite number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// Any JSON value, written as JSON text.
    Json,
}

/// The names accepted for `type`, in the order error messages list them.
pub const TYPE_NAMES: &[&str] = &["string", "integer", "number", "boolean", "json"];

/// Schema key marking a `json` parameter: JSON Schema has no "any value"
/// type name, so the property has no `type` and carries this instead, which
/// the CLI and the web form read to parse input as JSON.
pub const JSON_MARKER: &str = "x-type";

impl ParamType {
    /// The type named `s` (one of [`TYPE_NAMES`]).
    pub fn from_name(s: &str) -> Option<ParamType> {
        Some(match s {
            "string" => ParamType::String,
            "integer" => ParamType::Integer,
            "number" => ParamType::Number,
            "boolean" => ParamType::Boolean,
            "json" => ParamType::Json,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
            ParamType::Json => "json",
        }
    }

    /// What a value of this type is, for messages ("an integer").
    pub fn described(self) -> &'static str {
        match self {
            ParamType::String => "a string",
            ParamType::Integer => "an integer",
            ParamType::Number => "a number",
            ParamType::Boolean => "true or false",
            ParamType::Json => "JSON",
        }
    }

    /// Writes this type into a schema property.
    pub fn schema(self, prop: &mut Map<String, Value>) {
        match self {
            ParamType::Json => {
                prop.insert(JSON_MARKER.into(), Value::from("json"));
            }
            t => {
                prop.insert("type".into(), Value::from(t.name()));
            }
        }
    }

    /// Whether an already-typed JSON value (a native TOML default or enum
    /// entry) is of this type.
    pub fn accepts(self, v: &Value) -> bool {
        match self {
            ParamType::String => v.is_string(),
            ParamType::Integer => v.as_i64().is_some(),
            ParamType::Number => v.is_number(),
            ParamType::Boolean => v.is_boolean(),
            ParamType::Json => true,
        }
    }
}

/// Parses `raw` as a value of type `ty`; the error says what was expected
/// and is meant to follow "parameter NAME ".
pub fn parse_text(ty: ParamType, raw: &str) -> Result<Value, String> {
    let bad = || {
        format!(
            "must be {} ({}), got {:?}",
            ty.described(),
            ty.name(),
            shorten(raw)
        )
    };
    match ty {
        ParamType::String => Ok(Value::from(raw)),
        ParamType::Integer => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| bad()),
        ParamType::Number => {
            let t = raw.trim();
            if let Ok(i) = t.parse::<i64>() {
                return Ok(Value::from(i));
            }
            t.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                // Rust also parses "inf" and "NaN"; JSON has neither.
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(bad)
        }
        ParamType::Boolean => match raw.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(bad()),
        },
        ParamType::Json => serde_json::from_str(raw)
            .map_err(|e| format!("must be JSON (json), got {:?}: {e}", shorten(raw))),
    }
}

/// At most 60 characters of user text, for messages.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// How the CLI parses one property of a version's schema.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Typed(ParamType),
    /// Several types allowed: JSON when the text is JSON, else a string
    /// when strings are allowed.
    Mixed {
        string_ok: bool,
    },
}

fn kind_of(prop: &Value) -> Kind {
    if prop.get(JSON_MARKER).and_then(Value::as_str) == Some("json") {
        return Kind::Typed(ParamType::Json);
    }
    let one = |t: &str| match t {
        "object" | "array" | "null" => Kind::Typed(ParamType::Json),
        other => Kind::Typed(ParamType::from_name(other).unwrap_or(ParamType::String)),
    };
    match prop.get("type") {
        Some(Value::String(t)) => one(t),
        Some(Value::Array(ts)) => {
            let names: Vec<&str> = ts.iter().filter_map(Value::as_str).collect();
            let non_null: Vec<&str> = names.iter().copied().filter(|t| *t != "null").collect();
            match non_null.as_slice() {
                [t] => one(t),
                _ => Kind::Mixed {
                    string_ok: names.contains(&"string"),
                },
            }
        }
        // No type: any value; text stays text (what `-p` always sent).
        _ => Kind::Typed(ParamType::String),
    }
}

/// Why `-p` input was refused; the CLI words the unknown-name case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// The schema forbids other names; `valid` lists its properties, sorted.
    Unknown { name: String, valid: Vec<String> },
    /// The value does not parse as the declared type or is not allowed.
    Invalid { name: String, message: String },
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputError::Unknown { name, valid } => {
                write!(f, "unknown parameter {name}; valid: {}", valid.join(", "))
            }
            InputError::Invalid { name, message } => write!(f, "parameter {name} {message}"),
        }
    }
}

/// Types `key=value` pairs by a version's `params_schema`. Without a schema
/// (or without `properties`) every value stays a string, as before typed
/// parameters. Unknown names are refused only when the schema forbids them
/// (`additionalProperties: false`), as the server would.
pub fn typed_input(
    schema: Option<&Value>,
    pairs: &[(String, String)],
) -> Result<Map<String, Value>, InputError> {
    let props = schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object);
    let closed = schema
        .and_then(|s| s.get("additionalProperties"))
        .and_then(Value::as_bool)
        == Some(false);
    let mut out = Map::new();
    for (name, raw) in pairs {
        let value = match props.and_then(|p| p.get(name)) {
            Some(prop) => typed_value(name, prop, raw)?,
            None if closed => {
                let mut valid: Vec<String> = props
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default();
                valid.sort();
                return Err(InputError::Unknown {
                    name: name.clone(),
                    valid,
                });
            }
            None => Value::from(raw.as_str()),
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

fn typed_value(name: &str, prop: &Value, raw: &str) -> Result<Value, InputError> {
    let invalid = |message: String| InputError::Invalid {
        name: name.to_string(),
        message,
    };
    if let Some(allowed) = prop.get("enum").and_then(Value::as_array) {
        return allowed
            .iter()
            .find(|e| text_matches(e, raw))
            .cloned()
            .ok_or_else(|| {
                let shown: Vec<String> = allowed.iter().map(show).collect();
                invalid(format!(
                    "must be one of {}, got {:?}",
                    shown.join(", "),
                    shorten(raw)
                ))
            });
    }
    match kind_of(prop) {
        Kind::Typed(t) => parse_text(t, raw).map_err(invalid),
        Kind::Mixed { string_ok } => match serde_json::from_str::<Value>(raw) {
            Ok(v) => Ok(v),
            Err(_) if string_ok => Ok(Value::from(raw)),
            Err(e) => Err(invalid(format!(
                "must be JSON, got {:?}: {e}",
                shorten(raw)
            ))),
        },
    }
}

/// Whether `-p` text names enum entry `e`: strings match exactly, numbers
/// by value (`3` matches `3.0`), anything else by its JSON text.
fn text_matches(e: &Value, raw: &str) -> bool {
    match e {
        Value::String(s) => s == raw,
        Value::Number(n) => raw.trim().parse::<f64>().ok() == n.as_f64(),
        Value::Bool(b) => raw
            .trim()
            .eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        other => serde_json::from_str::<Value>(raw).ok().as_ref() == Some(other),
    }
}

/// An enum entry as a user types it.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn text_parses_by_type() {
        use ParamType::*;
        assert_eq!(parse_text(Integer, "3"), Ok(json!(3)));
        assert_eq!(parse_text(Integer, " -7 "), Ok(json!(-7)));
        assert!(parse_text(Integer, "3.5").is_err());
        assert!(parse_text(Integer, "99999999999999999999").is_err());
        assert_eq!(parse_text(Number, "2"), Ok(json!(2)));
        assert_eq!(parse_text(Number, "0.25"), Ok(json!(0.25)));
        assert!(parse_text(Number, "NaN").is_err());
        assert!(parse_text(Number, "inf").is_err());
        assert_eq!(parse_text(Boolean, "TRUE"), Ok(json!(true)));
        assert_eq!(parse_text(Boolean, "false"), Ok(json!(false)));
        assert!(parse_text(Boolean, "yes").is_err());
        assert_eq!(parse_text(Json, r#"{"a":[1]}"#), Ok(json!({"a": [1]})));
        assert!(parse_text(Json, "hello").is_err());
        assert_eq!(parse_text(String, " x "), Ok(json!(" x ")));
        let e = parse_text(Integer, "x").unwrap_err();
        assert_eq!(e, r#"must be an integer (integer), got "x""#);
    }

    #[test]
    fn native_values_checked_by_type() {
        assert!(ParamType::Integer.accepts(&json!(3)));
        assert!(!ParamType::Integer.accepts(&json!(3.5)));
        assert!(!ParamType::Integer.accepts(&json!(u64::MAX)));
        assert!(ParamType::Number.accepts(&json!(3.5)));
        assert!(!ParamType::String.accepts(&json!(3)));
        assert!(ParamType::Json.accepts(&json!([1])));
    }

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "count": {"type": "integer"},
                "name": {"type": "string"},
                "ratio": {"type": "number"},
                "loud": {"type": "boolean"},
                "extra": {"x-type": "json"},
                "color": {"type": "string", "enum": ["red", "green"]},
                "level": {"type": "integer", "enum": [1, 2]},
                "maybe": {"type": ["integer", "null"]},
                "mixed": {"type": ["integer", "string"]},
            },
            "additionalProperties": false,
        })
    }

    #[test]
    fn pairs_are_typed_by_the_schema() {
        let s = schema();
        let got = typed_input(
            Some(&s),
            &pairs(&[
                ("count", "3"),
                ("name", "007"),
                ("ratio", "1.5"),
                ("loud", "true"),
                ("extra", r#"{"k":null}"#),
                ("color", "green"),
                ("level", "2"),
                ("maybe", "4"),
                ("mixed", "abc"),
            ]),
        )
        .unwrap();
        assert_eq!(
            Value::Object(got),
            json!({"count": 3, "name": "007", "ratio": 1.5, "loud": true,
                   "extra": {"k": null}, "color": "green", "level": 2, "maybe": 4,
                   "mixed": "abc"})
        );
    }

    #[test]
    fn refusals_name_the_parameter() {
        let s = schema();
        let e = typed_input(Some(&s), &pairs(&[("count", "x")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"parameter count must be an integer (integer), got "x""#
        );
        let e = typed_input(Some(&s), &pairs(&[("color", "blue")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"parameter color must be one of red, green, got "blue""#
        );
        let e = typed_input(Some(&s), &pairs(&[("cout", "3")])).unwrap_err();
        match &e {
            InputError::Unknown { name, valid } => {
                assert_eq!(name, "cout");
                assert!(valid.contains(&"count".to_string()));
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().starts_with("unknown parameter cout; valid: "));
    }

    #[test]
    fn open_or_missing_schemas_keep_strings() {
        let open = json!({"properties": {"n": {"type": "integer"}}});
        let got = typed_input(Some(&open), &pairs(&[("n", "1"), ("other", "2")])).unwrap();
        assert_eq!(Value::Object(got), json!({"n": 1, "other": "2"}));
        let got = typed_input(None, &pairs(&[("n", "1")])).unwrap();
        assert_eq!(Value::Object(got), json!({"n": "1"}));
        // A property without a type accepts anything: text stays text.
        let untyped = json!({"properties": {"n": {}}});
        let got = typed_input(Some(&untyped), &pairs(&[("n", "1")])).unwrap();
        assert_eq!(Value::Object(got), json!({"n": "1"}));
    }

    #[test]
    fn long_text_is_shortened_in_messages() {
        let long = "y".repeat(500);
        let e = parse_text(ParamType::Integer, &long).unwrap_err();
        assert!(e.len() < 120, "{e}");
    }
}
