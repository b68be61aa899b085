//! The gateway: one call per prediction request, whatever the protocol. It finds the
//! endpoint, loads its config (generation) once, admits the request, and runs its job inline
//! or on the inference pool ([`super::lane`], [`super::job`]: one job, two around a lookup in
//! a remote store; by default small jobs on versions measured fast run on the HTTP workers),
//! then records the request's metrics and its inference-table row.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::drift::monitor::RequestMonitor;
use crate::drift::MonitorConfig;
use crate::endpoint::directory::Endpoints;
use crate::endpoint::{Endpoint, Generation, ServedEntity};
use crate::engine::pool::InferencePool;
use crate::error::{Limit, Protocol, RequestError};
use crate::inference_log::{Backlog, Capture, InferenceLog, RequestId};
use crate::metrics::{Metrics, UNKNOWN_ENDPOINT};

use super::admission::{within, Admission, Deadline, Limits};
use super::request::{Answer, Failure, Format, Invocation, Scored};
use super::score::Job;
use super::sinks::{LogTicket, Sinks};
use super::spans::{Ending, RequestSpan};
use crate::trace::Tracer;

/// Other replicas' monitoring profiles, by endpoint.
pub(super) type FleetProfiles = std::collections::HashMap<String, Arc<Vec<TheirProfile>>>;

/// Another replica's profile of one served entity, as last read from the fleet's store.
#[derive(Debug, Clone)]
pub(super) struct TheirProfile {
    pub served_entity: String,
    /// When that replica published it (its clock, milliseconds since the epoch).
    pub published_ms: u64,
    pub snapshot: crate::drift::monitor::MonitorSnapshot,
}

pub struct Gateway {
    pub(super) endpoints: Arc<Endpoints>,
    pub(super) pool: Arc<InferencePool>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) log: Arc<InferenceLog>,
    pub(super) monitoring: Option<Arc<MonitorConfig>>,
    /// `limits.decode.max_rows` is `inference.max_batch_rows`.
    limits: Limits,
    admission: Admission,
    /// `limit_refusals_total{limit="deadline"}`, looked up once.
    pub(super) deadline_refusals: prometheus::IntCounter,
    /// The pool's skipped-job count already added to `limit_refusals_total{limit="deadline"}`.
    pub(super) pool_abandoned_seen: std::sync::atomic::AtomicU64,
    pub(super) scrape: std::sync::Mutex<()>,
    shutting_down: AtomicBool,
    /// Where requests' spans go, when tracing is on.
    tracer: Option<Arc<Tracer>>,
    /// In a fleet: where labels no prediction here matched go (to the other replicas).
    pub(super) label_relay: Option<Arc<crate::fleet::labels::LabelRelay>>,
    /// In a fleet: where the replicas' monitoring profiles meet.
    pub(super) profiles: Option<Arc<crate::fleet::profiles::ProfileStore>>,
    /// The other replicas' profiles by endpoint, as the publishing thread last read them.
    pub(super) fleet_profiles: std::sync::Mutex<FleetProfiles>,
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
        let deadline_refusals = metrics.access.refusals(Limit::Deadline);
        Self {
            endpoints,
            pool,
            metrics,
            log,
            monitoring,
            deadline_refusals,
            admission: Admission::new(limits.max_in_flight),
            limits: Limits {
                decode: crate::protocol::limits::DecodeLimits {
                    max_rows: max_batch_rows,
                    ..limits.decode
                },
                ..limits
            },
            pool_abandoned_seen: Default::default(),
            scrape: Default::default(),
            shutting_down: AtomicBool::new(false),
            tracer: None,
            label_relay: None,
            profiles: None,
            fleet_profiles: Default::default(),
        }
    }

    /// Records requests' spans with `tracer` (`tracing.enabled`).
    pub fn with_tracer(mut self, tracer: Option<Arc<Tracer>>) -> Self {
        self.tracer = tracer;
        self
    }

    /// Adds the other replicas' monitoring profiles to this one's in reports.
    pub fn with_profiles(
        mut self,
        profiles: Option<Arc<crate::fleet::profiles::ProfileStore>>,
    ) -> Self {
        self.profiles = profiles;
        self
    }

    /// Relays labels no prediction here matched to the other replicas of a fleet.
    pub fn with_label_relay(
        mut self,
        relay: Option<Arc<crate::fleet::labels::LabelRelay>>,
    ) -> Self {
        self.label_relay = relay;
        self
    }

    pub fn tracer(&self) -> Option<&Arc<Tracer>> {
        self.tracer.as_ref()
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

    /// The log ticket of a request to `generation`, when its endpoint logs and samples it.
    fn log_ticket(
        &self,
        generation: &Generation,
        id: &RequestId,
        received: Instant,
    ) -> Option<LogTicket> {
        let capture = self.capture(generation)?;
        if !capture.samples(id) {
            return None;
        }
        Some(LogTicket {
            log: self.log.clone(),
            capture,
            request_id: id.text.clone(),
            sample_bits: id.bits,
            time_us: crate::clock::epoch_us_at(received),
        })
    }

    /// The bounds on decoding a request (`limits.*`).
    pub fn decode_limits(&self) -> &crate::protocol::limits::DecodeLimits {
        &self.limits.decode
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

    /// Serves one prediction request and records its metrics and its inference-table row.
    pub async fn invoke(&self, inv: Invocation<'_>) -> Result<Answer, Failure> {
        let protocol = inv.format.protocol();
        let span = RequestSpan::of(self.tracer.as_deref(), &inv);
        let (scored, log_ticket) = self.serve(&inv, span.is_some()).await;
        let requester = inv.requester.as_deref();
        let mut marks = Vec::new();
        let mut logging = None;
        let mut rows = None;
        let result = match scored {
            Ok(mut s) => {
                marks = std::mem::take(&mut s.marks);
                rows = Some(s.timings.rows);
                let body = Bytes::from(s.body);
                let logged = match log_ticket {
                    Some(ticket) => {
                        // Of a call with raw tensors, the JSON parts: the tensors are in the
                        // predictions table's columns.
                        let request = inv.logged_body();
                        let response = body.slice(..s.json_len.unwrap_or(body.len()));
                        let mut call = ticket.call(200, Some(request), response, requester);
                        call.client_request_id = s.client_request_id;
                        call.execution_ms = Some((s.timings.inference * 1000.0).round() as i64);
                        call.served_entity = Some(s.served.id());
                        let enqueued = span.as_ref().map(|_| Instant::now());
                        let logged = ticket.log(call, s.logged);
                        logging = enqueued.map(|start| (start, Instant::now()));
                        logged
                    }
                    None => Ok(()),
                };
                match logged {
                    Ok(()) => Ok(Answer {
                        body,
                        json_len: s.json_len,
                        served: s.served,
                    }),
                    // The endpoint answers only what it logs: this answer is not sent.
                    Err(_) => Err(Failure {
                        error: log_refusal(&inv.endpoint, self.log.backlog()),
                        served_name: Some(s.served.label().into()),
                    }),
                }
            }
            Err(f) => {
                if let Some(ticket) = log_ticket {
                    let body = Bytes::from(f.error.body(protocol));
                    let status = f.error.status().as_u16();
                    let mut call = ticket.call(status, Some(inv.logged_body()), body, requester);
                    call.served_entity = f.served_name.clone();
                    ticket.log_answered(call, Vec::new());
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
        let endpoint = self.endpoint_label(&inv.endpoint);
        self.count_request(endpoint, entity_label, protocol, status, inv.received);
        if let Err(f) = &result {
            self.count_error(endpoint, &f.error);
        }
        if let (Some(tracer), Some(span)) = (&self.tracer, span) {
            let ending = Ending {
                status,
                served: Some(entity_label).filter(|e| !e.is_empty()),
                error: result.as_ref().err().map(|f| &f.error),
                rows,
                logged: logging,
            };
            super::spans::record(tracer, span, &inv, marks, ending);
        }
        result
    }

    /// The endpoint's name as a metric label: bounded, so an unknown name is one value.
    fn endpoint_label<'a>(&self, endpoint: &'a str) -> &'a str {
        if self.endpoints.contains(endpoint) {
            endpoint
        } else {
            UNKNOWN_ENDPOINT
        }
    }

    fn count_request(
        &self,
        endpoint: &str,
        entity: &str,
        protocol: Protocol,
        status: u16,
        received: Instant,
    ) {
        let seconds = received.elapsed().as_secs_f64();
        (self.metrics.serving).count_request(endpoint, entity, protocol, status, seconds);
    }

    fn count_error(&self, endpoint: &str, error: &RequestError) {
        self.count_refusal(error);
        self.metrics.serving.count_error(endpoint, error);
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
            Some(v) => generation.find_version(v)?,
            None => generation.primary_arm()?,
        };
        let entity = generation.ready_entity(arm)?;
        Ok((generation, entity))
    }

    /// Counts (and logs, when the endpoint logs) a request refused before it reached
    /// [`Gateway::invoke`] (content type, body size).
    pub fn record_rejected(
        &self,
        endpoint: &str,
        protocol: Protocol,
        error: &RequestError,
        received: Instant,
        request_id: &RequestId,
    ) {
        if let Some(ticket) = self
            .endpoints
            .get(endpoint)
            .and_then(|e| self.log_ticket(&e.generation(), request_id, received))
        {
            // The body was not read: logged as null.
            let body = Bytes::from(error.body(protocol));
            let mut call = ticket.call(error.status().as_u16(), None, body, None);
            if error.exceeded() == Some(Limit::BodyBytes) {
                call.logging_error_codes
                    .push(crate::inference_log::record::MAX_REQUEST_SIZE_EXCEEDED);
            }
            ticket.log_answered(call, Vec::new());
        }
        let label = self.endpoint_label(endpoint);
        self.count_request(label, "", protocol, error.status().as_u16(), received);
        // Bounds met while reading the body were counted there (`read_limited`).
        (self.metrics.serving.request_errors)
            .with_label_values(&[label, error.code()])
            .inc();
    }

    /// Counts a refusal at a bound in `modelgate_limit_refusals_total`.
    pub fn count_refusal(&self, error: &RequestError) {
        // Deadline refusals are counted where the job stops (and where the pool skips it).
        if let Some(limit) = error.exceeded().filter(|l| *l != Limit::Deadline) {
            self.metrics.access.refusals(limit).inc();
        }
    }

    /// Serves a request; with the log ticket when it is to be logged.
    async fn serve(
        &self,
        inv: &Invocation<'_>,
        traced: bool,
    ) -> (Result<Scored, Failure>, Option<LogTicket>) {
        let Some(endpoint) = self.endpoints.get(&inv.endpoint) else {
            let error =
                RequestError::NotFound(format!("endpoint '{}' does not exist", inv.endpoint));
            return (Err(error.into()), None);
        };
        let generation = endpoint.generation();
        let log_ticket = self.log_ticket(&generation, &inv.request_id, inv.received);
        if let Some(backlog) = (log_ticket.as_ref()).and_then(|t| t.log.refuses_new(&t.capture)) {
            // Refused before it is scored; a refusal is not logged (there is no room).
            return (Err(log_refusal(&inv.endpoint, backlog).into()), None);
        }
        let now = crate::clock::now_ms();
        let _counted = match self
            .admission
            .admit(&generation, inv.requester.as_deref(), now)
        {
            Ok(c) => c,
            Err(e) => return (Err(e.into()), log_ticket),
        };
        let result = within(
            self.limits.timeout,
            inv.received,
            self.serve_endpoint(inv, &endpoint, generation, log_ticket.clone(), traced),
        )
        .await;
        (result, log_ticket)
    }

    /// The request's job, run inline or on the pool; the pool's refusals mapped to errors.
    async fn serve_endpoint(
        &self,
        inv: &Invocation<'_>,
        endpoint: &Endpoint,
        generation: Arc<Generation>,
        log: Option<LogTicket>,
        traced: bool,
    ) -> Result<Scored, Failure> {
        let pinned = match (&inv.pin, &inv.format) {
            (Some(name), _) => Some(generation.pinned_slot(name)?),
            (
                None,
                Format::V2 {
                    version: Some(v), ..
                },
            ) => Some(generation.find_version(v)?),
            _ => None,
        };
        let header_key = match (pinned, inv.headers) {
            (None, Some(h)) => h.get(&generation.key_header).map(|v| v.as_bytes().to_vec()),
            _ => None,
        };
        let job = Job {
            generation: generation.clone(),
            pinned,
            header_key,
            format: inv.format.clone(),
            limits: self.limits.decode,
            deadline: self
                .limits
                .timeout
                .map(|t| Deadline::new(inv.received, t, self.deadline_refusals.clone())),
            pool: self.pool.clone(),
            // Only shadow copies wait on it (for their features): no clone per request else.
            runtime: (!generation.router.shadows.is_empty())
                .then(tokio::runtime::Handle::try_current)
                .and_then(Result::ok),
            sinks: Sinks {
                log,
                monitor: self.monitoring.as_ref().map(|config| RequestMonitor {
                    config: config.clone(),
                    pending: endpoint.pending_labels.clone(),
                    request_id: inv.request_id.text.clone(),
                    now_ms: crate::clock::epoch_us_at(inv.received) / 1000,
                }),
            },
            measured: super::lane::measures(&self.limits.inline, inv.body.len()),
            traced,
        };
        let lane =
            super::lane::choose(&self.pool, &self.limits.inline, &generation, inv.body.len());
        generation.lanes[lane as usize].inc();
        let done = super::job::run(&self.pool, lane, job, inv.body.clone()).await?;
        let [queue, decode, inference, encode] = &generation.stages;
        let t = &done.timings;
        queue.observe(t.queued);
        decode.observe(t.decode);
        inference.observe(t.inference);
        encode.observe(t.encode);
        Ok(done)
    }
}

/// The refusal of a request to an endpoint that answers only what it logs
/// (`backpressure: reject`) while its inference log is behind.
fn log_refusal(endpoint: &str, backlog: Backlog) -> RequestError {
    RequestError::LimitExceeded {
        limit: Limit::InferenceLogQueue,
        message: format!(
            "endpoint '{endpoint}' answers only requests it can log (auto_capture_config.backpressure: reject), and its inference log is behind: {} of inference_log.queue_bytes = {} bytes queued; retry later",
            backlog.queued_bytes, backlog.queue_bytes
        ),
    }
}
