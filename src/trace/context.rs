//! W3C Trace Context: the ids of a trace and a span, and the `traceparent` header that carries
//! them between processes (https://www.w3.org/TR/trace-context/).

use std::fmt::Write;

/// A trace's id: 16 bytes, never all zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// A span's id: 8 bytes, never all zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    pub fn random() -> Self {
        loop {
            let id = fastrand::u128(..).to_be_bytes();
            if id != [0; 16] {
                return Self(id);
            }
        }
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl SpanId {
    pub fn random() -> Self {
        loop {
            let id = fastrand::u64(..).to_be_bytes();
            if id != [0; 8] {
                return Self(id);
            }
        }
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// The longest `tracestate` kept: the W3C limit is 32 members of up to 256 bytes each, and
/// a vendor's state beyond this is dropped rather than held per request.
pub const MAX_TRACE_STATE_BYTES: usize = 512;

/// Where a span sits: its trace, its own id, whether the trace is sampled (recorded), and
/// the vendors' `tracestate` passed along unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
    pub trace_state: Option<Box<str>>,
}

impl SpanContext {
    /// Reads a `traceparent` header value (and `tracestate`, when it came along). `None` when
    /// it is not one: the request then starts a trace of its own, as the spec says.
    pub fn from_headers(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let value = traceparent.trim_matches([' ', '\t']).as_bytes();
        if value.len() < 55 {
            return None;
        }
        let version = lower_hex(&value[0..2])?;
        // Version ff is invalid; version 00 is exactly 55 bytes; a later version may append
        // fields after a '-', which a version-00 reader ignores.
        if version == [0xff] || (version == [0] && value.len() != 55) {
            return None;
        }
        if value.len() > 55 && value[55] != b'-' {
            return None;
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let trace_id: [u8; 16] = lower_hex(&value[3..35])?.try_into().ok()?;
        let span_id: [u8; 8] = lower_hex(&value[36..52])?.try_into().ok()?;
        let flags = lower_hex(&value[53..55])?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        let trace_state = tracestate
            .map(|s| s.trim_matches([' ', '\t']))
            .filter(|s| !s.is_empty() && s.len() <= MAX_TRACE_STATE_BYTES && s.is_ascii())
            .map(Box::from);
        Some(Self {
            trace_id: TraceId(trace_id),
            span_id: SpanId(span_id),
            sampled: flags & 1 == 1,
            trace_state,
        })
    }

    /// A new trace's root.
    pub fn root(sampled: bool) -> Self {
        Self {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            sampled,
            trace_state: None,
        }
    }

    /// A new span in this one's trace.
    pub fn child(&self) -> Self {
        Self {
            span_id: SpanId::random(),
            ..self.clone()
        }
    }

    /// This span as a `traceparent` header value (version 00).
    pub fn traceparent(&self) -> String {
        let mut s = String::with_capacity(55);
        let _ = write!(
            s,
            "00-{}-{}-{:02x}",
            self.trace_id.hex(),
            self.span_id.hex(),
            u8::from(self.sampled)
        );
        s
    }
}

/// Lowercase hex digits as bytes; `None` for anything else (uppercase is invalid in
/// `traceparent`).
fn lower_hex(digits: &[u8]) -> Option<Vec<u8>> {
    if digits.len() % 2 != 0
        || !digits
            .iter()
            .all(|d| matches!(d, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    hex::decode(digits).ok()
}

/// Whether a new trace is sampled at `ratio`, from its id (so every replica that sees the
/// id decides alike): its last 8 bytes against the ratio's share of their range.
pub fn sampled_at(trace_id: &TraceId, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let low = u64::from_be_bytes(trace_id.0[8..].try_into().expect("8 bytes"));
    (low >> 1) < (ratio * (1u64 << 63) as f64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_and_writes_the_specs_example() {
        let c = SpanContext::from_headers(EXAMPLE, Some("congo=t61rcWkgMzE")).unwrap();
        assert_eq!(c.trace_id.hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.span_id.hex(), "00f067aa0ba902b7");
        assert!(c.sampled);
        assert_eq!(c.trace_state.as_deref(), Some("congo=t61rcWkgMzE"));
        assert_eq!(c.traceparent(), EXAMPLE);
        let unsampled = SpanContext::from_headers(&EXAMPLE.replace("-01", "-00"), None).unwrap();
        assert!(!unsampled.sampled);
    }

    #[test]
    fn refuses_what_the_spec_calls_invalid() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(SpanContext::from_headers(bad, None), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_may_append_fields() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes";
        assert!(SpanContext::from_headers(later, None).is_some());
    }

    #[test]
    fn a_long_tracestate_is_dropped_not_kept() {
        let long = "a=".to_owned() + &"b".repeat(MAX_TRACE_STATE_BYTES);
        let c = SpanContext::from_headers(EXAMPLE, Some(&long)).unwrap();
        assert_eq!(c.trace_state, None);
    }

    #[test]
    fn children_share_the_trace_not_the_span() {
        let root = SpanContext::root(true);
        let child = root.child();
        assert_eq!(root.trace_id, child.trace_id);
        assert_ne!(root.span_id, child.span_id);
    }

    #[test]
    fn sampling_follows_the_ratio() {
        assert!(sampled_at(&TraceId::random(), 1.0));
        assert!(!sampled_at(&TraceId::random(), 0.0));
        let kept = (0..10_000)
            .filter(|_| sampled_at(&TraceId::random(), 0.25))
            .count();
        assert!((2_000..3_000).contains(&kept), "{kept} of 10000 at 0.25");
    }
}
