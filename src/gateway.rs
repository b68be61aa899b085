//! The core of the request path: one call per prediction request, whatever the protocol.
//!
//! `invoke` finds the endpoint, loads its served entity once, and runs decode -> bind -> infer
//! -> encode as one job on the inference pool (so no CPU-heavy work runs on the HTTP workers),
//! then records metrics. Handlers only map HTTP to an [`Invocation`] and the answer back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::endpoint::{Endpoint, ServedEntity};
use crate::engine::outputs::check_rows;
use crate::engine::pool::{InferencePool, SubmitError};
use crate::error::{RequestError, RequestResult};
use crate::metrics::{status_class, Metrics, UNKNOWN_ENDPOINT};
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

pub struct Invocation {
    pub endpoint: String,
    pub format: Format,
    pub body: Bytes,
    pub received: Instant,
}

/// A successful answer: the encoded body and who served it.
pub struct Answer {
    pub body: Vec<u8>,
    pub served_entity: Arc<ServedEntity>,
}

/// A failed request, with the served entity when it was known.
pub struct Failure {
    pub error: RequestError,
    pub served_entity: Option<Arc<ServedEntity>>,
}

impl From<RequestError> for Failure {
    fn from(error: RequestError) -> Self {
        Self {
            error,
            served_entity: None,
        }
    }
}

/// Seconds spent per stage of one request.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub queued: f64,
    pub decode: f64,
    pub inference: f64,
    pub encode: f64,
    pub rows: usize,
}

pub struct Gateway {
    endpoints: HashMap<String, Arc<Endpoint>>,
    pool: Arc<InferencePool>,
    metrics: Arc<Metrics>,
    max_batch_rows: usize,
    shutting_down: AtomicBool,
}

impl Gateway {
    pub fn new(
        endpoints: Vec<Arc<Endpoint>>,
        pool: Arc<InferencePool>,
        metrics: Arc<Metrics>,
        max_batch_rows: usize,
    ) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(|e| (e.name.clone(), e)).collect(),
            pool,
            metrics,
            max_batch_rows,
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn endpoint(&self, name: &str) -> Option<&Arc<Endpoint>> {
        self.endpoints.get(name)
    }

    /// Endpoints sorted by name.
    pub fn endpoints(&self) -> Vec<&Arc<Endpoint>> {
        let mut v: Vec<_> = self.endpoints.values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The only endpoint, when exactly one is configured (for `/invocations`).
    pub fn sole_endpoint(&self) -> Option<&Arc<Endpoint>> {
        (self.endpoints.len() == 1)
            .then(|| self.endpoints.values().next())
            .flatten()
    }

    /// Ready: not shutting down and every endpoint serves a loaded, warmed model.
    pub fn is_ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Acquire)
            && self.endpoints.values().all(|e| e.served().is_some())
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Serves one prediction request and records its metrics.
    pub async fn invoke(&self, inv: Invocation) -> Result<Answer, Failure> {
        let protocol = inv.format.protocol();
        let endpoint_label = if self.endpoints.contains_key(&inv.endpoint) {
            inv.endpoint.as_str()
        } else {
            UNKNOWN_ENDPOINT
        };
        let result = self.serve(&inv).await;
        let (status, entity_name) = match &result {
            Ok(a) => (200, a.served_entity.name.as_str()),
            Err(f) => (
                f.error.status().as_u16(),
                f.served_entity.as_ref().map_or("", |e| e.name.as_str()),
            ),
        };
        let class = status_class(status);
        let m = &self.metrics;
        m.requests
            .with_label_values(&[endpoint_label, entity_name, protocol, class])
            .inc();
        m.request_duration
            .with_label_values(&[endpoint_label, entity_name, protocol, class])
            .observe(inv.received.elapsed().as_secs_f64());
        if let Err(f) = &result {
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

    /// The endpoint and what it serves now; with `version`, only if that version is served.
    pub fn served_entity(
        &self,
        endpoint: &str,
        version: Option<&str>,
    ) -> Result<(&Arc<Endpoint>, Arc<ServedEntity>), RequestError> {
        let ep = self.endpoints.get(endpoint).ok_or_else(|| {
            RequestError::NotFound(format!("endpoint '{endpoint}' does not exist"))
        })?;
        let entity = ep.served().ok_or_else(|| {
            RequestError::Unavailable(format!("endpoint '{endpoint}' has no model loaded yet"))
        })?;
        match version {
            Some(v) if v != entity.version => Err(RequestError::NotFound(format!(
                "model '{endpoint}' version '{v}' is not served (serving version {})",
                entity.version
            ))),
            _ => Ok((ep, entity)),
        }
    }

    /// Counts a request refused before it reached [`Gateway::invoke`] (content type, body size).
    pub fn record_rejected(
        &self,
        endpoint: &str,
        protocol: &str,
        error: &RequestError,
        received: Instant,
    ) {
        let label = if self.endpoints.contains_key(endpoint) {
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
    }

    /// The Prometheus exposition, with gauges sampled now.
    pub fn render_metrics(&self) -> Vec<u8> {
        self.metrics
            .inference_queue_depth
            .set(self.pool.queued() as i64);
        self.metrics
            .loaded_versions
            .set(crate::endpoint::live_versions() as i64);
        self.metrics.render()
    }

    async fn serve(&self, inv: &Invocation) -> Result<Answer, Failure> {
        let version = match &inv.format {
            Format::V2 { version } => version.as_deref(),
            _ => None,
        };
        let (endpoint, entity) = self.served_entity(&inv.endpoint, version)?;
        let job_entity = entity.clone();
        let (body, format, max_rows, endpoint_name) = (
            inv.body.clone(),
            inv.format.clone(),
            self.max_batch_rows,
            endpoint.name.clone(),
        );
        let submitted = Instant::now();
        let outcome = self
            .pool
            .run(move |worker| {
                score(
                    &job_entity,
                    &endpoint_name,
                    worker,
                    &body,
                    &format,
                    max_rows,
                    submitted,
                )
            })
            .await;
        let with_entity = |error: RequestError| Failure {
            error,
            served_entity: Some(entity.clone()),
        };
        let (body, timings) = match outcome {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Err(with_entity(e)),
            Err(SubmitError::Full(n)) => {
                return Err(with_entity(RequestError::Overloaded(format!(
                    "the inference queue is full ({n} requests waiting): retry later"
                ))))
            }
            Err(SubmitError::Panicked(message) | SubmitError::Failed(message)) => {
                tracing::error!(endpoint = %endpoint.name, served_entity = %entity.name, "inference panicked: {message}");
                return Err(with_entity(RequestError::Internal(format!(
                    "inference failed unexpectedly: {message}"
                ))));
            }
            Err(SubmitError::Closed) => {
                return Err(with_entity(RequestError::Unavailable(
                    "the server is shutting down".into(),
                )))
            }
        };
        let m = &self.metrics;
        for (stage, secs) in [
            ("queue", timings.queued),
            ("decode", timings.decode),
            ("inference", timings.inference),
            ("encode", timings.encode),
        ] {
            m.stage_duration
                .with_label_values(&[&endpoint.name, stage])
                .observe(secs);
        }
        m.rows
            .with_label_values(&[&endpoint.name, &entity.name])
            .inc_by(timings.rows as u64);
        Ok(Answer {
            body,
            served_entity: entity,
        })
    }
}

/// The per-request work that runs on a pool worker: decode, validate, bind, infer, encode.
/// Public so the benchmarks measure exactly what the server runs.
pub fn score(
    entity: &ServedEntity,
    endpoint: &str,
    worker: usize,
    body: &[u8],
    format: &Format,
    max_rows: usize,
    submitted: Instant,
) -> RequestResult<(Vec<u8>, Timings)> {
    let t0 = Instant::now();
    let queued = (t0 - submitted).as_secs_f64();
    let (frame, v2_req) = match format {
        Format::MlflowJson => (mlflow::decode_json(body)?.frame, None),
        Format::MlflowCsv => (mlflow::decode_csv(body)?.frame, None),
        Format::V2 { .. } => {
            let mut req = v2::decode(body)?;
            let frame = std::mem::take(&mut req.frame);
            (frame, Some(req))
        }
    };
    frame.validate(max_rows)?;
    let rows = frame.rows();
    let t1 = Instant::now();
    let outputs = entity.infer(worker, &frame)?;
    // Encoders index outputs by row: a model whose outputs are not one row per input row is
    // refused here, not by a panic.
    check_rows(&outputs, rows).map_err(RequestError::Internal)?;
    let t2 = Instant::now();
    let mut buf = Vec::with_capacity(64 + rows * 48);
    match v2_req {
        None => {
            buf.extend_from_slice(b"{\"predictions\":");
            entity.outputs.write_predictions(&outputs, rows, &mut buf);
            buf.push(b'}');
        }
        Some(req) => v2::write_response(
            endpoint,
            &entity.version,
            req.id.as_deref(),
            &outputs,
            req.outputs.as_deref(),
            &mut buf,
        )?,
    }
    let t3 = Instant::now();
    Ok((
        buf,
        Timings {
            queued,
            decode: (t1 - t0).as_secs_f64(),
            inference: (t2 - t1).as_secs_f64(),
            encode: (t3 - t2).as_secs_f64(),
            rows,
        },
    ))
}
