//! `tracing`: OpenTelemetry spans of requests and registry loads, exported over OTLP. Off by
//! default: a span costs the exporter's CPU, and a deployment names where spans go.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (`TraceService/Export`), plaintext HTTP/2: a collector beside the gateway.
    #[default]
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`POST {endpoint}/v1/traces`), `http://` or `https://`.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TracingSettings {
    /// Export spans. Off by default.
    pub enabled: bool,
    /// The collector: `http://host:4317` for gRPC; for `http/protobuf` its base URL
    /// (`/v1/traces` is appended) or the full traces URL.
    pub endpoint: Option<String>,
    pub protocol: OtlpProtocol,
    /// Headers sent with each export (a vendor's API key): values are secrets, never printed.
    pub headers: BTreeMap<String, String>,
    /// `service.name` of the spans' resource.
    pub service_name: String,
    /// The share of requests without a sampled parent that start a trace (0 to 1). A request
    /// whose `traceparent` carries a sampling decision follows it.
    pub sample_ratio: f64,
    /// Spans waiting for export; when full, new spans are dropped and counted
    /// (`modelgate_trace_spans_dropped_total{reason="queue_full"}`).
    pub max_queue_spans: usize,
    /// Spans per export call.
    pub max_export_batch: usize,
    /// How long a span waits before its batch is sent, at most.
    pub export_interval_ms: u64,
    /// The deadline of one export call; a batch that misses it is dropped and counted.
    pub export_timeout_ms: u64,
}

impl Default for TracingSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: None,
            protocol: OtlpProtocol::Grpc,
            headers: BTreeMap::new(),
            service_name: "modelgate".into(),
            sample_ratio: 1.0,
            max_queue_spans: 8192,
            max_export_batch: 512,
            export_interval_ms: 1000,
            export_timeout_ms: 10_000,
        }
    }
}

/// Spans one export call may carry, at most: a bound on the exporter's memory per call.
pub const MAX_EXPORT_BATCH: usize = 8192;
/// Spans that may wait, at most.
pub const MAX_QUEUE_SPANS: usize = 1 << 20;

impl TracingSettings {
    /// The collector's URL, by protocol's default port when none is set.
    pub fn endpoint(&self) -> String {
        match (&self.endpoint, self.protocol) {
            (Some(e), _) => e.trim_end_matches('/').to_owned(),
            (None, OtlpProtocol::Grpc) => "http://localhost:4317".into(),
            (None, OtlpProtocol::HttpProtobuf) => "http://localhost:4318".into(),
        }
    }

    /// Where `http/protobuf` posts: the endpoint, with `/v1/traces` unless it names a path.
    pub fn traces_url(&self) -> String {
        let base = self.endpoint();
        if base.ends_with("/v1/traces") {
            base
        } else {
            format!("{base}/v1/traces")
        }
    }

    /// The first problem of these settings: its key (under `tracing.`) and what is wrong.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Some((
                "sample_ratio",
                format!("must be within 0 and 1, not {}", self.sample_ratio),
            ));
        }
        if !(1..=MAX_QUEUE_SPANS).contains(&self.max_queue_spans) {
            return Some((
                "max_queue_spans",
                format!("must be within 1 and {MAX_QUEUE_SPANS}"),
            ));
        }
        if !(1..=MAX_EXPORT_BATCH).contains(&self.max_export_batch) {
            return Some((
                "max_export_batch",
                format!("must be within 1 and {MAX_EXPORT_BATCH}"),
            ));
        }
        if self.export_interval_ms == 0 || self.export_timeout_ms == 0 {
            return Some((
                "export_timeout_ms",
                "export_interval_ms and export_timeout_ms must be above 0".into(),
            ));
        }
        if self.service_name.is_empty() {
            return Some(("service_name", "must not be empty".into()));
        }
        let endpoint = self.endpoint();
        let Ok(url) = reqwest::Url::parse(&endpoint) else {
            return Some((
                "endpoint",
                format!("'{endpoint}' is not a URL (http://collector:4317)"),
            ));
        };
        match (url.scheme(), self.protocol) {
            ("http", _) | ("https", OtlpProtocol::HttpProtobuf) => {}
            ("https", OtlpProtocol::Grpc) => {
                return Some((
                    "endpoint",
                    "OTLP/gRPC export is plaintext (a collector beside the gateway); for https, set tracing.protocol: http/protobuf".into(),
                ))
            }
            (other, _) => {
                return Some(("endpoint", format!("scheme '{other}' is not http or https")));
            }
        }
        for (name, value) in &self.headers {
            // gRPC metadata: ASCII values only, and `-bin` names are binary metadata.
            let grpc_only = self.protocol == OtlpProtocol::Grpc
                && (name.to_ascii_lowercase().ends_with("-bin") || !value.is_ascii());
            if grpc_only
                || reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(value).is_err()
            {
                return Some((
                    "headers",
                    format!("'{name}' is not a valid header name and value"),
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_off_and_valid() {
        let s = TracingSettings::default();
        assert!(!s.enabled);
        assert_eq!(s.problem(), None);
        assert_eq!(s.endpoint(), "http://localhost:4317");
    }

    #[test]
    fn http_protobuf_appends_the_traces_path_once() {
        let mut s = TracingSettings {
            protocol: OtlpProtocol::HttpProtobuf,
            endpoint: Some("https://otel.example:4318/".into()),
            ..Default::default()
        };
        assert_eq!(s.traces_url(), "https://otel.example:4318/v1/traces");
        s.endpoint = Some("https://otel.example/v1/traces".into());
        assert_eq!(s.traces_url(), "https://otel.example/v1/traces");
        assert_eq!(s.problem(), None);
    }

    #[test]
    fn problems_are_named() {
        let bad = |s: TracingSettings| s.problem().unwrap().0;
        let base = TracingSettings::default;
        assert_eq!(
            bad(TracingSettings {
                sample_ratio: 1.5,
                ..base()
            }),
            "sample_ratio"
        );
        assert_eq!(
            bad(TracingSettings {
                max_queue_spans: 0,
                ..base()
            }),
            "max_queue_spans"
        );
        assert_eq!(
            bad(TracingSettings {
                endpoint: Some("https://c:4317".into()),
                ..base()
            }),
            "endpoint"
        );
        assert_eq!(
            bad(TracingSettings {
                endpoint: Some("c:4317 x".into()),
                ..base()
            }),
            "endpoint"
        );
        let mut headers = BTreeMap::new();
        headers.insert("bad name".into(), "v".into());
        assert_eq!(bad(TracingSettings { headers, ..base() }), "headers");
    }
}
