//! Checks on where a job's files come from: git URLs carry no credentials
//! (they would land in logs and the database), refs cannot be read as git
//! options, binaries are named by an http(s) URL and a SHA-256.

/// A git repository: an absolute path, `file://`, `http(s)://`, `ssh://`
/// or scp-like `user@host:path`. A password or token in the URL is refused
/// (the `secret` key names a secret instead), and so is any user name in an
/// http(s) URL.
pub fn check_git_url(url: &str) -> Result<(), String> {
    if url.is_empty() || url.len() > 2048 {
        return Err("must be 1 to 2048 characters".into());
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters".into());
    }
    if url.starts_with('-') {
        return Err("must not start with '-'".into());
    }
    if url.starts_with('/') {
        return Ok(());
    }
    if let Ok(u) = url::Url::parse(url) {
        return match u.scheme() {
            "file" => Ok(()),
            "http" | "https" | "ssh" | "git" => {
                if u.password().is_some() {
                    return Err(
                        "must not carry a password or token (name a secret in git.secret instead)"
                            .into(),
                    );
                }
                if !u.username().is_empty() && u.scheme() != "ssh" {
                    return Err(
                        "must not carry credentials (name a secret in git.secret instead)".into(),
                    );
                }
                if u.host_str().unwrap_or("").is_empty() {
                    return Err("has no host".into());
                }
                Ok(())
            }
            other => Err(format!(
                "scheme {other:?} is not one of file, http, https, ssh, git"
            )),
        };
    }
    // scp-like: [user@]host:path, no password possible.
    match url.split_once(':') {
        Some((host, path)) if !host.is_empty() && !path.is_empty() && !host.contains('/') => Ok(()),
        _ => Err("is not an absolute path or a URL".into()),
    }
}

/// A tag, branch or commit: what `git check-ref-format` allows, and never
/// something `git` would read as an option.
pub fn check_git_ref(r: &str) -> Result<(), String> {
    if r.is_empty() || r.len() > 255 {
        return Err("must be 1 to 255 characters".into());
    }
    if r.starts_with('-') || r.starts_with('/') || r.ends_with('/') || r.ends_with('.') {
        return Err(format!("{r:?} is not a valid ref"));
    }
    if r.contains("..") || r.contains("@{") || r.contains("//") || r.ends_with(".lock") {
        return Err(format!("{r:?} is not a valid ref"));
    }
    if r.chars()
        .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
    {
        return Err(format!("{r:?} is not a valid ref"));
    }
    Ok(())
}

/// A download URL: http or https with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.len() > 2048 {
        return Err("is longer than 2048 characters".into());
    }
    let u = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("scheme {:?} is not http or https", u.scheme()));
    }
    if u.host_str().unwrap_or("").is_empty() {
        return Err("has no host".into());
    }
    if u.password().is_some() {
        return Err("must not carry a password".into());
    }
    Ok(())
}

/// 64 hex digits (either case; stored lower-case by the callers).
pub fn check_sha256(s: &str) -> Result<(), String> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("{s:?} is not a SHA-256 (64 hex digits)"))
    }
}
