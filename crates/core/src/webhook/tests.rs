use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The reference libraries' published vector (standard-webhooks,
/// libraries/python/tests/test_webhooks.py, `test_sign_function`), also
/// recomputed with Python's `hmac` module.
const REF_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const REF_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const REF_TS: i64 = 1614265330;
const REF_BODY: &[u8] = br#"{"test": 2432232314}"#;
const REF_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn ref_secret() -> Secret {
    Secret::parse(REF_SECRET).unwrap()
}

#[test]
fn reference_vector() {
    assert_eq!(sign(&ref_secret(), REF_ID, REF_TS, REF_BODY), REF_SIG);
    // The prefix is optional when reading, as in the reference libraries.
    let bare = Secret::parse(REF_SECRET.trim_start_matches("whsec_")).unwrap();
    assert_eq!(bare, ref_secret());
    assert_eq!(ref_secret().to_whsec(), REF_SECRET);
    assert_eq!(
        verify(
            &ref_secret(),
            REF_ID,
            "1614265330",
            REF_SIG,
            REF_BODY,
            REF_TS,
            300
        ),
        Ok(())
    );
}

/// A second vector computed with Python:
/// `base64(hmac.new(bytes(range(32)), b"msg_1.1700000000.{}", sha256))`.
#[test]
fn python_vector() {
    let s = Secret::from_bytes(&(0u8..32).collect::<Vec<_>>()).unwrap();
    assert_eq!(
        s.to_whsec(),
        "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    );
    assert_eq!(
        sign(&s, "msg_1", 1_700_000_000, b"{}"),
        "v1,fhksJF5ElKjlPoT/jtefCO5XjQPvhf7Dhf/8R1ad9yU="
    );
    let h = headers(&s, "msg_1", 1_700_000_000, b"{}");
    assert_eq!(h[0], ("webhook-id", "msg_1".to_string()));
    assert_eq!(h[1], ("webhook-timestamp", "1700000000".to_string()));
    assert_eq!(h[2].0, "webhook-signature");
    assert_eq!(h[2].1, sign(&s, "msg_1", 1_700_000_000, b"{}"));
}

#[test]
fn verify_refuses_tampering_and_stale_times() {
    let s = ref_secret();
    let ok = |id: &str, ts: &str, sig: &str, body: &[u8], now: i64| {
        verify(&s, id, ts, sig, body, now, DEFAULT_TOLERANCE_SECS)
    };
    assert_eq!(ok(REF_ID, "1614265330", REF_SIG, REF_BODY, REF_TS), Ok(()));
    // One byte of the body, the id, the timestamp or the tag changed.
    assert_eq!(
        ok(
            REF_ID,
            "1614265330",
            REF_SIG,
            br#"{"test": 2432232315}"#,
            REF_TS
        ),
        Err(VerifyError::NoMatch)
    );
    assert_eq!(
        ok(
            "msg_p5jXN8AQM9LWM0D4loKWxJel",
            "1614265330",
            REF_SIG,
            REF_BODY,
            REF_TS
        ),
        Err(VerifyError::NoMatch)
    );
    assert_eq!(
        ok(REF_ID, "1614265331", REF_SIG, REF_BODY, REF_TS),
        Err(VerifyError::NoMatch)
    );
    // The reference tests' "invalid signature" (last character changed).
    assert_eq!(
        ok(
            REF_ID,
            "1614265330",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
            REF_BODY,
            REF_TS
        ),
        Err(VerifyError::NoMatch)
    );
    // Another secret.
    let other = Secret::from_bytes(&[7u8; 32]).unwrap();
    assert_eq!(
        verify(&other, REF_ID, "1614265330", REF_SIG, REF_BODY, REF_TS, 300),
        Err(VerifyError::NoMatch)
    );
    // Tolerance: exactly at the bound passes, one second past fails.
    assert_eq!(
        ok(REF_ID, "1614265330", REF_SIG, REF_BODY, REF_TS + 300),
        Ok(())
    );
    assert_eq!(
        ok(REF_ID, "1614265330", REF_SIG, REF_BODY, REF_TS + 301),
        Err(VerifyError::TooOld)
    );
    assert_eq!(
        ok(REF_ID, "1614265330", REF_SIG, REF_BODY, REF_TS - 300),
        Ok(())
    );
    assert_eq!(
        ok(REF_ID, "1614265330", REF_SIG, REF_BODY, REF_TS - 301),
        Err(VerifyError::TooNew)
    );
    for bad_ts in ["", "hello", "1.5", "99999999999999999999999"] {
        assert_eq!(
            ok(REF_ID, bad_ts, REF_SIG, REF_BODY, REF_TS),
            Err(VerifyError::BadTimestamp),
            "{bad_ts}"
        );
    }
    // Extreme clocks do not overflow.
    assert_eq!(
        verify(
            &s,
            REF_ID,
            &i64::MIN.to_string(),
            REF_SIG,
            REF_BODY,
            i64::MAX,
            i64::MAX
        ),
        Err(VerifyError::TooOld)
    );
}

#[test]
fn verify_reads_several_signatures() {
    let s = ref_secret();
    let junk = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
    let v2 = "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
    let header = format!("{junk} {v2} v1,!!notbase64 {REF_SIG} {junk}");
    assert_eq!(
        verify(&s, REF_ID, "1614265330", &header, REF_BODY, REF_TS, 300),
        Ok(())
    );
    // A v2 tag with the right bytes is not a v1 signature.
    let as_v2 = REF_SIG.replacen("v1,", "v2,", 1);
    assert_eq!(
        verify(&s, REF_ID, "1614265330", &as_v2, REF_BODY, REF_TS, 300),
        Err(VerifyError::NoMatch)
    );
    let huge = format!("{} {REF_SIG}", junk.repeat(200));
    assert_eq!(
        verify(&s, REF_ID, "1614265330", &huge, REF_BODY, REF_TS, 300),
        Err(VerifyError::HeaderTooLong)
    );
}

#[test]
fn secrets_are_bounded_and_redacted() {
    assert!(Secret::from_bytes(&[1u8; 24]).is_ok());
    assert!(Secret::from_bytes(&[1u8; 64]).is_ok());
    for n in [0, 1, 23, 65, 1000] {
        let e = Secret::from_bytes(&vec![1u8; n]).unwrap_err();
        assert_eq!(e.field(), "secret", "{n}");
    }
    for bad in [
        "whsec_",
        "whsec_!!!!",
        "whsec_AAAA",
        &format!("whsec_{}", "A".repeat(200)),
    ] {
        assert_eq!(Secret::parse(bad).unwrap_err().field(), "secret", "{bad}");
    }
    let s = Secret::from_bytes(&[0xAB; 32]).unwrap();
    let shown = format!("{s:?}");
    assert_eq!(shown, "Secret(<32 bytes>)");
    assert_eq!(Secret::parse(&s.to_whsec()).unwrap(), s);
}

#[test]
fn endpoint_urls() {
    for ok in [
        "https://example.com/hook",
        "http://example.com:8080/a?b=c",
        "https://10.0.0.5/hooks/minitower",
        "http://[2001:db8::1]:9000/",
        "http://127.0.0.1:9000/hook",
    ] {
        let u = validate_endpoint_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert!(u.scheme() == "http" || u.scheme() == "https");
    }
    for bad in [
        "",
        " https://example.com",
        "example.com/hook",
        "/relative",
        "ftp://example.com/",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "gopher://example.com/",
        "https://user:pw@example.com/",
        "https://user@example.com/",
        "https://example.com/#frag",
        "http://",
        "https://:443/",
        "https://exa mple.com/",
    ] {
        let e = validate_endpoint_url(bad).expect_err(bad);
        assert_eq!(e.field(), "url", "{bad}");
        assert!(e.to_string().starts_with("url: "), "{e}");
    }
    let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
    assert_eq!(validate_endpoint_url(&long).unwrap_err().field(), "url");
    let edge = format!("https://e.co/{}", "a".repeat(MAX_URL_LEN - 13));
    assert_eq!(edge.len(), MAX_URL_LEN);
    assert!(validate_endpoint_url(&edge).is_ok());
}

#[test]
fn refused_addresses() {
    let own: Vec<IpAddr> = vec![
        "192.0.2.10".parse().unwrap(),
        "2001:db8::10".parse().unwrap(),
    ];
    for refused in [
        "127.0.0.1",
        "127.8.9.10",
        "0.0.0.0",
        "169.254.169.254",
        "::1",
        "::",
        "fe80::1",
        "febf::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "192.0.2.10",
        "::ffff:192.0.2.10",
        "2001:db8::10",
    ] {
        let ip: IpAddr = refused.parse().unwrap();
        assert!(is_refused_address(ip, &own), "{refused} should be refused");
    }
    for allowed in [
        "10.0.0.5",
        "192.168.1.1",
        "192.0.2.11",
        "8.8.8.8",
        "2001:db8::11",
        "fec0::1",
        "::ffff:8.8.8.8",
    ] {
        let ip: IpAddr = allowed.parse().unwrap();
        assert!(!is_refused_address(ip, &own), "{allowed} should be allowed");
    }
    // The control plane's own address given in mapped form still matches.
    let mapped_own = vec![IpAddr::V6(Ipv4Addr::new(192, 0, 2, 10).to_ipv6_mapped())];
    assert!(is_refused_address(
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        &mapped_own
    ));
    assert!(!is_refused_address(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        &[]
    ));
}
