//! What a model version's inference costs, measured: its warm-up runs and its small requests
//! feed an average that says whether its next small job may run on the HTTP worker that
//! decoded it (see [`crate::engine::pool::InferencePool::run_inline`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Inference time per call, exponentially weighted (each sample counts 1/8), in nanoseconds;
/// unknown until the first sample.
#[derive(Debug, Default)]
pub struct InferCost {
    /// 0: not measured yet.
    nanos: AtomicU64,
}

impl InferCost {
    /// Adds one call's time. Two calls recording at once may lose one sample: an average
    /// that steers, not a count.
    pub fn record(&self, took: Duration) {
        let sample = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        let old = self.nanos.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.nanos.store(new.max(1), Ordering::Relaxed);
    }

    /// The average so far; `None` before any call was measured.
    pub fn average(&self) -> Option<Duration> {
        match self.nanos.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    /// Known, and at most `bound`.
    pub fn within(&self, bound: Duration) -> bool {
        self.average().is_some_and(|a| a <= bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_until_measured_then_an_average_that_follows_the_samples() {
        let cost = InferCost::default();
        assert_eq!(cost.average(), None);
        assert!(!cost.within(Duration::from_secs(1)), "unknown is not cheap");
        cost.record(Duration::from_micros(800));
        assert_eq!(cost.average(), Some(Duration::from_micros(800)));
        assert!(!cost.within(Duration::from_micros(100)));
        // A slow first run (a cold session) is outweighed by the fast ones after it.
        for _ in 0..40 {
            cost.record(Duration::from_micros(20));
        }
        let a = cost.average().unwrap();
        assert!(a < Duration::from_micros(25), "{a:?}");
        assert!(cost.within(Duration::from_micros(100)));
        // And a model that turns slow leaves the bound within a few calls.
        for _ in 0..12 {
            cost.record(Duration::from_millis(2));
        }
        assert!(!cost.within(Duration::from_micros(100)));
    }
}
