//! Versions and their changes: what each served entity serves, swaps, loads, registry
//! outages and control-plane config updates.

use prometheus::{HistogramVec, IntCounterVec, IntGauge, IntGaugeVec};

use super::labels::Outcome;
use super::{make, Registrar, Users};

pub struct SwapMetrics {
    pub served_model_info: IntGaugeVec,
    pub model_swaps: IntCounterVec,
    pub registry_errors: IntCounterVec,
    pub loaded_versions: IntGauge,
    pub model_load_duration: HistogramVec,
    pub config_updates: IntCounterVec,
    /// Live users of each `served_model_info` series: two configs can share one.
    info: Users,
}

impl SwapMetrics {
    pub fn new(r: &mut Registrar<'_>) -> Self {
        let outcome = ["endpoint", "outcome"];
        Self {
            served_model_info: r.add(make::gauges(
                "modelgate_served_model_info",
                "1 for the model version each endpoint's served entity serves now.",
                &["endpoint", "served_entity", "model", "version", "engine"],
            )),
            model_swaps: r.add(make::counters(
                "modelgate_model_swaps_total",
                "Attempts to change an endpoint's served version, by outcome (success, failure).",
                &outcome,
            )),
            registry_errors: r.add(make::counters(
                "modelgate_registry_unreachable_total",
                "Refreshes that found the model registry unreachable (the served version stays).",
                &["endpoint"],
            )),
            loaded_versions: r.add(make::gauge(
                "modelgate_loaded_versions",
                "Model versions held in memory now (served, loading, or finishing requests), sampled at scrape time.",
            )),
            model_load_duration: r.add(make::histograms(
                "modelgate_model_load_duration_seconds",
                "Time to fetch, load, validate and warm a model version.",
                prometheus::exponential_buckets(0.01, 2.0, 14).expect("valid bucket parameters"),
                &outcome,
            )),
            config_updates: r.add(make::counters(
                "modelgate_config_updates_total",
                "Endpoint config changes through the control plane, by outcome (success, failure).",
                &outcome,
            )),
            info: Users::default(),
        }
    }

    /// Counts a control-plane config update of `endpoint`.
    pub fn count_config_update(&self, endpoint: &str, outcome: Outcome) {
        self.config_updates
            .with_label_values(&[endpoint, outcome.as_str()])
            .inc();
    }

    /// Sets `served_model_info` for a served entity's version.
    pub fn served_model_up(&self, labels: &[&str; 5]) {
        self.info.acquire(labels);
        self.served_model_info.with_label_values(labels).set(1);
    }

    /// Removes `served_model_info` for a version no served entity serves any more.
    pub fn served_model_down(&self, labels: &[&str; 5]) {
        if self.info.release(labels) {
            let _ = self.served_model_info.remove_label_values(labels);
        }
    }

    pub fn forget_endpoint(&self, endpoint: &str) {
        for outcome in Outcome::ALL {
            let l = [endpoint, outcome.as_str()];
            let _ = self.model_swaps.remove_label_values(&l);
            let _ = self.model_load_duration.remove_label_values(&l);
            let _ = self.config_updates.remove_label_values(&l);
        }
        let _ = self.registry_errors.remove_label_values(&[endpoint]);
    }
}
