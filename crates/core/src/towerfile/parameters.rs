//! `[[parameters]]`: typed run parameters and the JSON Schema they become.
//!
//! Keys: `name`, `description`, `default`, `hidden` (Tower's own, so a
//! Tower Towerfile deploys unchanged) and `type`, `required`, `enum`. A
//! default or enum entry is either text parsed by the declared type
//! (Tower writes `default = "10"`) or a TOML value of that type
//! (`default = 10`); one that fits neither is an error naming the
//! parameter. The schema forbids names that are not declared.

use super::{valid_identifier, Cx, Res, Towerfile};
use crate::params::{parse_text, ParamType, TYPE_NAMES};
use serde_json::{json, Map, Value as J};
use toml_edit::{Item, TableLike, Value};

/// Keys of a `[[parameters]]` entry.
pub(super) const PARAM_KEYS: &[&str] = &[
    "name",
    "description",
    "default",
    "hidden",
    "type",
    "required",
    "enum",
];

/// Most entries an `enum` may list (the web form shows them in a select).
pub const MAX_ENUM: usize = 200;

/// One `[[parameters]]` entry: becomes a property of the input schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub name: String,
    pub description: Option<String>,
    /// `string` unless the Towerfile says otherwise.
    pub kind: ParamType,
    /// Typed by `kind`; filled in by the server for a run that omits it.
    pub default: Option<J>,
    /// Whether a run must give it: the `required` key, else "has no default".
    pub required: bool,
    /// Allowed values, typed by `kind`; `None` allows any value of the type.
    pub choices: Option<Vec<J>>,
    /// Hidden parameters are not offered by UIs but still accepted.
    pub hidden: bool,
}

impl Towerfile {
    /// JSON Schema of the run input derived from `[[parameters]]`; `None`
    /// when there are none so inputs stay unconstrained.
    pub fn params_schema(&self) -> Option<J> {
        if self.parameters.is_empty() {
            return None;
        }
        let mut props = Map::new();
        let mut required = Vec::new();
        for p in &self.parameters {
            let mut prop = Map::new();
            p.kind.schema(&mut prop);
            if let Some(d) = &p.description {
                prop.insert("description".into(), J::from(d.as_str()));
            }
            if let Some(d) = &p.default {
                prop.insert("default".into(), d.clone());
            }
            if let Some(c) = &p.choices {
                prop.insert("enum".into(), J::Array(c.clone()));
            }
            if p.required {
                required.push(J::from(p.name.as_str()));
            }
            if p.hidden {
                prop.insert("x-hidden".into(), J::Bool(true));
            }
            props.insert(p.name.clone(), J::Object(prop));
        }
        Some(json!({
            "type": "object",
            "properties": props,
            "required": required,
            "additionalProperties": false,
        }))
    }

    /// Default value of every parameter that has one, as a JSON object.
    pub fn default_input(&self) -> Map<String, J> {
        self.parameters
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.default.clone()?)))
            .collect()
    }
}

/// A TOML value as JSON; `None` for what JSON cannot hold (NaN, infinity).
/// Dates become their TOML text.
fn toml_to_json(v: &Value) -> Option<J> {
    Some(match v {
        Value::String(s) => J::from(s.value().as_str()),
        Value::Integer(i) => J::from(*i.value()),
        Value::Float(f) => J::Number(serde_json::Number::from_f64(*f.value())?),
        Value::Boolean(b) => J::Bool(*b.value()),
        Value::Datetime(d) => J::from(d.value().to_string()),
        Value::Array(a) => J::Array(a.iter().map(toml_to_json).collect::<Option<_>>()?),
        Value::InlineTable(t) => J::Object(
            t.iter()
                .map(|(k, v)| Some((k.to_string(), toml_to_json(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

impl Cx<'_> {
    pub(super) fn parameters(&mut self, item: &Item) -> Res<Vec<Parameter>> {
        let tables = self.tables_of(item, "parameters")?;
        let mut out: Vec<Parameter> = Vec::new();
        for (i, (t, span)) in tables.into_iter().enumerate() {
            let p = self.parameter(i + 1, t, self.line(span), &out)?;
            out.push(p);
        }
        Ok(out)
    }

    /// Entry `n` (1-based) starting at `table_line`; `earlier` for duplicates.
    fn parameter(
        &mut self,
        n: usize,
        t: &dyn TableLike,
        table_line: usize,
        earlier: &[Parameter],
    ) -> Res<Parameter> {
        let prefix = format!("parameters[{n}]");
        self.warn_unknown_at(t, table_line, PARAM_KEYS, &prefix);
        let name_key = format!("{prefix}.name");
        let name = match t.get("name").map(|v| v.as_str()) {
            Some(Some(s)) => s.to_string(),
            Some(None) => {
                return self.err(
                    table_line,
                    &name_key,
                    format!("{name_key} must be a string"),
                )
            }
            None => return self.err(table_line, &name_key, format!("{name_key} is required")),
        };
        let name_line = self.key_line_at(t, table_line, "name");
        if !valid_identifier(&name) {
            return self.err(
                name_line,
                &name_key,
                format!("parameter name {name:?} is not a valid identifier (letters, digits and '_', not starting with a digit)"),
            );
        }
        if earlier.iter().any(|p| p.name == name) {
            return self.err(
                name_line,
                &name_key,
                format!("parameter name {name:?} is declared twice"),
            );
        }
        // Errors about `key` of this entry, at its line.
        let fail = |cx: &Self, key: &str, msg: String| -> Res<Parameter> {
            cx.err(
                cx.key_line_at(t, table_line, key),
                &format!("{prefix}.{key}"),
                format!("parameter {name:?}: {msg}"),
            )
        };
        let description = match t.get("description") {
            None => None,
            Some(v) => match v.as_str() {
                Some(s) => Some(s.to_string()),
                None => return fail(self, "description", "description must be a string".into()),
            },
        };
        let flag = |key: &str| -> Result<Option<bool>, String> {
            match t.get(key) {
                None => Ok(None),
                Some(v) => v
                    .as_bool()
                    .map(Some)
                    .ok_or_else(|| format!("{key} must be true or false")),
            }
        };
        let hidden = match flag("hidden") {
            Ok(b) => b.unwrap_or(false),
            Err(m) => return fail(self, "hidden", m),
        };
        let required = match flag("required") {
            Ok(b) => b,
            Err(m) => return fail(self, "required", m),
        };
        let kind = match t.get("type") {
            None => ParamType::String,
            Some(v) => match v.as_str().and_then(ParamType::from_name) {
                Some(k) => k,
                None => {
                    return fail(
                        self,
                        "type",
                        format!("type must be one of {}", TYPE_NAMES.join(", ")),
                    )
                }
            },
        };
        // A default or enum entry: text parsed by the type, or a value of it.
        let typed = |v: &Value, what: &str| -> Result<J, String> {
            if let Some(s) = v.as_str() {
                if kind != ParamType::String {
                    return parse_text(kind, s).map_err(|m| format!("{what} {m}"));
                }
            }
            match toml_to_json(v) {
                Some(j) if kind.accepts(&j) => Ok(j),
                _ => Err(format!(
                    "{what} {} is not {} ({}){}",
                    v.to_string().trim(),
                    kind.described(),
                    kind.name(),
                    if kind == ParamType::String {
                        "; quote it (default = \"10\") or declare its type (type = \"integer\")"
                    } else {
                        ""
                    }
                )),
            }
        };
        let choices = match t.get("enum") {
            None => None,
            Some(v) => {
                let Some(arr) = v.as_array() else {
                    return fail(self, "enum", "enum must be a list of values".into());
                };
                if arr.is_empty() || arr.len() > MAX_ENUM {
                    return fail(
                        self,
                        "enum",
                        format!("enum must list 1 to {MAX_ENUM} values"),
                    );
                }
                let mut vals: Vec<J> = Vec::with_capacity(arr.len());
                for (i, e) in arr.iter().enumerate() {
                    let j = match typed(e, &format!("enum[{i}]")) {
                        Ok(j) => j,
                        Err(m) => return fail(self, "enum", m),
                    };
                    if vals.contains(&j) {
                        return fail(self, "enum", format!("enum lists {j} twice"));
                    }
                    vals.push(j);
                }
                Some(vals)
            }
        };
        let default = match t.get("default") {
            None => None,
            Some(item) => {
                let Some(v) = item.as_value() else {
                    return fail(self, "default", "default must be a value".into());
                };
                match typed(v, "default") {
                    Ok(j) => Some(j),
                    Err(m) => return fail(self, "default", m),
                }
            }
        };
        if let (Some(d), Some(c)) = (&default, &choices) {
            if !c.contains(d) {
                return fail(self, "default", format!("default {d} is not one of enum"));
            }
        }
        if required == Some(true) && default.is_some() {
            return fail(
                self,
                "required",
                "required = true and a default contradict (a run without it gets the default)"
                    .into(),
            );
        }
        Ok(Parameter {
            required: required.unwrap_or(default.is_none()),
            name,
            description,
            kind,
            default,
            choices,
            hidden,
        })
    }
}

#[cfg(test)]
mod tests;
