//! Receiving a version upload: stream the artifact to a spool file while
//! hashing it, check the archive, derive entrypoint and schema, and only then
//! commit the object. Nothing is stored for a rejected upload.

mod job;

use crate::error::{ApiError, ApiResult};
use crate::extract::State;
use axum::extract::Multipart;
use minitower_core::archive::{self, ArchiveError, Limits};
use minitower_core::towerfile;
use minitower_store::NewVersion;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Default run timeout of a version.
const DEFAULT_TIMEOUT_SECONDS: i64 = 3600;
/// Longest timeout a version may ask for (7 days), the same bound the
/// Towerfile's `[app].timeout` is checked against.
const MAX_TIMEOUT_SECONDS: i64 = towerfile::MAX_TIMEOUT.as_secs() as i64;
/// Largest text field accepted in the form.
const MAX_FIELD_BYTES: usize = 1 << 20;
/// Unknown form fields tolerated (so a request's total size stays bounded).
const MAX_EXTRA_FIELDS: usize = 16;

/// Removes the spool file unless it was committed.
struct Spool(Option<PathBuf>);

impl Drop for Spool {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

struct Received {
    spool: Spool,
    sha256: String,
    size: u64,
}

/// Reads the multipart form and returns the version to insert; the artifact
/// is committed to the object store before returning.
pub async fn receive_version(st: &State, mut form: Multipart) -> ApiResult<NewVersion> {
    let mut artifact: Option<Received> = None;
    let mut entrypoint: Option<String> = None;
    let mut timeout: Option<String> = None;
    let mut schema_text: Option<String> = None;
    let mut retries_text: Option<String> = None;
    let mut retry_delay_text: Option<String> = None;
    let mut job_fields = job::JobFields::default();
    let mut extra_fields = 0usize;
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "artifact" => {
                if artifact.is_some() {
                    return Err(ApiError::invalid_request(
                        "only one artifact may be uploaded",
                    ));
                }
                artifact = Some(spool_field(st, field).await?);
            }
            "entrypoint" => entrypoint = Some(text_field(field).await?),
            "timeout_seconds" => timeout = Some(text_field(field).await?),
            "params_schema" => schema_text = Some(text_field(field).await?),
            "retries" => retries_text = Some(text_field(field).await?),
            "retry_delay" => retry_delay_text = Some(text_field(field).await?),
            "command" | "shell" | "git" | "binary" | "pty" | "priority" | "limits" => {
                let text = text_field(field).await?;
                job_fields.take(&name, text);
            }
            _ => {
                // Unknown fields are read (within the same size cap) and ignored.
                extra_fields += 1;
                if extra_fields > MAX_EXTRA_FIELDS {
                    return Err(ApiError::invalid_request(format!(
                        "too many unknown form fields (at most {MAX_EXTRA_FIELDS})"
                    )));
                }
                text_field(field).await?;
            }
        }
    }
    let received = artifact.ok_or_else(|| {
        ApiError::invalid_request("missing multipart field 'artifact' (the .tar.gz)")
    })?;

    // The form field (`deploy --timeout`) wins; without it the Towerfile's
    // `[app].timeout` applies, then the default (resolved below, once the
    // Towerfile is read).
    let explicit_timeout = match timeout.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => match t.parse::<i64>() {
            Ok(n) if (1..=MAX_TIMEOUT_SECONDS).contains(&n) => Some(n),
            _ => {
                return Err(ApiError::invalid_request(format!(
                    "timeout_seconds must be an integer from 1 to {MAX_TIMEOUT_SECONDS}, got {t:?}"
                )))
            }
        },
    };

    let (explicit_retries, explicit_delay) =
        retry_fields(retries_text.as_deref(), retry_delay_text.as_deref())?;

    let limits = Limits::for_artifact_size(st.config.max_artifact_size);
    let spool_path = received.spool.0.clone().expect("spool path present");
    let summary = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&spool_path)?;
        Ok::<_, std::io::Error>(archive::inspect(std::io::BufReader::new(f), limits))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?
    .map_err(|e| match e {
        ArchiveError::TooLarge { .. }
        | ArchiveError::TooManyEntries { .. }
        | ArchiveError::HeadersTooLarge { .. } => ApiError::too_large(e.to_string()),
        other => ApiError::invalid_artifact(other.to_string()),
    })?;

    let parsed = match &summary.towerfile {
        Some(text) => Some(
            towerfile::parse(text)
                .map_err(|e| ApiError::invalid_towerfile(format!("Towerfile: {e}")))?
                .towerfile,
        ),
        None => None,
    };

    let entrypoint = entrypoint
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty());
    if let Some(e) = &entrypoint {
        if e.starts_with('/')
            || e.split('/').any(|c| c == "..")
            || e.trim_start_matches("./").is_empty()
        {
            return Err(ApiError::invalid_request(format!(
                "entrypoint {e:?} must be a relative path inside the archive"
            )));
        }
    }
    let (job, priority) = job::resolve(
        &job_fields,
        entrypoint.as_deref().map(|e| e.trim_start_matches("./")),
        parsed.as_ref(),
    )?;
    let timeout_seconds = explicit_timeout
        .or_else(|| {
            let t = parsed.as_ref()?.automation.timeout?;
            // The Towerfile parser keeps it within 1 s ..= 7 d.
            Some(t.as_secs() as i64)
        })
        .unwrap_or(DEFAULT_TIMEOUT_SECONDS);
    // Failure retries: the form fields win over the Towerfile's keys.
    let automation = parsed.as_ref().map(|tf| &tf.automation);
    let retries = explicit_retries
        .or_else(|| automation.and_then(|a| a.retries).map(i64::from))
        .unwrap_or(0);
    let retry_delay_ms = explicit_delay.unwrap_or_else(|| {
        let d = automation
            .and_then(|a| a.retry_delay)
            .unwrap_or(minitower_core::retry::DEFAULT_RETRY_DELAY);
        (d.as_millis() as i64).max(1)
    });
    // Only an archive script must be in the archive: commands, shell
    // lines, git checkouts and binaries bring their own program.
    if let Some(script) = job.script_in_archive() {
        if !summary.contains(script) {
            return Err(ApiError::invalid_artifact(format!(
                "entrypoint {script:?} is not in the archive"
            )));
        }
    }

    let params_schema = match schema_text
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(text) => Some(parse_schema(text)?),
        None => parsed.as_ref().and_then(|tf| tf.params_schema()),
    };
    let import_paths = parsed
        .as_ref()
        .map(|tf| tf.module_paths())
        .unwrap_or_default();

    st.objects
        .commit(&spool_path_of(&received.spool), &received.sha256)
        .await
        .map_err(ApiError::internal)?;
    let mut spool = received.spool;
    spool.0 = None;

    Ok(NewVersion {
        artifact_sha256: received.sha256,
        artifact_size: received.size as i64,
        entrypoint: job.entrypoint_label(),
        timeout_seconds,
        params_schema,
        towerfile: summary.towerfile,
        import_paths,
        retries,
        retry_delay_ms,
        // A deploy applies the Towerfile's schedules (none: the app's
        // Towerfile schedules go); an upload without a Towerfile leaves them.
        schedules: parsed.map(|tf| tf.automation.schedules),
        job,
        priority,
    })
}

fn spool_path_of(s: &Spool) -> PathBuf {
    s.0.clone().unwrap_or_default()
}

/// Checks a user-supplied JSON Schema: valid JSON, an object, and compilable.
pub fn parse_schema(text: &str) -> ApiResult<Value> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::invalid_request(format!("params_schema is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::invalid_request(
            "params_schema must be a JSON object",
        ));
    }
    jsonschema::validator_for(&v).map_err(|e| {
        ApiError::invalid_request(format!("params_schema is not a valid JSON Schema: {e}"))
    })?;
    Ok(v)
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large("upload is larger than allowed")
    } else {
        ApiError::invalid_request(format!("malformed multipart body: {e}"))
    }
}

async fn text_field(mut field: axum::extract::multipart::Field<'_>) -> ApiResult<String> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        buf.extend_from_slice(&chunk);
        if buf.len() > MAX_FIELD_BYTES {
            return Err(ApiError::too_large("form field is larger than 1 MiB"));
        }
    }
    String::from_utf8(buf).map_err(|_| ApiError::invalid_request("form field is not UTF-8 text"))
}

async fn spool_field(
    st: &State,
    mut field: axum::extract::multipart::Field<'_>,
) -> ApiResult<Received> {
    let path = unique_spool_path(st.objects.spool_dir());
    let spool = Spool(Some(path.clone()));
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(ApiError::internal)?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let max = st.config.max_artifact_size;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        size += chunk.len() as u64;
        if size > max {
            return Err(ApiError::too_large(format!(
                "artifact is larger than MINITOWER_MAX_ARTIFACT_SIZE ({max} bytes)"
            )));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    if size == 0 {
        return Err(ApiError::invalid_artifact("artifact is empty"));
    }
    file.flush().await.map_err(ApiError::internal)?;
    file.sync_all().await.map_err(ApiError::internal)?;
    Ok(Received {
        spool,
        sha256: hex::encode(hasher.finalize()),
        size,
    })
}

fn unique_spool_path(dir: &Path) -> PathBuf {
    let mut buf = [0u8; 12];
    getrandom::fill(&mut buf).expect("the OS random source failed");
    dir.join(format!("upload-{}.part", hex::encode(buf)))
}

/// The upload's optional `retries` and `retry_delay` form fields, checked
/// with the Towerfile's rules (a 400 naming the field, before anything is
/// stored).
fn retry_fields(
    retries: Option<&str>,
    delay: Option<&str>,
) -> ApiResult<(Option<i64>, Option<i64>)> {
    let retries = match retries.map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => {
            let n = t.parse::<i64>().map_err(|_| {
                ApiError::invalid_request(format!("retries must be a whole number, got {t:?}"))
            })?;
            minitower_core::retry::validate_retries(n)
                .map_err(|e| ApiError::invalid_request(e.to_string()))?;
            Some(n)
        }
    };
    let delay = match delay.map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => Some(
            minitower_core::api::RetryDelaySpec::Text(t.to_string())
                .millis()
                .map_err(ApiError::invalid_request)?,
        ),
    };
    Ok((retries, delay))
}
