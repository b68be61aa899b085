//! The request path's families: requests and their latency, stages, scored rows, predicted
//! probabilities, route fallbacks, shadow copies and the inference queue.

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge};

use super::labels::{shadow, Lane, ShadowOutcome, Stage, StatusClass};
use super::{latency_buckets, make, Registrar, Users, MIXED_ARMS};
use crate::error::{Protocol, RequestError};

pub struct ServingMetrics {
    pub request_duration: HistogramVec,
    pub stage_duration: HistogramVec,
    pub requests: IntCounterVec,
    pub request_errors: IntCounterVec,
    pub rows: IntCounterVec,
    pub queue_rejections: IntCounterVec,
    pub inference_queue_depth: IntGauge,
    pub jobs: IntCounterVec,
    pub predicted_probability: HistogramVec,
    pub route_fallbacks: IntCounterVec,
    pub shadow_requests: IntCounterVec,
    pub shadow_duration: HistogramVec,
    pub batch_requests: HistogramVec,
    /// Live users of each served entity's series: two configs can share them.
    arms: Users,
}

impl ServingMetrics {
    pub fn new(r: &mut Registrar<'_>) -> Self {
        let request = ["endpoint", "served_entity", "protocol", "status_class"];
        let arm = ["endpoint", "served_entity"];
        Self {
            request_duration: r.add(make::histograms(
                "modelgate_request_duration_seconds",
                "Time from request arrival to response, by endpoint, served entity, protocol and status class.",
                latency_buckets(),
                &request,
            )),
            stage_duration: r.add(make::histograms(
                "modelgate_stage_duration_seconds",
                "Time spent in one stage of the request path (queue, decode, inference, encode).",
                latency_buckets(),
                &["endpoint", "stage"],
            )),
            requests: r.add(make::counters(
                "modelgate_requests_total",
                "Prediction requests answered, by endpoint, served entity, protocol and status class.",
                &request,
            )),
            request_errors: r.add(make::counters(
                "modelgate_request_errors_total",
                "Prediction requests that failed, by endpoint and error code.",
                &["endpoint", "error_code"],
            )),
            rows: r.add(make::counters(
                "modelgate_predicted_rows_total",
                "Rows scored, by endpoint, served entity and whether they were shadow copies.",
                &["endpoint", "served_entity", "shadow"],
            )),
            queue_rejections: r.add(make::counters(
                "modelgate_inference_queue_rejections_total",
                "Requests refused because the inference queue was full.",
                &["endpoint"],
            )),
            inference_queue_depth: r.add(make::gauge(
                "modelgate_inference_queue_depth",
                "Requests waiting for an inference worker, sampled at scrape time.",
            )),
            jobs: r.add(make::counters(
                "modelgate_inference_jobs_total",
                "Prediction requests by where their job ran: inline (on the HTTP worker that decoded it: a small body on versions measured fast, see inference.inline) or pool.",
                &["endpoint", "lane"],
            )),
            predicted_probability: r.add(make::histograms(
                "modelgate_predicted_probability",
                "Predicted probability per scored row of classifiers (the positive class of a binary classifier, else the top class), by served entity: compare the arms.",
                prometheus::linear_buckets(0.05, 0.05, 20).expect("valid bucket parameters"),
                &["endpoint", "served_entity", "shadow"],
            )),
            route_fallbacks: r.add(make::counters(
                "modelgate_route_fallbacks_total",
                "Requests routed to a served entity that had no loaded model, answered by another arm.",
                &arm,
            )),
            shadow_requests: r.add(make::counters(
                "modelgate_shadow_requests_total",
                "Request copies for shadow served entities, by outcome (success, error, dropped when the shadow queue was full).",
                &["endpoint", "served_entity", "outcome"],
            )),
            shadow_duration: r.add(make::histograms(
                "modelgate_shadow_inference_duration_seconds",
                "Inference time of shadow copies, by served entity.",
                latency_buckets(),
                &arm,
            )),
            batch_requests: r.add(make::histograms(
                "modelgate_inference_batch_requests",
                "Requests combined into one engine call, by served entity (only served entities with batching on).",
                prometheus::exponential_buckets(1.0, 2.0, 11).expect("valid bucket parameters"),
                &arm,
            )),
            arms: Users::default(),
        }
    }

    /// Counts an answered request and its latency.
    pub fn count_request(
        &self,
        endpoint: &str,
        served_entity: &str,
        protocol: Protocol,
        status: u16,
        seconds: f64,
    ) {
        let class = StatusClass::of(status).as_str();
        let labels = [endpoint, served_entity, protocol.as_str(), class];
        self.requests.with_label_values(&labels).inc();
        self.request_duration
            .with_label_values(&labels)
            .observe(seconds);
    }

    /// Counts a failed request by its error code.
    pub fn count_error(&self, endpoint: &str, error: &RequestError) {
        self.request_errors
            .with_label_values(&[endpoint, error.code()])
            .inc();
        if matches!(error, RequestError::Overloaded(_)) {
            self.queue_rejections.with_label_values(&[endpoint]).inc();
        }
    }

    /// An endpoint config's stage histograms, in [`Stage::ALL`] order.
    pub fn stages(&self, endpoint: &str) -> [Histogram; 4] {
        [Stage::Queue, Stage::Decode, Stage::Inference, Stage::Encode].map(|stage| {
            self.stage_duration
                .with_label_values(&[endpoint, stage.as_str()])
        })
    }

    /// An endpoint config's job counters, in [`Lane::ALL`] order.
    pub fn lanes(&self, endpoint: &str) -> [IntCounter; 2] {
        std::array::from_fn(|i| {
            self.jobs
                .with_label_values(&[endpoint, Lane::ALL[i].as_str()])
        })
    }

    /// Removes the per-request series of a deleted endpoint (`served` names its served entities).
    pub fn forget_endpoint(&self, endpoint: &str, served: &[String]) {
        let mut entities: Vec<&str> = served.iter().map(String::as_str).collect();
        entities.extend(["", MIXED_ARMS]);
        for entity in &entities {
            for protocol in Protocol::ALL {
                for class in StatusClass::ALL {
                    let l = [endpoint, entity, protocol.as_str(), class.as_str()];
                    let _ = self.requests.remove_label_values(&l);
                    let _ = self.request_duration.remove_label_values(&l);
                }
            }
        }
        for code in RequestError::CODES {
            let _ = self.request_errors.remove_label_values(&[endpoint, code]);
        }
        for stage in Stage::ALL {
            let _ = self
                .stage_duration
                .remove_label_values(&[endpoint, stage.as_str()]);
        }
        let _ = self.queue_rejections.remove_label_values(&[endpoint]);
        for lane in Lane::ALL {
            let _ = self.jobs.remove_label_values(&[endpoint, lane.as_str()]);
        }
    }

    /// Removes a served entity's own series when its last user goes.
    pub fn release_arm(&self, endpoint: &str, served_entity: &str) {
        if !self.arms.release(&[endpoint, served_entity]) {
            return;
        }
        for is_shadow in [false, true] {
            let l = [endpoint, served_entity, shadow(is_shadow)];
            let _ = self.rows.remove_label_values(&l);
            let _ = self.predicted_probability.remove_label_values(&l);
        }
        for outcome in ShadowOutcome::ALL {
            let _ = self.shadow_requests.remove_label_values(&[
                endpoint,
                served_entity,
                outcome.as_str(),
            ]);
        }
        let _ = self
            .route_fallbacks
            .remove_label_values(&[endpoint, served_entity]);
        let _ = self
            .shadow_duration
            .remove_label_values(&[endpoint, served_entity]);
        let _ = self
            .batch_requests
            .remove_label_values(&[endpoint, served_entity]);
    }
}

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
    /// The series of one served entity; pair with [`ServingMetrics::release_arm`] when it goes.
    pub fn new(m: &ServingMetrics, endpoint: &str, served_entity: &str) -> Self {
        m.arms.acquire(&[endpoint, served_entity]);
        let l = [endpoint, served_entity];
        let of = |is_shadow: bool| [endpoint, served_entity, shadow(is_shadow)];
        let shadow_outcome = |outcome: ShadowOutcome| {
            m.shadow_requests
                .with_label_values(&[endpoint, served_entity, outcome.as_str()])
        };
        Self {
            rows: m.rows.with_label_values(&of(false)),
            shadow_rows: m.rows.with_label_values(&of(true)),
            probability: m.predicted_probability.with_label_values(&of(false)),
            shadow_probability: m.predicted_probability.with_label_values(&of(true)),
            fallbacks: m.route_fallbacks.with_label_values(&l),
            shadow_succeeded: shadow_outcome(ShadowOutcome::Success),
            shadow_failed: shadow_outcome(ShadowOutcome::Error),
            shadow_dropped: shadow_outcome(ShadowOutcome::Dropped),
            shadow_duration: m.shadow_duration.with_label_values(&l),
        }
    }
}
