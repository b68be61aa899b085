//! OpenTelemetry spans exported over OTLP to a real receiver: an in-test gRPC server built from
//! the published OTLP protobuf definitions (`opentelemetry-proto`). A request's span is the
//! child of its `traceparent`, with one child per stage; Redis lookups and MLflow calls are
//! spans of the same trace.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::mlflow::MlflowServer;
use common::redis::Redis;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;

/// What the receiver got: spans, with the `service.name` of their resource, and the API key
/// each export call carried.
#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    keys: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let key = request.metadata().get("x-api-key");
        let key = key.and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        self.keys.lock().unwrap().push(key);
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| string(a.value.as_ref()?.value.as_ref()?))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn string(v: &AnyValue) -> Option<String> {
    match v {
        AnyValue::StringValue(s) => Some(s.clone()),
        AnyValue::IntValue(i) => Some(i.to_string()),
        AnyValue::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A span's attributes, as text.
fn attributes(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .filter_map(|a| Some((a.key.clone(), string(a.value.as_ref()?.value.as_ref()?)?)))
        .collect()
}

/// The OTLP receiver on a free loopback port, on a thread of its own.
struct Receiver {
    addr: String,
    received: Received,
}

impl Receiver {
    fn start() -> Self {
        let received = Received::default();
        let service = TraceServiceServer::new(received.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let incoming =
                    tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap())
                        .unwrap();
                tx.send(incoming.local_addr().unwrap()).unwrap();
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(incoming)
                    .await
                    .unwrap();
            });
        });
        let addr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Self {
            addr: format!("http://{addr}"),
            received,
        }
    }

    /// The gateway's `tracing:` section pointing at this receiver.
    fn settings(&self) -> String {
        format!(
            "tracing:\n  enabled: true\n  endpoint: {}\n  export_interval_ms: 50\n  service_name: gw-under-test\n  headers: {{x-api-key: otlp-secret-key}}\n",
            self.addr
        )
    }

    /// The spans of trace `trace_id` (hex), once `done` says they are all here.
    fn trace(&self, trace_id: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans: Vec<Span> = (self.received.spans.lock().unwrap().iter())
                .filter(|(_, s)| hex::encode(&s.trace_id) == trace_id)
                .map(|(_, s)| s.clone())
                .collect();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "trace {trace_id} incomplete after 20 s: {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn has(spans: &[Span], name: &str) -> bool {
    spans.iter().any(|s| s.name == name)
}

fn one_row() -> serde_json::Value {
    let cases = join_cases();
    json!({"dataframe_split": {"columns": cases["columns"], "data": [cases["data"][0]]}})
}

/// POSTs `body` to endpoint `name` with `traceparent` (and a request id).
fn traced_call(gw: &Gateway, name: &str, traceparent: &str, id: &str) -> Reply {
    let r = client()
        .post(gw.url(&format!("/serving-endpoints/{name}/invocations")))
        .header("traceparent", traceparent)
        .header("tracestate", "vendor=opaque")
        .header("x-request-id", id)
        .json(&one_row())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    Reply {
        status,
        headers,
        text: r.text().unwrap(),
    }
}

const STAGES: [&str; 6] = ["queue", "decode", "route", "join", "infer", "encode"];

#[test]
fn a_request_span_is_the_child_of_its_traceparent_with_a_span_per_stage() {
    let receiver = Receiver::start();
    let tables = tempfile::tempdir().unwrap();
    let extra = format!(
        "{}inference_log:\n  location: {}\n  flush_interval_ms: 50\n",
        receiver.settings(),
        tables.path().display()
    );
    let endpoints =
        endpoint("tx", "1", "tract") + "    auto_capture_config: {table_name_prefix: tx}\n";
    let gw = start(&demo_config(&endpoints, &extra), false);

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let r = traced_call(&gw, "tx", &format!("00-{trace_id}-{parent}-01"), "traced-1");
    assert_eq!(r.status, 200, "{}", r.text);
    let spans = receiver.trace(trace_id, |s| {
        has(s, "POST /serving-endpoints/{name}/invocations")
            && STAGES.iter().all(|n| has(s, n))
            && has(s, "log.enqueue")
    });
    let request = named(&spans, "POST /serving-endpoints/{name}/invocations")[0];
    assert_eq!(hex::encode(&request.parent_span_id), parent);
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert_eq!(request.trace_state, "vendor=opaque");
    let attrs = attributes(request);
    assert_eq!(attrs["modelgate.endpoint"], "tx");
    assert_eq!(attrs["modelgate.request_id"], "traced-1");
    assert_eq!(attrs["http.response.status_code"], "200");
    assert_eq!(attrs["modelgate.rows"], "1");
    // Each stage once, a child of the request, inside it, in order.
    let mut previous_end = 0;
    for name in STAGES {
        let stage = named(&spans, name);
        assert_eq!(stage.len(), 1, "{name}: {stage:?}");
        let stage = stage[0];
        assert_eq!(stage.parent_span_id, request.span_id, "{name}");
        assert!(
            stage.start_time_unix_nano >= request.start_time_unix_nano,
            "{name}"
        );
        assert!(
            stage.end_time_unix_nano <= request.end_time_unix_nano,
            "{name}"
        );
        assert!(
            stage.start_time_unix_nano >= previous_end,
            "{name} overlaps its predecessor"
        );
        previous_end = stage.end_time_unix_nano;
    }
    assert_eq!(
        attributes(named(&spans, "infer")[0])["modelgate.served_entity"],
        "transactions-1"
    );
    assert_eq!(
        named(&spans, "log.enqueue")[0].parent_span_id,
        request.span_id
    );

    // The exporter's resource and its headers (a collector's API key).
    let received = receiver.received.spans.lock().unwrap().clone();
    assert!(received
        .iter()
        .all(|(service, _)| service == "gw-under-test"));
    assert!(receiver
        .received
        .keys
        .lock()
        .unwrap()
        .iter()
        .all(|k| k == "otlp-secret-key"));
    // The key is a secret: never in the log.
    assert!(!gw.stderr.lock().unwrap().contains("otlp-secret-key"));

    // A caller that did not sample its trace gets none recorded; one that sends two
    // traceparent headers, or none, gets a trace of its own (sample_ratio 1). Spans leave in
    // order: once the later requests' spans are in, the unsampled one's would have been too.
    let unsampled = "11111111111111111111111111111111";
    let r = traced_call(
        &gw,
        "tx",
        &format!("00-{unsampled}-{parent}-00"),
        "traced-2",
    );
    assert_eq!(r.status, 200);
    let twice = "12121212121212121212121212121212";
    let r = client()
        .post(gw.url("/serving-endpoints/tx/invocations"))
        .header("traceparent", format!("00-{twice}-{parent}-01"))
        .header("traceparent", format!("00-{twice}-{parent}-01"))
        .header("x-request-id", "twice")
        .json(&one_row())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .post(gw.url("/serving-endpoints/tx/invocations"))
        .header("x-request-id", "untraced")
        .json(&one_row())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let root_of = |id: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans = receiver.received.spans.lock().unwrap().clone();
            let root = spans.into_iter().map(|(_, s)| s).find(|s| {
                s.name.starts_with("POST")
                    && attributes(s)
                        .get("modelgate.request_id")
                        .map(String::as_str)
                        == Some(id)
            });
            if let Some(root) = root {
                return root;
            }
            assert!(Instant::now() < deadline, "no span for request {id}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    for id in ["twice", "untraced"] {
        let root = root_of(id);
        assert!(root.parent_span_id.is_empty(), "{id}: a root");
        assert_ne!(hex::encode(&root.trace_id), twice, "{id}");
    }
    let spans = receiver.received.spans.lock().unwrap().clone();
    assert!(
        !spans
            .iter()
            .any(|(_, s)| hex::encode(&s.trace_id) == unsampled),
        "an unsampled trace was exported"
    );

    // A failed request's span says so.
    let failed_trace = "22222222222222222222222222222222";
    let r = client()
        .post(gw.url("/serving-endpoints/tx/invocations"))
        .header("traceparent", format!("00-{failed_trace}-{parent}-01"))
        .json(&json!({"dataframe_split": {"columns": ["nope"], "data": [[1]]}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let spans = receiver.trace(failed_trace, |s| {
        has(s, "POST /serving-endpoints/{name}/invocations")
    });
    // A caller's mistake is not the server's error: the status stays unset, the error's
    // code is an attribute.
    let status = spans[0].status.clone().unwrap();
    assert_eq!(status.code, 0, "UNSET: {status:?}");
    assert_eq!(attributes(&spans[0])["http.response.status_code"], "400");
    assert!(!attributes(&spans[0])["error.type"].is_empty());
    gw.wait_for_metric("modelgate_trace_spans_exported_total", 9.0);
}

#[test]
fn grpc_calls_carry_their_traceparent_in_metadata() {
    use modelgate::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
    use modelgate::grpc::proto::model_infer_request::InferInputTensor;
    use modelgate::grpc::proto::{InferTensorContents, ModelInferRequest};

    let receiver = Receiver::start();
    let extra = format!(
        "{}server:\n  grpc_listen: 127.0.0.1:0\n",
        receiver.settings()
    );
    let gw = start(&demo_config(&endpoint("tx", "1", "tract"), &extra), false);
    let cases = cases(1);
    let types = ["BYTES", "FP32", "INT64", "BOOL", "FP64", "FP64"];
    let inputs = (cases["columns"].as_array().unwrap().iter().enumerate())
        .map(|(c, name)| {
            let v = &cases["data"][0][c];
            let mut contents = InferTensorContents::default();
            match types[c] {
                "BYTES" => {
                    contents.bytes_contents = vec![v.as_str().unwrap().as_bytes().to_vec().into()]
                }
                "FP32" => contents.fp32_contents = vec![v.as_f64().unwrap() as f32],
                "INT64" => contents.int64_contents = vec![v.as_i64().unwrap()],
                "BOOL" => contents.bool_contents = vec![v.as_bool().unwrap()],
                _ => contents.fp64_contents = vec![v.as_f64().unwrap()],
            }
            InferInputTensor {
                name: name.as_str().unwrap().into(),
                datatype: types[c].into(),
                shape: vec![1, 1],
                contents: Some(contents),
                ..Default::default()
            }
        })
        .collect();
    let trace_id = "33333333333333333333333333333333";
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let addr = format!("http://{}", gw.grpc.clone().unwrap());
        let mut client = GrpcInferenceServiceClient::connect(addr).await.unwrap();
        let mut call = tonic::Request::new(ModelInferRequest {
            model_name: "tx".into(),
            inputs,
            ..Default::default()
        });
        let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
        call.metadata_mut()
            .insert("traceparent", traceparent.parse().unwrap());
        client.model_infer(call).await.unwrap();
    });
    let name = "inference.GRPCInferenceService/ModelInfer";
    let spans = receiver.trace(trace_id, |s| {
        has(s, name) && STAGES.iter().all(|n| has(s, n))
    });
    let request = named(&spans, name)[0];
    assert_eq!(hex::encode(&request.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(attributes(request)["rpc.system"], "grpc");
}

#[test]
fn a_redis_lookup_is_a_client_span_of_the_request() {
    let redis = Redis::start();
    let receiver = Receiver::start();
    let tables = demo_feature_tables().replace(
        "features:\n",
        &format!("features:\n  store: redis\n  redis: {{url: 'redis://127.0.0.1:{}', timeout_ms: 500}}\n", redis.port),
    );
    let config = format!(
        "{tables}{}registry:\n  path: {}\ninference:\n  workers: 2\nendpoints:\n{}",
        receiver.settings(),
        demo_registry().display(),
        endpoint("v1", "1", "tract")
    );
    common::redis::load_features(&config);
    let gw = start(&config, false);

    let trace_id = "44444444444444444444444444444444";
    let r = traced_call(
        &gw,
        "v1",
        &format!("00-{trace_id}-00f067aa0ba902b7-01"),
        "redis-1",
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let spans = receiver.trace(trace_id, |s| {
        has(s, "features.lookup")
            && has(s, "infer")
            && has(s, "POST /serving-endpoints/{name}/invocations")
    });
    let request = named(&spans, "POST /serving-endpoints/{name}/invocations")[0];
    let lookup = named(&spans, "features.lookup")[0];
    assert_eq!(lookup.kind, SpanKind::Client as i32);
    assert_eq!(lookup.parent_span_id, request.span_id);
    assert_eq!(attributes(lookup)["db.system.name"], "redis");
    // The lookup comes between routing and the join; the wait for a worker after it is a
    // second queue span, unless Redis answered before the first job looked (one job then).
    let route = named(&spans, "route")[0];
    let join = named(&spans, "join")[0];
    assert!(lookup.start_time_unix_nano >= route.start_time_unix_nano);
    assert!(lookup.end_time_unix_nano <= join.start_time_unix_nano);
    assert!(matches!(named(&spans, "queue").len(), 1 | 2));
}

#[test]
fn a_config_update_traces_its_load_and_its_mlflow_calls() {
    let server = MlflowServer::start();
    server.register("transactions", &demo_registry().join("transactions/1"));
    server.register("transactions", &demo_registry().join("transactions/2"));
    server.set_alias("transactions", "champion", "1");
    let receiver = Receiver::start();
    let cache = tempfile::tempdir().unwrap();
    let config = format!(
        "registry:\n  kind: mlflow\n  uri: {}\n  cache_dir: {}\n{}inference:\n  workers: 2\n  warmup_runs: 1\nendpoints:\n  - name: champion\n    served_entities: [{{entity_name: transactions, entity_version: champion}}]\n",
        server.uri,
        cache.path().display(),
        receiver.settings()
    );
    // Version 2 is a tree ensemble: ort's.
    let gw = start(&config, true);

    // A caller that does not sample: its update's load records nothing (no new trace either),
    // though its registry calls still carry the trace's id.
    let unsampled = "56565656565656565656565656565656";
    let put = |traceparent: String, version: &str| {
        let r = client()
            .put(gw.url("/api/2.0/serving-endpoints/champion/config"))
            .header("traceparent", traceparent)
            .json(&json!({"served_entities": [{"entity_name": "transactions", "entity_version": version}]}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    put(format!("00-{unsampled}-00f067aa0ba902b7-00"), "1");
    wait_for(
        "the unsampled update to settle",
        Duration::from_secs(60),
        || {
            let state = gw.get("/api/2.0/serving-endpoints/champion").json();
            (state["state"]["config_update"] == "NOT_UPDATING").then_some(())
        },
    );

    let trace_id = "55555555555555555555555555555555";
    put(format!("00-{trace_id}-00f067aa0ba902b7-01"), "2");
    let spans = receiver.trace(trace_id, |s| {
        // A registry call's span is queued when it ends, its load's when the load ends:
        // wait for every call's parent too.
        let parent_here = |x: &Span| s.iter().any(|p| p.span_id == x.parent_span_id);
        let calls: Vec<&Span> = s.iter().filter(|x| x.name == "GET").collect();
        has(s, "registry.refresh")
            && has(s, "PUT /api/2.0/serving-endpoints/{name}/config")
            && calls.len() >= 2
            && calls.iter().all(|c| parent_here(c))
    });
    let received = receiver.received.spans.lock().unwrap().clone();
    assert!(
        !received
            .iter()
            .any(|(_, s)| hex::encode(&s.trace_id) == unsampled),
        "the unsampled update was recorded"
    );
    let config_refreshes: Vec<_> = (received.iter())
        .filter(|(_, s)| s.name == "registry.refresh")
        .filter(|(_, s)| attributes(s)["modelgate.trigger"] == "config")
        .map(|(_, s)| hex::encode(&s.trace_id))
        .collect();
    // Every load a config call started is in the sampled call's trace: none has a trace of
    // its own (the unsampled update's would).
    assert!(!config_refreshes.is_empty());
    assert!(
        config_refreshes.iter().all(|t| t == trace_id),
        "no trace of its own for the unsampled update: {config_refreshes:?}"
    );
    let update = named(&spans, "PUT /api/2.0/serving-endpoints/{name}/config")[0];
    assert_eq!(hex::encode(&update.parent_span_id), "00f067aa0ba902b7");
    // Its loads (one per refresh of a served entity): children of the update.
    let refreshes = named(&spans, "registry.refresh");
    for refresh in &refreshes {
        assert_eq!(refresh.parent_span_id, update.span_id);
        let attrs = attributes(refresh);
        assert_eq!(
            attrs.get("modelgate.version").map(String::as_str),
            Some("2"),
            "{refresh:?}"
        );
    }
    let is_refresh = |id: &Vec<u8>| refreshes.iter().any(|r| &r.span_id == id);
    // The registry's calls: children of a refresh (or of the update, which resolves the
    // version before it loads), to the MLflow server, answered.
    let calls = named(&spans, "GET");
    for call in &calls {
        assert_eq!(call.kind, SpanKind::Client as i32);
        assert!(
            is_refresh(&call.parent_span_id) || call.parent_span_id == update.span_id,
            "{call:?}"
        );
        let attrs = attributes(call);
        assert!(attrs["url.full"].starts_with(&server.uri), "{attrs:?}");
        assert_eq!(attrs["http.response.status_code"], "200");
    }
    let downloads = calls
        .iter()
        .filter(|c| is_refresh(&c.parent_span_id))
        .count();
    assert!(
        downloads >= 2,
        "the refresh's own registry calls: {downloads}"
    );
}

/// An OTLP/HTTP receiver (protobuf bodies on `POST /v1/traces`) on a free loopback port: the
/// spans it got, and each call's path and content type.
type Shared<T> = Arc<Mutex<Vec<T>>>;

fn http_receiver() -> (String, Shared<Span>, Shared<String>) {
    use prost::Message;
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let spans = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let (spans_in, calls_in) = (spans.clone(), calls.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let (spans, calls) = (spans_in.clone(), calls_in.clone());
            std::thread::spawn(move || {
                let mut conn = BufReader::new(conn.unwrap());
                // Requests on one connection, one after another (keep-alive).
                loop {
                    let mut head = Vec::new();
                    loop {
                        let mut line = String::new();
                        if conn.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push(line.trim_end().to_owned());
                    }
                    let header = |name: &str| {
                        head.iter().find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                        })
                    };
                    let length: usize = header("content-length").unwrap().parse().unwrap();
                    let mut body = vec![0; length];
                    conn.read_exact(&mut body).unwrap();
                    let path = head[0].split(' ').nth(1).unwrap_or("").to_owned();
                    calls.lock().unwrap().push(format!(
                        "{path} {}",
                        header("content-type").unwrap_or_default()
                    ));
                    let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
                    for resource in request.resource_spans {
                        for scope in resource.scope_spans {
                            spans.lock().unwrap().extend(scope.spans);
                        }
                    }
                    let ok = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    conn.get_mut().write_all(ok.as_bytes()).unwrap();
                }
            });
        }
    });
    (url, spans, calls)
}

#[test]
fn spans_go_over_otlp_http_with_protobuf_bodies() {
    let (url, spans, calls) = http_receiver();
    let extra = format!(
        "tracing:\n  enabled: true\n  protocol: http/protobuf\n  endpoint: {url}\n  export_interval_ms: 50\n"
    );
    let gw = start(&demo_config(&endpoint("tx", "1", "tract"), &extra), false);
    let trace_id = "66666666666666666666666666666666";
    let r = traced_call(
        &gw,
        "tx",
        &format!("00-{trace_id}-00f067aa0ba902b7-01"),
        "http-1",
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let names: Vec<String> = (spans.lock().unwrap().iter())
            .filter(|s| hex::encode(&s.trace_id) == trace_id)
            .map(|s| s.name.clone())
            .collect();
        if STAGES.iter().all(|s| names.iter().any(|n| n == s))
            && names.iter().any(|n| n.starts_with("POST "))
        {
            break;
        }
        assert!(Instant::now() < deadline, "spans so far: {names:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let calls = calls.lock().unwrap().clone();
    assert!(
        calls
            .iter()
            .all(|c| c == "/v1/traces application/x-protobuf"),
        "{calls:?}"
    );
}
