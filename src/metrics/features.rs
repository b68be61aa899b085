//! The feature join: looked-up values by outcome, the store's lookup time, rows' age.

use prometheus::{HistogramVec, IntCounterVec};

use super::{latency_buckets, make, Registrar};

pub struct FeatureMetrics {
    pub values: IntCounterVec,
    pub lookup_duration: HistogramVec,
    pub age: HistogramVec,
}

impl FeatureMetrics {
    pub fn new(r: &mut Registrar<'_>) -> Self {
        Self {
            values: r.add(make::counters(
                "modelgate_feature_values_total",
                "Looked-up feature values by outcome: present, request (sent by the caller), missing, stale, timed_out, and defaulted (a missing or stale value replaced by its default).",
                &["table", "feature", "outcome"],
            )),
            lookup_duration: r.add(make::histograms(
                "modelgate_feature_lookup_duration_seconds",
                "Time of one request's batched lookup in the online store.",
                latency_buckets(),
                &["store"],
            )),
            age: r.add(make::histograms(
                "modelgate_feature_age_seconds",
                "Age of looked-up rows (request time, or now, minus the row's event time), per table.",
                vec![1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0, 21600.0, 86400.0],
                &["table"],
            )),
        }
    }
}
