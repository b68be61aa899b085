//! A traced request's spans, made once it has answered: the request's own (a child of the
//! caller's `traceparent`, else a new trace's root) and one child per stage it went through.

use std::borrow::Cow;
use std::time::Instant;

use crate::error::RequestError;
use crate::trace::{SpanContext, SpanId, SpanKind, SpanRecord, Tracer, WallClock};

use super::marks::{Mark, Stage};
use super::request::{Format, Invocation};

/// The span of a request being served.
pub(super) struct RequestSpan {
    pub context: SpanContext,
    /// The caller's span, from its `traceparent`.
    pub parent: Option<SpanId>,
}

impl RequestSpan {
    /// The span of `inv`, when tracing is on and its trace is sampled.
    pub fn of(tracer: Option<&Tracer>, inv: &Invocation<'_>) -> Option<Self> {
        let tracer = tracer?;
        let parent = inv.headers.and_then(|h| {
            let values = |name| h.get_all(name).filter_map(|v| v.to_str().ok());
            crate::trace::extract(values("traceparent"), values("tracestate"))
        });
        let (context, parent) = tracer.server_span(parent)?;
        Some(Self { context, parent })
    }
}

/// How a request ended, for its span.
pub(super) struct Ending<'a> {
    pub status: u16,
    pub served: Option<&'a str>,
    pub error: Option<&'a RequestError>,
    pub rows: Option<usize>,
    /// Its inference-table row's hand-over to the log's queue.
    pub logged: Option<(Instant, Instant)>,
}

/// Records the request's span and its stages' spans.
pub(super) fn record(
    tracer: &Tracer,
    span: RequestSpan,
    inv: &Invocation<'_>,
    marks: Vec<Mark>,
    ending: Ending<'_>,
) {
    let clock = WallClock::now();
    let request_id = span.context.span_id;
    // Queued together: one queue operation per request.
    let mut spans = Vec::with_capacity(marks.len() + 2);
    for mark in marks {
        let kind = match mark.stage {
            Stage::Lookup => SpanKind::Client,
            _ => SpanKind::Internal,
        };
        let mut stage = SpanRecord::new(
            span.context.child(),
            Some(request_id),
            mark.stage.span_name(),
            kind,
            (mark.start, mark.end),
            &clock,
        );
        if let Some(detail) = &mark.detail {
            stage = match mark.stage {
                Stage::Lookup => stage
                    .attr("db.system.name", detail)
                    .attr("db.operation.name", "lookup"),
                _ => stage.attr("modelgate.served_entity", detail),
            };
        }
        spans.push(stage);
    }
    if let Some(times) = ending.logged {
        let child = span.context.child();
        let enqueue = "log.enqueue";
        spans.push(SpanRecord::new(
            child,
            Some(request_id),
            enqueue,
            SpanKind::Internal,
            times,
            &clock,
        ));
    }
    let mut request = SpanRecord::new(
        span.context,
        span.parent,
        name(inv),
        SpanKind::Server,
        (inv.received, Instant::now()),
        &clock,
    )
    .attr("modelgate.endpoint", inv.endpoint.clone())
    .remote_parent(span.parent.is_some())
    .attr("modelgate.protocol", inv.format.protocol().as_str())
    .attr("modelgate.request_id", inv.request_id.text.to_string());
    request = match inv.format {
        Format::V2 { grpc: true, .. } => request
            .attr("rpc.system", "grpc")
            .attr("rpc.service", "inference.GRPCInferenceService")
            .attr("rpc.method", "ModelInfer"),
        _ => request
            .attr("http.request.method", "POST")
            .attr("http.response.status_code", i64::from(ending.status)),
    };
    if let Some(served) = ending.served {
        request = request.attr("modelgate.served_entity", served.to_owned());
    }
    if let Some(rows) = ending.rows {
        request = request.attr("modelgate.rows", rows as i64);
    }
    if let Some(error) = ending.error {
        request = request.attr("error.type", error.code());
        // A server span's status is an error for the server's own failures only (5xx; for
        // gRPC the statuses they map to), not for a caller's mistakes.
        if ending.status >= 500 {
            request = request.failed(error.to_string());
        }
    }
    spans.push(request);
    tracer.record_all(spans);
}

/// The request span's name: the call as its protocol names it (the route, or the gRPC method).
fn name(inv: &Invocation<'_>) -> Cow<'static, str> {
    Cow::Borrowed(match (&inv.format, &inv.pin) {
        (Format::V2 { grpc: true, .. }, _) => "inference.GRPCInferenceService/ModelInfer",
        (
            Format::V2 {
                version: Some(_), ..
            },
            _,
        ) => "POST /v2/models/{model}/versions/{version}/infer",
        (Format::V2 { .. }, _) => "POST /v2/models/{model}/infer",
        (Format::KserveV1, _) => "POST /v1/models/{model}:predict",
        (_, Some(_)) => "POST /serving-endpoints/{name}/served-models/{served_model}/invocations",
        (_, None) => "POST /serving-endpoints/{name}/invocations",
    })
}
