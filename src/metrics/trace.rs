//! Span export (`tracing`): what reached the collector and what was dropped, by reason.

use prometheus::{IntCounter, IntCounterVec};

use super::{make, Registrar};

/// Why spans did not reach the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanDrop {
    /// The export queue (`tracing.max_queue_spans`) was full.
    QueueFull,
    /// The collector refused the batch, or did not answer within `tracing.export_timeout_ms`.
    ExportFailed,
    /// Still queued when the process stopped and its flush deadline passed.
    Shutdown,
}

impl SpanDrop {
    pub const ALL: [SpanDrop; 3] = [Self::QueueFull, Self::ExportFailed, Self::Shutdown];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::ExportFailed => "export_failed",
            Self::Shutdown => "shutdown",
        }
    }
}

pub struct TraceMetrics {
    pub spans_exported: IntCounter,
    spans_dropped: IntCounterVec,
}

impl TraceMetrics {
    pub fn new(r: &mut Registrar<'_>) -> Self {
        let spans_dropped = r.add(make::counters(
            "modelgate_trace_spans_dropped_total",
            "Spans not exported, by reason (queue_full, export_failed, shutdown).",
            &["reason"],
        ));
        // Every reason shows from the start, at 0.
        for reason in SpanDrop::ALL {
            spans_dropped.with_label_values(&[reason.as_str()]);
        }
        Self {
            spans_exported: r.add(make::counter(
                "modelgate_trace_spans_exported_total",
                "Spans the OTLP collector accepted.",
            )),
            spans_dropped,
        }
    }

    pub fn dropped(&self, reason: SpanDrop) -> IntCounter {
        self.spans_dropped.with_label_values(&[reason.as_str()])
    }
}
