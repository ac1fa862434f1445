//! Saved CLI profiles (`~/.config/minitower/config.toml`): which server to
//! talk to and with which token, so commands need no flags day to day.
//! The file holds secrets, so it is always written with mode 0600.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Profile used when none is named.
pub const DEFAULT_PROFILE: &str = "default";

/// Server used when nothing else says which.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// One saved server + token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Team slug, for display only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

/// The whole config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Profile used when `--profile` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// Why the config could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot find a config folder: set MINITOWER_CONFIG or HOME")]
    NoHome,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid config file: {message}")]
    Parse { path: PathBuf, message: String },
}

/// Where the config lives: `$MINITOWER_CONFIG`, else
/// `$XDG_CONFIG_HOME/minitower/config.toml`, else `~/.config/minitower/config.toml`.
pub fn path() -> Result<PathBuf, ConfigError> {
    if let Some(p) = std::env::var_os("MINITOWER_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => dirs::home_dir().ok_or(ConfigError::NoHome)?.join(".config"),
    };
    Ok(base.join("minitower").join("config.toml"))
}

impl Config {
    /// Reads the config; a missing file is an empty config.
    pub fn load_from(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(ConfigError::Io {
                    path: path.into(),
                    source,
                })
            }
        };
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.message().to_string(),
        })
    }

    /// Writes atomically with mode 0600 (the file holds tokens).
    pub fn save_to(&self, path: &Path) -> Result<(), ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.into(),
            source,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let text = toml::to_string_pretty(self).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".config.toml.")
            .tempfile_in(dir)
            .map_err(io)?;
        set_private(tmp.path()).map_err(io)?;
        std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        set_private(path).map_err(io)?;
        Ok(())
    }

    /// The profile `name`, else the current one, else `default`.
    pub fn profile(&self, name: Option<&str>) -> Option<&Profile> {
        self.profiles.get(self.profile_name(name))
    }

    /// Which profile a command uses.
    pub fn profile_name<'a>(&'a self, name: Option<&'a str>) -> &'a str {
        name.or(self.current.as_deref()).unwrap_or(DEFAULT_PROFILE)
    }
}

#[cfg(unix)]
fn set_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_private(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.toml");
        assert_eq!(Config::load_from(&path).unwrap(), Config::default());
        let mut cfg = Config::default();
        cfg.profiles.insert(
            "default".into(),
            Profile {
                server: "http://x".into(),
                token: Some("t".into()),
                team: Some("acme".into()),
            },
        );
        cfg.save_to(&path).unwrap();
        assert_eq!(Config::load_from(&path).unwrap(), cfg);
        assert_eq!(cfg.profile(None).unwrap().server, "http://x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn bad_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "profiles = 3").unwrap();
        assert!(matches!(
            Config::load_from(&path),
            Err(ConfigError::Parse { .. })
        ));
    }
}
