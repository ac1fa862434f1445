//! The MiniTower runner as a library.
//!
//! The `minitower-runner` binary and the CLI's `minitower dev` both embed it:
//! build a [`RunnerConfig`] and call [`run`] (or [`run_with`] to control the
//! two stages of shutdown). The runner registers (or reuses its saved token),
//! long-polls for leases with `concurrency` loops, and executes each attempt
//! in a fresh workspace with a cached Python environment.

mod artifacts;
mod attempt;
mod cache_gc;
pub mod config;
mod envs;
mod error;
mod events;
mod forkserver;
mod isolation;
mod lease;
mod limits;
mod logs;
pub mod mask;
mod process;
mod python;
mod registration;
mod retry;
mod sources;
pub mod supervisor;
mod worker;
mod workspace;

#[cfg(test)]
mod test_support;

pub use config::RunnerConfig;
pub use error::{RunnerError, SetupError};

use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// How many runs this process had forked by a fork server
/// (diagnostics; the tests use it to make sure the fast path is taken).
pub fn prestart_launches() -> u64 {
    forkserver::LAUNCHES.load(std::sync::atomic::Ordering::Relaxed)
}

/// The resource-limit mechanism a runner picks on this machine: "cgroup
/// v2", "cgroup v1" or "rlimit" (see `limits.rs`). Probed once per process
/// with a scope of its own; diagnostics, and tests skip by it.
pub fn limits_mode() -> &'static str {
    static MODE: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    MODE.get_or_init(|| {
        let scope = format!("probe-{}", std::process::id());
        let v2 = supervisor::tree::cgroup_base(&scope);
        let limiter = limits::Limiter::detect(&scope, v2.as_deref(), false);
        limiter.remove_bases();
        if let Some(b) = &v2 {
            supervisor::tree::remove_cgroup(b);
        }
        limiter.mode()
    })
}

/// Runs until `shutdown` is cancelled, then drains: no new leases, running
/// attempts get `drain_timeout` to finish, what is left is cancelled and
/// reported as `cancelled`.
pub async fn run(config: RunnerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with(config, shutdown, CancellationToken::new()).await
}

/// Like [`run`], with a second token that skips the drain: cancelling `force`
/// (e.g. on a second Ctrl-C) cancels the running attempts at once.
pub async fn run_with(
    config: RunnerConfig,
    drain: CancellationToken,
    force: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let instance = workspace::Instance::acquire(&config.data_dir, &config.name)?;
    let interp = python::Interpreter::resolve(&config.python_bin).await?;
    let uv = python::find_uv(config.uv_bin.as_deref());
    let envs = envs::EnvCache::open(config.data_dir.join("envs"), interp.clone(), uv).await?;
    let artifacts_dir = config.data_dir.join("artifacts");
    let artifacts =
        artifacts::ArtifactCache::open(artifacts_dir.clone(), config.artifact_cache_max_bytes)
            .map_err(|e| RunnerError::io(&artifacts_dir, e))?;
    let sources = sources::Sources::open(&config.data_dir, config.git_allow_local)
        .map_err(|e| RunnerError::io(&config.data_dir, e))?;
    let supervisor = match &config.supervisor_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| RunnerError::io("current executable", e))?,
    };
    let scope = instance.scope();
    let cgroups = match config.cgroups.as_str() {
        "off" => None,
        mode => match supervisor::tree::cgroup_base(&scope) {
            Some(b) => Some(b),
            None if mode == "required" => return Err(RunnerError::Config(
                "MINITOWER_CGROUPS=required, but this runner cannot create cgroup v2 directories"
                    .into(),
            )
            .into()),
            None => None,
        },
    };
    // What an earlier incarnation left running dies before anything else.
    let leftovers = supervisor::tree::kill_leftovers(&scope, cgroups.as_deref());
    if !leftovers.is_empty() {
        tracing::warn!(killed = %leftovers.join(", "), "killed processes a previous runner left running");
    }
    let limiter = limits::Limiter::detect(&scope, cgroups.as_deref(), config.cgroups == "off");
    let stale = limiter.clean_stale();
    if !stale.is_empty() {
        tracing::warn!(killed = %stale.join(", "), "killed processes left in a previous runner's limit cgroups");
    }
    instance.clear_workspaces()?;
    probe(
        &supervisor,
        &instance.work_dir,
        cgroups.clone(),
        None,
        &["/bin/sh".into(), "-c".into(), "exit 0".into()],
    )
    .await
    .map_err(|m| {
        RunnerError::Config(format!(
            "MINITOWER_SUPERVISOR_BIN: {} does not work as a supervisor: {m}",
            supervisor.display()
        ))
    })?;
    let isolation = choose_isolation(&config, &scope, &supervisor, &instance, &envs).await?;
    if let isolation::Isolation::User { .. } = isolation {
        isolation::lock_down(&config.data_dir, &instance.state_dir, &instance.work_dir)?;
    }
    // Fork servers per slot: each serves one run at a time, and under
    // `user` isolation runs as its slot's user.
    let mut prestart = Vec::new();
    if config.prestart {
        for slot in 0..config.concurrency {
            let args = forkserver::StartArgs {
                cwd: instance.work_dir.clone(),
                supervisor: supervisor.clone(),
                cgroups: cgroups.clone(),
                scope: scope.clone(),
                user: isolation.user_for(slot),
            };
            prestart.push(forkserver::SlotForks::start(&envs.empty().dir, args).await);
        }
    }
    tracing::info!(
        name = %config.name,
        server = %config.server_url,
        environment = %config.environment,
        concurrency = config.concurrency,
        python = %interp.executable.display(),
        python_version = %interp.version,
        installer = envs.installer(),
        containment = if cgroups.is_some() { "cgroup v2 + subreaper supervisor" } else { "subreaper supervisor (no cgroups)" },
        isolation = %isolation.describe(),
        limits = %limiter.describe(),
        "runner starting"
    );

    // Stop leasing on the first signal; cancel attempts on the second one or
    // when the drain timeout passes.
    let stop_leasing = CancellationToken::new();
    let cancel_attempts = CancellationToken::new();
    let escalation = tokio::spawn({
        let (drain, force, stop, cancel) = (
            drain.clone(),
            force.clone(),
            stop_leasing.clone(),
            cancel_attempts.clone(),
        );
        let timeout = config.drain_timeout;
        async move {
            tokio::select! {
                _ = drain.cancelled() => {}
                _ = force.cancelled() => {}
            }
            stop.cancel();
            tracing::info!("shutting down: no new leases; waiting for running attempts");
            tokio::select! {
                _ = force.cancelled() => {}
                _ = tokio::time::sleep(timeout) => tracing::warn!("drain timeout passed"),
            }
            tracing::info!("cancelling the attempts still running");
            cancel.cancel();
        }
    });

    let session =
        match registration::Session::establish(&config, &instance.state_dir, &stop_leasing).await {
            Ok(s) => Arc::new(s),
            Err(RunnerError::Interrupted) => {
                escalation.abort();
                return Ok(());
            }
            Err(e) => {
                escalation.abort();
                return Err(e.into());
            }
        };
    let shared = Arc::new(attempt::Shared {
        work_dir: instance.work_dir.clone(),
        config: config.clone(),
        artifacts,
        envs,
        sources,
        prestart,
        force: cancel_attempts.clone(),
        supervisor,
        cgroups,
        scope,
        isolation,
        limits: limiter,
    });
    // Unused cache entries go at start and hourly (runners sharing the data
    // dir do the same; see `cache_gc`).
    let gc = tokio::spawn(cache_gc::every(cache_gc::INTERVAL, stop_leasing.clone(), {
        let (shared, max_age) = (shared.clone(), config.cache_max_age);
        move || {
            let a = shared.artifacts.collect_unused(max_age);
            let e = shared.envs.collect_unused(max_age);
            let s = shared.sources.collect_unused(max_age);
            if a.removed + e.removed + s.removed > 0 {
                tracing::info!(
                    artifacts = a.removed,
                    environments = e.removed,
                    sources = s.removed,
                    bytes = a.bytes + e.bytes + s.bytes,
                    "removed cache entries unused for the max age"
                );
            }
        }
    }));
    let mut workers = tokio::task::JoinSet::new();
    for slot in 0..config.concurrency {
        workers.spawn(worker::lease_loop(
            slot,
            shared.clone(),
            session.clone(),
            stop_leasing.clone(),
        ));
    }
    let mut first_error = None;
    while let Some(done) = workers.join_next().await {
        let result = done
            .map_err(anyhow::Error::from)
            .and_then(|r| r.map_err(anyhow::Error::from));
        if let Err(e) = result {
            tracing::error!(error = %e, "lease loop stopped");
            stop_leasing.cancel();
            first_error.get_or_insert(e);
        }
    }
    escalation.abort();
    stop_leasing.cancel();
    let _ = gc.await;
    // Shown offline at once instead of after three lease TTLs.
    let (_, client) = session.client().await;
    if let Err(e) = client.runner_offline().await {
        tracing::debug!(error = %e, "could not mark the runner offline");
    }
    shared.limits.remove_bases();
    if let Some(base) = &shared.cgroups {
        supervisor::tree::remove_cgroup(base);
    }
    tracing::info!("runner stopped");
    drop(instance);
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Picks the isolation `MINITOWER_ISOLATION` asks for, checking that it
/// works: the runner may switch users, and the interpreter of the shared
/// environment starts as an unprivileged user (one under `/root`, mode
/// 0700, does not).
async fn choose_isolation(
    config: &RunnerConfig,
    scope: &str,
    supervisor: &std::path::Path,
    instance: &workspace::Instance,
    envs: &envs::EnvCache,
) -> Result<isolation::Isolation, RunnerError> {
    use isolation::Isolation;
    let wanted = config.isolation.as_str();
    if wanted == "none" {
        return Ok(Isolation::None);
    }
    let refuse = |why: String| -> Result<Isolation, RunnerError> {
        if wanted == "user" {
            Err(RunnerError::Config(format!(
                "MINITOWER_ISOLATION=user: {why} (MINITOWER_ISOLATION=none runs scripts as the runner's user)"
            )))
        } else {
            tracing::warn!("no isolation between runs: {why}");
            Ok(Isolation::None)
        }
    };
    if !isolation::can_switch_users() {
        return refuse("running scripts as other users needs the runner to run as root".into());
    }
    let iso = Isolation::User {
        uid_base: isolation::uid_base(config.isolation_uid_base, scope),
    };
    let python = envs.empty().python();
    let argv = [python.clone().into(), "-c".into(), "pass".into()];
    match probe(supervisor, &instance.work_dir, None, iso.user_for(0), &argv).await {
        Ok(()) => Ok(iso),
        Err(m) => refuse(format!(
            "the interpreter {} does not start as an unprivileged user ({m}); use one outside private directories, e.g. MINITOWER_PYTHON_BIN=/usr/bin/python3",
            python.display()
        )),
    }
}

/// Runs `argv` under a supervisor once and expects exit status 0.
async fn probe(
    exe: &std::path::Path,
    cwd: &std::path::Path,
    cgroups: Option<std::path::PathBuf>,
    user: Option<(u32, u32)>,
    argv: &[std::ffi::OsString],
) -> Result<(), String> {
    let env = std::collections::BTreeMap::new();
    let mut s = supervisor::client::Supervised::start(supervisor::client::Launch {
        exe,
        argv,
        cwd,
        env: &env,
        deadline: Some(tokio::time::Instant::now() + std::time::Duration::from_secs(30)),
        cgroup: cgroups.map(|c| c.join("probe")),
        user,
    })
    .await
    .map_err(|e| e.to_string())?;
    let ending = s.waiter.wait().await;
    if ending.code != Some(0) {
        return Err(format!("{ending:?}"));
    }
    Ok(())
}
