//! Property tests over the JSON Schema handling: any text offered as a
//! version's `params_schema` gives a schema or a 400, never a panic, and a
//! schema that was accepted validates any input without panicking.

use minitower_server::upload::parse_schema;
use proptest::prelude::*;
use serde_json::{json, Value};

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,8}".prop_map(Value::from),
        prop_oneof![
            Just("#"),
            Just("#/properties/a"),
            Just("http://example.com/s"),
            Just("string"),
            Just("object"),
            Just("(a+)+$"),
            Just("^[a-z]+$"),
            Just("[unclosed"),
            Just("date-time"),
            Just("#/definitions/x"),
        ]
        .prop_map(Value::from),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("type"),
        Just("properties"),
        Just("required"),
        Just("$ref"),
        Just("pattern"),
        Just("format"),
        Just("enum"),
        Just("items"),
        Just("additionalProperties"),
        Just("minimum"),
        Just("maxLength"),
        Just("allOf"),
        Just("anyOf"),
        Just("not"),
        Just("$defs"),
        Just("definitions"),
        Just("a"),
        Just("$schema"),
        Just("$id"),
        Just("const"),
        Just("if"),
        Just("then"),
    ]
    .prop_map(str::to_string)
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn generated_schemas_compile_or_are_refused(schema in value(), input in value()) {
        if let Ok(v) = parse_schema(&schema.to_string()) {
            let compiled = jsonschema::validator_for(&v).expect("an accepted schema compiles");
            let _ = compiled.is_valid(&input);
            let _ = compiled.iter_errors(&input).count();
        }
    }

    #[test]
    fn arbitrary_text_is_refused_without_panicking(text in "\\PC{0,200}") {
        let _ = parse_schema(&text);
    }
}

#[test]
fn self_referencing_schemas_validate_deep_input() {
    let v = parse_schema(r##"{"properties": {"a": {"$ref": "#"}}}"##).unwrap();
    let compiled = jsonschema::validator_for(&v).unwrap();
    let mut input = json!({});
    for _ in 0..100 {
        input = json!({ "a": input });
    }
    assert!(compiled.is_valid(&input));
}
