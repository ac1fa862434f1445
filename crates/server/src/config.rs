//! Control-plane settings: every `MINITOWER_*` variable of the README's table,
//! each also a command-line flag. Bad values stop the start with a message
//! that names the variable.

use clap::Parser;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How request and event logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `minitowerd` configuration.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "minitowerd",
    version,
    about = "MiniTower control plane: API, dispatch, reaper, metrics and web UI"
)]
pub struct ServerConfig {
    /// HTTP listen address (`:8080` means every interface).
    #[arg(long, env = "MINITOWER_LISTEN_ADDR", default_value = ":8080")]
    pub listen_addr: String,

    /// SQLite database file (used unless a database URL is given).
    #[arg(long, env = "MINITOWER_DB_PATH", default_value = "./minitower.db")]
    pub db_path: PathBuf,

    /// Database URL: `postgres://USER@HOST/DB` for PostgreSQL (several
    /// replicas), `sqlite://PATH`, or empty for SQLite at the DB path.
    #[arg(long, env = "MINITOWER_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Directory where artifacts are stored by SHA-256.
    #[arg(long, env = "MINITOWER_OBJECTS_DIR", default_value = "./objects")]
    pub objects_dir: PathBuf,

    /// Artifacts in an S3-compatible bucket, `s3://BUCKET/PREFIX` (endpoint,
    /// region and keys from the usual `AWS_*` variables); the objects
    /// directory then only holds upload spool files.
    #[arg(long, env = "MINITOWER_OBJECTS_URL")]
    pub objects_url: Option<String>,

    /// Secret that allows creating teams (`POST /api/v1/bootstrap/team`).
    /// Without one, `minitowerd` makes a random one at start and prints it
    /// once to stderr.
    #[arg(
        long,
        env = "MINITOWER_BOOTSTRAP_TOKEN",
        default_value = "",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub bootstrap_token: String,

    /// Secret runners present to register (required).
    #[arg(
        long,
        env = "MINITOWER_RUNNER_REGISTRATION_TOKEN",
        hide_env_values = true
    )]
    pub runner_registration_token: Option<String>,

    /// How long a lease lasts without a heartbeat (e.g. `60s`).
    #[arg(long, env = "MINITOWER_LEASE_TTL", default_value = "60s", value_parser = parse_lease_ttl)]
    pub lease_ttl: Duration,

    /// How often the reaper looks for expired leases (e.g. `10s`).
    #[arg(long, env = "MINITOWER_EXPIRY_CHECK_INTERVAL", default_value = "10s", value_parser = parse_expiry_interval)]
    pub expiry_check_interval: Duration,

    /// Largest JSON request body in bytes.
    #[arg(long, env = "MINITOWER_MAX_REQUEST_BODY_SIZE", default_value = "10485760", value_parser = parse_body_size)]
    pub max_request_body_size: u64,

    /// Largest compressed artifact upload in bytes.
    #[arg(long, env = "MINITOWER_MAX_ARTIFACT_SIZE", default_value = "104857600", value_parser = parse_artifact_size)]
    pub max_artifact_size: u64,

    /// Log output: `text` for people, `json` for collectors.
    #[arg(long, env = "MINITOWER_LOG_FORMAT", default_value = "text", value_enum)]
    pub log_format: LogFormat,

    /// How long a token from `POST /api/v1/teams/login` works (e.g. `12h`).
    #[arg(long, env = "MINITOWER_LOGIN_TOKEN_TTL", default_value = "12h", value_parser = parse_login_ttl)]
    pub login_token_ttl: Duration,

    /// Bearer token `GET /metrics` asks for; without one it is open.
    #[arg(long, env = "MINITOWER_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Key that seals secrets at rest: base64 of 32 random bytes. Every
    /// replica needs the same one. Without it the key file is used.
    #[arg(long, env = "MINITOWER_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<String>,

    /// Older keys that only open stored secrets (comma-separated base64),
    /// kept until every secret is re-sealed under the new key.
    #[arg(long, env = "MINITOWER_SECRETS_OLD_KEYS", hide_env_values = true)]
    pub secrets_old_keys: Option<String>,

    /// Key file used without `MINITOWER_SECRETS_KEY`; created with one random
    /// key (mode 0600) at first start. Default: `secrets.key` in the SQLite
    /// database's directory.
    #[arg(long, env = "MINITOWER_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<PathBuf>,

    /// First webhook retry delay; later ones grow from it (5 s, 30 s, 2 m,
    /// 10 m, 30 m, then hourly, ~24 h in all at the default).
    #[arg(long, env = "MINITOWER_WEBHOOK_RETRY_BASE", default_value = "5s", value_parser = parse_webhook_base)]
    pub webhook_retry_base: Duration,

    /// Lets webhook endpoints resolve to loopback, link-local or the
    /// control plane's own addresses (refused by default).
    #[arg(long, env = "MINITOWER_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,

    /// Finished runs older than this (by their finish time) are deleted
    /// with their attempts and logs (e.g. `30d`); unset: kept forever.
    #[arg(long, env = "MINITOWER_RETENTION", value_parser = parse_retention)]
    pub retention: Option<Duration>,

    /// How often retention and the artifact collector run.
    #[arg(long, env = "MINITOWER_RETENTION_INTERVAL", default_value = "10m", value_parser = parse_retention_interval)]
    pub retention_interval: Duration,

    /// Runs deleted per transaction at most (each batch also stops at
    /// 100000 log lines), so the writer is never held for long.
    #[arg(long, env = "MINITOWER_RETENTION_BATCH", default_value = "500", value_parser = parse_retention_batch)]
    pub retention_batch: u64,

    /// Deletes stored artifacts no version references.
    #[arg(long, env = "MINITOWER_ARTIFACT_GC", default_value_t = true, action = clap::ArgAction::Set)]
    pub artifact_gc: bool,

    /// How old an unreferenced artifact must be before it is deleted: an
    /// upload stores its artifact before its version (at least `20m`).
    #[arg(long, env = "MINITOWER_ARTIFACT_GC_GRACE", default_value = "1h", value_parser = parse_artifact_gc_grace)]
    pub artifact_gc_grace: Duration,
}

fn named_duration(var: &'static str, s: &str) -> Result<Duration, String> {
    let d = minitower_core::validate::duration(s).map_err(|e| format!("{var}: {e}"))?;
    if d.is_zero() {
        return Err(format!("{var}: must be greater than zero"));
    }
    Ok(d)
}

fn named_size(var: &'static str, s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err(format!("{var}: must be greater than zero")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{var}: expected a number of bytes, got {s:?}")),
    }
}

fn parse_lease_ttl(s: &str) -> Result<Duration, String> {
    named_duration("MINITOWER_LEASE_TTL", s)
}
fn parse_expiry_interval(s: &str) -> Result<Duration, String> {
    named_duration("MINITOWER_EXPIRY_CHECK_INTERVAL", s)
}
fn parse_webhook_base(s: &str) -> Result<Duration, String> {
    named_duration("MINITOWER_WEBHOOK_RETRY_BASE", s)
}
fn parse_login_ttl(s: &str) -> Result<Duration, String> {
    named_duration("MINITOWER_LOGIN_TOKEN_TTL", s)
}
fn parse_retention(s: &str) -> Result<Duration, String> {
    named_duration("MINITOWER_RETENTION", s)
        .map_err(|e| format!("{e} (leave it unset to keep runs forever)"))
}
fn parse_retention_interval(s: &str) -> Result<Duration, String> {
    named_duration("MINITOWER_RETENTION_INTERVAL", s)
}
fn parse_retention_batch(s: &str) -> Result<u64, String> {
    named_size("MINITOWER_RETENTION_BATCH", s).and_then(|n| {
        if n > 10_000 {
            Err(format!("MINITOWER_RETENTION_BATCH: at most 10000, got {n}"))
        } else {
            Ok(n)
        }
    })
}
fn parse_artifact_gc_grace(s: &str) -> Result<Duration, String> {
    let d = named_duration("MINITOWER_ARTIFACT_GC_GRACE", s)?;
    let min = crate::objects::REFRESH_AFTER * 2;
    if d < min {
        return Err(format!(
            "MINITOWER_ARTIFACT_GC_GRACE: at least {}m (an upload in flight must never look abandoned), got {s:?}",
            min.as_secs() / 60
        ));
    }
    Ok(d)
}
fn parse_body_size(s: &str) -> Result<u64, String> {
    named_size("MINITOWER_MAX_REQUEST_BODY_SIZE", s)
}
fn parse_artifact_size(s: &str) -> Result<u64, String> {
    named_size("MINITOWER_MAX_ARTIFACT_SIZE", s)
}

/// A setting that parsed but cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ServerConfig {
    /// Settings for a local control plane with data under `data_dir`
    /// (used by `minitower dev`).
    pub fn local(
        data_dir: &Path,
        listen_addr: String,
        bootstrap_token: String,
        registration_token: String,
    ) -> Self {
        ServerConfig {
            listen_addr,
            db_path: data_dir.join("minitower.db"),
            database_url: None,
            objects_dir: data_dir.join("objects"),
            objects_url: None,
            bootstrap_token,
            runner_registration_token: Some(registration_token),
            lease_ttl: Duration::from_secs(60),
            expiry_check_interval: Duration::from_secs(10),
            max_request_body_size: 10 * 1024 * 1024,
            max_artifact_size: 100 * 1024 * 1024,
            log_format: LogFormat::Text,
            login_token_ttl: Duration::from_secs(12 * 3600),
            metrics_token: None,
            secrets_key: None,
            secrets_old_keys: None,
            secrets_key_file: Some(data_dir.join("secrets.key")),
            webhook_retry_base: Duration::from_secs(5),
            webhook_allow_private: false,
            retention: None,
            retention_interval: Duration::from_secs(600),
            retention_batch: 500,
            artifact_gc: true,
            artifact_gc_grace: Duration::from_secs(3600),
        }
    }

    /// Makes a random bootstrap token when none was configured and returns
    /// it (for the binary to print once); `None` when one was set.
    pub fn ensure_bootstrap_token(&mut self) -> Option<String> {
        if !self.bootstrap_token.is_empty() {
            return None;
        }
        let mut buf = [0u8; 24];
        getrandom::fill(&mut buf).expect("the OS random source failed");
        self.bootstrap_token = format!("mtb_{}", hex::encode(buf));
        Some(self.bootstrap_token.clone())
    }

    /// Settings for tests: bootstrap token `boot`, registration token `reg`,
    /// short lease and reaper intervals, everything under `data_dir`.
    pub fn for_tests(data_dir: &Path) -> Self {
        let mut c = Self::local(data_dir, "127.0.0.1:0".into(), "boot".into(), "reg".into());
        c.lease_ttl = Duration::from_secs(5);
        c.expiry_check_interval = Duration::from_millis(250);
        c
    }

    /// Checks what clap cannot: required secrets and cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.runner_registration_token {
            Some(t) if !t.is_empty() => {}
            _ => return Err(ConfigError(
                "MINITOWER_RUNNER_REGISTRATION_TOKEN (or --runner-registration-token) is required"
                    .into(),
            )),
        }
        if self.bootstrap_token.is_empty() {
            return Err(ConfigError(
                "MINITOWER_BOOTSTRAP_TOKEN must not be empty".into(),
            ));
        }
        if self.metrics_token.as_deref() == Some("") {
            return Err(ConfigError(
                "MINITOWER_METRICS_TOKEN must not be empty when set".into(),
            ));
        }
        if let Some(url) = &self.database_url {
            if !url.is_empty() && !url.starts_with("sqlite:") && self.postgres_url().is_none() {
                // only the scheme: the rest may hold a password
                let scheme = url.split(':').next().unwrap_or_default();
                return Err(ConfigError(format!(
                    "MINITOWER_DATABASE_URL: unsupported database scheme {scheme:?} \
                     (use postgres://USER@HOST:PORT/DB or sqlite://PATH)"
                )));
            }
        }
        if let Some(url) = self.objects_url.as_deref().filter(|u| !u.is_empty()) {
            crate::objects_s3::parse_url(url)
                .map_err(|e| ConfigError(format!("MINITOWER_OBJECTS_URL: {e}")))?;
        }
        self.socket_addr()?;
        Ok(())
    }

    /// The listen address with Go-style `:8080` expanded to `0.0.0.0:8080`.
    pub fn socket_addr(&self) -> Result<String, ConfigError> {
        let a = self.listen_addr.trim();
        let full = if a.starts_with(':') {
            format!("0.0.0.0{a}")
        } else {
            a.to_string()
        };
        let port_ok = full
            .rsplit_once(':')
            .map(|(_, p)| p.parse::<u16>().is_ok())
            .unwrap_or(false);
        if !port_ok {
            return Err(ConfigError(format!(
                "MINITOWER_LISTEN_ADDR: expected HOST:PORT or :PORT, got {a:?}"
            )));
        }
        Ok(full)
    }

    /// The PostgreSQL URL, when the database URL names one.
    pub fn postgres_url(&self) -> Option<&str> {
        self.database_url
            .as_deref()
            .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
    }

    /// The SQLite file to open.
    pub fn sqlite_path(&self) -> PathBuf {
        match &self.database_url {
            Some(url) if url.starts_with("sqlite:") => PathBuf::from(
                url.trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:"),
            ),
            _ => self.db_path.clone(),
        }
    }

    /// The secrets key file (see [`ServerConfig::secrets_key_file`]).
    pub fn key_file(&self) -> PathBuf {
        match &self.secrets_key_file {
            Some(p) => p.clone(),
            None => self
                .sqlite_path()
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .join("secrets.key"),
        }
    }

    /// Registration secret (validated to be present).
    pub fn registration_token(&self) -> &str {
        self.runner_registration_token
            .as_deref()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ServerConfig, String> {
        let mut c = raw_parse(args)?;
        c.ensure_bootstrap_token();
        Ok(c)
    }

    /// Parses without filling in a bootstrap token.
    fn raw_parse(args: &[&str]) -> Result<ServerConfig, String> {
        let mut v = vec!["minitowerd"];
        v.extend_from_slice(args);
        ServerConfig::try_parse_from(v).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_the_readme() {
        let c = parse(&["--runner-registration-token", "x"]).unwrap();
        assert_eq!(c.listen_addr, ":8080");
        assert_eq!(c.socket_addr().unwrap(), "0.0.0.0:8080");
        assert_eq!(c.lease_ttl, Duration::from_secs(60));
        assert_eq!(c.expiry_check_interval, Duration::from_secs(10));
        assert_eq!(c.max_request_body_size, 10485760);
        assert_eq!(c.max_artifact_size, 104857600);
        assert_eq!(c.login_token_ttl, Duration::from_secs(12 * 3600));
        assert_eq!(c.metrics_token, None);
        assert!(c.bootstrap_token.starts_with("mtb_"));
        c.validate().unwrap();
    }

    #[test]
    fn without_a_bootstrap_token_a_random_one_is_made() {
        let mut c = raw_parse(&["--runner-registration-token", "x"]).unwrap();
        assert_eq!(c.bootstrap_token, "", "no built-in default secret");
        c.validate().unwrap_err();
        let made = c.ensure_bootstrap_token().unwrap();
        assert!(made.starts_with("mtb_") && made.len() == 52, "{made}");
        assert_eq!(c.bootstrap_token, made);
        c.validate().unwrap();
        let mut other = raw_parse(&["--runner-registration-token", "x"]).unwrap();
        assert_ne!(other.ensure_bootstrap_token().unwrap(), made);
        let mut set =
            raw_parse(&["--runner-registration-token", "x", "--bootstrap-token", "s"]).unwrap();
        assert_eq!(set.ensure_bootstrap_token(), None);
        assert_eq!(set.bootstrap_token, "s");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = parse(&["--lease-ttl", "soon"]).unwrap_err();
        assert!(e.contains("MINITOWER_LEASE_TTL"), "{e}");
        let e = parse(&["--max-artifact-size", "big"]).unwrap_err();
        assert!(e.contains("MINITOWER_MAX_ARTIFACT_SIZE"), "{e}");
        let c = parse(&[]).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("MINITOWER_RUNNER_REGISTRATION_TOKEN"), "{e}");
        let c = parse(&["--runner-registration-token", "x", "--listen-addr", "nope"]).unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("MINITOWER_LISTEN_ADDR"));
    }

    #[test]
    fn database_urls_choose_the_backend() {
        let c = parse(&["--runner-registration-token", "x"]).unwrap();
        assert_eq!(c.postgres_url(), None);
        let url = "postgres://mt:secret@db:5432/minitower";
        let c = parse(&["--runner-registration-token", "x", "--database-url", url]).unwrap();
        c.validate().unwrap();
        assert_eq!(c.postgres_url(), Some(url));
        let c = parse(&[
            "--runner-registration-token",
            "x",
            "--database-url",
            "sqlite://a.db",
        ])
        .unwrap();
        c.validate().unwrap();
        assert_eq!((c.postgres_url(), c.sqlite_path()), (None, "a.db".into()));
        let bad = "mysql://root:hunter2@db/mt";
        let c = parse(&["--runner-registration-token", "x", "--database-url", bad]).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("MINITOWER_DATABASE_URL") && e.contains("\"mysql\""),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn objects_url_must_name_a_bucket() {
        let args = |u| ["--runner-registration-token", "x", "--objects-url", u];
        parse(&args("s3://artifacts/minitower"))
            .unwrap()
            .validate()
            .unwrap();
        let e = parse(&args("gs://x")).unwrap().validate().unwrap_err();
        assert!(e.to_string().contains("MINITOWER_OBJECTS_URL"), "{e}");
    }

    #[test]
    fn retention_is_off_by_default_and_checked_when_set() {
        let c = parse(&["--runner-registration-token", "x"]).unwrap();
        assert_eq!(c.retention, None, "runs are kept forever by default");
        assert_eq!(c.retention_interval, Duration::from_secs(600));
        assert_eq!(c.retention_batch, 500);
        assert!(c.artifact_gc);
        assert_eq!(c.artifact_gc_grace, Duration::from_secs(3600));
        let c = parse(&["--retention", "30d", "--retention-batch", "50"]).unwrap();
        assert_eq!(c.retention, Some(Duration::from_secs(30 * 86400)));
        assert_eq!(c.retention_batch, 50);
        let c = parse(&["--retention", "12h", "--artifact-gc", "false"]).unwrap();
        assert_eq!(
            (c.retention, c.artifact_gc),
            (Some(Duration::from_secs(12 * 3600)), false)
        );
        for (args, var) in [
            (["--retention", "0"], "MINITOWER_RETENTION"),
            (["--retention", "a month"], "MINITOWER_RETENTION"),
            (["--retention-batch", "0"], "MINITOWER_RETENTION_BATCH"),
            (["--retention-batch", "20000"], "MINITOWER_RETENTION_BATCH"),
            (["--artifact-gc-grace", "5m"], "MINITOWER_ARTIFACT_GC_GRACE"),
            (
                ["--retention-interval", "soon"],
                "MINITOWER_RETENTION_INTERVAL",
            ),
        ] {
            let e = parse(&args).unwrap_err();
            assert!(e.contains(var), "{args:?}: {e}");
        }
    }

    #[test]
    fn durations_accept_units() {
        let c = parse(&["--lease-ttl", "500ms", "--expiry-check-interval", "2m"]).unwrap();
        assert_eq!(c.lease_ttl, Duration::from_millis(500));
        assert_eq!(c.expiry_check_interval, Duration::from_secs(120));
    }
}
