//! Monitoring's Prometheus families. The gauges are set from the reports at each scrape (the
//! statistics change only when a window closes or with the since-load total); series of
//! served entities and endpoints that are gone disappear with the next scrape. Labels stay
//! bounded: endpoint and served entity names come from the config, features from baselines,
//! statistics and windows from fixed lists and the config.

use super::monitor::PendingLabels;
use super::report::EntityReport;
use crate::metrics::labels::PendingDrop;
pub use crate::metrics::monitoring::MonitoringMetrics;

/// Drift sets the families from its reports; the metrics module registers and forgets them.
impl MonitoringMetrics {
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
        for (reason, total) in PendingDrop::ALL.iter().zip(figures.dropped) {
            let counter = self
                .pending_dropped
                .with_label_values(&[endpoint, reason.as_str()]);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::frame::{Column, ColumnData, Frame};
    use crate::drift::monitor::now_ms;
    use crate::settings::monitoring::LabelSettings;

    fn rendered(metrics: &crate::metrics::Metrics) -> String {
        String::from_utf8(metrics.render()).unwrap()
    }

    #[test]
    fn pending_labels_show_their_rows_bytes_and_dropped_rows() {
        let metrics = crate::metrics::Metrics::new();
        let m = &metrics.monitoring;
        let pending = PendingLabels::default();
        let settings = LabelSettings {
            max_pending_rows: 2,
            ..Default::default()
        };
        let config = crate::drift::MonitorConfig::new(&Default::default()).unwrap();
        let monitor = std::sync::Arc::new(crate::drift::SlotMonitor::new(config, now_ms()));
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
            pending.expect(
                &settings,
                id.into(),
                frame.into(),
                None,
                vec![scorer],
                now_ms(),
            );
        }
        m.publish_pending("e", &pending);
        m.publish_pending("e", &pending);
        let text = rendered(&metrics);
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
        assert!(!rendered(&metrics).contains("endpoint=\"e\""));
    }
}
