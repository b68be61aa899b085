//! Adaptive batching (`served_entities[].batching`) over real HTTP: concurrent requests to one
//! served entity run as one engine call, each answer holds exactly its own rows (Python
//! onnxruntime's predictions for them), each request is logged on its own, and a model that
//! cannot take batches is refused at load with the reason.

mod common;

use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const SIZES: &str =
    "modelgate_inference_batch_requests_bucket{endpoint=\"b\",served_entity=\"transactions-2\",le=\"1\"}";
const CALLS: &str =
    "modelgate_inference_batch_requests_count{endpoint=\"b\",served_entity=\"transactions-2\"}";
const REQUESTS: &str =
    "modelgate_inference_batch_requests_sum{endpoint=\"b\",served_entity=\"transactions-2\"}";

fn batched_endpoint(capture: &str) -> String {
    format!(
        "  - name: b
    served_entities:
      - entity_name: transactions
        entity_version: \"2\"
        engine: ort
        batching: {{max_rows: 64, max_delay_us: 100000}}
{capture}"
    )
}

/// Rows `first..first + n` of version 2's fixture as a body.
fn rows(cases: &Value, first: usize, n: usize) -> Value {
    let data: Vec<Value> = cases["data"].as_array().unwrap()[first..first + n].to_vec();
    json!({"dataframe_split": {"columns": cases["columns"], "data": data}})
}

/// Asserts `reply` holds Python onnxruntime's predictions for rows `first..first + n`.
fn assert_own_rows(reply: &Reply, cases: &Value, first: usize, n: usize) {
    assert_eq!(reply.status, 200, "{}", reply.text);
    let preds = reply.json()["predictions"].clone();
    assert_eq!(preds.as_array().unwrap().len(), n, "{preds}");
    let rows: Vec<usize> = (first..first + n).collect();
    assert_python_predictions(&preds, cases, &rows, "batched call");
}

/// Bursts of concurrent requests (1 to 3 rows each, every one different) until some engine
/// call has combined several; every answer is checked. Returns the requests and rows sent.
fn bursts_until_combined(gw: &Gateway, cases: &Value) -> (usize, usize) {
    let callers = 24;
    let (mut requests, mut rows_sent) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let start = Barrier::new(callers);
        std::thread::scope(|s| {
            for c in 0..callers {
                let (start, cases) = (&start, cases);
                s.spawn(move || {
                    let (first, n) = ((c * 2) % 60, 1 + c % 3);
                    let body = rows(cases, first, n);
                    start.wait();
                    assert_own_rows(&gw.invoke("b", &body), cases, first, n);
                });
            }
        });
        requests += callers;
        rows_sent += (0..callers).map(|c| 1 + c % 3).sum::<usize>();
        let alone = gw.metric(SIZES).unwrap_or(0.0);
        let calls = gw.metric(CALLS).unwrap_or(0.0);
        if alone < calls {
            assert_eq!(
                gw.metric(REQUESTS),
                Some(requests as f64),
                "every request was in one call"
            );
            assert!(calls < requests as f64);
            return (requests, rows_sent);
        }
        assert!(
            Instant::now() < deadline,
            "no engine call combined two requests in {requests} requests sent {callers} at a time"
        );
    }
}

#[test]
fn concurrent_requests_share_engine_calls_and_each_gets_and_logs_its_own_rows() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config(
        &batched_endpoint("    auto_capture_config: {table_name_prefix: tx}\n"),
        &format!(
            "inference_log:\n  location: {}\n  flush_interval_ms: 50\n",
            dir.path().display()
        ),
    );
    let gw = start(&config, true);
    let cases = cases(2);
    let (requests, rows_sent) = bursts_until_combined(&gw, &cases);
    // One payload row per request and one prediction row per scored row, as unbatched.
    gw.wait_for_metric(
        "modelgate_inference_log_rows_total{endpoint=\"b\",table=\"payload\"}",
        requests as f64,
    );
    gw.wait_for_metric(
        "modelgate_inference_log_rows_total{endpoint=\"b\",table=\"predictions\"}",
        rows_sent as f64,
    );
    let payload = gw
        .metric("modelgate_inference_log_rows_total{endpoint=\"b\",table=\"payload\"}")
        .unwrap();
    assert_eq!(payload, requests as f64, "no request logged twice");
    // A request of more rows than a batch holds runs alone, and is answered all the same.
    let cases64 = rows(&cases, 0, 64);
    let mut big = cases64.clone();
    big["dataframe_split"]["data"]
        .as_array_mut()
        .unwrap()
        .push(cases64["dataframe_split"]["data"][0].clone());
    let reply = gw.invoke("b", &big);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["predictions"].as_array().unwrap().len(), 65);
}

/// A model whose input takes exactly one row cannot take batches: refused at load, naming
/// the setting, the input and its shape.
#[test]
fn a_model_with_a_fixed_row_count_is_refused_with_batching_on() {
    let dir = tempfile::tempdir().unwrap();
    let version = dir.path().join("fixed/1");
    copy_dir(&repo().join("tests/fixtures/registry/scaler/1"), &version);
    // The scaler's input X is [N, 2]; make it [1, 2] (dim_param "N" -> dim_value 1, written
    // as a two-byte varint so no length around it changes).
    let onnx = std::fs::read(version.join("model.onnx")).unwrap();
    let free_row = [0x0a, 0x03, 0x12, 0x01, b'N'];
    let one_row = [0x0a, 0x03, 0x08, 0x81, 0x00];
    let at = onnx
        .windows(free_row.len())
        .position(|w| w == free_row)
        .expect("the scaler's input has a free row dimension");
    let mut fixed = onnx.clone();
    fixed[at..at + free_row.len()].copy_from_slice(&one_row);
    std::fs::write(version.join("model.onnx"), fixed).unwrap();
    let endpoints = |batching: &str| {
        format!(
            "registry:\n  path: {}\nendpoints:\n  - name: s\n    served_entities:\n      - {{entity_name: fixed, entity_version: \"1\", engine: ort{batching}}}\n",
            dir.path().display()
        )
    };
    let err = try_start(&endpoints(", batching: {max_rows: 8}"), true, &[])
        .err()
        .expect("must not start");
    assert!(
        err.contains("batching is on for it (served_entities[].batching)")
            && err.contains("its input 'X' has shape [Some(1), Some(2)]"),
        "{err}"
    );
    // Without batching the same model serves.
    let gw = start(&endpoints(""), true);
    let reply = gw.post_json(
        "/v2/models/s/infer",
        &json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [3.0, 5.0]}]}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
}

/// Bad batching settings are named at start.
#[test]
fn batching_settings_out_of_range_are_named() {
    for (bad, key) in [
        (
            "{max_rows: 0}",
            "served_entities[0].batching.max_rows: 0 is outside 1..=65536",
        ),
        (
            "{max_delay_us: 5000000}",
            "served_entities[0].batching.max_delay_us: 5000000 is outside 1..=1000000",
        ),
        (
            "{max_rows: 8, wait: 1}",
            "found `wait`, expected ``max_rows` or `max_delay_us``",
        ),
    ] {
        let config = demo_config(
            &batched_endpoint("").replace("{max_rows: 64, max_delay_us: 100000}", bad),
            "",
        );
        let err = try_start(&config, true, &[]).err().expect("must not start");
        assert!(err.contains(key), "{bad}: {err}");
    }
}

/// A config update that turns batching on, or off, takes effect (the served entity is loaded
/// anew, with the load's checks), as any change to how it is served does.
#[test]
fn a_config_update_turns_batching_on_and_off() {
    let plain = batched_endpoint("").replace(
        "        batching: {max_rows: 64, max_delay_us: 100000}\n",
        "",
    );
    let gw = start(&demo_config(&plain, ""), true);
    let cases = cases(2);
    let send = |n: usize| {
        for i in 0..n {
            assert_own_rows(&gw.invoke("b", &rows(&cases, i, 1)), &cases, i, 1);
        }
    };
    send(2);
    assert_eq!(gw.metric(CALLS), None, "no batching yet");
    let config = |batching: Option<Value>| {
        let mut entity =
            json!({"entity_name": "transactions", "entity_version": "2", "engine": "ort"});
        if let Some(b) = batching {
            entity["batching"] = b;
        }
        json!({"served_entities": [entity]})
    };
    let settle = |version: u64| {
        wait_for("the config update", Duration::from_secs(60), || {
            let s = gw.get("/api/2.0/serving-endpoints/b").json();
            (s["state"]["config_update"] != "IN_PROGRESS"
                && s["config"]["config_version"] == version)
                .then_some(s)
        })
    };
    let on = config(Some(json!({"max_rows": 16, "max_delay_us": 500})));
    let r = gw.put_json("/api/2.0/serving-endpoints/b/config", &on);
    assert_eq!(r.status, 200, "{}", r.text);
    let s = settle(2);
    assert_eq!(
        s["config"]["served_entities"][0]["batching"],
        json!({"max_rows": 16, "max_delay_us": 500}),
        "{s}"
    );
    send(3);
    assert_eq!(
        gw.metric(CALLS),
        Some(3.0),
        "each request one call of its batch"
    );
    let r = gw.put_json("/api/2.0/serving-endpoints/b/config", &config(None));
    assert_eq!(r.status, 200, "{}", r.text);
    settle(3);
    send(3);
    assert_eq!(
        gw.metric(CALLS),
        Some(3.0),
        "batching off: no more batched calls"
    );
}
