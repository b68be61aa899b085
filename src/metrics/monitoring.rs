//! Monitoring's families: drift statistics and states, window values, quality from labels,
//! labels and the predictions waiting for them. Drift fills them from its reports at each
//! scrape (`drift::gauges`); this module registers them and forgets a deleted endpoint's.

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec};

use super::labels::{LabelOutcome, PendingDrop};
use super::{make, Registrar};

pub struct MonitoringMetrics {
    pub statistic: GaugeVec,
    pub status: IntGaugeVec,
    pub detected: IntGaugeVec,
    pub values: IntGaugeVec,
    pub quality: GaugeVec,
    pub labels: IntCounterVec,
    pub pending: IntGaugeVec,
    pub pending_bytes: IntGaugeVec,
    pub pending_dropped: IntCounterVec,
}

impl MonitoringMetrics {
    pub fn new(r: &mut Registrar<'_>) -> Self {
        Self {
            statistic: r.add(make::float_gauges(
                "modelgate_drift_statistic",
                "Drift statistic of a feature or prediction output over the last closed window (or the since-load total), against the baseline or the previous window.",
                &["endpoint", "served_entity", "feature", "statistic", "window", "reference"],
            )),
            status: r.add(make::gauges(
                "modelgate_drift_status",
                "Drift state of a feature or prediction output against the baseline over the last closed window: 0 ok, 1 warn, 2 drift.",
                &["endpoint", "served_entity", "feature", "window"],
            )),
            detected: r.add(make::gauges(
                "modelgate_drift_detected",
                "1 when some feature or output of the served entity drifted from its baseline over the last closed window.",
                &["endpoint", "served_entity", "window"],
            )),
            values: r.add(make::gauges(
                "modelgate_drift_window_values",
                "Values of a feature in the last closed window, by kind: count (binned), null, defaulted (filled by the feature's default), out_of_range (outside the baseline's range).",
                &["endpoint", "served_entity", "feature", "window", "kind"],
            )),
            quality: r.add(make::float_gauges(
                "modelgate_quality",
                "Prediction quality from posted labels, by metric (labels, accuracy, precision, recall, f1, log_loss, auc), over the last closed window of labels or the since-load total.",
                &["endpoint", "served_entity", "metric", "window"],
            )),
            labels: r.add(make::counters(
                "modelgate_labels_total",
                "Labels posted, by outcome: joined (met its prediction, here; in a fleet also a label posted to another replica), unmatched, duplicate, invalid (not 0/1), forwarded (in a fleet: no prediction here matched, relayed to the other replicas).",
                &["endpoint", "outcome"],
            )),
            pending: r.add(make::gauges(
                "modelgate_labels_pending_rows",
                "Scored rows waiting for their labels (bounded by monitoring.labels.max_pending_rows).",
                &["endpoint"],
            )),
            pending_bytes: r.add(make::gauges(
                "modelgate_labels_pending_bytes",
                "Bytes held by the scored requests waiting for their labels (bounded by monitoring.labels.max_pending_bytes).",
                &["endpoint"],
            )),
            pending_dropped: r.add(make::counters(
                "modelgate_labels_pending_dropped_rows_total",
                "Scored rows that left the pending-labels queue before their label came, by reason: expired (monitoring.labels.wait_seconds), max_pending_rows, max_pending_bytes (the oldest leave first; a request over a bound on its own is never held).",
                &["endpoint", "reason"],
            )),
        }
    }

    /// Clears the gauges before a scrape sets them again from the reports.
    pub fn clear(&self) {
        self.statistic.reset();
        self.status.reset();
        self.detected.reset();
        self.values.reset();
        self.quality.reset();
        self.pending.reset();
        self.pending_bytes.reset();
    }

    /// Drops a deleted endpoint's label counters.
    pub fn forget_endpoint(&self, endpoint: &str) {
        for outcome in LabelOutcome::ALL {
            let _ = self
                .labels
                .remove_label_values(&[endpoint, outcome.as_str()]);
        }
        for reason in PendingDrop::ALL {
            let _ = self
                .pending_dropped
                .remove_label_values(&[endpoint, reason.as_str()]);
        }
    }
}
