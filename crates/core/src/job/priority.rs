//! Named priorities (the three tiers of a binary executor) on the numeric
//! order runs are leased in: higher first, so `foreground` (100) runs
//! before `background` (0, the default of every run) and `best_effort`
//! (−100). A name is accepted wherever a number is and shown beside it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The named tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Foreground,
    Background,
    BestEffort,
}

impl Priority {
    pub const ALL: [Priority; 3] = [
        Priority::Foreground,
        Priority::Background,
        Priority::BestEffort,
    ];

    pub fn value(self) -> i64 {
        match self {
            Priority::Foreground => 100,
            Priority::Background => 0,
            Priority::BestEffort => -100,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Priority::Foreground => "foreground",
            Priority::Background => "background",
            Priority::BestEffort => "best_effort",
        }
    }

    /// `"best_effort"` → the tier: exactly the names the API documents
    /// (the CLI turns `best-effort` into `best_effort` itself).
    pub fn parse(s: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// The name of a numeric priority, when it has one.
pub fn priority_name(value: i64) -> Option<&'static str> {
    Priority::ALL
        .into_iter()
        .find(|p| p.value() == value)
        .map(Priority::name)
}

/// A priority as users write it: a number or a name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PriorityInput {
    Number(serde_json::Number),
    Name(String),
}

/// The contract: an integer in [`PRIORITY_RANGE`] or one of the names
/// (written by hand: the derive cannot bound the number).
impl utoipa::PartialSchema for PriorityInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(*PRIORITY_RANGE.start()))
                    .maximum(Some(*PRIORITY_RANGE.end())),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(Priority::ALL.map(Priority::name))),
            )
            .description(Some(
                "A number (higher is leased first) or foreground (100), background (0), best_effort (-100)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for PriorityInput {}

/// Bounds of a numeric priority.
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i64> = -1_000_000..=1_000_000;

impl PriorityInput {
    /// The number, checked; the message says what is accepted.
    pub fn resolve(&self) -> Result<i64, String> {
        let v = match self {
            PriorityInput::Name(s) => match Priority::parse(s) {
                Some(p) => p.value(),
                None => {
                    return Err(format!(
                    "priority {s:?} is not a number or one of foreground, background, best_effort"
                ))
                }
            },
            PriorityInput::Number(n) => match n.as_i64() {
                Some(i) => i,
                None => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() <= 1e6 => f as i64,
                    _ => return Err(format!("priority must be an integer, got {n}")),
                },
            },
        };
        if !PRIORITY_RANGE.contains(&v) {
            return Err(format!("priority must be -1000000 to 1000000, got {v}"));
        }
        Ok(v)
    }
}
