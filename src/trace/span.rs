//! A finished span as the exporter takes it, and its OTLP form.

use std::borrow::Cow;
use std::time::Instant;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1 as otlp;

use super::context::{SpanContext, SpanId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal,
    /// A call this process answers.
    Server,
    /// A call this process makes (the online store, the model registry).
    Client,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(Cow<'static, str>),
    Int(i64),
    Bool(bool),
}

impl AttrValue {
    /// Text cut to [`super::MAX_TEXT_BYTES`].
    pub fn capped(self) -> Self {
        match self {
            Self::Str(Cow::Owned(s)) => Self::Str(Cow::Owned(super::capped(s))),
            other => other,
        }
    }
}

impl From<&'static str> for AttrValue {
    fn from(s: &'static str) -> Self {
        Self::Str(Cow::Borrowed(s))
    }
}

impl From<String> for AttrValue {
    fn from(s: String) -> Self {
        Self::Str(Cow::Owned(s))
    }
}

impl From<&std::sync::Arc<str>> for AttrValue {
    fn from(s: &std::sync::Arc<str>) -> Self {
        Self::Str(Cow::Owned(s.to_string()))
    }
}

impl From<i64> for AttrValue {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<bool> for AttrValue {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

/// A finished span.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub context: SpanContext,
    pub parent: Option<SpanId>,
    pub name: Cow<'static, str>,
    pub kind: SpanKind,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// Set when the operation failed: the span's status is then ERROR with this message.
    pub error: Option<String>,
    /// Its parent is in another process (from a `traceparent`).
    pub parent_remote: bool,
}

impl SpanRecord {
    /// A span of `context` (a child of `parent`), timed by the wall clock through `clock`.
    pub fn new(
        context: SpanContext,
        parent: Option<SpanId>,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        (start, end): (Instant, Instant),
        clock: &WallClock,
    ) -> Self {
        Self {
            context,
            parent,
            name: name.into(),
            kind,
            start_unix_ns: clock.unix_ns(start),
            end_unix_ns: clock.unix_ns(end),
            attributes: Vec::new(),
            error: None,
            parent_remote: false,
        }
    }

    pub fn attr(mut self, key: &'static str, value: impl Into<AttrValue>) -> Self {
        self.attributes.push((key, value.into().capped()));
        self
    }

    /// Marks its parent as in another process.
    pub fn remote_parent(mut self, remote: bool) -> Self {
        self.parent_remote = remote;
        self
    }

    pub fn failed(mut self, message: impl Into<String>) -> Self {
        self.error = Some(super::capped(message.into()));
        self
    }

    /// Its OTLP message.
    pub fn to_otlp(&self) -> otlp::Span {
        let kind = match self.kind {
            SpanKind::Internal => otlp::span::SpanKind::Internal,
            SpanKind::Server => otlp::span::SpanKind::Server,
            SpanKind::Client => otlp::span::SpanKind::Client,
        };
        let status = match &self.error {
            Some(message) => otlp::Status {
                message: message.clone(),
                code: otlp::status::StatusCode::Error as i32,
            },
            None => otlp::Status::default(),
        };
        otlp::Span {
            trace_id: self.context.trace_id.0.to_vec(),
            span_id: self.context.span_id.0.to_vec(),
            trace_state: self.context.trace_state.as_deref().unwrap_or("").to_owned(),
            parent_span_id: self.parent.map(|p| p.0.to_vec()).unwrap_or_default(),
            // Bits 0-7: the W3C trace flags (sampled); bit 8: whether the parent is remote
            // is known (it always is here); bit 9: it is.
            flags: u32::from(self.context.sampled) | 0x100 | (u32::from(self.parent_remote) << 9),
            name: self.name.to_string(),
            kind: kind as i32,
            start_time_unix_nano: self.start_unix_ns,
            end_time_unix_nano: self.end_unix_ns.max(self.start_unix_ns),
            attributes: self
                .attributes
                .iter()
                .map(|(k, v)| key_value(k, v))
                .collect(),
            status: Some(status),
            ..Default::default()
        }
    }
}

pub(super) fn key_value(key: &str, value: &AttrValue) -> KeyValue {
    let value = match value {
        AttrValue::Str(s) => any_value::Value::StringValue(s.to_string()),
        AttrValue::Int(i) => any_value::Value::IntValue(*i),
        AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
    };
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// The wall clock at one moment, to place `Instant`s of a request on it alike (each span's
/// times from one reading, so stages never overlap by clock jitter).
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    instant: Instant,
    unix_ns: u64,
}

impl WallClock {
    pub fn now() -> Self {
        Self {
            instant: Instant::now(),
            unix_ns: crate::clock::now_unix_ns(),
        }
    }

    /// Nanoseconds since the Unix epoch at `t`.
    pub fn unix_ns(&self, t: Instant) -> u64 {
        if t <= self.instant {
            let before = (self.instant - t).as_nanos() as u64;
            self.unix_ns.saturating_sub(before)
        } else {
            self.unix_ns + (t - self.instant).as_nanos() as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn instants_land_on_the_wall_clock_in_order() {
        let clock = WallClock::now();
        let earlier = clock.instant - Duration::from_millis(5);
        let later = clock.instant + Duration::from_millis(5);
        assert_eq!(
            clock.unix_ns(earlier) + 5_000_000,
            clock.unix_ns(clock.instant)
        );
        assert_eq!(
            clock.unix_ns(later) - 5_000_000,
            clock.unix_ns(clock.instant)
        );
    }

    #[test]
    fn a_failed_span_has_an_error_status() {
        let clock = WallClock::now();
        let at = Instant::now();
        let ctx = SpanContext::root(true);
        let span = SpanRecord::new(ctx, None, "x", SpanKind::Client, (at, at), &clock)
            .attr("db.system.name", "redis")
            .failed("timed out")
            .to_otlp();
        assert_eq!(
            span.status.unwrap().code,
            otlp::status::StatusCode::Error as i32
        );
        assert_eq!(span.kind, otlp::span::SpanKind::Client as i32);
        assert_eq!(span.attributes[0].key, "db.system.name");
        assert!(span.parent_span_id.is_empty());
    }
}
