//! The exporter: a bounded queue of finished spans, and one thread that sends them to the
//! collector in batches over OTLP (gRPC or HTTP/protobuf). A full queue drops new spans and
//! counts them; a failed export drops its batch and counts it: tracing never holds a request.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prometheus::IntCounter;
use prost::Message;

use crate::metrics::trace::{SpanDrop, TraceMetrics};
use crate::settings::trace::{OtlpProtocol, TracingSettings};

use super::context::{sampled_at, SpanContext, SpanId, TraceId};
use super::span::{key_value, AttrValue, SpanRecord};

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("tracing: {0}")]
    Setup(String),
}

/// Where finished spans go: the queue to the exporter thread, and the sampling of new traces.
pub struct Tracer {
    /// A request's spans travel together: one queue operation per request, not per span.
    spans: Sender<Vec<SpanRecord>>,
    /// Spans queued now, against `tracing.max_queue_spans`.
    queued: Arc<AtomicUsize>,
    max_queue: usize,
    /// A full batch is waiting: the exporter is woken once for it (it sleeps between ticks
    /// otherwise, so a request never wakes it).
    wake: Sender<()>,
    max_batch: usize,
    sample_ratio: f64,
    dropped_full: IntCounter,
    /// Spans recorded after the exporter stopped.
    dropped_late: IntCounter,
    /// Tells the exporter to flush by the deadline and stop.
    stop: Sender<Instant>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Tracer {
    /// Starts the exporter thread for `settings` (which say tracing is on).
    pub fn start(
        settings: &TracingSettings,
        metrics: &TraceMetrics,
    ) -> Result<Arc<Self>, TraceError> {
        let (spans, queue) = unbounded();
        let (stop, stopping) = bounded(1);
        let (wake, woken) = bounded(1);
        let queued = Arc::new(AtomicUsize::new(0));
        let exporter = Exporter::new(settings, metrics, queued.clone())?;
        let thread = std::thread::Builder::new()
            .name("modelgate-trace-export".into())
            .spawn(move || exporter.run(queue, woken, stopping))
            .map_err(|e| TraceError::Setup(format!("cannot start the exporter thread: {e}")))?;
        Ok(Arc::new(Self {
            spans,
            queued,
            max_queue: settings.max_queue_spans,
            wake,
            max_batch: settings.max_export_batch,
            sample_ratio: settings.sample_ratio,
            dropped_full: metrics.dropped(SpanDrop::QueueFull),
            dropped_late: metrics.dropped(SpanDrop::Shutdown),
            stop,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// The context of a new span under `parent` (a caller's `traceparent`, or a span of this
    /// process), and that parent's span id: sampled as the parent is; without one, the root of
    /// a new trace, sampled at `tracing.sample_ratio` by its id.
    pub fn decide(&self, parent: Option<SpanContext>) -> (SpanContext, Option<SpanId>) {
        match parent {
            Some(p) => (p.child(), Some(p.span_id)),
            None => {
                let trace_id = TraceId::random();
                let mut root = SpanContext::root(sampled_at(&trace_id, self.sample_ratio));
                root.trace_id = trace_id;
                (root, None)
            }
        }
    }

    /// As [`Tracer::decide`], `None` when the trace is not recorded (the caller said so, or a
    /// new trace was not sampled): what a request's span needs.
    pub fn server_span(
        &self,
        parent: Option<SpanContext>,
    ) -> Option<(SpanContext, Option<SpanId>)> {
        Some(self.decide(parent)).filter(|(context, _)| context.sampled)
    }

    /// Queues a finished span; when the queue is full it is dropped and counted.
    pub fn record(&self, span: SpanRecord) {
        self.record_all(vec![span]);
    }

    /// Queues finished spans (a request's), all or none: when they do not fit in
    /// `tracing.max_queue_spans` they are dropped and counted.
    pub fn record_all(&self, spans: Vec<SpanRecord>) {
        let n = spans.len();
        let before = self.queued.fetch_add(n, Ordering::AcqRel);
        if before + n > self.max_queue {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            self.dropped_full.inc_by(n as u64);
            return;
        }
        if self.spans.send(spans).is_err() {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            self.dropped_late.inc_by(n as u64);
            return;
        }
        if before < self.max_batch && before + n >= self.max_batch {
            let _ = self.wake.try_send(());
        }
    }

    /// Sends what is queued, waiting until `deadline` at most; what is left is counted as
    /// dropped at shutdown. Later spans are dropped.
    pub fn close(&self, deadline: Instant) {
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = self.stop.try_send(deadline);
            let _ = thread.join();
        }
    }
}

/// The exporter thread's state.
struct Exporter {
    transport: Transport,
    resource: Resource,
    max_batch: usize,
    interval: Duration,
    /// One export's deadline; lowered to what is left at shutdown.
    timeout: Duration,
    headers: Vec<(String, String)>,
    exported: IntCounter,
    failed: IntCounter,
    /// When the last failure was logged, and the spans lost since.
    warned: Option<Instant>,
    unreported: u64,
    /// The tracer's count of queued spans, lowered as they are taken.
    queued: Arc<AtomicUsize>,
    shutdown: IntCounter,
    runtime: tokio::runtime::Runtime,
}

enum Transport {
    Grpc {
        endpoint: String,
        client: Option<TraceServiceClient<tonic::transport::Channel>>,
    },
    Http {
        url: String,
        client: reqwest::Client,
    },
}

impl Exporter {
    fn new(
        settings: &TracingSettings,
        metrics: &TraceMetrics,
        queued: Arc<AtomicUsize>,
    ) -> Result<Self, TraceError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TraceError::Setup(format!("cannot start the exporter's runtime: {e}")))?;
        let timeout = Duration::from_millis(settings.export_timeout_ms);
        let transport = match settings.protocol {
            OtlpProtocol::Grpc => Transport::Grpc {
                endpoint: settings.endpoint(),
                client: None,
            },
            OtlpProtocol::HttpProtobuf => Transport::Http {
                url: settings.traces_url(),
                client: reqwest::Client::builder()
                    .timeout(timeout)
                    .build()
                    .map_err(|e| TraceError::Setup(format!("cannot build the HTTP client: {e}")))?,
            },
        };
        let resource = Resource {
            attributes: [
                (
                    "service.name",
                    AttrValue::from(settings.service_name.clone()),
                ),
                (
                    "service.version",
                    AttrValue::from(env!("CARGO_PKG_VERSION")),
                ),
                ("telemetry.sdk.name", AttrValue::from("modelgate")),
                ("telemetry.sdk.language", AttrValue::from("rust")),
            ]
            .iter()
            .map(|(k, v)| key_value(k, v))
            .collect(),
            ..Default::default()
        };
        Ok(Self {
            transport,
            resource,
            max_batch: settings.max_export_batch,
            interval: Duration::from_millis(settings.export_interval_ms),
            timeout,
            headers: settings.headers.clone().into_iter().collect(),
            exported: metrics.spans_exported.clone(),
            failed: metrics.dropped(SpanDrop::ExportFailed),
            warned: None,
            unreported: 0,
            queued,
            shutdown: metrics.dropped(SpanDrop::Shutdown),
            runtime,
        })
    }

    /// Every `export_interval_ms`, or when a batch is full, sends what is queued; at the stop
    /// signal, drains the queue by its deadline.
    fn run(
        mut self,
        queue: Receiver<Vec<SpanRecord>>,
        woken: Receiver<()>,
        stopping: Receiver<Instant>,
    ) {
        let mut batch: Vec<SpanRecord> = Vec::with_capacity(self.max_batch);
        loop {
            select! {
                recv(stopping) -> deadline => {
                    self.drain(&queue, batch, deadline.unwrap_or_else(|_| Instant::now()));
                    return;
                },
                recv(woken) -> _ => {},
                default(self.interval) => {},
            }
            self.take(&queue, &mut batch);
        }
    }

    /// Takes what is queued into `batch` and exports it, a full batch at a time.
    fn take(&mut self, queue: &Receiver<Vec<SpanRecord>>, batch: &mut Vec<SpanRecord>) {
        while let Ok(spans) = queue.try_recv() {
            self.queued.fetch_sub(spans.len(), Ordering::AcqRel);
            batch.extend(spans);
            while batch.len() >= self.max_batch {
                let rest = batch.split_off(self.max_batch);
                self.export(batch);
                *batch = rest;
            }
        }
        if !batch.is_empty() {
            self.export(batch);
        }
    }

    /// At shutdown: sends the queue, batch by batch, until `deadline`; counts what is left.
    fn drain(
        &mut self,
        queue: &Receiver<Vec<SpanRecord>>,
        mut batch: Vec<SpanRecord>,
        deadline: Instant,
    ) {
        loop {
            while batch.len() < self.max_batch {
                match queue.try_recv() {
                    Ok(spans) => {
                        self.queued.fetch_sub(spans.len(), Ordering::AcqRel);
                        batch.extend(spans);
                    }
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                let left: usize = batch.len() + queue.try_iter().map(|s| s.len()).sum::<usize>();
                self.shutdown.inc_by(left as u64);
                return;
            }
            self.timeout = self
                .timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            let cut = batch.len().min(self.max_batch);
            let rest = batch.split_off(cut);
            self.export(&mut batch);
            batch = rest;
        }
    }

    /// Sends `batch` (emptied) and counts how it went.
    fn export(&mut self, batch: &mut Vec<SpanRecord>) {
        let count = batch.len() as u64;
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "modelgate".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans: batch.drain(..).map(|s| s.to_otlp()).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let sent = self.send(request);
        match sent {
            Ok(rejected) => {
                let rejected = rejected.min(count);
                self.exported.inc_by(count - rejected);
                self.failed.inc_by(rejected);
                if rejected > 0 {
                    self.warn(rejected, "the collector rejected them".into());
                }
            }
            Err(e) => {
                self.failed.inc_by(count);
                self.warn(count, e);
            }
        }
    }

    /// Says that `spans` were lost, at most once per [`WARN_EVERY`] with what was lost since:
    /// a collector that is down for an hour is a few hundred lines, not one per batch.
    fn warn(&mut self, spans: u64, why: String) {
        self.unreported += spans;
        let now = Instant::now();
        if self.warned.is_some_and(|at| now - at < WARN_EVERY) {
            return;
        }
        tracing::warn!(
            spans = self.unreported,
            "spans not exported (modelgate_trace_spans_dropped_total): {why}"
        );
        self.unreported = 0;
        self.warned = Some(now);
    }

    /// One export call, within `self.timeout`; the spans the collector rejected (its partial
    /// success).
    fn send(&mut self, request: ExportTraceServiceRequest) -> Result<u64, String> {
        let timeout = self.timeout;
        let headers = &self.headers;
        let late = || format!("no answer within {} ms", timeout.as_millis());
        match &mut self.transport {
            Transport::Grpc { endpoint, client } => {
                if client.is_none() {
                    let channel = tonic::transport::Channel::from_shared(endpoint.clone())
                        .map_err(|e| format!("{endpoint}: {e}"))?
                        .connect_timeout(timeout);
                    let _entered = self.runtime.enter();
                    *client = Some(TraceServiceClient::new(channel.connect_lazy()));
                }
                let client = client.as_mut().expect("made above");
                let mut call = tonic::Request::new(request);
                call.set_timeout(timeout);
                for (name, value) in headers {
                    let key = tonic::metadata::MetadataKey::from_bytes(
                        name.to_ascii_lowercase().as_bytes(),
                    )
                    .map_err(|e| format!("header {name}: {e}"))?;
                    let value = value
                        .parse()
                        .map_err(|_| format!("header {name}: not a valid value"))?;
                    call.metadata_mut().insert(key, value);
                }
                let answer = self
                    .runtime
                    // The timer is made inside the runtime (it needs its clock).
                    .block_on(async { tokio::time::timeout(timeout, client.export(call)).await })
                    .map_err(|_| late())?
                    .map_err(|s| format!("{}: {}", s.code(), s.message()))?;
                Ok(rejected(&answer.into_inner()))
            }
            Transport::Http { url, client } => {
                let mut post = client
                    .post(url.as_str())
                    .timeout(timeout)
                    .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(request.encode_to_vec());
                for (name, value) in headers {
                    post = post.header(name.as_str(), value.as_str());
                }
                self.runtime.block_on(async {
                    let mut answer = post.send().await.map_err(|e| e.without_url().to_string())?;
                    let status = answer.status();
                    if !status.is_success() {
                        return Err(format!("{url}: HTTP {status}"));
                    }
                    // The answer is a few bytes (a partial success at most): more is not read.
                    let mut body = Vec::new();
                    while let Some(chunk) = answer
                        .chunk()
                        .await
                        .map_err(|e| e.without_url().to_string())?
                    {
                        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                            return Ok(0);
                        }
                        body.extend_from_slice(&chunk);
                    }
                    // An empty body is a full success.
                    let answer =
                        ExportTraceServiceResponse::decode(body.as_slice()).unwrap_or_default();
                    Ok(rejected(&answer))
                })
            }
        }
    }
}

/// The least time between two warnings of lost spans.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The most of a collector's answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

fn rejected(answer: &ExportTraceServiceResponse) -> u64 {
    answer
        .partial_success
        .as_ref()
        .map_or(0, |p| p.rejected_spans.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::trace::{SpanKind, WallClock};

    fn span() -> SpanRecord {
        let at = Instant::now();
        let context = SpanContext::root(true);
        SpanRecord::new(
            context,
            None,
            "s",
            SpanKind::Internal,
            (at, at),
            &WallClock::now(),
        )
    }

    #[test]
    fn a_stuck_collector_costs_dropped_spans_not_memory_or_callers() {
        // Accepts connections and never answers: each export waits out its deadline.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let settings = TracingSettings {
            enabled: true,
            endpoint: Some(format!("http://{}", silent.local_addr().unwrap())),
            max_queue_spans: 1,
            max_export_batch: 1,
            export_timeout_ms: 500,
            ..Default::default()
        };
        let metrics = Metrics::new();
        let tracer = Tracer::start(&settings, &metrics.trace).unwrap();
        for _ in 0..100 {
            tracer.record(span());
        }
        let dropped = |r| metrics.trace.dropped(r).get();
        // At most one span in the export and one in the queue.
        assert!(
            dropped(SpanDrop::QueueFull) >= 98,
            "{}",
            dropped(SpanDrop::QueueFull)
        );
        tracer.close(Instant::now() + Duration::from_secs(5));
        let lost = dropped(SpanDrop::QueueFull)
            + dropped(SpanDrop::ExportFailed)
            + dropped(SpanDrop::Shutdown);
        assert_eq!(lost, 100, "every span is counted once");
        assert_eq!(metrics.trace.spans_exported.get(), 0);
        drop(silent);
    }

    #[test]
    fn sampling_follows_the_parent_else_the_ratio() {
        let metrics = Metrics::new();
        let settings = TracingSettings {
            enabled: true,
            sample_ratio: 0.0,
            endpoint: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        };
        let tracer = Tracer::start(&settings, &metrics.trace).unwrap();
        assert!(tracer.server_span(None).is_none(), "ratio 0: no new trace");
        let sampled = SpanContext::root(true);
        let (child, parent) = tracer.server_span(Some(sampled.clone())).unwrap();
        assert_eq!(child.trace_id, sampled.trace_id);
        assert_eq!(parent, Some(sampled.span_id));
        assert!(tracer.server_span(Some(SpanContext::root(false))).is_none());
        tracer.close(Instant::now());
    }
}
