//! Sealing and opening secret values at rest: AES-256-GCM (`ring`), a fresh
//! random 96-bit nonce per value, and a key ring so keys can be rotated.
//!
//! Design note. The invariants: (1) a sealed value opens only under the key
//! that sealed it and only for the row it was sealed for: the associated
//! data binds it to (team id, environment, secret name, version), so a
//! ciphertext copied to another team, environment, name or version fails to
//! open instead of leaking there; (2) the key file is never readable by
//! others: it is created atomically with mode 0600 (written under a
//! temporary name with `O_EXCL`, then hard-linked into place, so two
//! starting servers cannot both create one and a crash leaves no half key),
//! and an existing file with any group or world permission is refused.
//! The tests in `secrets_crypto/tests.rs` check each: round trips, every
//! field of the binding changed, a flipped byte, an unknown key id, key
//! rotation, file creation, modes and races.
//!
//! Sealed form: `v1.<key id>.<base64(nonce || ciphertext || tag)>`. The key
//! id is derived from the key (16 hex digits of a SHA-256), so it needs no
//! bookkeeping and a wrong key is named, not guessed at.
//!
//! Keys: `MINITOWER_SECRETS_KEY` (base64 of 32 bytes) when set, older keys
//! for opening only in `MINITOWER_SECRETS_OLD_KEYS` (comma-separated);
//! otherwise the key file (one base64 key per line, the first seals, the
//! others only open; `#` starts a comment), created with one random key at
//! first start.
//!
//! Rotation: put a new key first (first line of the key file, or
//! `MINITOWER_SECRETS_KEY` with the previous key moved to
//! `MINITOWER_SECRETS_OLD_KEYS`) and restart. New values are sealed under
//! the new key and old ones still open; re-seal the stored values (setting
//! each secret again does it; [`KeyRing::needs_reseal`] tells which are
//! left), then drop the old key. A random 96-bit nonce per value keeps the
//! collision risk negligible below about 2^32 values sealed per key.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Largest value sealed (a certificate chain fits; a file does not).
pub const MAX_SECRET_BYTES: usize = 64 * 1024;
/// Largest key file read.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;
const PREFIX: &str = "v1";

/// Why keys could not be loaded or a value not sealed or opened. Messages
/// never hold key material or secret values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretsError {
    #[error("{0}")]
    BadKey(String),
    #[error("secrets key file {path}: {message}")]
    KeyFile { path: PathBuf, message: String },
    #[error(
        "sealed with key {0}, which is not in the key ring (was an old key dropped too early?)"
    )]
    UnknownKey(String),
    #[error("the sealed value does not open: it was altered or belongs to another secret")]
    Tampered,
    #[error("not a sealed value")]
    Format,
    #[error("a secret value is at most {MAX_SECRET_BYTES} bytes")]
    TooLarge,
}

/// Which stored secret a value belongs to; sealed into its associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretRef<'a> {
    pub team_id: i64,
    pub environment: &'a str,
    pub name: &'a str,
    pub version: i64,
}

impl SecretRef<'_> {
    /// Length-prefixed so no two references give the same bytes.
    fn aad(&self) -> Vec<u8> {
        format!(
            "minitower-secret:{PREFIX}\n{}\n{}:{}\n{}:{}\n{}",
            self.team_id,
            self.environment.len(),
            self.environment,
            self.name.len(),
            self.name,
            self.version
        )
        .into_bytes()
    }
}

struct Key {
    id: String,
    key: LessSafeKey,
}

/// The primary key (seals) and older keys (open only).
pub struct KeyRing {
    keys: Vec<Key>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("KeyRing").field("key_ids", &ids).finish()
    }
}

/// The id of a key: 16 hex digits of a domain-separated SHA-256.
pub fn key_id(key: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(b"minitower-secrets-key-id\0");
    h.update(key);
    hex::encode(&h.finalize()[..8])
}

/// A key written as base64 of 32 bytes.
pub fn decode_key(text: &str, what: &str) -> Result<[u8; 32], SecretsError> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|_| SecretsError::BadKey(format!("{what} is not base64")))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        SecretsError::BadKey(format!(
            "{what} must be 32 bytes (base64 of 32 random bytes, e.g. `openssl rand -base64 32`), got {}",
            b.len()
        ))
    })
}

/// A fresh random key.
pub fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).expect("the OS random source works");
    k
}

impl KeyRing {
    /// A ring from keys, the first sealing; at least one key.
    pub fn from_keys(keys: &[[u8; 32]]) -> Result<KeyRing, SecretsError> {
        if keys.is_empty() {
            return Err(SecretsError::BadKey("no secrets key".into()));
        }
        let keys = keys
            .iter()
            .map(|k| Key {
                id: key_id(k),
                key: LessSafeKey::new(
                    UnboundKey::new(&AES_256_GCM, k).expect("32 bytes is an AES-256 key"),
                ),
            })
            .collect();
        Ok(KeyRing { keys })
    }

    /// Keys from `MINITOWER_SECRETS_KEY` (+ `_OLD_KEYS`) when given, else
    /// from `key_file`, created with one random key when missing.
    pub fn load(
        env_key: Option<&str>,
        env_old_keys: Option<&str>,
        key_file: &Path,
    ) -> Result<KeyRing, SecretsError> {
        match env_key.filter(|k| !k.trim().is_empty()) {
            Some(k) => {
                let mut keys = vec![decode_key(k, "MINITOWER_SECRETS_KEY")?];
                for (i, old) in env_old_keys
                    .unwrap_or("")
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .enumerate()
                {
                    keys.push(decode_key(
                        old,
                        &format!("MINITOWER_SECRETS_OLD_KEYS entry {}", i + 1),
                    )?);
                }
                KeyRing::from_keys(&keys)
            }
            None => KeyRing::from_keys(&load_or_create_key_file(key_file)?),
        }
    }

    /// Id of the key new values are sealed with.
    pub fn primary_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Seals `value` for the secret `at` under the primary key.
    pub fn seal(&self, at: &SecretRef, value: &[u8]) -> Result<String, SecretsError> {
        if value.len() > MAX_SECRET_BYTES {
            return Err(SecretsError::TooLarge);
        }
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS random source works");
        let mut buf = value.to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(at.aad()),
                &mut buf,
            )
            .map_err(|_| SecretsError::TooLarge)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!("{PREFIX}.{}.{}", key.id, B64.encode(out)))
    }

    /// Opens a value sealed for the secret `at`.
    pub fn open(&self, at: &SecretRef, sealed: &str) -> Result<Vec<u8>, SecretsError> {
        let (id, body) = parse(sealed)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SecretsError::UnknownKey(id.to_string()))?;
        let (nonce, ct) = body.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretsError::Format)?;
        let mut buf = ct.to_vec();
        let plain = key
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(at.aad()),
                &mut buf,
            )
            .map_err(|_| SecretsError::Tampered)?;
        Ok(plain.to_vec())
    }

    /// Whether a stored value is sealed under an older key (to re-seal
    /// before that key is dropped).
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        parse(sealed).map_or(true, |(id, _)| id != self.primary_id())
    }
}

/// `v1.<id>.<base64>` into the id and the decoded bytes (nonce + sealed).
fn parse(sealed: &str) -> Result<(&str, Vec<u8>), SecretsError> {
    let max_b64 = (MAX_SECRET_BYTES + 64) * 4 / 3 + 8;
    if sealed.len() > max_b64 + 32 {
        return Err(SecretsError::Format);
    }
    let mut parts = sealed.splitn(3, '.');
    let (Some(PREFIX), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(SecretsError::Format);
    };
    let body = B64.decode(b64).map_err(|_| SecretsError::Format)?;
    if body.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(SecretsError::Format);
    }
    Ok((id, body))
}

/// Reads the key file, or creates it with one random key when missing.
pub fn load_or_create_key_file(path: &Path) -> Result<Vec<[u8; 32]>, SecretsError> {
    let err = |message: String| SecretsError::KeyFile {
        path: path.to_path_buf(),
        message,
    };
    match std::fs::symlink_metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_key_file(path).map_err(|e| err(format!("cannot create it: {e}")))?;
        }
        Err(e) => return Err(err(e.to_string())),
    }
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("is not a regular file".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "has mode {mode:o}: other users could read the keys; `chmod 600` it (and rotate the keys if someone may have)"
            )));
        }
    }
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(err(format!("is over {MAX_KEY_FILE_BYTES} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        keys.push(decode_key(line, &format!("line {}", i + 1)).map_err(|e| err(e.to_string()))?);
    }
    if keys.is_empty() {
        return Err(err("holds no key".into()));
    }
    Ok(keys)
}

/// Writes a fresh key under a temporary name (mode 0600, `O_EXCL`) and
/// links it into place; losing a race to another creator is fine.
fn create_key_file(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("key"),
        hex::encode(&random_key()[..8])
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        writeln!(
            f,
            "# MiniTower secrets keys: the first seals, the others only open. Keep private.\n{}",
            B64.encode(random_key())
        )?;
        f.sync_all()?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests;
