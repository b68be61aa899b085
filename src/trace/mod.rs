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
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

pub use context::{SpanContext, SpanId, TraceId};
pub use export::{TraceError, Tracer};
pub use span::{AttrValue, SpanKind, SpanRecord, WallClock};

/// A span this thread is inside of, and where its children go. A span whose trace is not
/// sampled is a frame too: what runs inside it records nothing, and the calls it makes carry
/// its `traceparent` with the sampled flag off.
struct Frame {
    tracer: Arc<Tracer>,
    context: SpanContext,
    /// Children held until the trace's root ends (it may decide to drop them all).
    held: Option<Vec<SpanRecord>>,
}

thread_local! {
    static CURRENT: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// The longest text attribute or status message a span keeps (a longer one is cut): the
/// queue bounds spans by count, this bounds each one.
pub const MAX_TEXT_BYTES: usize = 1024;

/// The span this thread is inside of, and its tracer.
pub fn current() -> Option<(Arc<Tracer>, SpanContext)> {
    CURRENT.with(|c| {
        c.borrow()
            .last()
            .map(|f| (f.tracer.clone(), f.context.clone()))
    })
}

/// The caller's span from its headers' values: `None` when it sent no `traceparent`, an
/// invalid one, or more than one (the W3C spec then starts a new trace); several `tracestate`
/// headers are one list.
pub fn extract<'a>(
    mut traceparents: impl Iterator<Item = &'a str>,
    tracestates: impl Iterator<Item = &'a str>,
) -> Option<SpanContext> {
    let traceparent = traceparents.next()?;
    if traceparents.next().is_some() {
        return None;
    }
    let states: Vec<&str> = tracestates.collect();
    let state = (!states.is_empty()).then(|| states.join(","));
    SpanContext::from_headers(traceparent, state.as_deref())
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

/// Removes the frame of span `id` (the top one, unless spans ended out of order).
fn pop(id: SpanId) -> Option<Frame> {
    CURRENT.with(|c| {
        let mut frames = c.borrow_mut();
        let at = frames.iter().rposition(|f| f.context.span_id == id)?;
        Some(frames.remove(at))
    })
}

/// A span open on this thread: its children are what the thread does until it ends (drop).
/// It stays on the thread that opened it (`!Send`): its frame is that thread's.
pub struct ActiveSpan {
    tracer: Arc<Tracer>,
    record: SpanRecord,
    started: Instant,
    clock: WallClock,
    keep: bool,
    _on_this_thread: PhantomData<*const ()>,
}

impl ActiveSpan {
    /// Opens `name`: a child of `parent` (a span in another process, from its
    /// `traceparent`), else of this thread's current span; with neither, the root of a new
    /// trace, sampled at the tracer's ratio. `None` when tracing is off. A span of an
    /// unsampled trace records nothing, and neither do its children.
    pub fn enter(
        tracer: Option<&Arc<Tracer>>,
        parent: Option<SpanContext>,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
    ) -> Option<Self> {
        let remote = parent.is_some();
        let (tracer, parent) = match (current(), parent) {
            (current, Some(p)) => (tracer.cloned().or(current.map(|c| c.0))?, Some(p)),
            (Some((t, p)), None) => (t, Some(p)),
            (None, None) => (tracer?.clone(), None),
        };
        let is_root = parent.is_none() || remote;
        let (context, parent_id) = tracer.decide(parent);
        let clock = WallClock::now();
        let started = Instant::now();
        let mut record = SpanRecord::new(
            context.clone(),
            parent_id,
            name,
            kind,
            (started, started),
            &clock,
        );
        record.parent_remote = remote;
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
            _on_this_thread: PhantomData,
        })
    }

    pub fn context(&self) -> &SpanContext {
        &self.record.context
    }

    pub fn attr(&mut self, key: &'static str, value: impl Into<AttrValue>) {
        self.record.attributes.push((key, value.into().capped()));
    }

    pub fn fail(&mut self, message: impl Into<String>) {
        self.record.error = Some(capped(message.into()));
    }

    /// Drops this span and its children unexported (a poll that changed nothing).
    pub fn discard(&mut self) {
        self.keep = false;
    }
}

impl Drop for ActiveSpan {
    fn drop(&mut self) {
        let frame = pop(self.record.context.span_id);
        if !self.keep || !self.record.context.sampled {
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
    let id = context.span_id;
    CURRENT.with(|c| {
        c.borrow_mut().push(Frame {
            tracer,
            context,
            held: None,
        })
    });
    struct Pop(SpanId);
    impl Drop for Pop {
        fn drop(&mut self) {
            pop(self.0);
        }
    }
    let _pop = Pop(id);
    f()
}

/// A blocking HTTP call to another service (`url` without credentials), as a child of this
/// thread's span: `send` gets the headers to put on the request (`traceparent`, and the
/// trace's `tracestate`; none when the thread is in no span) and returns the answer's status,
/// or its error. Nothing is recorded in an unsampled trace, but its `traceparent` still goes.
pub fn client_call<T, E: std::fmt::Display>(
    method: &'static str,
    url: &str,
    send: impl FnOnce(Vec<(&'static str, String)>) -> Result<(T, u16), E>,
) -> Result<T, E> {
    let Some((tracer, parent)) = current() else {
        return send(Vec::new()).map(|(t, _)| t);
    };
    let context = parent.child();
    let mut headers = vec![("traceparent", context.traceparent())];
    if let Some(state) = &context.trace_state {
        headers.push(("tracestate", state.to_string()));
    }
    if !context.sampled {
        return send(headers).map(|(t, _)| t);
    }
    let clock = WallClock::now();
    let started = Instant::now();
    let answer = send(headers);
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

/// `text` cut to [`MAX_TEXT_BYTES`] at a character boundary.
pub fn capped(mut text: String) -> String {
    if text.len() > MAX_TEXT_BYTES {
        let mut end = MAX_TEXT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::settings::trace::TracingSettings;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn tracer(metrics: &Metrics) -> Arc<Tracer> {
        let settings = TracingSettings {
            enabled: true,
            endpoint: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        };
        Tracer::start(&settings, &metrics.trace).unwrap()
    }

    #[test]
    fn two_traceparents_are_none_and_tracestates_are_one_list() {
        assert!(extract([PARENT, PARENT].into_iter(), std::iter::empty()).is_none());
        let one = extract([PARENT].into_iter(), ["a=1", "b=2"].into_iter()).unwrap();
        assert_eq!(one.trace_state.as_deref(), Some("a=1,b=2"));
        assert!(extract(std::iter::empty(), ["a=1"].into_iter()).is_none());
    }

    #[test]
    fn an_unsampled_callers_span_is_current_and_records_nothing() {
        let metrics = Metrics::new();
        let tracer = tracer(&metrics);
        let unsampled = SpanContext::from_headers(&PARENT.replace("-01", "-00"), None);
        {
            let span = ActiveSpan::enter(Some(&tracer), unsampled, "call", SpanKind::Server);
            assert!(
                span.is_some(),
                "a frame, so what runs inside knows the decision"
            );
            let (_, current) = current().unwrap();
            assert!(!current.sampled);
            // A child inside it is not sampled either.
            let child = ActiveSpan::enter(Some(&tracer), None, "load", SpanKind::Internal);
            assert!(!child.unwrap().context().sampled);
        }
        assert!(current().is_none(), "every frame gone");
        tracer.close(Instant::now() + std::time::Duration::from_secs(1));
        assert_eq!(metrics.trace.spans_exported.get(), 0);
    }

    #[test]
    fn spans_ended_out_of_order_remove_their_own_frames() {
        let metrics = Metrics::new();
        let tracer = tracer(&metrics);
        let outer = ActiveSpan::enter(Some(&tracer), None, "outer", SpanKind::Internal).unwrap();
        let inner = ActiveSpan::enter(Some(&tracer), None, "inner", SpanKind::Internal).unwrap();
        let inner_id = inner.context().span_id;
        drop(outer);
        // The inner span is still this thread's current one.
        assert_eq!(current().unwrap().1.span_id, inner_id);
        drop(inner);
        assert!(current().is_none());
        tracer.close(Instant::now());
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_TEXT_BYTES);
        let cut = capped(long);
        assert!(cut.len() <= MAX_TEXT_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
