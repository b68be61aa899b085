//! Every metric family, registered once. Labels are bounded: endpoint and served entity names
//! come from the config file or the control plane, never from requests (unknown endpoints are
//! counted under `_unknown`), and the series of a deleted endpoint or a removed served entity
//! are dropped with it.

use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The `stage` label values of `modelgate_stage_duration_seconds`, in request order.
pub const STAGES: [&str; 4] = ["queue", "decode", "inference", "encode"];

/// Label value for requests to endpoints that do not exist.
pub const UNKNOWN_ENDPOINT: &str = "_unknown";

pub struct Metrics {
    registry: Registry,
    pub request_duration: HistogramVec,
    pub stage_duration: HistogramVec,
    pub requests: IntCounterVec,
    pub request_errors: IntCounterVec,
    pub rows: IntCounterVec,
    pub served_model_info: IntGaugeVec,
    pub queue_rejections: IntCounterVec,
    pub inference_queue_depth: IntGauge,
    pub model_swaps: IntCounterVec,
    pub registry_errors: IntCounterVec,
    pub loaded_versions: IntGauge,
    pub model_load_duration: HistogramVec,
    pub predicted_probability: HistogramVec,
    pub route_fallbacks: IntCounterVec,
    pub shadow_requests: IntCounterVec,
    pub shadow_duration: HistogramVec,
    pub config_updates: IntCounterVec,
    pub feature_values: IntCounterVec,
    pub feature_lookup_duration: HistogramVec,
    pub feature_age: HistogramVec,
    pub log_rows: IntCounterVec,
    pub log_bytes: IntCounterVec,
    pub log_commit_duration: HistogramVec,
    pub log_commit_retries: IntCounterVec,
    pub log_dropped_rows: IntCounterVec,
    pub log_queue_bytes: IntGauge,
    pub log_queue_records: IntGauge,
    pub auth_refusals: IntCounterVec,
    /// Requests refused at a bound (`limit` from [`crate::error::Limit::name`]).
    pub limit_refusals: IntCounterVec,
    /// Bytes of request bodies held by the requests in flight.
    pub inflight_body_bytes: IntGauge,
    pub tls_reloads: IntCounterVec,
    /// Drift and quality monitoring's families.
    pub monitoring: crate::drift::gauges::MonitoringMetrics,
    /// Live users of each served entity's series and of each `served_model_info` series: two
    /// configs can share them, and only the last to go removes them.
    users: std::sync::Mutex<std::collections::HashMap<Vec<String>, usize>>,
}

/// Label value of a request whose rows were answered by more than one served entity.
pub const MIXED_ARMS: &str = "_mixed";

/// One served entity's series, looked up once when the endpoint config is built so the request
/// path never hashes label values.
pub struct ArmMetrics {
    pub rows: IntCounter,
    pub shadow_rows: IntCounter,
    pub probability: Histogram,
    pub shadow_probability: Histogram,
    pub fallbacks: IntCounter,
    pub shadow_succeeded: IntCounter,
    pub shadow_failed: IntCounter,
    pub shadow_dropped: IntCounter,
    pub shadow_duration: Histogram,
}

impl ArmMetrics {
    /// The series of one served entity; pair with [`Metrics::release_arm`] when it goes.
    pub fn new(m: &Metrics, endpoint: &str, served_entity: &str) -> Self {
        m.acquire(&["arm", endpoint, served_entity]);
        let l = [endpoint, served_entity];
        let shadow = |outcome: &str| {
            m.shadow_requests
                .with_label_values(&[endpoint, served_entity, outcome])
        };
        Self {
            rows: m
                .rows
                .with_label_values(&[endpoint, served_entity, "false"]),
            shadow_rows: m.rows.with_label_values(&[endpoint, served_entity, "true"]),
            probability: m.predicted_probability.with_label_values(&[
                endpoint,
                served_entity,
                "false",
            ]),
            shadow_probability: m.predicted_probability.with_label_values(&[
                endpoint,
                served_entity,
                "true",
            ]),
            fallbacks: m.route_fallbacks.with_label_values(&l),
            shadow_succeeded: shadow("success"),
            shadow_failed: shadow("error"),
            shadow_dropped: shadow("dropped"),
            shadow_duration: m.shadow_duration.with_label_values(&l),
        }
    }
}

/// 50 us .. ~6.6 s doubling, then 10 s: 19 buckets covering the range.
fn latency_buckets() -> Vec<f64> {
    let mut b = exponential_buckets(50e-6, 2.0, 18).expect("valid bucket parameters");
    b.push(10.0);
    b
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let request_duration = HistogramVec::new(
            HistogramOpts::new("modelgate_request_duration_seconds", "Time from request arrival to response, by endpoint, served entity, protocol and status class.")
                .buckets(latency_buckets()),
            &["endpoint", "served_entity", "protocol", "status_class"],
        )
        .expect("valid metric");
        let stage_duration = HistogramVec::new(
            HistogramOpts::new(
                "modelgate_stage_duration_seconds",
                "Time spent in one stage of the request path (queue, decode, inference, encode).",
            )
            .buckets(latency_buckets()),
            &["endpoint", "stage"],
        )
        .expect("valid metric");
        let requests = IntCounterVec::new(
            Opts::new("modelgate_requests_total", "Prediction requests answered, by endpoint, served entity, protocol and status class."),
            &["endpoint", "served_entity", "protocol", "status_class"],
        )
        .expect("valid metric");
        let request_errors = IntCounterVec::new(
            Opts::new(
                "modelgate_request_errors_total",
                "Prediction requests that failed, by endpoint and error code.",
            ),
            &["endpoint", "error_code"],
        )
        .expect("valid metric");
        let rows = IntCounterVec::new(
            Opts::new(
                "modelgate_predicted_rows_total",
                "Rows scored, by endpoint, served entity and whether they were shadow copies.",
            ),
            &["endpoint", "served_entity", "shadow"],
        )
        .expect("valid metric");
        let served_model_info = IntGaugeVec::new(
            Opts::new(
                "modelgate_served_model_info",
                "1 for the model version each endpoint's served entity serves now.",
            ),
            &["endpoint", "served_entity", "model", "version", "engine"],
        )
        .expect("valid metric");
        let queue_rejections = IntCounterVec::new(
            Opts::new(
                "modelgate_inference_queue_rejections_total",
                "Requests refused because the inference queue was full.",
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        let inference_queue_depth = IntGauge::new(
            "modelgate_inference_queue_depth",
            "Requests waiting for an inference worker, sampled at scrape time.",
        )
        .expect("valid metric");
        let model_swaps = IntCounterVec::new(
            Opts::new(
                "modelgate_model_swaps_total",
                "Attempts to change an endpoint's served version, by outcome (success, failure).",
            ),
            &["endpoint", "outcome"],
        )
        .expect("valid metric");
        let registry_errors = IntCounterVec::new(
            Opts::new(
                "modelgate_registry_unreachable_total",
                "Refreshes that found the model registry unreachable (the served version stays).",
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        let loaded_versions = IntGauge::new(
            "modelgate_loaded_versions",
            "Model versions held in memory now (served, loading, or finishing requests), sampled at scrape time.",
        )
        .expect("valid metric");
        let model_load_duration = HistogramVec::new(
            HistogramOpts::new(
                "modelgate_model_load_duration_seconds",
                "Time to fetch, load, validate and warm a model version.",
            )
            .buckets(exponential_buckets(0.01, 2.0, 14).expect("valid bucket parameters")),
            &["endpoint", "outcome"],
        )
        .expect("valid metric");
        let predicted_probability = HistogramVec::new(
            HistogramOpts::new(
                "modelgate_predicted_probability",
                "Predicted probability per scored row of classifiers (the positive class of a binary classifier, else the top class), by served entity: compare the arms.",
            )
            .buckets(prometheus::linear_buckets(0.05, 0.05, 20).expect("valid bucket parameters")),
            &["endpoint", "served_entity", "shadow"],
        )
        .expect("valid metric");
        let route_fallbacks = IntCounterVec::new(
            Opts::new(
                "modelgate_route_fallbacks_total",
                "Requests routed to a served entity that had no loaded model, answered by another arm.",
            ),
            &["endpoint", "served_entity"],
        )
        .expect("valid metric");
        let shadow_requests = IntCounterVec::new(
            Opts::new(
                "modelgate_shadow_requests_total",
                "Request copies for shadow served entities, by outcome (success, error, dropped when the shadow queue was full).",
            ),
            &["endpoint", "served_entity", "outcome"],
        )
        .expect("valid metric");
        let shadow_duration = HistogramVec::new(
            HistogramOpts::new(
                "modelgate_shadow_inference_duration_seconds",
                "Inference time of shadow copies, by served entity.",
            )
            .buckets(latency_buckets()),
            &["endpoint", "served_entity"],
        )
        .expect("valid metric");
        let config_updates = IntCounterVec::new(
            Opts::new(
                "modelgate_config_updates_total",
                "Endpoint config changes through the control plane, by outcome (success, failure).",
            ),
            &["endpoint", "outcome"],
        )
        .expect("valid metric");
        let feature_values = IntCounterVec::new(
            Opts::new(
                "modelgate_feature_values_total",
                "Looked-up feature values by outcome: present, request (sent by the caller), missing, stale, timed_out, and defaulted (a missing or stale value replaced by its default).",
            ),
            &["table", "feature", "outcome"],
        )
        .expect("valid metric");
        let feature_lookup_duration = HistogramVec::new(
            HistogramOpts::new(
                "modelgate_feature_lookup_duration_seconds",
                "Time of one request's batched lookup in the online store.",
            )
            .buckets(latency_buckets()),
            &["store"],
        )
        .expect("valid metric");
        let feature_age = HistogramVec::new(
            HistogramOpts::new(
                "modelgate_feature_age_seconds",
                "Age of looked-up rows (request time, or now, minus the row's event time), per table.",
            )
            .buckets(vec![1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0, 21600.0, 86400.0]),
            &["table"],
        )
        .expect("valid metric");
        let table_labels = ["endpoint", "table"];
        let log_rows = IntCounterVec::new(
            Opts::new(
                "modelgate_inference_log_rows_total",
                "Rows committed to an endpoint's inference tables, per table (payload, predictions, labels).",
            ),
            &table_labels,
        )
        .expect("valid metric");
        let log_bytes = IntCounterVec::new(
            Opts::new(
                "modelgate_inference_log_bytes_total",
                "Bytes of the rows committed to inference tables (Arrow memory, before Parquet compression).",
            ),
            &table_labels,
        )
        .expect("valid metric");
        let log_commit_duration = HistogramVec::new(
            HistogramOpts::new(
                "modelgate_inference_log_commit_duration_seconds",
                "Time of one Delta commit attempt of an inference table (writing the Parquet file and the log entry).",
            )
            .buckets(exponential_buckets(0.001, 2.0, 14).expect("valid bucket parameters")),
            &table_labels,
        )
        .expect("valid metric");
        let log_commit_retries = IntCounterVec::new(
            Opts::new(
                "modelgate_inference_log_commit_retries_total",
                "Failed inference-table commit attempts that were retried.",
            ),
            &table_labels,
        )
        .expect("valid metric");
        let log_dropped_rows = IntCounterVec::new(
            Opts::new(
                "modelgate_inference_log_dropped_rows_total",
                "Rows not logged, by reason: queue_full (the writer's queue was at its byte limit), commit_failed (every commit attempt failed), shutdown (not committed by the shutdown deadline), invalid_rows, writer_panic (the writer panicked on the batch; later batches are still written).",
            ),
            &["endpoint", "table", "reason"],
        )
        .expect("valid metric");
        let log_queue_bytes = IntGauge::new(
            "modelgate_inference_log_queue_bytes",
            "Bytes of records waiting to be committed to inference tables (bounded by inference_log.queue_bytes).",
        )
        .expect("valid metric");
        let log_queue_records = IntGauge::new(
            "modelgate_inference_log_queue_records",
            "Records handed to the inference-log writer and not yet taken into a batch.",
        )
        .expect("valid metric");
        let auth_refusals = IntCounterVec::new(
            Opts::new(
                "modelgate_auth_refusals_total",
                "Requests refused for their bearer token, by error code: UNAUTHENTICATED (none or unknown), PERMISSION_DENIED (a token without the route's scope).",
            ),
            &["error_code"],
        )
        .expect("valid metric");
        let limit_refusals = IntCounterVec::new(
            Opts::new(
                "modelgate_limit_refusals_total",
                "Requests refused at a bound, by limit (body_bytes, inflight_body_bytes, body_read_timeout, columns, rows, cells, string_bytes, id_bytes, outputs, response_bytes, streams_per_connection, label_keys, labels, deadline: a job dropped or stopped because its caller's deadline passed); each is a setting (docs/operations.md).",
            ),
            &["limit"],
        )
        .expect("valid metric");
        let inflight_body_bytes = IntGauge::new(
            "modelgate_inflight_body_bytes",
            "Bytes of request bodies, and of scoring answers not yet taken by their connections, held by the requests in flight (server.max_inflight_body_bytes bounds what new bodies may add).",
        )
        .expect("valid metric");
        let tls_reloads = IntCounterVec::new(
            Opts::new(
                "modelgate_tls_reloads_total",
                "Reloads of the TLS certificate and key after their files changed, by outcome (success, failure: the old certificate stays).",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        for c in [
            Box::new(auth_refusals.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(limit_refusals.clone()),
            Box::new(inflight_body_bytes.clone()),
            Box::new(tls_reloads.clone()),
            Box::new(log_rows.clone()),
            Box::new(log_bytes.clone()),
            Box::new(log_commit_duration.clone()),
            Box::new(log_commit_retries.clone()),
            Box::new(log_dropped_rows.clone()),
            Box::new(log_queue_bytes.clone()),
            Box::new(log_queue_records.clone()),
            Box::new(request_duration.clone()),
            Box::new(stage_duration.clone()),
            Box::new(requests.clone()),
            Box::new(request_errors.clone()),
            Box::new(rows.clone()),
            Box::new(served_model_info.clone()),
            Box::new(queue_rejections.clone()),
            Box::new(inference_queue_depth.clone()),
            Box::new(model_swaps.clone()),
            Box::new(registry_errors.clone()),
            Box::new(loaded_versions.clone()),
            Box::new(model_load_duration.clone()),
            Box::new(predicted_probability.clone()),
            Box::new(route_fallbacks.clone()),
            Box::new(shadow_requests.clone()),
            Box::new(shadow_duration.clone()),
            Box::new(config_updates.clone()),
            Box::new(feature_values.clone()),
            Box::new(feature_lookup_duration.clone()),
            Box::new(feature_age.clone()),
        ] {
            registry
                .register(c)
                .expect("metric families are registered once");
        }
        for limit in crate::error::Limit::ALL {
            limit_refusals.with_label_values(&[limit.name()]);
        }
        Self {
            auth_refusals,
            limit_refusals,
            inflight_body_bytes,
            tls_reloads,
            monitoring: crate::drift::gauges::MonitoringMetrics::new(&registry),
            registry,
            request_duration,
            stage_duration,
            requests,
            request_errors,
            rows,
            served_model_info,
            queue_rejections,
            inference_queue_depth,
            model_swaps,
            registry_errors,
            loaded_versions,
            model_load_duration,
            predicted_probability,
            route_fallbacks,
            shadow_requests,
            shadow_duration,
            config_updates,
            feature_values,
            feature_lookup_duration,
            feature_age,
            log_rows,
            log_bytes,
            log_commit_duration,
            log_commit_retries,
            log_dropped_rows,
            log_queue_bytes,
            log_queue_records,
            users: Default::default(),
        }
    }

    /// Counts a user of `key`; true for the first.
    fn acquire(&self, key: &[&str]) -> bool {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let n = users
            .entry(key.iter().map(|s| s.to_string()).collect())
            .or_default();
        *n += 1;
        *n == 1
    }

    /// Drops a user of `key`; true when it was the last.
    fn release(&self, key: &[&str]) -> bool {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
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

    /// Sets `served_model_info` for a served entity's version.
    pub fn served_model_up(&self, labels: &[&str; 5]) {
        let mut key = vec!["info"];
        key.extend_from_slice(labels);
        self.acquire(&key);
        self.served_model_info.with_label_values(labels).set(1);
    }

    /// Removes `served_model_info` for a version no served entity serves any more.
    pub fn served_model_down(&self, labels: &[&str; 5]) {
        let mut key = vec!["info"];
        key.extend_from_slice(labels);
        if self.release(&key) {
            let _ = self.served_model_info.remove_label_values(labels);
        }
    }

    /// Removes a served entity's own series when its last user goes.
    pub fn release_arm(&self, endpoint: &str, served_entity: &str) {
        if !self.release(&["arm", endpoint, served_entity]) {
            return;
        }
        for shadow in ["false", "true"] {
            let l = [endpoint, served_entity, shadow];
            let _ = self.rows.remove_label_values(&l);
            let _ = self.predicted_probability.remove_label_values(&l);
        }
        for outcome in ["success", "error", "dropped"] {
            let _ = self
                .shadow_requests
                .remove_label_values(&[endpoint, served_entity, outcome]);
        }
        let _ = self
            .route_fallbacks
            .remove_label_values(&[endpoint, served_entity]);
        let _ = self
            .shadow_duration
            .remove_label_values(&[endpoint, served_entity]);
    }

    /// Removes the per-request series of a deleted endpoint (`served` names its served entities).
    pub fn forget_endpoint(&self, endpoint: &str, served: &[String]) {
        let mut entities: Vec<&str> = served.iter().map(String::as_str).collect();
        entities.extend(["", MIXED_ARMS]);
        for entity in &entities {
            for protocol in ["mlflow", "v2"] {
                for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
                    let l = [endpoint, entity, protocol, class];
                    let _ = self.requests.remove_label_values(&l);
                    let _ = self.request_duration.remove_label_values(&l);
                }
            }
        }
        for code in crate::error::RequestError::CODES {
            let _ = self.request_errors.remove_label_values(&[endpoint, code]);
        }
        for stage in STAGES {
            let _ = self.stage_duration.remove_label_values(&[endpoint, stage]);
        }
        self.monitoring.forget_endpoint(endpoint);
        for outcome in ["success", "failure"] {
            let _ = self.model_swaps.remove_label_values(&[endpoint, outcome]);
            let _ = self
                .model_load_duration
                .remove_label_values(&[endpoint, outcome]);
            let _ = self
                .config_updates
                .remove_label_values(&[endpoint, outcome]);
        }
        for table in ["payload", "predictions", "labels"] {
            let l = [endpoint, table];
            let _ = self.log_rows.remove_label_values(&l);
            let _ = self.log_bytes.remove_label_values(&l);
            let _ = self.log_commit_duration.remove_label_values(&l);
            let _ = self.log_commit_retries.remove_label_values(&l);
            for reason in [
                "queue_full",
                "commit_failed",
                "shutdown",
                "invalid_rows",
                "writer_panic",
            ] {
                let _ = self
                    .log_dropped_rows
                    .remove_label_values(&[endpoint, table, reason]);
            }
        }
        let _ = self.queue_rejections.remove_label_values(&[endpoint]);
        let _ = self.registry_errors.remove_label_values(&[endpoint]);
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `2xx`, `4xx`, `5xx` for a status code.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_series_stays_until_its_last_user_goes() {
        let m = Metrics::new();
        let labels = ["e", "champion", "transactions", "1", "ort"];
        m.served_model_up(&labels);
        m.served_model_up(&labels);
        m.served_model_down(&labels);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("modelgate_served_model_info{"), "{text}");
        m.served_model_down(&labels);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(!text.contains("modelgate_served_model_info{"), "{text}");

        let first = ArmMetrics::new(&m, "e", "champion");
        let second = ArmMetrics::new(&m, "e", "champion");
        first.rows.inc();
        m.release_arm("e", "champion");
        second.rows.inc();
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("modelgate_predicted_rows_total{endpoint=\"e\",served_entity=\"champion\",shadow=\"false\"} 2"), "{text}");
        m.release_arm("e", "champion");
        let text = String::from_utf8(m.render()).unwrap();
        assert!(!text.contains("served_entity=\"champion\""), "{text}");
    }
}
