use super::*;

const MS: Duration = Duration::from_millis(1);

fn firsts() -> Vec<Duration> {
    vec![
        Duration::from_nanos(1),
        MS,
        Duration::from_millis(250),
        Duration::from_secs(1),
        Duration::from_secs(2),
        Duration::from_secs(7),
        Duration::from_secs(60),
        Duration::from_secs(600),
        Duration::from_secs(1801),
        MAX_RETRY_DELAY,
        // Above the cap (never validated, still bounded).
        Duration::from_secs(86_400),
    ]
}

#[test]
fn base_doubles_until_the_cap() {
    let two = Duration::from_secs(2);
    assert_eq!(base_delay(two, 1), two);
    assert_eq!(base_delay(two, 2), Duration::from_secs(4));
    assert_eq!(base_delay(two, 3), Duration::from_secs(8));
    assert_eq!(base_delay(two, 11), Duration::from_secs(2048));
    assert_eq!(base_delay(two, 12), MAX_RETRY_DELAY);
    assert_eq!(base_delay(two, u32::MAX), MAX_RETRY_DELAY);
    // Retry 0 reads as retry 1.
    assert_eq!(base_delay(two, 0), two);
}

/// Every first delay, every retry number up to the maximum (and far past
/// it), 500 run ids: the delay stays in [3/4 base, base], under the cap, and
/// grows strictly while the base is below the cap.
#[test]
fn delay_bounds_hold_exhaustively() {
    for first in firsts() {
        for run_id in (-5..495).map(|i| i * 7919) {
            let mut prev: Option<(Duration, Duration)> = None;
            for retry in (1..=MAX_RETRIES + 5).chain([1000, u32::MAX]) {
                let base = base_delay(first, retry);
                let d = failure_retry_delay(first, retry, run_id);
                assert!(
                    d <= base,
                    "{first:?} #{retry} run {run_id}: {d:?} > {base:?}"
                );
                assert!(
                    d.as_nanos() * 4 >= base.as_nanos() * 3,
                    "{first:?} #{retry} run {run_id}: {d:?} < 3/4 of {base:?}"
                );
                assert!(d <= MAX_RETRY_DELAY);
                assert!(!d.is_zero());
                if let Some((prev_base, prev_d)) = prev {
                    assert!(base >= prev_base);
                    if base < MAX_RETRY_DELAY && prev_base.as_nanos() >= 4 {
                        assert!(d > prev_d, "{first:?} #{retry}: {d:?} <= {prev_d:?}");
                    }
                }
                prev = Some((base, d));
            }
        }
    }
}

#[test]
fn jitter_is_deterministic_and_spread() {
    let first = Duration::from_secs(10);
    for run_id in [0, 1, 42, -1, i64::MAX, i64::MIN] {
        for retry in 1..=20 {
            assert_eq!(
                failure_retry_delay(first, retry, run_id),
                failure_retry_delay(first, retry, run_id)
            );
            let f = jitter_fraction(run_id, retry);
            assert!((0.0..1.0).contains(&f), "{f}");
        }
    }
    // Different runs failing together do not come back in lockstep: over
    // 1000 runs the first retry takes many distinct values covering most
    // of the jitter band [7.5 s, 10 s].
    let delays: std::collections::BTreeSet<Duration> = (0..1000)
        .map(|id| failure_retry_delay(first, 1, id))
        .collect();
    assert!(delays.len() > 900, "{}", delays.len());
    let lo = *delays.first().unwrap();
    let hi = *delays.last().unwrap();
    assert!(lo < Duration::from_millis(7_600), "{lo:?}");
    assert!(hi > Duration::from_millis(9_900), "{hi:?}");
    // And the fraction differs between retries of one run.
    assert_ne!(jitter_fraction(7, 1), jitter_fraction(7, 2));
}

/// A pinned value, computed independently with Python's hashlib:
/// sha256(b"minitower-retry-jitter\0" + be64(12345) + be32(3)), top 53 bits
/// of the first 8 bytes / 2^53 = 0.93218..., so the third retry after a 2 s
/// first delay waits 8 s - floor(2 s x 0.93218...) = 6.135637087 s. A change
/// to the hash input or formula shows up here, as it would change every
/// deployed run's retry times.
#[test]
fn pinned_value() {
    let d = failure_retry_delay(Duration::from_secs(2), 3, 12345);
    assert_eq!(d, Duration::from_nanos(6_135_637_087));
}

#[test]
fn validation() {
    assert_eq!(validate_retries(0), Ok(0));
    assert_eq!(validate_retries(3), Ok(3));
    assert_eq!(validate_retries(100), Ok(100));
    assert_eq!(validate_retries(101), Err(RetryError::Retries(101)));
    assert_eq!(validate_retries(-1), Err(RetryError::Retries(-1)));
    assert!(validate_retries(-1)
        .unwrap_err()
        .to_string()
        .starts_with("retries "));
    assert_eq!(validate_retry_delay(MS), Ok(MS));
    assert_eq!(validate_retry_delay(MAX_RETRY_DELAY), Ok(MAX_RETRY_DELAY));
    assert_eq!(
        validate_retry_delay(Duration::ZERO),
        Err(RetryError::ZeroDelay)
    );
    assert!(matches!(
        validate_retry_delay(MAX_RETRY_DELAY + MS),
        Err(RetryError::DelayTooLong(_))
    ));
    assert!(validate_retry_delay(Duration::ZERO)
        .unwrap_err()
        .to_string()
        .starts_with("retry_delay "));
}
