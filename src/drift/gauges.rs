//! Monitoring's Prometheus families. The gauges are set from the reports at each scrape (the
//! statistics change only when a window closes or with the since-load total); series of
//! served entities and endpoints that are gone disappear with the next scrape. Labels stay
//! bounded: endpoint and served entity names come from the config, features from baselines,
//! statistics and windows from fixed lists and the config.

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::monitor::{Dropped, PendingLabels};
use super::report::EntityReport;

pub struct MonitoringMetrics {
    statistic: GaugeVec,
    status: IntGaugeVec,
    detected: IntGaugeVec,
    values: IntGaugeVec,
    quality: GaugeVec,
    pub labels: IntCounterVec,
    pending: IntGaugeVec,
    pending_bytes: IntGaugeVec,
    pending_dropped: IntCounterVec,
}

impl MonitoringMetrics {
    pub fn new(registry: &Registry) -> Self {
        let statistic = GaugeVec::new(
            Opts::new(
                "modelgate_drift_statistic",
                "Drift statistic of a feature or prediction output over the last closed window (or the since-load total), against the baseline or the previous window.",
            ),
            &["endpoint", "served_entity", "feature", "statistic", "window", "reference"],
        )
        .expect("valid metric");
        let status = IntGaugeVec::new(
            Opts::new(
                "modelgate_drift_status",
                "Drift state of a feature or prediction output against the baseline over the last closed window: 0 ok, 1 warn, 2 drift.",
            ),
            &["endpoint", "served_entity", "feature", "window"],
        )
        .expect("valid metric");
        let detected = IntGaugeVec::new(
            Opts::new(
                "modelgate_drift_detected",
                "1 when some feature or output of the served entity drifted from its baseline over the last closed window.",
            ),
            &["endpoint", "served_entity", "window"],
        )
        .expect("valid metric");
        let values = IntGaugeVec::new(
            Opts::new(
                "modelgate_drift_window_values",
                "Values of a feature in the last closed window, by kind: count (binned), null, defaulted (filled by the feature's default), out_of_range (outside the baseline's range).",
            ),
            &["endpoint", "served_entity", "feature", "window", "kind"],
        )
        .expect("valid metric");
        let quality = GaugeVec::new(
            Opts::new(
                "modelgate_quality",
                "Prediction quality from posted labels, by metric (labels, accuracy, precision, recall, f1, log_loss, auc), over the last closed window of labels or the since-load total.",
            ),
            &["endpoint", "served_entity", "metric", "window"],
        )
        .expect("valid metric");
        let labels = IntCounterVec::new(
            Opts::new(
                "modelgate_labels_total",
                "Labels posted, by outcome: joined (met its prediction), unmatched, duplicate, invalid (not 0/1).",
            ),
            &["endpoint", "outcome"],
        )
        .expect("valid metric");
        let pending = IntGaugeVec::new(
            Opts::new(
                "modelgate_labels_pending_rows",
                "Scored rows waiting for their labels (bounded by monitoring.labels.max_pending_rows).",
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        let pending_bytes = IntGaugeVec::new(
            Opts::new(
                "modelgate_labels_pending_bytes",
                "Bytes held by the scored requests waiting for their labels (bounded by monitoring.labels.max_pending_bytes).",
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        let pending_dropped = IntCounterVec::new(
            Opts::new(
                "modelgate_labels_pending_dropped_rows_total",
                "Scored rows that left the pending-labels queue before their label came, by reason: expired (monitoring.labels.wait_seconds), max_pending_rows, max_pending_bytes (the oldest leave first; a request over a bound on its own is never held).",
            ),
            &["endpoint", "reason"],
        )
        .expect("valid metric");
        for c in [
            Box::new(statistic.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(status.clone()),
            Box::new(detected.clone()),
            Box::new(values.clone()),
            Box::new(quality.clone()),
            Box::new(labels.clone()),
            Box::new(pending.clone()),
            Box::new(pending_bytes.clone()),
            Box::new(pending_dropped.clone()),
        ] {
            registry
                .register(c)
                .expect("metric families are registered once");
        }
        Self {
            statistic,
            status,
            detected,
            values,
            quality,
            labels,
            pending,
            pending_bytes,
            pending_dropped,
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

    pub fn set_pending(&self, endpoint: &str, rows: usize) {
        self.pending.with_label_values(&[endpoint]).set(rows as i64);
    }

    /// Sets an endpoint's pending-labels gauges, and its dropped-rows counters to the queue's
    /// totals (every reason shown, from 0).
    pub fn publish_pending(&self, endpoint: &str, pending: &PendingLabels) {
        let figures = pending.figures();
        self.set_pending(endpoint, figures.rows);
        self.pending_bytes
            .with_label_values(&[endpoint])
            .set(figures.bytes as i64);
        for (reason, total) in Dropped::ALL.iter().zip(figures.dropped) {
            let counter = self
                .pending_dropped
                .with_label_values(&[endpoint, reason.reason()]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// Sets one served entity's gauges from its report.
    pub fn publish(&self, endpoint: &str, r: &EntityReport) {
        let entity = r.served_entity.as_str();
        for w in &r.windows {
            let window = w.window.as_str();
            if w.status.is_some() {
                self.detected
                    .with_label_values(&[endpoint, entity, window])
                    .set(i64::from(w.drift));
            }
            for c in &w.columns {
                let feature = c.name.as_str();
                let kinds = [
                    ("count", c.count),
                    ("null", c.nulls),
                    ("defaulted", c.defaulted),
                    ("out_of_range", c.out_of_range),
                ];
                for (kind, n) in kinds {
                    self.values
                        .with_label_values(&[endpoint, entity, feature, window, kind])
                        .set(n as i64);
                }
                if let Some(s) = c.status {
                    self.status
                        .with_label_values(&[endpoint, entity, feature, window])
                        .set(s.level());
                }
                let compared = [("baseline", &c.vs_baseline), ("previous", &c.vs_previous)];
                for (reference, stats) in compared {
                    let Some(stats) = stats else { continue };
                    for (name, v) in stats.named() {
                        self.statistic
                            .with_label_values(&[
                                endpoint, entity, feature, name, window, reference,
                            ])
                            .set(v);
                    }
                }
            }
        }
        for q in r.quality.iter().filter(|q| !q.window.ends_with("_open")) {
            let f = &q.figures;
            let figures = [
                ("labels", Some(f.labels as f64)),
                ("accuracy", f.accuracy),
                ("precision", f.precision),
                ("recall", f.recall),
                ("f1", f.f1),
                ("log_loss", f.log_loss),
                ("auc", f.auc),
            ];
            for (metric, v) in figures {
                if let Some(v) = v {
                    self.quality
                        .with_label_values(&[endpoint, entity, metric, &q.window])
                        .set(v);
                }
            }
        }
    }

    /// Drops a deleted endpoint's label counters.
    pub fn forget_endpoint(&self, endpoint: &str) {
        for outcome in ["joined", "unmatched", "duplicate", "invalid"] {
            let _ = self.labels.remove_label_values(&[endpoint, outcome]);
        }
        for reason in Dropped::ALL {
            let _ = self
                .pending_dropped
                .remove_label_values(&[endpoint, reason.reason()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::frame::{Column, ColumnData, Frame};
    use crate::drift::settings::LabelSettings;
    use prometheus::Encoder;

    fn rendered(registry: &Registry) -> String {
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn pending_labels_show_their_rows_bytes_and_dropped_rows() {
        let registry = Registry::new();
        let m = MonitoringMetrics::new(&registry);
        let pending = PendingLabels::default();
        let settings = LabelSettings {
            max_pending_rows: 2,
            ..Default::default()
        };
        let config = crate::drift::MonitorConfig::new(&Default::default()).unwrap();
        let monitor = std::sync::Arc::new(crate::drift::SlotMonitor::new(config));
        for id in ["a", "b"] {
            let frame = Frame {
                columns: vec![Column::scalar("x", ColumnData::I64(vec![1, 2]))],
            };
            let scorer = crate::drift::monitor::Scorer {
                monitor: monitor.clone(),
                epoch: 0,
                request_rows: None,
                predictions: Vec::new(),
            };
            pending.expect(&settings, id.into(), frame.into(), None, vec![scorer]);
        }
        m.publish_pending("e", &pending);
        m.publish_pending("e", &pending);
        let text = rendered(&registry);
        let bytes = pending.bytes();
        assert!(bytes > 0);
        for line in [
            "modelgate_labels_pending_rows{endpoint=\"e\"} 2".to_owned(),
            format!("modelgate_labels_pending_bytes{{endpoint=\"e\"}} {bytes}"),
            "modelgate_labels_pending_dropped_rows_total{endpoint=\"e\",reason=\"max_pending_rows\"} 2".to_owned(),
            "modelgate_labels_pending_dropped_rows_total{endpoint=\"e\",reason=\"max_pending_bytes\"} 0".to_owned(),
            "modelgate_labels_pending_dropped_rows_total{endpoint=\"e\",reason=\"expired\"} 0".to_owned(),
        ] {
            assert!(text.lines().any(|l| l == line), "no '{line}' in:\n{text}");
        }
        m.forget_endpoint("e");
        m.clear();
        assert!(!rendered(&registry).contains("endpoint=\"e\""));
    }
}
