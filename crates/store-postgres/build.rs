//! Lists the shared conformance tests for `tests/conformance.rs`.
//!
//! The suite's own macro (`minitower_store::conformance_tests!`) cannot skip
//! a test when no PostgreSQL server is configured, so this backend generates
//! its test functions itself, from the very list that macro expands. A test
//! added to the suite therefore runs here too without anyone touching this
//! crate; a change to the list's layout fails the build instead of silently
//! running nothing.

use std::path::Path;

fn main() {
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("../store/src/conformance.rs");
    println!("cargo:rerun-if-changed={}", suite.display());
    let text = std::fs::read_to_string(&suite)
        .unwrap_or_else(|e| panic!("reading {}: {e}", suite.display()));
    let start = text
        .find("$crate::conformance_tests!(@each $factory;")
        .expect("conformance_tests! list start not found in the store crate");
    let rest = &text[start..];
    let body = &rest[rest.find(';').unwrap() + 1..rest.find(");").expect("list end")];
    let tests: Vec<&str> = body
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    assert!(
        tests.len() >= 10
            && tests.iter().all(|t| {
                let mut parts = t.split("::");
                let ok = |p: Option<&str>| {
                    p.is_some_and(|p| {
                        !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    })
                };
                ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
            }),
        "unexpected conformance list: {tests:?}"
    );
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("conformance_list.rs");
    let list = format!("pg_conformance_tests!({});\n", tests.join(", "));
    std::fs::write(out, list).unwrap();
}
