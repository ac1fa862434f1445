//! Exponential backoff with jitter for retrying calls to the control plane.

use std::time::Duration;

/// Doubling delays between `base` and `max`, each shortened by up to a quarter
/// at random so that many runners do not retry in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Starts at `base`, never waits more than `max`.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            current: base,
        }
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        let quarter = d.as_millis() as u64 / 4;
        if quarter == 0 {
            return d;
        }
        d - Duration::from_millis(random_u64() % quarter)
    }

    /// Back to the first delay after a success.
    pub fn reset(&mut self) {
        self.current = self.base;
    }
}

/// Random bits for jitter and temp names (not for secrets).
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64 ^ std::process::id() as u64;
    }
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let mut last = Duration::ZERO;
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(d <= Duration::from_millis(1000));
            last = d;
        }
        assert!(last >= Duration::from_millis(750));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
