//! Latency samples and their percentiles.

use serde::Serialize;
use std::time::Duration;

/// Durations collected by one measurement, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<f64>);

/// Percentiles of a sample set, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    pub total_ms: f64,
}

impl Samples {
    /// An empty set.
    pub fn new() -> Self {
        Samples(Vec::new())
    }

    /// An empty set with room for `n` samples.
    pub fn with_capacity(n: usize) -> Self {
        Samples(Vec::with_capacity(n))
    }

    /// Adds one duration.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1000.0);
    }

    /// Adds one value already in milliseconds.
    pub fn push_ms(&mut self, ms: f64) {
        self.0.push(ms);
    }

    /// Moves every sample of `other` into this set.
    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The raw values in milliseconds, in insertion order.
    pub fn values(&self) -> &[f64] {
        &self.0
    }

    /// Percentiles by the nearest-rank method (p50 of 1..=100 is 50).
    pub fn summary(&self) -> Summary {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let rank = |q: f64| -> f64 {
            if n == 0 {
                return f64::NAN;
            }
            let r = (q * n as f64).ceil() as usize;
            v[r.clamp(1, n) - 1]
        };
        let total: f64 = v.iter().sum();
        Summary {
            n,
            p50_ms: rank(0.50),
            p90_ms: rank(0.90),
            p99_ms: rank(0.99),
            max_ms: v.last().copied().unwrap_or(f64::NAN),
            mean_ms: if n == 0 { f64::NAN } else { total / n as f64 },
            total_ms: total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut s = Samples::new();
        for i in (1..=100).rev() {
            s.push_ms(i as f64);
        }
        let m = s.summary();
        assert_eq!(m.n, 100);
        assert_eq!(m.p50_ms, 50.0);
        assert_eq!(m.p90_ms, 90.0);
        assert_eq!(m.p99_ms, 99.0);
        assert_eq!(m.max_ms, 100.0);
        assert_eq!(m.total_ms, 5050.0);
        let one = {
            let mut s = Samples::new();
            s.push(Duration::from_millis(3));
            s.summary()
        };
        assert_eq!(one.p50_ms, 3.0);
        assert_eq!(one.p99_ms, 3.0);
        assert!(Samples::new().summary().p50_ms.is_nan());
    }
}
