//! `inference`: the inference pool's workers and queues, and how a new version is checked.

use serde::{Deserialize, Serialize};

use super::{invalid, SettingsError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct InferenceSettings {
    /// Inference worker threads; 0 means one per core.
    pub workers: usize,
    /// Requests that may wait for a worker; beyond it requests get 503 at once.
    pub queue_capacity: usize,
    /// Request copies waiting for shadow served entities; beyond it copies are dropped (and
    /// counted), never the caller's request.
    pub shadow_queue_capacity: usize,
    /// Most rows one request may carry.
    pub max_batch_rows: usize,
    /// Runs of the input example after load, before a version serves.
    pub warmup_runs: usize,
    /// Largest absolute difference from a version's expected output that still validates.
    pub validation_tolerance: f64,
    /// Which jobs run on the HTTP worker that decoded them instead of the pool.
    pub inline: InlineSettings,
}

/// A request runs inline (on its HTTP worker, no hand-off to the pool) when its body is at most
/// `max_body_bytes` and every version its endpoint serves has been measured (at warm-up and on
/// its small requests) to infer in at most `max_us` microseconds on average. So an HTTP worker
/// is held at most about that long by one request, plus its decoding, which the body bound
/// limits (the jobs of one turn of its event loop run in a row: at most one per request in
/// flight on it). Larger requests and slower versions go to the pool.
///
/// On by default (`max_us: 100`): on one core it serves about twice the pool's req/s at 8
/// connections and 6-13 % more at 32 (docs/benchmarks.md); `max_us: 0` sends every job to the
/// pool. gRPC calls always go to the pool.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct InlineSettings {
    /// Largest average inference time of a version whose small jobs run inline (100 µs by
    /// default); 0: none do.
    pub max_us: u64,
    /// Largest request body that runs inline.
    pub max_body_bytes: usize,
}

impl Default for InlineSettings {
    fn default() -> Self {
        Self {
            max_us: 100,
            max_body_bytes: 8 * 1024,
        }
    }
}

impl InlineSettings {
    /// Whether any job may run inline.
    pub fn enabled(&self) -> bool {
        self.max_us > 0 && self.max_body_bytes > 0
    }

    pub fn max_inference(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.max_us)
    }
}

impl Default for InferenceSettings {
    fn default() -> Self {
        Self {
            workers: 0,
            queue_capacity: 1024,
            shadow_queue_capacity: 256,
            max_batch_rows: 10_000,
            warmup_runs: 3,
            validation_tolerance: 1e-4,
            inline: InlineSettings::default(),
        }
    }
}

impl InferenceSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        for (key, value) in [
            (
                "inference.shadow_queue_capacity",
                self.shadow_queue_capacity,
            ),
            ("inference.queue_capacity", self.queue_capacity),
            ("inference.max_batch_rows", self.max_batch_rows),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be above 0"));
            }
        }
        // An HTTP worker held for long stalls every connection it serves.
        if self.inline.max_us > 100_000 {
            return Err(invalid(
                "inference.inline.max_us",
                "must be at most 100000 (100 ms): slower versions belong on the pool",
            ));
        }
        if self.validation_tolerance.is_nan() || self.validation_tolerance < 0.0 {
            return Err(invalid(
                "inference.validation_tolerance",
                "must be a number >= 0",
            ));
        }
        Ok(())
    }
}
