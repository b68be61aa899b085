//! OpenTelemetry tracing (`tracing.enabled`, off by default): W3C trace context in and out,
//! spans recorded with explicit times, exported over OTLP by one thread ([`export`]).
//!
//! The request path records no span objects while it runs: it notes when each stage began
//! and ended (the pipeline's marks), and its spans are made once it has answered, only when the
//! request is sampled. Blocking work (a registry load) runs inside an [`ActiveSpan`], the
//! thread's current span: calls it makes (MLflow's REST API) become its children and carry
//! their `traceparent`.

pub mod context;
pub mod export;
pub mod span;

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

pub use context::{SpanContext, SpanId, TraceId};
pub use export::{TraceError, Tracer};
pub use span::{AttrValue, SpanKind, SpanRecord, WallClock};

/// A span this thread is inside of, and where its children go.
struct Frame {
    tracer: Arc<Tracer>,
    context: SpanContext,
    /// Children held until the trace's root ends (it may decide to drop them all).
    held: Option<Vec<SpanRecord>>,
}

thread_local! {
    static CURRENT: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// The span this thread is inside of, and its tracer.
pub fn current() -> Option<(Arc<Tracer>, SpanContext)> {
    CURRENT.with(|c| {
        c.borrow()
            .last()
            .map(|f| (f.tracer.clone(), f.context.clone()))
    })
}

/// Records a finished child of this thread's spans: held by the nearest root that holds its
/// children, else queued now.
pub fn record_child(tracer: &Tracer, span: SpanRecord) {
    let span = CURRENT.with(|c| {
        let mut frames = c.borrow_mut();
        match frames.iter_mut().rev().find_map(|f| f.held.as_mut()) {
            Some(held) => {
                held.push(span);
                None
            }
            None => Some(span),
        }
    });
    if let Some(span) = span {
        tracer.record(span);
    }
}

/// A span open on this thread: its children are what the thread does until it ends (drop).
pub struct ActiveSpan {
    tracer: Arc<Tracer>,
    record: SpanRecord,
    started: Instant,
    clock: WallClock,
    keep: bool,
}

impl ActiveSpan {
    /// Opens `name`: a child of this thread's current span (or of `parent`, a span on another
    /// thread or in another process); with neither, the root of a new trace, sampled at the
    /// tracer's ratio. `None` when tracing is off or the trace is not sampled.
    pub fn enter(
        tracer: Option<&Arc<Tracer>>,
        parent: Option<SpanContext>,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
    ) -> Option<Self> {
        let (tracer, parent) = match (current(), parent) {
            (_, Some(p)) => (tracer.cloned().or_else(|| current().map(|c| c.0))?, Some(p)),
            (Some((t, p)), None) => (t, Some(p)),
            (None, None) => (tracer?.clone(), None),
        };
        let is_root = parent.is_none();
        let (context, parent_id) = tracer.server_span(parent)?;
        let clock = WallClock::now();
        let started = Instant::now();
        let record = SpanRecord::new(
            context.clone(),
            parent_id,
            name,
            kind,
            (started, started),
            &clock,
        );
        CURRENT.with(|c| {
            c.borrow_mut().push(Frame {
                tracer: tracer.clone(),
                context,
                held: is_root.then(Vec::new),
            })
        });
        Some(Self {
            tracer,
            record,
            started,
            clock,
            keep: true,
        })
    }

    pub fn context(&self) -> &SpanContext {
        &self.record.context
    }

    pub fn attr(&mut self, key: &'static str, value: impl Into<AttrValue>) {
        self.record.attributes.push((key, value.into()));
    }

    pub fn fail(&mut self, message: impl Into<String>) {
        self.record.error = Some(message.into());
    }

    /// Drops this span and its children unexported (a poll that changed nothing).
    pub fn discard(&mut self) {
        self.keep = false;
    }
}

impl Drop for ActiveSpan {
    fn drop(&mut self) {
        let frame = CURRENT.with(|c| c.borrow_mut().pop());
        if !self.keep {
            return;
        }
        let mut record = self.record.clone();
        record.end_unix_ns = self.clock.unix_ns(Instant::now());
        record.start_unix_ns = self.clock.unix_ns(self.started);
        let held = frame.and_then(|f| f.held).unwrap_or_default();
        for child in held {
            self.tracer.record(child);
        }
        record_child(&self.tracer, record);
    }
}

/// `f`, run inside the span `context` of `tracer` made on another thread: what it records
/// are that span's children.
pub fn within<R>(current: Option<(Arc<Tracer>, SpanContext)>, f: impl FnOnce() -> R) -> R {
    let Some((tracer, context)) = current else {
        return f();
    };
    CURRENT.with(|c| {
        c.borrow_mut().push(Frame {
            tracer,
            context,
            held: None,
        })
    });
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            CURRENT.with(|c| c.borrow_mut().pop());
        }
    }
    let _pop = Pop;
    f()
}

/// A blocking HTTP call to another service, as a child of this thread's span: `send` gets the
/// `traceparent` to put on the request (none when the thread is in no sampled span) and
/// returns the answer's status, or its error.
pub fn client_call<T, E: std::fmt::Display>(
    method: &'static str,
    url: &str,
    send: impl FnOnce(Option<String>) -> Result<(T, u16), E>,
) -> Result<T, E> {
    let Some((tracer, parent)) = current() else {
        return send(None).map(|(t, _)| t);
    };
    let context = parent.child();
    let clock = WallClock::now();
    let started = Instant::now();
    let answer = send(Some(context.traceparent()));
    let mut span = SpanRecord::new(
        context,
        Some(parent.span_id),
        method,
        SpanKind::Client,
        (started, Instant::now()),
        &clock,
    )
    .attr("http.request.method", method)
    .attr("url.full", url.to_owned());
    span = match &answer {
        Ok((_, status)) => {
            let span = span.attr("http.response.status_code", i64::from(*status));
            if *status >= 400 {
                span.failed(format!("HTTP {status}"))
            } else {
                span
            }
        }
        Err(e) => span.failed(e.to_string()),
    };
    record_child(&tracer, span);
    answer.map(|(t, _)| t)
}
