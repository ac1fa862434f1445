//! Team passwords: Argon2id in the PHC string format, computed in a
//! per-thread block buffer that is reused from hash to hash.
//!
//! The hashes run on the few long-lived Argon2 threads of
//! [`crate::throttle`], so each keeps one ~19 MiB buffer. Letting the
//! library allocate and free that much per hash makes glibc keep the freed
//! memory in its heaps (its mmap threshold grows after the first large
//! free), and resident memory then grows with every login.

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::cell::RefCell;

/// Largest Argon2 memory a stored hash may ask for (64 MiB of blocks).
const MAX_BLOCKS: usize = 64 * 1024;

thread_local! {
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

fn hash_into(
    alg: Algorithm,
    version: Version,
    params: &Params,
    pwd: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), String> {
    let n = params.block_count();
    if n > MAX_BLOCKS {
        return Err(format!("Argon2 memory of {n} KiB is above the limit"));
    }
    BLOCKS.with(|cell| {
        let mut blocks = cell.borrow_mut();
        if blocks.len() != n {
            *blocks = vec![Block::default(); n];
        }
        Argon2::new(alg, version, params.clone())
            .hash_password_into_with_memory(pwd, salt, out, &mut blocks[..])
            .map_err(|e| e.to_string())
    })
}

/// A new PHC string for `password` with the default Argon2id parameters.
pub fn hash(password: &[u8], salt: &SaltString) -> Result<String, String> {
    let params = Params::default();
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_buf)
        .map_err(|e| e.to_string())?;
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = Output::init_with(len, |out| {
        hash_into(
            Algorithm::default(),
            Version::default(),
            &params,
            password,
            salt_bytes,
            out,
        )
        .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(|e| e.to_string())?;
    let phc = PasswordHash {
        algorithm: Algorithm::default().ident(),
        version: Some(Version::default().into()),
        params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `stored` (false for any
/// string that is not an Argon2 hash).
pub fn verify(password: &[u8], stored: &str) -> bool {
    let check = || -> Option<bool> {
        let phc = PasswordHash::new(stored).ok()?;
        let alg = Algorithm::try_from(phc.algorithm).ok()?;
        let version = match phc.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let params = Params::try_from(&phc).ok()?;
        let expected = phc.hash?;
        let mut salt_buf = [0u8; 64];
        let salt = phc.salt?.decode_b64(&mut salt_buf).ok()?;
        let mut out = vec![0u8; expected.len()];
        hash_into(alg, version, &params, password, salt, &mut out).ok()?;
        use subtle::ConstantTimeEq;
        Some(out.ct_eq(expected.as_bytes()).into())
    };
    check().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    fn salt() -> SaltString {
        SaltString::encode_b64(b"0123456789abcdef").unwrap()
    }

    #[test]
    fn same_strings_as_the_library() {
        let ours = hash(b"correct horse", &salt()).unwrap();
        let theirs = Argon2::default()
            .hash_password(b"correct horse", &salt())
            .unwrap()
            .to_string();
        assert_eq!(ours, theirs);
        assert!(verify(b"correct horse", &theirs));
        assert!(!verify(b"wrong horse", &theirs));
        let parsed = PasswordHash::new(&ours).unwrap();
        Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .unwrap();
        assert!(!verify(b"x", "not a hash"));
        assert!(!verify(
            b"x",
            "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaA"
        ));
    }
}
