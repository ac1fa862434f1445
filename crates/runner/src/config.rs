//! Runner configuration: every setting is a flag and an environment variable.
//!
//! Parsers name the environment variable in their error so a bad value in a
//! service unit or a container spec is easy to find.

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// How a runner connects, where it keeps its state and how it runs attempts.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "minitower-runner",
    version,
    about = "Leases MiniTower runs, executes them in Python environments and reports results."
)]
pub struct RunnerConfig {
    /// Control plane URL, e.g. http://localhost:8080.
    #[arg(long, env = "MINITOWER_SERVER_URL", value_parser = url_parser("MINITOWER_SERVER_URL"))]
    pub server_url: String,

    /// Unique runner name; registering the same name again rotates its token.
    #[arg(long = "name", env = "MINITOWER_RUNNER_NAME", value_parser = name_parser("MINITOWER_RUNNER_NAME"))]
    pub name: String,

    /// Platform token for registration (only needed when no saved runner token works).
    #[arg(
        long,
        env = "MINITOWER_RUNNER_REGISTRATION_TOKEN",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub registration_token: String,

    /// Environment label: the runner only takes runs queued for it.
    #[arg(long, env = "MINITOWER_RUNNER_ENVIRONMENT", default_value = "default")]
    pub environment: String,

    /// Python interpreter used to build environments (resolved once at start).
    #[arg(long, env = "MINITOWER_PYTHON_BIN", default_value = "python3")]
    pub python_bin: String,

    /// Pause after a failed call to the control plane before trying again
    /// (waiting for work itself is a long-poll, not a poll).
    #[arg(long, env = "MINITOWER_POLL_INTERVAL", default_value = "3s",
          value_parser = duration_parser("MINITOWER_POLL_INTERVAL"))]
    pub poll_interval: Duration,

    /// Time between SIGTERM and SIGKILL when a run is cancelled or times out.
    #[arg(long, env = "MINITOWER_KILL_GRACE_PERIOD", default_value = "10s",
          value_parser = duration_parser("MINITOWER_KILL_GRACE_PERIOD"))]
    pub kill_grace_period: Duration,

    /// Where the runner keeps its token, artifact cache, environments and workspaces.
    #[arg(long, env = "MINITOWER_DATA_DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,

    /// Runs executed at once (like executr's --max-jobs).
    #[arg(long, env = "MINITOWER_RUNNER_CONCURRENCY", default_value = "1",
          value_parser = count_parser("MINITOWER_RUNNER_CONCURRENCY"))]
    pub concurrency: usize,

    /// uv binary for environment builds; default: `uv` on PATH, else venv + pip.
    #[arg(long, env = "MINITOWER_UV_BIN")]
    pub uv_bin: Option<PathBuf>,

    /// Log bytes kept per run; past it lines are dropped and one marker line says how many.
    #[arg(long, env = "MINITOWER_MAX_LOG_BYTES", default_value = "10485760",
          value_parser = bytes_parser("MINITOWER_MAX_LOG_BYTES"))]
    pub max_log_bytes: u64,

    /// On the first shutdown signal, how long running attempts may finish before they are cancelled.
    #[arg(long, env = "MINITOWER_DRAIN_TIMEOUT", default_value = "60s",
          value_parser = duration_parser("MINITOWER_DRAIN_TIMEOUT"))]
    pub drain_timeout: Duration,

    /// Size cap of the artifact cache; least recently used artifacts are evicted past it.
    #[arg(long, env = "MINITOWER_ARTIFACT_CACHE_MAX_BYTES", default_value = "1073741824",
          value_parser = bytes_parser("MINITOWER_ARTIFACT_CACHE_MAX_BYTES"))]
    pub artifact_cache_max_bytes: u64,

    /// Cache entries (artifacts, environments) not used for this long are
    /// removed, at start and hourly; one in use never. Several runners
    /// sharing a data dir: keep it above the longest run timeout (7 days).
    #[arg(long, env = "MINITOWER_RUNNER_CACHE_MAX_AGE", default_value = "14d",
          value_parser = duration_parser("MINITOWER_RUNNER_CACHE_MAX_AGE"))]
    pub cache_max_age: Duration,

    /// Keep a fork server of the shared empty environment per slot (a warm
    /// interpreter that forks each run), so a `.py` run without dependencies
    /// does not pay interpreter start-up; false: every run starts its own.
    #[arg(long, env = "MINITOWER_PRESTART", default_value = "true",
          value_parser = bool_parser("MINITOWER_PRESTART"), action = clap::ArgAction::Set)]
    pub prestart: bool,

    /// Let git sources name a repository on this host (a path or `file://`
    /// URL). Off by default: the runner fetches as itself, so a local URL
    /// could read what its own user can, another team's cached clone
    /// included. For single-team runners and tests.
    #[arg(long, env = "MINITOWER_RUNNER_GIT_ALLOW_LOCAL", default_value = "false",
          value_parser = bool_parser("MINITOWER_RUNNER_GIT_ALLOW_LOCAL"), action = clap::ArgAction::Set)]
    pub git_allow_local: bool,

    /// The executable started as each attempt's supervisor (see the README's
    /// "Fenced execution"); default: this program itself.
    #[arg(long, env = "MINITOWER_SUPERVISOR_BIN")]
    pub supervisor_bin: Option<PathBuf>,

    /// Per-attempt cgroup v2 directories: `auto` (used when the runner may
    /// create them), `off`, or `required` (refuse to start without them).
    #[arg(long, env = "MINITOWER_CGROUPS", default_value = "auto", value_parser = ["auto", "off", "required"])]
    pub cgroups: String,

    /// Isolation of scripts: `auto` (`user` when possible, else `none`),
    /// `user` (each slot's scripts as their own unprivileged uid; refuse to
    /// start without) or `none` (scripts run as the runner's user).
    #[arg(long, env = "MINITOWER_ISOLATION", default_value = "auto", value_parser = ["auto", "user", "none"])]
    pub isolation: String,

    /// First uid (and gid) of the runner's pool for `user` isolation (one
    /// per slot); default: derived from the runner's data dir and name.
    #[arg(long, env = "MINITOWER_ISOLATION_UID_BASE")]
    pub isolation_uid_base: Option<u32>,
}

impl RunnerConfig {
    /// A configuration with every optional setting at its default (for embedding, e.g. `minitower dev`).
    pub fn new(
        server_url: String,
        name: String,
        registration_token: String,
        data_dir: PathBuf,
    ) -> RunnerConfig {
        RunnerConfig {
            server_url,
            name,
            registration_token,
            environment: "default".into(),
            python_bin: "python3".into(),
            poll_interval: Duration::from_secs(3),
            kill_grace_period: Duration::from_secs(10),
            data_dir,
            concurrency: 1,
            uv_bin: None,
            max_log_bytes: 10 * 1024 * 1024,
            drain_timeout: Duration::from_secs(60),
            artifact_cache_max_bytes: 1 << 30,
            cache_max_age: Duration::from_secs(14 * 86400),
            prestart: true,
            git_allow_local: false,
            supervisor_bin: None,
            cgroups: "auto".into(),
            isolation: "auto".into(),
            isolation_uid_base: None,
        }
    }

    /// Checks what clap cannot (for configurations built in code).
    pub fn validate(&self) -> Result<(), crate::RunnerError> {
        let bad = |var: &str, msg: String| Err(crate::RunnerError::Config(format!("{var}: {msg}")));
        if let Err(e) = url_parser("MINITOWER_SERVER_URL")(&self.server_url) {
            return Err(crate::RunnerError::Config(e));
        }
        if let Err(e) = name_parser("MINITOWER_RUNNER_NAME")(&self.name) {
            return Err(crate::RunnerError::Config(e));
        }
        if self.concurrency == 0 {
            return bad("MINITOWER_RUNNER_CONCURRENCY", "must be at least 1".into());
        }
        if self.environment.trim().is_empty() {
            return bad("MINITOWER_RUNNER_ENVIRONMENT", "must not be empty".into());
        }
        if self.python_bin.trim().is_empty() {
            return bad("MINITOWER_PYTHON_BIN", "must not be empty".into());
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("MINITOWER_DATA_DIR", "must not be empty".into());
        }
        Ok(())
    }
}

/// `~/.minitower`, or `./.minitower` when there is no home directory.
pub fn default_data_dir() -> PathBuf {
    dirs::home_dir()
        .map(|h| h.join(".minitower"))
        .unwrap_or_else(|| PathBuf::from(".minitower"))
}

type Parse<T> = fn(&str) -> Result<T, String>;

fn wrap<T: 'static>(
    var: &'static str,
    f: Parse<T>,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |s: &str| f(s).map_err(|e| format!("{var}: {e}"))
}

fn duration_parser(
    var: &'static str,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    wrap(var, minitower_core::validate::duration)
}

fn bytes_parser(
    var: &'static str,
) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    wrap(var, parse_bytes)
}

fn count_parser(
    var: &'static str,
) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    wrap(var, |s| match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("expected a whole number of at least 1, got {s:?}")),
    })
}

fn bool_parser(
    var: &'static str,
) -> impl Fn(&str) -> Result<bool, String> + Clone + Send + Sync + 'static {
    wrap(var, |s| match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("expected true or false, got {s:?}")),
    })
}

fn url_parser(
    var: &'static str,
) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync + 'static {
    wrap(var, |s| {
        let t = s.trim();
        if (t.starts_with("http://") || t.starts_with("https://")) && t.len() > "https://".len() - 1
        {
            Ok(t.trim_end_matches('/').to_string())
        } else {
            Err(format!("expected an http:// or https:// URL, got {s:?}"))
        }
    })
}

fn name_parser(
    var: &'static str,
) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync + 'static {
    wrap(var, |s| {
        let t = s.trim();
        if t.is_empty() {
            Err("must not be empty".into())
        } else if t.len() > 200 || t.chars().any(|c| c.is_control() || c == '/') {
            Err(format!("{s:?} is not a usable runner name"))
        } else {
            Ok(t.to_string())
        }
    })
}

/// Byte counts: a plain number, or with a `KiB`/`MiB`/`GiB` (or `K`/`M`/`G`) suffix.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a byte count like 10485760 or 10MiB, got {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("unknown size unit in {s:?} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<RunnerConfig, clap::Error> {
        let mut full = vec![
            "minitower-runner",
            "--server-url",
            "http://x:1",
            "--name",
            "r1",
        ];
        full.extend_from_slice(args);
        RunnerConfig::try_parse_from(full)
    }

    #[test]
    fn defaults_match_new() {
        let c = parse(&["--data-dir", "/tmp/d"]).unwrap();
        let n = RunnerConfig::new(
            "http://x:1".into(),
            "r1".into(),
            String::new(),
            "/tmp/d".into(),
        );
        assert_eq!(format!("{c:?}"), format!("{n:?}"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = parse(&["--poll-interval", "soon"]).unwrap_err().to_string();
        assert!(e.contains("MINITOWER_POLL_INTERVAL"), "{e}");
        let e = parse(&["--concurrency", "0"]).unwrap_err().to_string();
        assert!(e.contains("MINITOWER_RUNNER_CONCURRENCY"), "{e}");
        let e = parse(&["--max-log-bytes", "lots"]).unwrap_err().to_string();
        assert!(e.contains("MINITOWER_MAX_LOG_BYTES"), "{e}");
        let e = RunnerConfig::try_parse_from(["r", "--server-url", "ftp://x", "--name", "a"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("MINITOWER_SERVER_URL"), "{e}");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("10MiB").unwrap(), 10 << 20);
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert!(parse_bytes("1x").is_err());
        let c = parse(&["--kill-grace-period", "500ms", "--concurrency", "4"]).unwrap();
        assert_eq!(c.kill_grace_period, Duration::from_millis(500));
        assert_eq!(c.concurrency, 4);
        let c = parse(&["--cache-max-age", "30d"]).unwrap();
        assert_eq!(c.cache_max_age, Duration::from_secs(30 * 86400));
        let e = parse(&["--cache-max-age", "a while"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("MINITOWER_RUNNER_CACHE_MAX_AGE"), "{e}");
    }

    #[test]
    fn help_documents_every_variable() {
        use clap::CommandFactory;
        let help = RunnerConfig::command().render_long_help().to_string();
        for var in [
            "MINITOWER_SERVER_URL",
            "MINITOWER_RUNNER_NAME",
            "MINITOWER_RUNNER_REGISTRATION_TOKEN",
            "MINITOWER_RUNNER_ENVIRONMENT",
            "MINITOWER_PYTHON_BIN",
            "MINITOWER_POLL_INTERVAL",
            "MINITOWER_KILL_GRACE_PERIOD",
            "MINITOWER_DATA_DIR",
            "MINITOWER_RUNNER_CONCURRENCY",
            "MINITOWER_UV_BIN",
            "MINITOWER_MAX_LOG_BYTES",
            "MINITOWER_DRAIN_TIMEOUT",
            "MINITOWER_ARTIFACT_CACHE_MAX_BYTES",
            "MINITOWER_RUNNER_CACHE_MAX_AGE",
        ] {
            assert!(help.contains(var), "{var} missing from --help");
        }
    }
}
