//! Open Inference Protocol V2 REST over real HTTP.

mod common;

use common::*;
use serde_json::{json, Value};

fn gateway() -> Gateway {
    start(
        &demo_config(&endpoint("transactions", "champion", "tract"), ""),
        false,
    )
}

/// One input tensor per signature column, for `rows` rows of the v1 fixture.
fn column_inputs(cases: &Value, rows: usize, nested: bool) -> Vec<Value> {
    let types = ["BYTES", "FP32", "INT64", "BOOL", "FP64", "FP64"];
    cases["columns"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let values: Vec<Value> = (0..rows).map(|r| cases["data"][r][c].clone()).collect();
            let (shape, data) = if nested {
                (
                    json!([rows, 1]),
                    Value::Array(values.into_iter().map(|v| json!([v])).collect()),
                )
            } else {
                (json!([rows]), Value::Array(values))
            };
            json!({"name": name, "datatype": types[c], "shape": shape, "data": data})
        })
        .collect()
}

#[test]
fn server_and_model_metadata_and_health() {
    let gw = gateway();
    let meta = gw.get("/v2").json();
    assert_eq!(meta["name"], "modelgate");
    assert!(meta["extensions"].is_array());
    assert_eq!(gw.get("/v2/health/live").status, 200);
    assert_eq!(gw.get("/v2/health/ready").json()["ready"], true);
    let model = gw.get("/v2/models/transactions").json();
    assert_eq!(model["name"], "transactions");
    assert_eq!(model["versions"], json!(["1"]));
    assert_eq!(model["platform"], "onnx_onnxv1");
    let inputs = model["inputs"].as_array().unwrap();
    assert_eq!(
        inputs[0],
        json!({"name": "Product", "datatype": "BYTES", "shape": [-1, 1]})
    );
    assert_eq!(
        inputs[2],
        json!({"name": "transactionCount", "datatype": "INT64", "shape": [-1, 1]})
    );
    assert_eq!(
        model["outputs"][1],
        json!({"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]})
    );
    assert_eq!(
        gw.get("/v2/models/transactions/versions/1").json()["versions"],
        json!(["1"])
    );
    assert_eq!(
        gw.get("/v2/models/transactions/ready").json(),
        json!({"name": "transactions", "ready": true})
    );
    assert_eq!(
        gw.get("/v2/models/transactions/versions/1/ready").status,
        200
    );
    let missing = gw.get("/v2/models/transactions/versions/9/ready");
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"]
        .as_str()
        .unwrap()
        .contains("version '9' is not served"));
    let missing = gw.get("/v2/models/nope");
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"]
        .as_str()
        .unwrap()
        .contains("model 'nope' does not exist"));
}

#[test]
fn infer_with_flat_and_nested_data_matches_python() {
    let gw = gateway();
    let cases = cases(1);
    for nested in [false, true] {
        for path in [
            "/v2/models/transactions/infer",
            "/v2/models/transactions/versions/1/infer",
        ] {
            let body = json!({"id": "req-7", "parameters": {"x": 1}, "inputs": column_inputs(&cases, 8, nested)});
            let reply = gw.post_json(path, &body);
            assert_eq!(reply.status, 200, "{}", reply.text);
            assert_eq!(
                reply.header("served-model-name").as_deref(),
                Some("transactions-champion")
            );
            let v = reply.json();
            assert_eq!(v["id"], "req-7");
            assert_eq!(v["model_name"], "transactions");
            assert_eq!(v["model_version"], "1");
            let label = &v["outputs"][0];
            assert_eq!(label["name"], "label");
            assert_eq!(label["datatype"], "INT64");
            assert_eq!(label["shape"], json!([8]));
            let probs = &v["outputs"][1];
            assert_eq!(probs["datatype"], "FP32");
            assert_eq!(probs["shape"], json!([8, 2]));
            for r in 0..8 {
                assert_eq!(label["data"][r], cases["label"][r]);
                for k in 0..2 {
                    let got = probs["data"][r * 2 + k].as_f64().unwrap();
                    let want = cases["probabilities"][r][k].as_f64().unwrap();
                    assert!((got - want).abs() < 1e-5, "row {r}: {got} vs {want}");
                }
            }
        }
    }
}

#[test]
fn requested_outputs_are_filtered_and_unknown_ones_refused() {
    let gw = gateway();
    let cases = cases(1);
    let body =
        json!({"inputs": column_inputs(&cases, 2, false), "outputs": [{"name": "probabilities"}]});
    let v = gw.post_json("/v2/models/transactions/infer", &body).json();
    assert_eq!(v["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(v["outputs"][0]["name"], "probabilities");
    assert!(v.get("id").is_none());
    let body = json!({"inputs": column_inputs(&cases, 2, false), "outputs": [{"name": "nope"}]});
    let reply = gw.post_json("/v2/models/transactions/infer", &body);
    assert_eq!(reply.status, 400);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("unknown output 'nope'"));
}

#[test]
fn bad_v2_requests_get_errors_naming_the_input() {
    let gw = gateway();
    let cases = cases(1);
    let with = |i: usize, patch: Value| {
        let mut inputs = column_inputs(&cases, 2, false);
        for (k, v) in patch.as_object().unwrap() {
            inputs[i][k] = v.clone();
        }
        json!({ "inputs": inputs })
    };
    let bad: Vec<(Value, u16, &str)> = vec![
        (json!({"inputs": []}), 400, "'inputs' is empty"),
        (json!({"id": "1"}), 400, "missing field `inputs`"),
        (
            with(1, json!({"datatype": "FP8"})),
            400,
            "unknown datatype 'FP8'",
        ),
        (
            with(1, json!({"shape": [3]})),
            400,
            "input 'Amount' has 2 values but shape [3] needs 3",
        ),
        (
            with(1, json!({"data": ["a", "b"]})),
            400,
            "input 'Amount' element 0 is a string",
        ),
        (
            with(2, json!({"datatype": "INT8", "data": [1, 300]})),
            400,
            "element 1 is 300 (out of range)",
        ),
        (
            with(3, json!({"data": [1, 0]})),
            400,
            "input 'isTimeout' element 0 is the number 1",
        ),
        (
            with(0, json!({"datatype": "FP32", "data": [1.0, 2.0]})),
            400,
            "column 'Product' row 0 is a number",
        ),
        (with(1, json!({"shape": [-2]})), 400, "negative dimension"),
        (
            with(1, json!({"shape": [2, 2], "data": [1.0, 2.0, 3.0, 4.0]})),
            400,
            "input 'Amount' has shape [2, 2] but takes one value per row",
        ),
        (
            with(1, json!({"name": "Amountt"})),
            400,
            r#"unknown input column(s) ["Amountt"]"#,
        ),
    ];
    for (body, status, needle) in bad {
        let reply = gw.post_json("/v2/models/transactions/infer", &body);
        assert_eq!(reply.status, status, "{body}: {}", reply.text);
        let msg = reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(msg.contains(needle), "{body}: '{msg}' lacks '{needle}'");
    }
    let reply = gw.post("/v2/models/transactions/infer", "application/json", "{nope");
    assert_eq!(reply.status, 400);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    let reply = gw.post("/v2/models/transactions/infer", "text/csv", "a\n1\n");
    assert_eq!(reply.status, 415);
    // Binary tensor data that does not fit its header is named, not reported as bad JSON.
    for (length, needle) in [
        (
            Some("1000"),
            "Inference-Header-Content-Length is 1000, more than the body's",
        ),
        (
            Some("x"),
            "Inference-Header-Content-Length is not a byte count",
        ),
        (None, "2 bytes follow the last binary input"),
    ] {
        let (status, text) = binary_extension_request(&gw, length);
        assert_eq!(status, 400, "{text}");
        assert!(text.contains(needle), "{text}");
    }
    let reply = gw.post_json(
        "/v2/models/nope/infer",
        &json!({"inputs": column_inputs(&cases, 1, false)}),
    );
    assert_eq!(reply.status, 404);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("endpoint 'nope' does not exist"));
    let reply = gw.post_json(
        "/v2/models/transactions/versions/2/infer",
        &json!({"inputs": column_inputs(&cases, 1, false)}),
    );
    assert_eq!(reply.status, 404);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("version '2' is not served"));
}

/// A binary-extension body: a JSON header with one JSON input and two stray bytes after it;
/// `header_length` as sent, or the header's own length for `None`.
fn binary_extension_request(gw: &Gateway, header_length: Option<&str>) -> (u16, String) {
    let header =
        br#"{"inputs": [{"name": "Amount", "shape": [1], "datatype": "FP64", "data": [1]}]}"#;
    let length = header_length.map_or(header.len().to_string(), str::to_owned);
    let r = client()
        .post(gw.url("/v2/models/transactions/infer"))
        .header("content-type", "application/octet-stream")
        .header("inference-header-content-length", length)
        .body([&header[..], b"\x00\x00"].concat())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().unwrap())
}

/// tritonclient.http from PyPI, unmodified, with its defaults (tensors as raw bytes both ways,
/// the binary tensor data extension), with outputs asked for one by one in either form, and
/// with JSON: the same answers, equal to the fixture's (tests/clients/tritonclient_http.py).
#[test]
fn tritonclient_http_with_binary_tensors_gets_the_json_answers() {
    let gw = gateway();
    let rows = 8;
    let mut client = std::process::Command::new(clients_python());
    client
        .arg(repo().join("tests/clients/tritonclient_http.py"))
        .arg(gw.base.trim_start_matches("http://"))
        .arg("transactions")
        .arg(repo().join("tests/fixtures/transactions_v1_cases.json"))
        .arg(rows.to_string())
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1");
    let got: Value = serde_json::from_slice(&stdout_of(&mut client, "tritonclient.http")).unwrap();
    assert_eq!(
        (&got["live"], &got["ready"], &got["model_ready"]),
        (&json!(true), &json!(true), &json!(true))
    );
    assert!(got["server_metadata"]["extensions"]
        .as_array()
        .unwrap()
        .contains(&json!("binary_tensor_data")));
    assert_eq!(got["model_metadata"]["name"], "transactions");
    assert_eq!(
        got["binary"], got["json"],
        "raw bytes and JSON answer alike"
    );
    assert_eq!(got["mixed"], got["json"]);
    // Asked for as JSON, probabilities came as JSON data; label as raw bytes.
    let parts = &got["mixed_json_part"]["outputs"];
    assert_eq!(
        parts[0]["parameters"]["binary_data_size"],
        rows * 8,
        "{parts}"
    );
    assert!(parts[1]["data"].is_array(), "{parts}");
    let cases = cases(1);
    for r in 0..rows {
        assert_eq!(
            got["json"]["label"][r], cases["label"][r],
            "row {r}: {}",
            got["json"]
        );
        for k in 0..2 {
            let want = cases["probabilities"][r][k].as_f64().unwrap();
            let have = got["binary"]["probabilities"][r][k].as_f64().unwrap();
            assert!((want - have).abs() < 1e-5, "row {r}: {have} vs {want}");
        }
    }
}
