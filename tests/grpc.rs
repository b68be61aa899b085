//! Open Inference Protocol V2 over gRPC on a real HTTP/2 connection: tritonclient.grpc from
//! PyPI, unmodified (health, metadata, infer with raw contents), and a tonic client for typed
//! contents, tokens in metadata and statuses. Answers equal the JSON REST path's.

mod common;

use common::*;
use modelgate::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use modelgate::grpc::proto::model_infer_request::InferInputTensor;
use modelgate::grpc::proto::{InferTensorContents, ModelInferRequest, ModelReadyRequest};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const ROWS: usize = 8;

/// Runs a client's calls to completion on a runtime of the test's own.
fn block_on<F: std::future::Future>(calls: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(calls)
}

/// A call's message with `token` as its bearer token.
fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// The `ModelReady` request of `name`, any version.
fn ready(name: &str) -> ModelReadyRequest {
    ModelReadyRequest {
        name: name.into(),
        version: String::new(),
    }
}

/// A tokens file in `dir` with one token, `app` (`query-secret`, query scope).
fn query_tokens(dir: &std::path::Path) -> std::path::PathBuf {
    let tokens = dir.join("tokens.yaml");
    let sha = hex::encode(Sha256::digest(b"query-secret"));
    std::fs::write(
        &tokens,
        format!("tokens:\n  - {{name: app, sha256: {sha}, scopes: [query]}}\n"),
    )
    .unwrap();
    tokens
}

/// A gateway with gRPC on, tokens on (`app`: query scope).
fn gateway(dir: &std::path::Path) -> Gateway {
    let tokens = query_tokens(dir);
    let extra = format!(
        "server:\n  grpc_listen: 127.0.0.1:0\nauth:\n  enabled: true\n  tokens_file: {}\n",
        tokens.display()
    );
    start(
        &demo_config(&endpoint("transactions", "champion", "tract"), &extra),
        false,
    )
}

/// The JSON REST answer for the fixture's first rows, as V2 outputs by name.
fn rest_answer(gw: &Gateway, cases: &Value) -> Value {
    let types = ["BYTES", "FP32", "INT64", "BOOL", "FP64", "FP64"];
    let inputs: Vec<Value> = cases["columns"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let data: Vec<Value> = (0..ROWS).map(|r| cases["data"][r][c].clone()).collect();
            json!({"name": name, "datatype": types[c], "shape": [ROWS, 1], "data": data})
        })
        .collect();
    let r = reqwest::blocking::Client::new()
        .post(gw.url("/v2/models/transactions/infer"))
        .bearer_auth("query-secret")
        .json(&json!({ "inputs": inputs }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

/// The labels of a V2 REST answer.
fn rest_labels(rest: &Value) -> Vec<i64> {
    rest["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

#[test]
fn tritonclient_grpc_gets_the_rest_answers() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path());
    let cases = cases(1);
    let rest = rest_answer(&gw, &cases);
    let mut client = std::process::Command::new(clients_python());
    client
        .arg(repo().join("tests/clients/tritonclient_grpc.py"))
        .arg(gw.grpc.as_deref().unwrap())
        .arg("transactions")
        .arg(repo().join("tests/fixtures/transactions_v1_cases.json"))
        .arg(ROWS.to_string())
        .arg("query-secret")
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1");
    let got: Value = serde_json::from_slice(&stdout_of(&mut client, "tritonclient.grpc")).unwrap();
    assert_eq!(
        (&got["live"], &got["ready"], &got["model_ready"]),
        (&json!(true), &json!(true), &json!(true))
    );
    assert_eq!(got["server_metadata"]["name"], "modelgate");
    assert_eq!(got["model_metadata"]["platform"], "onnx_onnxv1");
    assert_eq!(got["model_metadata"]["inputs"][0]["name"], "Product");
    assert_eq!(got["infer_id"], "tg-1");
    let labels: Vec<i64> = got["infer"]["label"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(labels, rest_labels(&rest));
    // Both float32: the raw bytes, and REST's shortest decimal of the same float32.
    let probabilities: Vec<f32> = got["infer"]["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect();
    let rest_probabilities: Vec<f32> = rest["outputs"][1]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(
        probabilities, rest_probabilities,
        "raw float32 bytes, the same values"
    );
    assert_eq!(got["only"], json!(["probabilities"]));
    assert_eq!(
        got["missing"][0], "StatusCode.NOT_FOUND",
        "{}",
        got["missing"]
    );
    assert!(got["missing"][1].as_str().unwrap().contains("'nope'"));
    let metrics = gw.get("/metrics").text;
    assert!(metrics.contains("protocol=\"v2_grpc\""), "counted as gRPC");
}

/// Typed contents (the protocol's other form) answer as raw ones do; a call without a token,
/// with a bad one, or with contents that do not fit gets the status that says so.
#[test]
fn typed_contents_tokens_and_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path());
    let cases = cases(1);
    let rest = rest_answer(&gw, &cases);
    let column =
        |c: usize| -> Vec<Value> { (0..ROWS).map(|r| cases["data"][r][c].clone()).collect() };
    let contents = |c: usize| -> InferTensorContents {
        let v = column(c);
        match c {
            0 => InferTensorContents {
                bytes_contents: v
                    .iter()
                    .map(|s| s.as_str().unwrap().to_owned().into())
                    .collect(),
                ..Default::default()
            },
            1 => InferTensorContents {
                fp32_contents: v.iter().map(|x| x.as_f64().unwrap() as f32).collect(),
                ..Default::default()
            },
            2 => InferTensorContents {
                int64_contents: v.iter().map(|x| x.as_i64().unwrap()).collect(),
                ..Default::default()
            },
            3 => InferTensorContents {
                bool_contents: v.iter().map(|x| x.as_bool().unwrap()).collect(),
                ..Default::default()
            },
            _ => InferTensorContents {
                fp64_contents: v.iter().map(|x| x.as_f64().unwrap()).collect(),
                ..Default::default()
            },
        }
    };
    let types = ["BYTES", "FP32", "INT64", "BOOL", "FP64", "FP64"];
    let request = ModelInferRequest {
        model_name: "transactions".into(),
        inputs: (0..6)
            .map(|c| InferInputTensor {
                name: cases["columns"][c].as_str().unwrap().into(),
                datatype: types[c].into(),
                shape: vec![ROWS as i64, 1],
                parameters: Default::default(),
                contents: Some(contents(c)),
            })
            .collect(),
        ..Default::default()
    };
    let url = format!("http://{}", gw.grpc.as_deref().unwrap());
    block_on(async {
        let mut client = GrpcInferenceServiceClient::connect(url).await.unwrap();
        let answer = client
            .model_infer(with_token(request.clone(), "query-secret"))
            .await
            .unwrap();
        assert!(answer.metadata().get("x-request-id").is_some());
        let answer = answer.into_inner();
        let labels: Vec<i64> = answer.raw_output_contents[0]
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(labels, rest_labels(&rest));
        assert_eq!(answer.outputs[1].shape, [ROWS as i64, 2]);

        let status = client
            .model_infer(tonic::Request::new(request.clone()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
        let status = client
            .model_infer(with_token(request.clone(), "nope"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        let mut short = request.clone();
        short.inputs[2].contents = Some(InferTensorContents {
            int64_contents: vec![1],
            ..Default::default()
        });
        let status = client
            .model_infer(with_token(short, "query-secret"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("transactionCount"), "{status:?}");
        // A message over server.max_body_bytes from a caller without a token: refused for the
        // token, from the headers, before the message is read.
        let mut huge = request.clone();
        huge.raw_input_contents = vec![vec![0u8; 17 << 20].into()];
        let mut client = client.max_encoding_message_size(usize::MAX);
        let status = client
            .model_infer(tonic::Request::new(huge.clone()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
        let status = client
            .model_infer(with_token(huge, "query-secret"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
        let status = client
            .model_ready(with_token(
                ModelReadyRequest {
                    version: "9".into(),
                    ..ready("transactions")
                },
                "query-secret",
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
    });
}

/// `server.max_connections` bounds gRPC connections too: a second one waits in the backlog
/// until the first closes.
#[test]
fn connections_are_bounded() {
    let config = demo_config(
        &endpoint("transactions", "champion", "tract"),
        "server:\n  grpc_listen: 127.0.0.1:0\n  max_connections: 1\n  http_workers: 1\n",
    );
    let gw = start(&config, false);
    let url = format!("http://{}", gw.grpc.as_deref().unwrap());
    block_on(async {
        let mut first = GrpcInferenceServiceClient::connect(url.clone())
            .await
            .unwrap();
        assert!(
            first
                .model_ready(ready("transactions"))
                .await
                .unwrap()
                .into_inner()
                .ready
        );
        // Not answered while the first holds the only connection.
        let second = tokio::time::timeout(std::time::Duration::from_millis(500), async {
            let mut c = GrpcInferenceServiceClient::connect(url.clone()).await?;
            c.model_ready(ready("transactions"))
                .await
                .map_err(Box::<dyn std::error::Error>::from)
        })
        .await;
        assert!(second.is_err(), "a second connection was served");
        drop(first);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let attempt = tokio::time::timeout(std::time::Duration::from_secs(1), async {
                let mut c = GrpcInferenceServiceClient::connect(url.clone()).await?;
                c.model_ready(ready("transactions"))
                    .await
                    .map_err(Box::<dyn std::error::Error>::from)
            })
            .await;
            if matches!(attempt, Ok(Ok(_))) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never served after the first closed"
            );
        }
    });
}

/// A connection that sends nothing is closed after server.grpc_idle_timeout_seconds.
#[test]
fn idle_connections_are_closed() {
    use std::io::Read;
    let config = demo_config(
        &endpoint("transactions", "champion", "tract"),
        "server:\n  grpc_listen: 127.0.0.1:0\n  grpc_idle_timeout_seconds: 1\n",
    );
    let gw = start(&config, false);
    let mut idle = std::net::TcpStream::connect(gw.grpc.as_deref().unwrap()).unwrap();
    idle.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let started = std::time::Instant::now();
    // The server's HTTP/2 preface may come first; then the close (0 bytes).
    let mut buf = [0u8; 1024];
    loop {
        match idle.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("still open after {:?}: {e}", started.elapsed()),
        }
    }
}

/// With `log.access`, every gRPC call has its access line, with its gRPC status.
#[test]
fn grpc_calls_are_in_the_access_log() {
    let config = demo_config(
        &endpoint("transactions", "champion", "tract"),
        "server:\n  grpc_listen: 127.0.0.1:0\nlog:\n  format: json\n  access: true\n",
    );
    let gw = start(&config, false);
    let url = format!("http://{}", gw.grpc.as_deref().unwrap());
    block_on(async {
        let mut client = GrpcInferenceServiceClient::connect(url).await.unwrap();
        for name in ["transactions", "nope"] {
            let _ = client.model_ready(ready(name)).await;
        }
    });
    let lines = wait_for(
        "two gRPC access lines",
        std::time::Duration::from_secs(10),
        || {
            let stderr = gw.stderr.lock().unwrap().clone();
            let lines: Vec<Value> = stderr
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["target"] == "modelgate::access")
                .collect();
            (lines.len() >= 2).then_some(lines)
        },
    );
    let codes: Vec<&Value> = lines.iter().map(|l| &l["grpc_status"]).collect();
    assert_eq!(
        codes,
        [&json!(0), &json!(5)],
        "OK, then NOT_FOUND: {lines:?}"
    );
    assert_eq!(
        lines[0]["path"],
        "/inference.GRPCInferenceService/ModelReady"
    );
}

/// With `server.tls`, gRPC is served inside TLS with the HTTPS certificate: tritonclient.grpc
/// with `ssl=True` and the CA gets the fixture's answers; a client in the clear gets nothing.
#[test]
fn grpc_is_served_inside_tls_with_the_https_certificate() {
    let dir = tempfile::tempdir().unwrap();
    common::certs::make_ca(dir.path());
    common::certs::make_leaf(dir.path(), "server");
    let tokens = query_tokens(dir.path());
    let extra = format!(
        "server:\n  grpc_listen: 127.0.0.1:0\n  tls: {{cert_file: {}, key_file: {}}}\nauth:\n  enabled: true\n  tokens_file: {}\n",
        dir.path().join("server.pem").display(),
        dir.path().join("server.key").display(),
        tokens.display()
    );
    let gw = start(
        &demo_config(&endpoint("transactions", "1", "tract"), &extra),
        false,
    );
    let addr = gw.grpc.clone().unwrap();
    let mut client = std::process::Command::new(clients_python());
    client
        .arg(repo().join("tests/clients/tritonclient_grpc.py"))
        .arg(&addr)
        .arg("transactions")
        .arg(repo().join("tests/fixtures/transactions_v1_cases.json"))
        .arg("3")
        .arg("query-secret")
        .env("MODELGATE_GRPC_CA", dir.path().join("ca.pem"))
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1");
    let got: Value =
        serde_json::from_slice(&stdout_of(&mut client, "tritonclient.grpc over TLS")).unwrap();
    assert_eq!(got["live"], json!(true));
    let fixture = cases(1);
    let want = &fixture["label"].as_array().unwrap()[..3];
    assert_eq!(got["infer"]["label"].as_array().unwrap(), want);

    // A plaintext HTTP/2 client is not served: its connection fails.
    let plain = block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(5));
        match channel.connect().await {
            Err(e) => Err(e.to_string()),
            Ok(ch) => GrpcInferenceServiceClient::new(ch)
                .model_ready(with_token(ready("transactions"), "query-secret"))
                .await
                .map(|_| ())
                .map_err(|s| s.to_string()),
        }
    });
    assert!(plain.is_err(), "a plaintext call was answered");
}

/// A `ModelInfer` message is read on the wire before tonic decodes it: more inputs than
/// `limits.max_columns` are refused by name, and one whose decoded form would not fit the body
/// budget (shared with REST) is refused saying so; nothing stays held after either.
#[test]
fn messages_are_bounded_by_what_they_decode_to_before_decoding() {
    let extra = "server:\n  grpc_listen: 127.0.0.1:0\n  max_body_bytes: 1000000\n  max_inflight_body_bytes: 1000000\n";
    let gw = start(
        &demo_config(&endpoint("transactions", "1", "tract"), extra),
        false,
    );
    let url = format!("http://{}", gw.grpc.as_deref().unwrap());
    let call = |request: ModelInferRequest| {
        let url = url.clone();
        block_on(async move {
            let mut client = GrpcInferenceServiceClient::connect(url).await.unwrap();
            client.model_infer(request).await.map(|_| ())
        })
    };
    // 2 bytes each on the wire, hundreds once decoded: 4,096 of them are 8 KB.
    let many = ModelInferRequest {
        model_name: "transactions".into(),
        inputs: vec![InferInputTensor::default(); 4096],
        ..Default::default()
    };
    let refused = call(many).unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("limits.max_columns"),
        "{refused:?}"
    );

    // 600 KB on the wire, within max_body_bytes; more than the budget once decoded.
    let wide = ModelInferRequest {
        model_name: "transactions".into(),
        inputs: (0..2000)
            .map(|i| InferInputTensor {
                name: format!("{i:0>290}"),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let refused = call(wide).unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("decodes to about"),
        "{refused:?}"
    );
    assert!(
        refused.message().contains("server.max_inflight_body_bytes"),
        "{refused:?}"
    );
    // A unary call carries one message: a second one (which tonic would decode before the
    // service sees the first) is refused. Sent by hand: clients never send two.
    use prost::Message;
    let one = ModelInferRequest {
        model_name: "transactions".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let mut body = Vec::new();
    for message in [&one, &one] {
        body.push(0u8);
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(message);
    }
    let h2 = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2
        .post(format!("{url}/inference.GRPCInferenceService/ModelInfer"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .send()
        .unwrap();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(
        header("grpc-status").as_deref(),
        Some("3"),
        "{:?}",
        r.headers()
    );
    let message = header("grpc-message").unwrap_or_default();
    assert!(message.contains("one%20message"), "{message}");

    let metric = |name: &str| gw.metric(name).unwrap_or(0.0);
    assert!(metric("modelgate_limit_refusals_total{limit=\"columns\"}") >= 1.0);
    // Given back once each refusal is answered.
    wait_for(
        "the body budget to be empty",
        std::time::Duration::from_secs(10),
        || (metric("modelgate_inflight_body_bytes") == 0.0).then_some(()),
    );
}
