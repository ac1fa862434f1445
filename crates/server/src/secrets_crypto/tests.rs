//! Sealing, binding, rotation and the key file.

use super::*;

fn at(name: &str) -> SecretRef<'_> {
    SecretRef {
        team_id: 7,
        environment: "prod",
        name,
        version: 1,
    }
}

fn ring(keys: &[[u8; 32]]) -> KeyRing {
    KeyRing::from_keys(keys).unwrap()
}

#[test]
fn round_trip_with_a_fresh_nonce_each_time() {
    let r = ring(&[[1; 32]]);
    let a = r.seal(&at("DB_PASSWORD"), b"hunter2").unwrap();
    let b = r.seal(&at("DB_PASSWORD"), b"hunter2").unwrap();
    assert_ne!(a, b, "a fresh nonce per value");
    assert!(a.starts_with(&format!("v1.{}.", r.primary_id())), "{a}");
    assert!(!a.contains("hunter2"));
    assert_eq!(r.open(&at("DB_PASSWORD"), &a).unwrap(), b"hunter2");
    assert_eq!(r.open(&at("DB_PASSWORD"), &b).unwrap(), b"hunter2");
    let empty = r.seal(&at("E"), b"").unwrap();
    assert_eq!(r.open(&at("E"), &empty).unwrap(), b"");
}

#[test]
fn a_value_opens_only_for_the_secret_it_was_sealed_for() {
    let r = ring(&[[2; 32]]);
    let sealed = r.seal(&at("DB_PASSWORD"), b"hunter2").unwrap();
    let elsewhere = [
        SecretRef {
            team_id: 8,
            ..at("DB_PASSWORD")
        },
        SecretRef {
            environment: "staging",
            ..at("DB_PASSWORD")
        },
        at("DB_PASSWORD2"),
        SecretRef {
            version: 2,
            ..at("DB_PASSWORD")
        },
        // Length prefixes keep "prod" + "X" apart from "prodX" + "".
        SecretRef {
            environment: "prodD",
            name: "B_PASSWORD",
            ..at("")
        },
    ];
    for other in elsewhere {
        assert_eq!(
            r.open(&other, &sealed),
            Err(SecretsError::Tampered),
            "{other:?}"
        );
    }
}

#[test]
fn altered_or_malformed_values_are_refused() {
    let r = ring(&[[3; 32]]);
    let sealed = r.seal(&at("K"), b"value").unwrap();
    let (head, b64) = sealed.rsplit_once('.').unwrap();
    let mut bytes = B64.decode(b64).unwrap();
    for i in 0..bytes.len() {
        bytes[i] ^= 1;
        let bad = format!("{head}.{}", B64.encode(&bytes));
        assert_eq!(
            r.open(&at("K"), &bad),
            Err(SecretsError::Tampered),
            "byte {i}"
        );
        bytes[i] ^= 1;
    }
    for bad in ["", "v1", "v1.x", "v2.abc.AAAA", "v1.abc.!!!", "v1.abc.AAAA"] {
        assert!(r.open(&at("K"), bad).is_err(), "{bad}");
    }
    let other = format!("v1.0000000000000000.{b64}");
    assert_eq!(
        r.open(&at("K"), &other),
        Err(SecretsError::UnknownKey("0000000000000000".into()))
    );
    assert_eq!(
        r.seal(&at("K"), &vec![0; MAX_SECRET_BYTES + 1]),
        Err(SecretsError::TooLarge)
    );
}

#[test]
fn rotation_keeps_old_values_open_and_says_what_to_reseal() {
    let old = ring(&[[4; 32]]);
    let sealed_old = old.seal(&at("K"), b"v").unwrap();
    let rotated = ring(&[[5; 32], [4; 32]]);
    assert_eq!(rotated.open(&at("K"), &sealed_old).unwrap(), b"v");
    assert!(rotated.needs_reseal(&sealed_old));
    let sealed_new = rotated.seal(&at("K"), b"v").unwrap();
    assert!(!rotated.needs_reseal(&sealed_new));
    assert_eq!(
        old.open(&at("K"), &sealed_new),
        Err(SecretsError::UnknownKey(rotated.primary_id().to_string()))
    );
    // Dropping the old key too early names it.
    let dropped = ring(&[[5; 32]]);
    assert_eq!(
        dropped.open(&at("K"), &sealed_old),
        Err(SecretsError::UnknownKey(old.primary_id().to_string()))
    );
}

#[test]
fn keys_from_the_environment() {
    let k = B64.encode([6u8; 32]);
    let o = B64.encode([4u8; 32]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.key");
    let r = KeyRing::load(Some(&k), Some(&format!(" {o} ,")), &file).unwrap();
    assert_eq!(r.primary_id(), key_id(&[6; 32]));
    assert!(!file.exists(), "no key file when the key is given");
    let sealed = ring(&[[4; 32]]).seal(&at("K"), b"v").unwrap();
    assert_eq!(r.open(&at("K"), &sealed).unwrap(), b"v");
    let e = KeyRing::load(Some("not base64!"), None, &file).unwrap_err();
    assert!(
        e.to_string()
            .contains("MINITOWER_SECRETS_KEY is not base64"),
        "{e}"
    );
    let e = KeyRing::load(Some(&B64.encode([1u8; 16])), None, &file).unwrap_err();
    assert!(e.to_string().contains("must be 32 bytes"), "{e}");
    assert!(
        !e.to_string().contains(&B64.encode([1u8; 16])),
        "no key in messages"
    );
    let e = KeyRing::load(Some(&k), Some("short"), &file).unwrap_err();
    assert!(
        e.to_string().contains("MINITOWER_SECRETS_OLD_KEYS entry 1"),
        "{e}"
    );
}

#[cfg(unix)]
#[test]
fn the_key_file_is_created_private_once_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sub").join("secrets.key");
    let first = KeyRing::load(None, None, &file).unwrap();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let second = KeyRing::load(Some(""), None, &file).unwrap();
    assert_eq!(
        first.primary_id(),
        second.primary_id(),
        "the same key next start"
    );
    let sealed = first.seal(&at("K"), b"v").unwrap();
    assert_eq!(second.open(&at("K"), &sealed).unwrap(), b"v");
    let leftovers: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");

    // A rotated file: new key first, the old one after it.
    let old_line = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{}\n{old_line}", B64.encode([9u8; 32]))).unwrap();
    let rotated = KeyRing::load(None, None, &file).unwrap();
    assert_eq!(rotated.primary_id(), key_id(&[9; 32]));
    assert_eq!(rotated.open(&at("K"), &sealed).unwrap(), b"v");

    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let e = KeyRing::load(None, None, &file).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{mode:o}: {e}");
    }
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&file, "# nothing\n").unwrap();
    let e = KeyRing::load(None, None, &file).unwrap_err();
    assert!(e.to_string().contains("holds no key"), "{e}");
    std::fs::write(&file, "abc\n").unwrap();
    let e = KeyRing::load(None, None, &file).unwrap_err();
    assert!(e.to_string().contains("line 1"), "{e}");
}

#[cfg(unix)]
#[test]
fn racing_first_starts_agree_on_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.key");
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    KeyRing::load(None, None, &file)
                        .unwrap()
                        .primary_id()
                        .to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(ids.iter().all(|i| i == &ids[0]), "{ids:?}");
}
