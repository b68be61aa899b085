//! Every metric family, one group per subsystem: [`serving`] (requests, stages, rows, arms),
//! [`swaps`] (versions, loads, config updates), [`features`] (the join), [`inference_log`]
//! (inference tables), [`access`] (auth, bounds, TLS), [`monitoring`] (drift and quality) and
//! [`trace`] (span export).
//! Each group registers its families once in [`Metrics::new`] and forgets its own series of a
//! deleted endpoint; label values from closed sets are enums ([`labels`]).
//!
//! Labels are bounded: endpoint and served entity names come from the config file or the
//! control plane, never from requests (unknown endpoints are counted under `_unknown`), and the
//! series of a deleted endpoint or a removed served entity are dropped with it.

pub mod access;
pub mod features;
pub mod fleet;
pub mod inference_log;
pub mod labels;
pub mod live;
pub mod monitoring;
pub mod promotion;
pub mod serving;
pub mod swaps;
pub mod trace;

use prometheus::core::Collector;
use prometheus::proto::MetricType;
use prometheus::{exponential_buckets, Encoder, Registry, TextEncoder};

pub use serving::ArmMetrics;

/// Label value for requests to endpoints that do not exist.
pub const UNKNOWN_ENDPOINT: &str = "_unknown";

/// Label value of a request whose rows were answered by more than one served entity.
pub const MIXED_ARMS: &str = "_mixed";

pub struct Metrics {
    registry: Registry,
    families: Vec<Family>,
    pub serving: serving::ServingMetrics,
    pub swaps: swaps::SwapMetrics,
    pub features: features::FeatureMetrics,
    pub log: inference_log::LogMetrics,
    pub access: access::AccessMetrics,
    pub monitoring: monitoring::MonitoringMetrics,
    pub trace: trace::TraceMetrics,
    pub promotion: promotion::PromotionMetrics,
    pub fleet: fleet::FleetMetrics,
}

/// A registered family, as its descriptor says.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub labels: Vec<String>,
    pub kind: MetricType,
}

/// Registers each family as it is made, and keeps its descriptor.
pub struct Registrar<'a> {
    registry: &'a Registry,
    families: Vec<Family>,
}

impl Registrar<'_> {
    /// Registers `collector` and hands it back.
    pub fn add<C: Collector + Clone + 'static>(&mut self, collector: C) -> C {
        for mf in collector.collect() {
            let desc = collector
                .desc()
                .into_iter()
                .find(|d| d.fq_name == mf.name())
                .map(|d| d.variable_labels.clone())
                .unwrap_or_default();
            self.families.push(Family {
                name: mf.name().to_owned(),
                help: mf.help().to_owned(),
                labels: desc,
                kind: mf.get_field_type(),
            });
        }
        self.registry
            .register(Box::new(collector.clone()))
            .expect("metric families are registered once");
        collector
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let mut r = Registrar {
            registry: &registry,
            families: Vec::new(),
        };
        let serving = serving::ServingMetrics::new(&mut r);
        let swaps = swaps::SwapMetrics::new(&mut r);
        let features = features::FeatureMetrics::new(&mut r);
        let log = inference_log::LogMetrics::new(&mut r);
        let access = access::AccessMetrics::new(&mut r);
        let monitoring = monitoring::MonitoringMetrics::new(&mut r);
        let trace = trace::TraceMetrics::new(&mut r);
        let promotion = promotion::PromotionMetrics::new(&mut r);
        let fleet = fleet::FleetMetrics::new(&mut r);
        let families = r.families;
        Self {
            registry,
            families,
            serving,
            swaps,
            features,
            log,
            access,
            monitoring,
            trace,
            promotion,
            fleet,
        }
    }

    /// Every family registered, with its labels and type.
    pub fn families(&self) -> &[Family] {
        &self.families
    }

    /// Removes the series of a deleted endpoint (`served` names its served entities).
    pub fn forget_endpoint(&self, endpoint: &str, served: &[String]) {
        self.serving.forget_endpoint(endpoint, served);
        self.swaps.forget_endpoint(endpoint);
        self.log.forget_endpoint(endpoint);
        self.monitoring.forget_endpoint(endpoint);
        self.promotion.forget_endpoint(endpoint);
        self.fleet.forget_endpoint(endpoint);
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }

    /// The exposition of one endpoint's series (those labelled `endpoint="<name>"`), as
    /// Databricks' per-endpoint metrics export gives them.
    pub fn render_endpoint(&self, name: &str) -> Vec<u8> {
        let mut families = self.registry.gather();
        for f in &mut families {
            f.mut_metric().retain(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "endpoint" && l.value() == name)
            });
        }
        families.retain(|f| !f.get_metric().is_empty());
        let mut buf = Vec::with_capacity(4 * 1024);
        let _ = TextEncoder::new().encode(&families, &mut buf);
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// 50 us .. ~6.6 s doubling, then 10 s: 19 buckets for request-path latencies.
pub(crate) fn latency_buckets() -> Vec<f64> {
    let mut b = exponential_buckets(50e-6, 2.0, 18).expect("valid bucket parameters");
    b.push(10.0);
    b
}

/// Counts users of series that several endpoint configs can share: only the last to go
/// removes them.
#[derive(Default)]
pub(crate) struct Users(std::sync::Mutex<std::collections::HashMap<Vec<String>, usize>>);

impl Users {
    /// Counts a user of `key`; true for the first.
    pub fn acquire(&self, key: &[&str]) -> bool {
        let mut users = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = users
            .entry(key.iter().map(|s| s.to_string()).collect())
            .or_default();
        *n += 1;
        *n == 1
    }

    /// Drops a user of `key`; true when it was the last.
    pub fn release(&self, key: &[&str]) -> bool {
        let mut users = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let k: Vec<String> = key.iter().map(|s| s.to_string()).collect();
        match users.get_mut(&k) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                users.remove(&k);
                true
            }
            None => false,
        }
    }
}

/// Family constructors: each family is written once, where its group makes it.
pub(crate) mod make {
    use prometheus::{
        GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    };

    pub fn counter(name: &str, help: &str) -> prometheus::IntCounter {
        prometheus::IntCounter::with_opts(Opts::new(name, help)).expect("valid metric")
    }

    pub fn counters(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
    }

    pub fn gauge(name: &str, help: &str) -> IntGauge {
        IntGauge::new(name, help).expect("valid metric")
    }

    pub fn gauges(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
    }

    pub fn float_gauges(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        GaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
    }

    pub fn histograms(name: &str, help: &str, buckets: Vec<f64>, labels: &[&str]) -> HistogramVec {
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
            .expect("valid metric")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Metrics) -> String {
        String::from_utf8(m.render()).unwrap()
    }

    /// Databricks' per-endpoint export: that endpoint's series, and the families they are of.
    #[test]
    fn one_endpoints_series_are_rendered_alone() {
        use labels::Outcome;
        let m = Metrics::new();
        for ep in ["a", "ab", "b"] {
            m.swaps
                .model_swaps
                .with_label_values(&[ep, Outcome::Success.as_str()])
                .inc();
        }
        m.swaps.registry_errors.with_label_values(&["b"]).inc();
        let a = String::from_utf8(m.render_endpoint("a")).unwrap();
        let samples: Vec<&str> = a.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            ["modelgate_model_swaps_total{endpoint=\"a\",outcome=\"success\"} 1"],
            "{a}"
        );
        assert!(a.contains("# TYPE modelgate_model_swaps_total counter"));
        assert!(
            !a.contains("registry_errors"),
            "no family without a series of a"
        );
        assert!(m.render_endpoint("none").is_empty());
    }

    #[test]
    fn a_shared_series_stays_until_its_last_user_goes() {
        let m = Metrics::new();
        let labels = ["e", "champion", "transactions", "1", "ort"];
        m.swaps.served_model_up(&labels);
        m.swaps.served_model_up(&labels);
        m.swaps.served_model_down(&labels);
        assert!(text(&m).contains("modelgate_served_model_info{"));
        m.swaps.served_model_down(&labels);
        assert!(!text(&m).contains("modelgate_served_model_info{"));

        let first = ArmMetrics::new(&m.serving, "e", "champion");
        let second = ArmMetrics::new(&m.serving, "e", "champion");
        first.rows.inc();
        m.serving.release_arm("e", "champion");
        second.rows.inc();
        assert!(text(&m).contains("modelgate_predicted_rows_total{endpoint=\"e\",served_entity=\"champion\",shadow=\"false\"} 2"));
        m.serving.release_arm("e", "champion");
        assert!(!text(&m).contains("served_entity=\"champion\""));
    }

    /// Every label value an endpoint's series can take is forgotten with it: series set with
    /// each value of each closed set, then the endpoint deleted, leave nothing of it.
    #[test]
    fn a_deleted_endpoint_leaves_no_series() {
        use labels::{DropReason, LogTable, Outcome, Stage, StatusClass};
        let m = Metrics::new();
        let served = vec!["champion".to_owned()];
        for protocol in crate::error::Protocol::ALL {
            for status in [101, 200, 302, 404, 503] {
                assert!(StatusClass::ALL.contains(&StatusClass::of(status)));
                m.serving
                    .count_request("e", "champion", protocol, status, 0.001);
            }
        }
        m.serving
            .count_error("e", &crate::error::RequestError::Overloaded("full".into()));
        for stage in m.serving.stages("e") {
            stage.observe(0.001);
        }
        assert_eq!(Stage::ALL.len(), 4);
        for outcome in Outcome::ALL {
            m.swaps.count_config_update("e", *outcome);
            let l = ["e", outcome.as_str()];
            m.swaps.model_swaps.with_label_values(&l).inc();
            m.swaps
                .model_load_duration
                .with_label_values(&l)
                .observe(1.0);
        }
        m.swaps.registry_errors.with_label_values(&["e"]).inc();
        for table in LogTable::ALL {
            for reason in DropReason::ALL {
                m.log.dropped("e", *table, *reason).inc();
            }
            m.log.rows.with_label_values(&["e", table.as_str()]).inc();
        }
        for outcome in labels::LabelOutcome::ALL {
            m.monitoring
                .labels
                .with_label_values(&["e", outcome.as_str()])
                .inc();
        }
        assert!(text(&m).contains("endpoint=\"e\""));
        m.forget_endpoint("e", &served);
        let rendered = text(&m);
        let left: Vec<&str> = rendered
            .lines()
            .filter(|l| l.contains("endpoint=\"e\""))
            .map(|l| l.split('{').next().unwrap_or(l))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert!(
            left.is_empty(),
            "series of a deleted endpoint left: {left:?}"
        );
    }

    #[test]
    fn families_come_from_the_registry_with_their_labels() {
        let m = Metrics::new();
        let requests = m
            .families()
            .iter()
            .find(|f| f.name == "modelgate_requests_total")
            .unwrap();
        assert_eq!(
            requests.labels,
            ["endpoint", "served_entity", "protocol", "status_class"]
        );
        assert!(m
            .families()
            .iter()
            .all(|f| f.name.starts_with("modelgate_")));
        let names: std::collections::BTreeSet<_> = m.families().iter().map(|f| &f.name).collect();
        assert_eq!(names.len(), m.families().len(), "a family registered twice");
    }
}
