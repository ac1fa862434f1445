//! Resource limits of a run: sizes as users write them (`"256MiB"`, or a
//! number of bytes) and the bounds every entry point checks.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Smallest memory limit (a Python interpreter needs more than this).
pub const MIN_MEMORY: u64 = 4 << 20;
/// Smallest workspace disk limit.
pub const MIN_DISK: u64 = 1 << 20;
/// Largest size either may name (1 PiB): beyond it is a typo.
pub const MAX_SIZE: u64 = 1 << 50;
/// Largest CPU count and pid count.
pub const MAX_CPUS: f64 = 1024.0;
pub const MAX_PIDS: u64 = 4_194_304;

/// Limits in bytes, cores and processes; `None` = not limited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Limits {
    /// Memory of the whole process tree, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// CPU time as a number of cores (`1.5` = one and a half).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Processes and threads of the tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// Bytes the workspace may hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<u64>,
}

/// A size: bytes as a number, or a string such as `"256MiB"`, `"1GiB"`,
/// `"512 MB"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SizeInput {
    Bytes(u64),
    Text(String),
}

/// Limits as users write them (Towerfile `[app.limits]`, the upload form,
/// a run's `limits`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<SizeInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<SizeInput>,
}

/// Parses `"256MiB"`, `"1.5 GiB"`, `"512MB"`, `"1024"` (bytes) with
/// `bytesize`'s rules (`KiB` = 1024, `kB` = 1000).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("is empty".into());
    }
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    t.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| format!("{text:?} is not a size (write e.g. \"256MiB\" or \"1GiB\")"))
}

impl SizeInput {
    fn bytes(&self, field: &str) -> Result<u64, String> {
        match self {
            SizeInput::Bytes(n) => Ok(*n),
            SizeInput::Text(t) => parse_size(t).map_err(|e| format!("{field} {e}")),
        }
    }
}

impl LimitsInput {
    /// The limits in units, checked.
    pub fn resolve(&self) -> Result<Limits, String> {
        let l = Limits {
            memory: self
                .memory
                .as_ref()
                .map(|m| m.bytes("limits.memory"))
                .transpose()?,
            cpus: self.cpus,
            pids: self.pids,
            disk: self
                .disk
                .as_ref()
                .map(|d| d.bytes("limits.disk"))
                .transpose()?,
        };
        l.validate()?;
        Ok(l)
    }
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.cpus.is_none() && self.pids.is_none() && self.disk.is_none()
    }

    /// `other`'s limits where it sets them, else these.
    pub fn merged(&self, other: &Limits) -> Limits {
        Limits {
            memory: other.memory.or(self.memory),
            cpus: other.cpus.or(self.cpus),
            pids: other.pids.or(self.pids),
            disk: other.disk.or(self.disk),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if let Some(m) = self.memory {
            if !(MIN_MEMORY..=MAX_SIZE).contains(&m) {
                return Err(format!(
                    "limits.memory must be 4MiB to 1PiB, got {}",
                    human(m)
                ));
            }
        }
        if let Some(d) = self.disk {
            if !(MIN_DISK..=MAX_SIZE).contains(&d) {
                return Err(format!(
                    "limits.disk must be 1MiB to 1PiB, got {}",
                    human(d)
                ));
            }
        }
        if let Some(c) = self.cpus {
            if !(c.is_finite() && (0.01..=MAX_CPUS).contains(&c)) {
                return Err(format!("limits.cpus must be 0.01 to {MAX_CPUS}, got {c}"));
            }
        }
        if let Some(p) = self.pids {
            if !(1..=MAX_PIDS).contains(&p) {
                return Err(format!("limits.pids must be 1 to {MAX_PIDS}, got {p}"));
            }
        }
        Ok(())
    }
}

/// `268435456` → `"256 MiB"`, `1610612736` → `"1.5 GiB"`: how messages
/// and events show a size (a whole number of units without `.0`, so the
/// reason a limit gives reads as the Towerfile wrote it).
pub fn human(bytes: u64) -> String {
    let s = bytesize::ByteSize::b(bytes).display().iec().to_string();
    match s.split_once(".0 ") {
        Some((whole, unit)) => format!("{whole} {unit}"),
        None => s,
    }
}
