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
        if self.validation_tolerance.is_nan() || self.validation_tolerance < 0.0 {
            return Err(invalid(
                "inference.validation_tolerance",
                "must be a number >= 0",
            ));
        }
        Ok(())
    }
}
