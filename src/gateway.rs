//! The core of the request path: one call per prediction request, whatever the protocol.
//!
//! `invoke` finds the endpoint, loads its config (generation) once, and runs decode -> route ->
//! bind -> infer -> encode as one job on the inference pool (so no CPU-heavy work runs on the
//! HTTP workers), queues shadow copies, then records metrics. Handlers only map HTTP to an [`Invocation`] and the answer back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::HeaderMap;
use bytes::Bytes;

use crate::inference_log::{CallRecord, Capture, InferenceLog, Inputs, RequestId, ScoredRows};

use crate::drift::monitor::{MonitorPlan, Scorer};
use crate::drift::MonitorConfig;
use crate::endpoint::config::BatchRouting;
use crate::endpoint::directory::Endpoints;
use crate::endpoint::{Endpoint, Generation, ServedEntity};
use crate::engine::outputs::check_rows;
use crate::engine::pool::{InferencePool, SubmitError};
use crate::engine::NamedTensor;
use crate::error::RequestError;
use crate::metrics::{status_class, ArmMetrics, Metrics, MIXED_ARMS, UNKNOWN_ENDPOINT};
use crate::protocol::frame::Frame;
use crate::protocol::{mlflow, v2};

/// The wire format of a request body.
#[derive(Debug, Clone)]
pub enum Format {
    MlflowJson,
    MlflowCsv,
    /// V2 `infer`; `version` when the path names one.
    V2 {
        version: Option<String>,
    },
}

impl Format {
    fn protocol(&self) -> &'static str {
        match self {
            Self::MlflowJson | Self::MlflowCsv => "mlflow",
            Self::V2 { .. } => "v2",
        }
    }
}

pub struct Invocation<'a> {
    pub endpoint: String,
    pub format: Format,
    pub body: Bytes,
    pub received: Instant,
    /// The request's headers, for the routing-key header.
    pub headers: Option<&'a HeaderMap>,
    /// A served entity named by the path (`/served-models/{name}/invocations`): no routing.
    pub pin: Option<String>,
    /// The request's id (`x-request-id`; `databricks_request_id` in the inference table).
    pub request_id: RequestId,
    /// Who sent it: the bearer token's name, else the client address (rate limits per user,
    /// the inference table's `requester`).
    pub requester: Option<Arc<str>>,
}

/// Bounds on the scoring requests a gateway takes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests in flight at once; beyond it 429.
    pub max_in_flight: usize,
    /// A request's deadline from its arrival; beyond it 504.
    pub timeout: Option<std::time::Duration>,
    /// Bounds on what one request may hold, checked while decoding.
    pub decode: crate::protocol::limits::DecodeLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_in_flight: usize::MAX,
            timeout: None,
            decode: Default::default(),
        }
    }
}

/// One request in flight, counted until it is dropped.
struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A successful answer: the encoded body and who served it.
pub struct Answer {
    pub body: Bytes,
    pub served: ServedBy,
}

/// A failed request, with the served entity when it was known.
#[derive(Debug)]
pub struct Failure {
    pub error: RequestError,
    pub served_name: Option<Arc<str>>,
}

impl Failure {
    fn by(name: &Arc<str>) -> impl Fn(RequestError) -> Failure + Copy + '_ {
        move |error| Failure {
            error,
            served_name: Some(name.clone()),
        }
    }
}

impl From<RequestError> for Failure {
    fn from(error: RequestError) -> Self {
        Self {
            error,
            served_name: None,
        }
    }
}

pub use crate::inference_log::record::Timings;

/// Who scored a request: one served entity (its name and the version it served), or several
/// when a batch was split across arms. Names are shared, not copied, per request.
#[derive(Clone)]
pub enum ServedBy {
    One(Arc<str>, Arc<ServedEntity>),
    Mixed(Vec<(Arc<str>, Arc<ServedEntity>)>),
}

impl ServedBy {
    /// The `served_entity` label of the request's metrics.
    pub fn label(&self) -> &str {
        match self {
            Self::One(name, _) => name,
            Self::Mixed(_) => MIXED_ARMS,
        }
    }

    /// `served-model-name`: the served entity, or the arms joined by `, `.
    pub fn names(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Self::One(name, _) => std::borrow::Cow::Borrowed(name),
            Self::Mixed(list) => list
                .iter()
                .map(|(n, _)| &**n)
                .collect::<Vec<_>>()
                .join(", ")
                .into(),
        }
    }

    /// `served_entity_id` of the inference table: the served entity, or the arms joined by `, `.
    pub fn id(&self) -> Arc<str> {
        match self {
            Self::One(name, _) => name.clone(),
            Self::Mixed(_) => Arc::from(&*self.names()),
        }
    }

    /// `served-model-version`: the model version each of them served.
    pub fn versions(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Self::One(_, e) => std::borrow::Cow::Borrowed(&e.version),
            Self::Mixed(list) => list
                .iter()
                .map(|(_, e)| e.version.as_str())
                .collect::<Vec<_>>()
                .join(", ")
                .into(),
        }
    }
}

/// A scored request, from the pool worker.
pub struct Scored {
    pub body: Vec<u8>,
    pub timings: Timings,
    pub served: ServedBy,
    /// The decoded request, when shadow routes still have to get their copies ([`mirror`]).
    pub shadow: Option<Arc<Frame>>,
    /// What the inference log keeps of the scored rows (when the request is logged).
    pub logged: Vec<ScoredRows>,
    /// The caller's own id of the request (`client_request_id`, V2 `id`), when logged.
    pub client_request_id: Option<String>,
}

/// A request that the inference log keeps: where, and under which id and time.
#[derive(Clone)]
pub struct LogPlan {
    pub log: Arc<InferenceLog>,
    pub capture: Arc<Capture>,
    pub request_id: Arc<str>,
    /// Arrival, microseconds since the Unix epoch.
    pub time_us: i64,
}

impl LogPlan {
    /// The payload row of this request, answered with `status_code` and `response`.
    fn call(
        &self,
        status_code: u16,
        request: Option<Bytes>,
        response: Bytes,
        requester: Option<&str>,
    ) -> CallRecord {
        CallRecord {
            request_id: self.request_id.clone(),
            client_request_id: None,
            time_us: self.time_us,
            status_code,
            execution_ms: None,
            request,
            response: Some(response),
            served_entity: None,
            logging_error_codes: Vec::new(),
            requester: requester.map(str::to_owned),
        }
    }

    /// The prediction rows of this request that `served_entity` scored.
    fn rows(
        &self,
        served_entity: &Arc<str>,
        entity: Arc<ServedEntity>,
        inputs: Inputs,
        outputs: Vec<NamedTensor>,
    ) -> ScoredRows {
        ScoredRows {
            request_id: self.request_id.clone(),
            time_us: self.time_us,
            served_entity: served_entity.clone(),
            entity,
            shadow: false,
            inputs,
            outputs,
            request_rows: None,
            stages: None,
            shadow_ms: None,
        }
    }
}

/// Everything one request's job needs, loaded once when it starts.
pub struct Plan {
    pub generation: Arc<Generation>,
    /// A served entity named by the request's path; no routing.
    pub pinned: Option<usize>,
    /// The routing-key header's value.
    pub header_key: Option<Vec<u8>>,
    pub format: Format,
    /// Bounds on what the request may hold (`max_rows` included).
    pub limits: crate::protocol::limits::DecodeLimits,
    /// When the caller stops waiting: a job started after it is not run, and a long one
    /// stops between stages (each counted in `limit_refusals_total{limit="deadline"}`).
    /// The deadline, and the timeout it came from (named in the refusal).
    pub deadline: Option<(Instant, std::time::Duration)>,
    pub abandoned: prometheus::IntCounter,
    /// Where shadow copies run.
    pub pool: Arc<InferencePool>,
    /// Set when this request is logged to the endpoint's inference tables.
    pub log: Option<LogPlan>,
    /// Set when monitoring is on.
    pub monitor: Option<MonitorPlan>,
}

pub struct Gateway {
    endpoints: Arc<Endpoints>,
    pool: Arc<InferencePool>,
    metrics: Arc<Metrics>,
    log: Arc<InferenceLog>,
    monitoring: Option<Arc<MonitorConfig>>,
    /// `limits.decode.max_rows` is `inference.max_batch_rows`.
    limits: Limits,
    /// `limit_refusals_total{limit="deadline"}`, looked up once.
    deadline_refusals: prometheus::IntCounter,
    in_flight: std::sync::atomic::AtomicUsize,
    /// The pool's skipped-job count already added to `limit_refusals_total{limit="deadline"}`.
    pool_abandoned_seen: std::sync::atomic::AtomicU64,
    scrape: std::sync::Mutex<()>,
    shutting_down: AtomicBool,
}

impl Gateway {
    pub fn new(
        endpoints: Arc<Endpoints>,
        pool: Arc<InferencePool>,
        metrics: Arc<Metrics>,
        log: Arc<InferenceLog>,
        monitoring: Option<Arc<MonitorConfig>>,
        max_batch_rows: usize,
        limits: Limits,
    ) -> Self {
        let deadline_refusals = metrics
            .limit_refusals
            .with_label_values(&[crate::error::Limit::Deadline.name()]);
        Self {
            endpoints,
            pool,
            metrics,
            log,
            monitoring,
            deadline_refusals,
            limits: Limits {
                decode: crate::protocol::limits::DecodeLimits {
                    max_rows: max_batch_rows,
                    ..limits.decode
                },
                ..limits
            },
            in_flight: Default::default(),
            pool_abandoned_seen: Default::default(),
            scrape: Default::default(),
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn inference_log(&self) -> &Arc<InferenceLog> {
        &self.log
    }

    /// Monitoring's settings; none when it is off.
    pub fn monitoring(&self) -> Option<&Arc<MonitorConfig>> {
        self.monitoring.as_ref()
    }

    /// The inference-table capture of an endpoint config, when it logs.
    pub fn capture(&self, generation: &Generation) -> Option<Arc<Capture>> {
        generation
            .capture
            .get_or_init(|| {
                let settings = &generation.settings;
                let config = settings.auto_capture_config.as_ref()?;
                self.log.capture(&settings.name, config).map(Arc::new)
            })
            .clone()
    }

    /// The log plan of a request to `generation`, when its endpoint logs and samples it.
    fn log_plan(
        &self,
        generation: &Generation,
        id: &RequestId,
        received: Instant,
    ) -> Option<LogPlan> {
        let capture = self.capture(generation)?;
        if !capture.samples(id) {
            return None;
        }
        Some(LogPlan {
            log: self.log.clone(),
            capture,
            request_id: id.text.clone(),
            time_us: arrival_us(received),
        })
    }

    pub fn endpoint(&self, name: &str) -> Option<Arc<Endpoint>> {
        self.endpoints.get(name)
    }

    /// Endpoints sorted by name.
    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.endpoints.list()
    }

    /// The only endpoint, when exactly one exists (for `/invocations`).
    pub fn sole_endpoint(&self) -> Option<Arc<Endpoint>> {
        self.endpoints.sole()
    }

    /// Ready: not shutting down, and every endpoint of the config file can answer. Endpoints
    /// created through the control plane report their own state and do not hold the server.
    pub fn is_ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Acquire)
            && self
                .endpoints
                .list()
                .iter()
                .all(|e| !e.from_config_file || e.is_ready())
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Serves one prediction request and records its metrics.
    pub async fn invoke(&self, inv: Invocation<'_>) -> Result<Answer, Failure> {
        let protocol = inv.format.protocol();
        let endpoint_label = if self.endpoints.contains(&inv.endpoint) {
            inv.endpoint.as_str()
        } else {
            UNKNOWN_ENDPOINT
        };
        let (scored, log_plan) = self.serve(&inv).await;
        let result = match scored {
            Ok(s) => {
                let body = Bytes::from(s.body);
                if let Some(plan) = log_plan {
                    let requester = inv.requester.as_deref();
                    let mut call = plan.call(200, Some(inv.body.clone()), body.clone(), requester);
                    call.client_request_id = s.client_request_id;
                    call.execution_ms = Some((s.timings.inference * 1000.0).round() as i64);
                    call.served_entity = Some(s.served.id());
                    plan.log.log_call(plan.capture, call, s.logged);
                }
                Ok(Answer {
                    body,
                    served: s.served,
                })
            }
            Err(f) => {
                if let Some(plan) = log_plan {
                    let body = Bytes::from(f.error.body(protocol));
                    let status = f.error.status().as_u16();
                    let requester = inv.requester.as_deref();
                    let mut call = plan.call(status, Some(inv.body.clone()), body, requester);
                    call.served_entity = f.served_name.clone();
                    plan.log.log_call(plan.capture, call, Vec::new());
                }
                Err(f)
            }
        };
        let (status, entity_label) = match &result {
            Ok(a) => (200, a.served.label()),
            Err(f) => (
                f.error.status().as_u16(),
                f.served_name.as_deref().unwrap_or(""),
            ),
        };
        let class = status_class(status);
        let m = &self.metrics;
        m.requests
            .with_label_values(&[endpoint_label, entity_label, protocol, class])
            .inc();
        m.request_duration
            .with_label_values(&[endpoint_label, entity_label, protocol, class])
            .observe(inv.received.elapsed().as_secs_f64());
        if let Err(f) = &result {
            self.count_refusal(&f.error);
            m.request_errors
                .with_label_values(&[endpoint_label, f.error.code()])
                .inc();
            if matches!(f.error, RequestError::Overloaded(_)) {
                m.queue_rejections
                    .with_label_values(&[endpoint_label])
                    .inc();
            }
        }
        result
    }

    /// The endpoint of a V2 model name and the served entity of `version` (a served entity's
    /// name or the model version it serves), or of the endpoint's largest route.
    pub fn v2_target(
        &self,
        model: &str,
        version: Option<&str>,
    ) -> Result<(Arc<Generation>, Arc<ServedEntity>), RequestError> {
        let ep = self
            .endpoints
            .get(model)
            .ok_or_else(|| RequestError::NotFound(format!("model '{model}' does not exist")))?;
        let generation = ep.generation();
        let arm = match version {
            Some(v) => find_version(&generation, v)?,
            None => primary_arm(&generation)?,
        };
        let entity = ready_entity(&generation, arm)?;
        Ok((generation, entity))
    }

    /// Counts (and logs, when the endpoint logs) a request refused before it reached
    /// [`Gateway::invoke`] (content type, body size).
    pub fn record_rejected(
        &self,
        endpoint: &str,
        protocol: &str,
        error: &RequestError,
        received: Instant,
        request_id: &RequestId,
    ) {
        if let Some(plan) = self
            .endpoints
            .get(endpoint)
            .and_then(|e| self.log_plan(&e.generation(), request_id, received))
        {
            // The body was not read: logged as null.
            let body = Bytes::from(error.body(protocol));
            let mut call = plan.call(error.status().as_u16(), None, body, None);
            if error.exceeded() == Some(crate::error::Limit::BodyBytes) {
                call.logging_error_codes
                    .push(crate::inference_log::record::MAX_REQUEST_SIZE_EXCEEDED);
            }
            plan.log.log_call(plan.capture, call, Vec::new());
        }
        let label = if self.endpoints.contains(endpoint) {
            endpoint
        } else {
            UNKNOWN_ENDPOINT
        };
        let class = status_class(error.status().as_u16());
        let m = &self.metrics;
        m.requests
            .with_label_values(&[label, "", protocol, class])
            .inc();
        m.request_duration
            .with_label_values(&[label, "", protocol, class])
            .observe(received.elapsed().as_secs_f64());
        m.request_errors
            .with_label_values(&[label, error.code()])
            .inc();
        // Bounds met while reading the body were counted there (`read_limited`).
    }

    /// Counts a refusal at a bound in `modelgate_limit_refusals_total`.
    pub fn count_refusal(&self, error: &RequestError) {
        // Deadline refusals are counted where the job stops (and where the pool skips it).
        if let Some(limit) = error
            .exceeded()
            .filter(|l| *l != crate::error::Limit::Deadline)
        {
            self.metrics
                .limit_refusals
                .with_label_values(&[limit.name()])
                .inc();
        }
    }

    /// The Prometheus exposition, with gauges sampled now.
    pub fn render_metrics(&self) -> Vec<u8> {
        let (bytes, records) = self.log.depth();
        self.metrics.log_queue_bytes.set(bytes as i64);
        self.metrics.log_queue_records.set(records as i64);
        self.metrics
            .inference_queue_depth
            .set(self.pool.queued() as i64);
        // Jobs the pool skipped since the last scrape: their callers' deadlines had passed
        // (or they hung up) before a worker took them.
        let skipped = self.pool.abandoned();
        let seen = self.pool_abandoned_seen.swap(skipped, Ordering::AcqRel);
        self.deadline_refusals.inc_by(skipped.saturating_sub(seen));
        self.metrics
            .loaded_versions
            .set(crate::endpoint::live_versions() as i64);
        let reports: Vec<_> = match self.monitoring {
            None => Vec::new(),
            Some(_) => self
                .endpoints()
                .into_iter()
                .map(|e| (self.monitoring_reports(&e), e))
                .collect(),
        };
        // The monitoring gauges are cleared and set again: one scrape at a time, so another
        // never renders them half set.
        let _one_scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        if self.monitoring.is_some() {
            let m = &self.metrics.monitoring;
            m.clear();
            for (entities, endpoint) in &reports {
                for report in entities {
                    m.publish(&endpoint.name, report);
                }
                m.publish_pending(&endpoint.name, &endpoint.pending_labels);
            }
        }
        self.metrics.render()
    }

    /// The drift and quality report of each served entity of `endpoint` that has been
    /// monitored (closing the windows that ended).
    pub fn monitoring_reports(
        &self,
        endpoint: &Endpoint,
    ) -> Vec<crate::drift::report::EntityReport> {
        let now = crate::drift::monitor::now_ms();
        endpoint
            .generation()
            .slots
            .iter()
            .filter_map(|s| {
                let config = self.monitoring.as_ref()?;
                let mut report =
                    crate::drift::monitor::slot_monitor(s, config).report(&s.name, now);
                if report.model.is_none() {
                    // Nothing scored yet: show what the slot serves.
                    let served = s.served();
                    report.model = served.as_ref().map(|e| e.model.clone());
                    report.version = served.as_ref().map(|e| e.version.clone());
                    report.baseline = served.is_some_and(|e| e.profile.is_some());
                }
                Some(report)
            })
            .collect()
    }

    /// Joins posted labels to the predictions waiting for them; counted by outcome.
    pub fn join_labels(
        &self,
        endpoint: &Endpoint,
        labels: &[crate::inference_log::LabelRecord],
    ) -> Option<crate::drift::monitor::LabelOutcomes> {
        let config = self.monitoring.as_ref()?;
        let out = endpoint.pending_labels.join(&config.labels, labels);
        let counter = &self.metrics.monitoring.labels;
        for (outcome, n) in [
            ("joined", out.joined),
            ("unmatched", out.unmatched),
            ("duplicate", out.duplicate),
            ("invalid", out.invalid),
        ] {
            if n > 0 {
                counter
                    .with_label_values(&[&endpoint.name, outcome])
                    .inc_by(n);
            }
        }
        Some(out)
    }

    /// Serves a request; with the log plan when it is to be logged.
    async fn serve(&self, inv: &Invocation<'_>) -> (Result<Scored, Failure>, Option<LogPlan>) {
        let Some(endpoint) = self.endpoints.get(&inv.endpoint) else {
            let error =
                RequestError::NotFound(format!("endpoint '{}' does not exist", inv.endpoint));
            return (Err(error.into()), None);
        };
        let generation = endpoint.generation();
        let log_plan = self.log_plan(&generation, &inv.request_id, inv.received);
        let _counted = match self.admit(inv, &endpoint.name, &generation) {
            Ok(c) => c,
            Err(e) => return (Err(e.into()), log_plan),
        };
        let work = self.serve_endpoint(inv, &endpoint, generation, log_plan.clone());
        let result = match self.limits.timeout {
            None => work.await,
            Some(limit) => {
                let left = limit.saturating_sub(inv.received.elapsed());
                match tokio::time::timeout(left, work).await {
                    Ok(r) => r,
                    Err(_) => Err(RequestError::DeadlineExceeded(format!(
                        "the request did not finish within its deadline of {} ms (server.request_timeout_ms)",
                        limit.as_millis()
                    ))
                    .into()),
                }
            }
        };
        (result, log_plan)
    }

    /// Takes a request in: within the bound on requests in flight and the endpoint's rate
    /// limits, or refused with when to retry.
    fn admit(
        &self,
        inv: &Invocation<'_>,
        endpoint: &str,
        generation: &Generation,
    ) -> Result<InFlight<'_>, RequestError> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let counted = InFlight(&self.in_flight);
        if before >= self.limits.max_in_flight {
            return Err(RequestError::TooManyRequests {
                message: format!(
                    "the gateway is at its limit of {} requests in flight (server.max_concurrent_requests): retry later",
                    self.limits.max_in_flight
                ),
                retry_after_s: 1,
            });
        }
        if let Some(limiter) = &generation.rate_limiter {
            let who = inv.requester.as_deref().unwrap_or("");
            let now = crate::clock::now_ms();
            if let Err((calls, wait)) = limiter.check(who, now) {
                return Err(RequestError::TooManyRequests {
                    message: format!(
                        "endpoint '{endpoint}' is over its rate limit of {calls} calls per minute: retry in {wait} s"
                    ),
                    retry_after_s: wait,
                });
            }
        }
        Ok(counted)
    }

    async fn serve_endpoint(
        &self,
        inv: &Invocation<'_>,
        endpoint: &Endpoint,
        generation: Arc<Generation>,
        log: Option<LogPlan>,
    ) -> Result<Scored, Failure> {
        let no_arm = Failure::from;
        let pinned = match (&inv.pin, &inv.format) {
            (Some(name), _) => Some(generation.slot(name).map(|(i, _)| i).ok_or_else(|| {
                no_arm(RequestError::NotFound(format!(
                    "endpoint '{}' has no served entity '{name}' (served entities: {})",
                    endpoint.name,
                    names(&generation)
                )))
            })?),
            (None, Format::V2 { version: Some(v) }) => {
                Some(find_version(&generation, v).map_err(no_arm)?)
            }
            _ => None,
        };
        let header_key = match (pinned, inv.headers) {
            (None, Some(h)) => h.get(&generation.key_header).map(|v| v.as_bytes().to_vec()),
            _ => None,
        };
        let plan = Plan {
            generation: generation.clone(),
            pinned,
            header_key,
            format: inv.format.clone(),
            limits: self.limits.decode,
            deadline: self.limits.timeout.map(|t| (inv.received + t, t)),
            abandoned: self.deadline_refusals.clone(),
            pool: self.pool.clone(),
            log,
            monitor: self.monitoring.as_ref().map(|config| MonitorPlan {
                config: config.clone(),
                pending: endpoint.pending_labels.clone(),
                request_id: inv.request_id.text.clone(),
            }),
        };
        let body = inv.body.clone();
        let submitted = Instant::now();
        let outcome = self
            .pool
            .run_then(move |worker| {
                let mut scored = score(&plan, worker, &body, submitted);
                // Copies for the shadows are queued after the answer is on its way.
                let frame = scored.as_mut().ok().and_then(|s| s.shadow.take());
                (scored, frame.map(|f| move || mirror(&plan, f)))
            })
            .await;
        let error = match outcome {
            Ok(Ok(done)) => {
                let [queue, decode, inference, encode] = &generation.stages;
                let t = &done.timings;
                queue.observe(t.queued);
                decode.observe(t.decode);
                inference.observe(t.inference);
                encode.observe(t.encode);
                return Ok(done);
            }
            Ok(Err(failure)) => return Err(failure),
            Err(SubmitError::Full(n)) => RequestError::Overloaded(format!(
                "the inference queue is full ({n} requests waiting): retry later"
            )),
            Err(SubmitError::Panicked(message) | SubmitError::Failed(message)) => {
                tracing::error!(endpoint = %endpoint.name, "inference panicked: {message}");
                RequestError::Internal(format!("inference failed unexpectedly: {message}"))
            }
            Err(SubmitError::Closed) => {
                RequestError::Unavailable("the server is shutting down".into())
            }
        };
        Err(no_arm(error))
    }
}

fn names(generation: &Generation) -> String {
    generation
        .slots
        .iter()
        .map(|s| &*s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The served entity named `v`, or else the one serving model version `v`.
fn find_version(generation: &Generation, v: &str) -> Result<usize, RequestError> {
    generation
        .slot(v)
        .map(|(i, _)| i)
        .or_else(|| {
            generation
                .slots
                .iter()
                .position(|s| s.served().is_some_and(|e| e.version == v))
        })
        .ok_or_else(|| {
            RequestError::NotFound(format!(
                "model '{}' version '{v}' is not served (served entities: {})",
                generation.settings.name,
                generation
                    .slots
                    .iter()
                    .map(|s| match s.served() {
                        Some(e) => format!("{} (version {})", s.name, e.version),
                        None => format!("{} (not loaded)", s.name),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// The ready split arm with the largest share.
fn primary_arm(generation: &Generation) -> Result<usize, RequestError> {
    generation
        .router
        .split_arms
        .iter()
        .copied()
        .find(|&a| generation.slots[a].is_ready())
        .ok_or_else(|| not_ready(generation))
}

fn not_ready(generation: &Generation) -> RequestError {
    RequestError::Unavailable(format!(
        "endpoint '{}' has no served entity with a loaded model yet",
        generation.settings.name
    ))
}

fn ready_entity(generation: &Generation, arm: usize) -> Result<Arc<ServedEntity>, RequestError> {
    let slot = &generation.slots[arm];
    slot.served().ok_or_else(|| {
        RequestError::Unavailable(format!(
            "served entity '{}' of endpoint '{}' has no loaded model",
            slot.name, generation.settings.name
        ))
    })
}

/// The served entity of a routed arm, or of the next ready arm when it has none (counted).
fn routed_entity(
    generation: &Generation,
    arm: usize,
) -> Result<(usize, Arc<ServedEntity>), RequestError> {
    if let Some(e) = generation.slots[arm].served() {
        return Ok((arm, e));
    }
    generation.slots[arm].metrics.fallbacks.inc();
    let other = primary_arm(generation)?;
    Ok((other, ready_entity(generation, other)?))
}

/// Which arm answers each row.
enum Assignment {
    Whole(usize),
    /// Arm per row.
    Rows(Vec<usize>),
}

fn assign(plan: &Plan, frame: &Frame) -> Assignment {
    let generation = &plan.generation;
    let router = &generation.router;
    if let Some(arm) = plan.pinned {
        return Assignment::Whole(arm);
    }
    if let Some(key) = &plan.header_key {
        return Assignment::Whole(router.by_key(key));
    }
    let routing = &generation.settings.routing;
    // A key column without values (a `[N, 0]` tensor) carries no key.
    let Some(column) = routing
        .key_column
        .as_deref()
        .and_then(|name| frame.column(name))
        .filter(|c| c.row_width() > 0)
    else {
        return Assignment::Whole(router.random());
    };
    let mut key = String::new();
    let rows = frame.rows();
    let whole = rows == 1
        || routing.batch == BatchRouting::FirstKey
        || matches!(plan.format, Format::V2 { .. });
    column.key_text(0, &mut key);
    let first = router.by_key(key.as_bytes());
    if whole {
        return Assignment::Whole(first);
    }
    let mut arms = Vec::with_capacity(rows);
    arms.push(first);
    for r in 1..rows {
        column.key_text(r, &mut key);
        arms.push(router.by_key(key.as_bytes()));
    }
    if arms.iter().all(|&a| a == first) {
        Assignment::Whole(first)
    } else {
        Assignment::Rows(arms)
    }
}

/// The per-request work that runs on a pool worker: decode, validate, route, bind, infer,
/// encode, and queue shadow copies. Public so the benchmarks measure what the server runs.
pub fn score(
    plan: &Plan,
    worker: usize,
    body: &[u8],
    submitted: Instant,
) -> Result<Scored, Failure> {
    let t0 = Instant::now();
    let queued = (t0 - submitted).as_secs_f64();
    let no_arm = Failure::from;
    let logging = plan.log.is_some();
    let monitoring = plan.monitor.is_some();
    check_deadline(plan, "before it started").map_err(no_arm)?;
    let (frame, v2_req, echo, client_request_id) = match &plan.format {
        Format::MlflowJson => {
            let req = mlflow::decode_json_limited(body, &plan.limits).map_err(no_arm)?;
            // `params: {"return_features": true}` echoes the joined features (debugging).
            let echo = req
                .params
                .as_ref()
                .and_then(|p| p.get("return_features"))
                .and_then(serde_json::Value::as_bool)
                == Some(true);
            (req.frame, None, echo, req.client_request_id)
        }
        Format::MlflowCsv => (
            mlflow::decode_csv_limited(body, &plan.limits)
                .map_err(no_arm)?
                .frame,
            None,
            false,
            None,
        ),
        Format::V2 { .. } => {
            let mut req = v2::decode_limited(body, &plan.limits).map_err(no_arm)?;
            let frame = std::mem::take(&mut req.frame);
            let id = if logging { req.id.clone() } else { None };
            (frame, Some(req), false, id)
        }
    };
    frame.validate(plan.limits.max_rows).map_err(no_arm)?;
    check_deadline(plan, "after decoding").map_err(no_arm)?;
    // Shared with the shadow jobs and the inference log without a copy.
    let frame = Arc::new(frame);
    let rows = frame.rows();
    let generation = &plan.generation;
    let ignore = generation.settings.routing.key_column.as_deref();
    let t1 = Instant::now();
    let mut buf = Vec::with_capacity(64 + rows * 48);
    let mut logged: Vec<ScoredRows> = Vec::new();
    let (served, t2) = match assign(plan, &frame) {
        Assignment::Whole(arm) => {
            let (arm, entity) = if plan.pinned.is_some() {
                (arm, ready_entity(generation, arm).map_err(no_arm)?)
            } else {
                routed_entity(generation, arm).map_err(no_arm)?
            };
            let name = &generation.slots[arm].name;
            let failed = Failure::by(name);
            if let Some(req) = &v2_req {
                check_requested_outputs(req, &entity).map_err(failed)?;
            }
            let (outputs, joined) = entity
                .infer_joined(worker, &frame, ignore, echo || logging || monitoring)
                .map_err(failed)?;
            // Encoders index outputs by row: a model whose outputs are not one row per input
            // row is refused here, not by a panic.
            check_rows(&outputs, rows).map_err(|m| failed(RequestError::Internal(m)))?;
            check_deadline(plan, "after inference").map_err(failed)?;
            let t2 = Instant::now();
            if let Some(m) = &plan.monitor {
                let (model_frame, defaulted) = match &joined {
                    Some(j) => (&j.frame, j.defaulted.as_slice()),
                    None => (&*frame, &[][..]),
                };
                let slot = &generation.slots[arm];
                if let Some(scorer) =
                    m.observe(slot, &entity, model_frame, defaulted, &outputs, None)
                {
                    m.expect(frame.clone(), &entity, vec![scorer]);
                }
            }
            record_rows(
                &generation.slots[arm].metrics,
                &entity,
                &outputs,
                rows,
                false,
            );
            match &v2_req {
                None => {
                    buf.extend_from_slice(b"{\"predictions\":");
                    entity.outputs.write_predictions(&outputs, rows, &mut buf);
                    if let (true, Some(joined)) = (echo, &joined) {
                        buf.extend_from_slice(b",\"features\":");
                        crate::features::join::write_records(&joined.env, rows, &mut buf);
                    }
                    buf.push(b'}');
                }
                Some(req) => v2::write_response(
                    &generation.settings.name,
                    &entity.version,
                    req.id.as_deref(),
                    &outputs,
                    req.outputs.as_deref(),
                    &mut buf,
                )
                .map_err(failed)?,
            }
            if let Some(log) = &plan.log {
                let inputs = match joined {
                    Some(j) => Inputs::Joined(j.env),
                    None => Inputs::Frame(frame.clone()),
                };
                logged.push(log.rows(name, entity.clone(), inputs, outputs));
            }
            (ServedBy::One(name.clone(), entity), t2)
        }
        Assignment::Rows(per_row) => {
            let log = plan.log.as_ref().map(|l| (l, &mut logged));
            let monitor = plan.monitor.as_ref().map(|m| (m, &frame));
            score_split(
                generation, worker, &frame, &per_row, ignore, log, monitor, &mut buf,
            )?
        }
    };
    plan.limits.response(buf.len()).map_err(no_arm)?;
    let t3 = Instant::now();
    let timings = Timings {
        queued,
        decode: (t1 - t0).as_secs_f64(),
        inference: (t2 - t1).as_secs_f64(),
        encode: (t3 - t2).as_secs_f64(),
        rows,
    };
    for s in &mut logged {
        s.stages = Some(timings);
    }
    Ok(Scored {
        shadow: (!generation.router.shadows.is_empty()).then_some(frame),
        body: buf,
        timings,
        served,
        logged,
        client_request_id,
    })
}

/// The V2 outputs asked for are the model's, checked before inference (so a list of made-up
/// names costs no inference).
fn check_requested_outputs(
    req: &v2::InferRequest,
    entity: &ServedEntity,
) -> Result<(), RequestError> {
    let Some(names) = &req.outputs else {
        return Ok(());
    };
    let known = entity.loaded.outputs();
    match names.iter().find(|n| !known.iter().any(|o| &o.name == *n)) {
        None => Ok(()),
        Some(unknown) => Err(RequestError::limit(
            crate::error::Limit::Outputs,
            format!(
                "unknown output '{unknown}' in 'outputs': the model outputs {}",
                known
                    .iter()
                    .map(|o| o.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// A job whose caller has gone (its deadline passed) does no more work.
fn check_deadline(plan: &Plan, when: &str) -> Result<(), RequestError> {
    match plan.deadline {
        Some((d, timeout)) if Instant::now() >= d => {
            plan.abandoned.inc();
            // The same words as the caller's own timer: whichever fires first answers.
            Err(RequestError::limit(
                crate::error::Limit::Deadline,
                format!(
                    "the request did not finish within its deadline of {} ms (server.request_timeout_ms): passed {when}, not run further",
                    timeout.as_millis()
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// Scores a batch whose rows go to different arms, one sub-batch per arm, and writes the
/// predictions back in the request's row order. With `log`, each arm's rows are kept for the
/// inference log.
#[allow(clippy::too_many_arguments)]
fn score_split(
    generation: &Generation,
    worker: usize,
    frame: &Frame,
    per_row: &[usize],
    ignore: Option<&str>,
    mut log: Option<(&LogPlan, &mut Vec<ScoredRows>)>,
    monitor: Option<(&MonitorPlan, &Arc<Frame>)>,
    buf: &mut Vec<u8>,
) -> Result<(ServedBy, Instant), Failure> {
    // Routed arms resolve to serving ones first (fallbacks), then rows group by the arm.
    let mut resolved: Vec<(usize, usize, Arc<ServedEntity>)> = Vec::new(); // (routed, serving, entity)
    let mut serving_of_row = Vec::with_capacity(per_row.len());
    for &arm in per_row {
        let serving = match resolved.iter().find(|(routed, _, _)| *routed == arm) {
            Some((_, s, _)) => *s,
            None => {
                let (s, e) = routed_entity(generation, arm).map_err(Failure::from)?;
                resolved.push((arm, s, e));
                s
            }
        };
        serving_of_row.push(serving);
    }
    let mut groups: Vec<(usize, Arc<ServedEntity>, Vec<usize>)> = Vec::new();
    for (row, &arm) in serving_of_row.iter().enumerate() {
        match groups.iter_mut().find(|(a, _, _)| *a == arm) {
            Some((_, _, rows)) => rows.push(row),
            None => {
                let entity = resolved
                    .iter()
                    .find(|(_, s, _)| *s == arm)
                    .map(|(_, _, e)| e.clone())
                    .expect("every serving arm was resolved");
                groups.push((arm, entity, vec![row]));
            }
        }
    }
    let mut outputs = Vec::with_capacity(groups.len());
    let mut parts = Vec::with_capacity(groups.len());
    let mut scorers: Vec<Scorer> = Vec::new();
    for (arm, entity, rows) in &groups {
        let failed = Failure::by(&generation.slots[*arm].name);
        let part = frame.take_rows(rows);
        let (out, joined) = entity
            .infer_joined(worker, &part, ignore, log.is_some() || monitor.is_some())
            .map_err(failed)?;
        check_rows(&out, rows.len()).map_err(|m| failed(RequestError::Internal(m)))?;
        if let Some((m, _)) = monitor {
            let (model_frame, defaulted) = match &joined {
                Some(j) => (&j.frame, j.defaulted.as_slice()),
                None => (&part, &[][..]),
            };
            let slot = &generation.slots[*arm];
            scorers.extend(m.observe(
                slot,
                entity,
                model_frame,
                defaulted,
                &out,
                Some(rows.clone()),
            ));
        }
        record_rows(
            &generation.slots[*arm].metrics,
            entity,
            &out,
            rows.len(),
            false,
        );
        outputs.push(out);
        parts.push(match joined {
            Some(j) => Inputs::Joined(j.env),
            None => Inputs::Frame(Arc::new(part)),
        });
    }
    let t2 = Instant::now();
    if let (Some((m, request)), Some((_, entity, _))) = (monitor, groups.first()) {
        m.expect(request.clone(), entity, scorers);
    }
    // Row r of the request is row `position` of its arm's sub-batch.
    let mut next = vec![0usize; groups.len()];
    buf.extend_from_slice(b"{\"predictions\":[");
    for (r, arm) in serving_of_row.iter().enumerate() {
        if r > 0 {
            buf.push(b',');
        }
        let g = groups.iter().position(|(a, _, _)| a == arm).unwrap_or(0);
        groups[g]
            .1
            .outputs
            .write_prediction(&outputs[g], next[g], buf);
        next[g] += 1;
    }
    buf.extend_from_slice(b"]}");
    let name = |a: usize| generation.slots[a].name.clone();
    let served = if groups.len() == 1 {
        ServedBy::One(name(groups[0].0), groups[0].1.clone())
    } else {
        ServedBy::Mixed(
            groups
                .iter()
                .map(|(a, e, _)| (name(*a), e.clone()))
                .collect(),
        )
    };
    if let Some((plan, logged)) = log.as_mut() {
        for (((arm, entity, rows), out), inputs) in groups.into_iter().zip(outputs).zip(parts) {
            let mut scored = plan.rows(&generation.slots[arm].name, entity, inputs, out);
            scored.request_rows = Some(rows);
            logged.push(scored);
        }
    }
    Ok((served, t2))
}

/// Counts an arm's scored rows and their predicted probabilities.
fn record_rows(
    m: &ArmMetrics,
    entity: &ServedEntity,
    outputs: &[NamedTensor],
    rows: usize,
    shadow: bool,
) {
    let (count, hist) = if shadow {
        (&m.shadow_rows, &m.shadow_probability)
    } else {
        (&m.rows, &m.probability)
    };
    count.inc_by(rows as u64);
    // One flush for the whole batch instead of an atomic add per row.
    let local = hist.local();
    entity
        .outputs
        .for_each_probability(outputs, rows, |p| local.observe(p));
    local.flush();
}

/// Queues a copy of the request for each shadow route that samples it; a full queue drops the
/// copy (counted). Runs after the caller has its answer. Logged requests log the shadows' rows.
pub fn mirror(plan: &Plan, frame: Arc<Frame>) {
    let generation = &plan.generation;
    for route in &generation.router.shadows {
        if route.percent < 100 && fastrand::u8(..100) >= route.percent {
            continue;
        }
        let slot = &generation.slots[route.arm];
        let Some(entity) = slot.served() else {
            slot.metrics.shadow_failed.inc();
            continue;
        };
        let frame = frame.clone();
        // The job keeps the config it was copied under (its slot and routing key column).
        let (job_generation, arm, log) = (generation.clone(), route.arm, plan.log.clone());
        let monitor = plan.monitor.clone();
        let queued = plan.pool.try_background(move |worker| {
            let started = Instant::now();
            let slot = &job_generation.slots[arm];
            let m = &slot.metrics;
            let ignore = job_generation.settings.routing.key_column.as_deref();
            let keep = log.is_some() || monitor.is_some();
            match entity.infer_joined(worker, &frame, ignore, keep) {
                Ok((outputs, joined)) if check_rows(&outputs, frame.rows()).is_ok() => {
                    let took = started.elapsed().as_secs_f64();
                    m.shadow_duration.observe(took);
                    m.shadow_succeeded.inc();
                    record_rows(m, &entity, &outputs, frame.rows(), true);
                    if let Some(monitor) = &monitor {
                        let (model_frame, defaulted) = match &joined {
                            Some(j) => (&j.frame, j.defaulted.as_slice()),
                            None => (&*frame, &[][..]),
                        };
                        if let Some(scorer) =
                            monitor.observe(slot, &entity, model_frame, defaulted, &outputs, None)
                        {
                            monitor.pending.add_scorer(&monitor.request_id, scorer);
                        }
                    }
                    if let Some(log) = log {
                        let inputs = match joined {
                            Some(j) => Inputs::Joined(j.env),
                            None => Inputs::Frame(frame),
                        };
                        let mut rows = log.rows(&slot.name, entity, inputs, outputs);
                        rows.shadow = true;
                        rows.shadow_ms = Some(took * 1000.0);
                        log.log.log_shadow(log.capture, rows);
                    }
                }
                Ok(_) | Err(_) => m.shadow_failed.inc(),
            }
        });
        if !queued {
            slot.metrics.shadow_dropped.inc();
        }
    }
}

/// Microseconds since the Unix epoch at `received`.
fn arrival_us(received: Instant) -> i64 {
    crate::clock::epoch_us_at(received)
}
