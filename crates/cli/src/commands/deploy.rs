//! `minitower deploy`: Towerfile → deterministic archive → new version.

use super::Ctx;
use crate::cli::DeployArgs;
use crate::error::{CliError, CliResult};
use crate::output::{self, print_json};
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use minitower_client::{Client, VersionUpload};
use minitower_core::api::Version;
use minitower_core::package::{self, PackInfo};
use minitower_core::towerfile::{self, Towerfile};
use serde::Serialize;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// How to deploy.
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    pub timeout_seconds: Option<i64>,
    /// Reuse the latest version when its archive hash is the same.
    pub if_changed: bool,
    /// Show an upload progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Print Towerfile warnings on stderr.
    pub warnings: bool,
}

/// What a deploy did.
#[derive(Debug, Clone, Serialize)]
pub struct DeployOutcome {
    pub app: String,
    pub created_app: bool,
    /// True when `if_changed` found the same archive already deployed.
    pub unchanged: bool,
    pub version: Version,
    pub size: u64,
    pub files: usize,
    pub warnings: Vec<String>,
}

pub async fn deploy(ctx: &Ctx, args: DeployArgs) -> CliResult<()> {
    let timeout_seconds = match &args.timeout {
        None => None,
        Some(t) => Some(
            minitower_core::validate::duration(t)
                .map_err(CliError::Usage)?
                .as_secs()
                .max(1) as i64,
        ),
    };
    let client = ctx.client()?;
    let opts = DeployOptions {
        timeout_seconds,
        if_changed: args.if_changed,
        progress: !ctx.json(),
        warnings: true,
    };
    let out = deploy_dir(&client, &args.dir, &opts).await?;
    if ctx.json() {
        print_json(&out);
    } else {
        print_outcome(&out);
    }
    Ok(())
}

/// One line summing up a deploy.
pub fn print_outcome(out: &DeployOutcome) {
    let v = &out.version;
    let sha = &v.artifact_sha256[..v.artifact_sha256.len().min(12)];
    if out.unchanged {
        println!("{} v{} is up to date (sha256 {sha})", out.app, v.version_no);
    } else {
        println!(
            "Deployed {} v{}{}  sha256 {sha}  ({}, {} files)",
            out.app,
            v.version_no,
            if out.created_app { " (new app)" } else { "" },
            output::bytes(out.size),
            out.files
        );
    }
}

/// Reads `dir/Towerfile`, with the path in the error when it is missing.
pub fn read_towerfile(dir: &Path) -> CliResult<(Towerfile, Vec<String>)> {
    let path = dir.join(towerfile::FILE_NAME);
    let text = std::fs::read_to_string(&path)
        .map_err(CliError::io(format!("reading {}", path.display())))?;
    let parsed = towerfile::parse(&text)?;
    Ok((parsed.towerfile, parsed.warnings))
}

/// Packs `dir` into a temporary file.
fn pack_to_temp(dir: PathBuf, tf: Towerfile) -> CliResult<(tempfile::NamedTempFile, PackInfo)> {
    let mut tmp = tempfile::Builder::new()
        .prefix("minitower-")
        .suffix(".tar.gz")
        .tempfile()
        .map_err(CliError::io("creating a temporary file"))?;
    let info = {
        let w = std::io::BufWriter::new(tmp.as_file_mut());
        package::pack(&dir, &tf, w)?
    };
    Ok((tmp, info))
}

/// The whole deploy: validate, pack, ensure the app, upload.
pub async fn deploy_dir(
    client: &Client,
    dir: &Path,
    opts: &DeployOptions,
) -> CliResult<DeployOutcome> {
    let (tf, warnings) = read_towerfile(dir)?;
    if opts.warnings {
        for w in &warnings {
            eprintln!("warning: {w}");
        }
    }
    let slug = tf.app.name.clone();
    let (tmp, info) = {
        let (dir, tf) = (dir.to_path_buf(), tf.clone());
        tokio::task::spawn_blocking(move || pack_to_temp(dir, tf))
            .await
            .map_err(|e| CliError::Other(format!("packing task failed: {e}")))??
    };

    let mut created_app = false;
    let existing = client.get_app(&slug).await?;
    if existing.is_none() {
        match client
            .create_app(&slug, tf.app.description.as_deref())
            .await
        {
            Ok(_) => created_app = true,
            // Someone else created it in between: fine.
            Err(e) if e.status() == Some(409) => {}
            Err(e) => return Err(e.into()),
        }
    } else if opts.if_changed {
        let latest = client.list_versions(&slug).await?.into_iter().next();
        if let Some(v) = latest.filter(|v| v.artifact_sha256 == info.sha256) {
            return Ok(DeployOutcome {
                app: slug,
                created_app,
                unchanged: true,
                version: v,
                size: info.size,
                files: info.files,
                warnings,
            });
        }
    }

    let file = tokio::fs::File::open(tmp.path())
        .await
        .map_err(CliError::io("reopening the packed archive"))?;
    let bar = if opts.progress && std::io::stderr().is_terminal() {
        let b = ProgressBar::new(info.size);
        b.set_style(
            ProgressStyle::with_template(
                "uploading {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let tick = bar.clone();
    let stream = tokio_util::io::ReaderStream::new(file)
        .inspect_ok(move |chunk| tick.inc(chunk.len() as u64));
    let upload = VersionUpload {
        artifact: reqwest::Body::wrap_stream(stream),
        artifact_len: Some(info.size),
        // Only an archive script is an entrypoint; other jobs come from the
        // Towerfile in the archive, which the server reads.
        entrypoint: tf.app.job.script_in_archive().map(str::to_string),
        timeout_seconds: opts.timeout_seconds,
        params_schema: tf.params_schema(),
    };
    let result = client.upload_version(&slug, upload).await;
    bar.finish_and_clear();
    let version = result?;
    if version.artifact_sha256 != info.sha256 {
        return Err(CliError::Other(format!(
            "the server stored sha256 {} but the archive has {}",
            version.artifact_sha256, info.sha256
        )));
    }
    Ok(DeployOutcome {
        app: slug,
        created_app,
        unchanged: false,
        version,
        size: info.size,
        files: info.files,
        warnings,
    })
}
