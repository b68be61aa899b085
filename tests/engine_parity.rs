//! Predictions equal Python onnxruntime's on the same inputs (fixtures from models/train.py),
//! for every engine that can run each version; graphs an engine cannot run are refused at load.

mod common;

use common::*;
use serde_json::{json, Value};

fn assert_matches_python(gw: &Gateway, endpoint: &str, version: u32) {
    let cases = cases(version);
    let n = cases["data"].as_array().unwrap().len();
    let reply = gw.invoke(endpoint, &split_body(&cases, n));
    assert_eq!(reply.status, 200, "{endpoint}: {}", reply.text);
    let preds = reply.json()["predictions"].clone();
    for r in 0..n {
        assert_eq!(preds[r]["label"], cases["label"][r], "{endpoint} row {r}");
        let got = preds[r]["probability"].as_f64().unwrap();
        let want = cases["probabilities"][r][1].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-5,
            "{endpoint} row {r}: {got} vs python {want}"
        );
    }
    // Raw tensors through V2 carry both class probabilities.
    let inputs: Vec<Value> = (0..6)
        .map(|c| {
            let name = cases["columns"][c].clone();
            let data: Vec<Value> = (0..n).map(|r| cases["data"][r][c].clone()).collect();
            let dt = ["BYTES", "FP32", "INT64", "BOOL", "FP32", "FP32"][c];
            json!({"name": name, "datatype": dt, "shape": [n, 1], "data": data})
        })
        .collect();
    let v = gw
        .post_json(
            &format!("/v2/models/{endpoint}/infer"),
            &json!({"inputs": inputs}),
        )
        .json();
    let probs = v["outputs"][1]["data"].as_array().unwrap();
    for r in 0..n {
        for k in 0..2 {
            let (got, want) = (
                probs[r * 2 + k].as_f64().unwrap(),
                cases["probabilities"][r][k].as_f64().unwrap(),
            );
            assert!(
                (got - want).abs() <= 1e-5,
                "{endpoint} v2 row {r}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn both_engines_match_python_onnxruntime() {
    let config = demo_config(
        &[
            endpoint("v1-tract", "1", "tract"),
            endpoint("v1-ort", "1", "ort"),
            endpoint("v2-ort", "2", "ort"),
        ]
        .concat(),
        "",
    );
    let gw = start(&config, true);
    assert_matches_python(&gw, "v1-tract", 1);
    assert_matches_python(&gw, "v1-ort", 1);
    assert_matches_python(&gw, "v2-ort", 2);
    let metrics = gw.get("/metrics").text;
    assert!(metrics.contains(
        "engine=\"tract\",model=\"transactions\",served_entity=\"transactions-1\",version=\"1\"} 1"
    ));
    assert!(metrics.contains(
        "engine=\"ort\",model=\"transactions\",served_entity=\"transactions-2\",version=\"2\"} 1"
    ));
}

#[test]
fn auto_uses_ort_when_its_library_loads_and_tract_otherwise() {
    let config = demo_config(&endpoint("t", "1", "auto"), "");
    let gw = start(&config, true);
    assert!(gw.get("/metrics").text.contains("engine=\"ort\""));
    drop(gw);
    let gw = start(&config, false);
    assert!(gw.get("/metrics").text.contains("engine=\"tract\""));
}

#[test]
fn engine_ort_without_its_library_is_a_clear_startup_error() {
    let config = demo_config(&endpoint("t", "1", "ort"), "");
    let err = try_start(&config, false, &[])
        .err()
        .expect("must not start");
    assert!(err.contains("ONNX Runtime is not available"), "{err}");
    let err = try_start(
        &config,
        false,
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
    )
    .err()
    .unwrap();
    assert!(
        err.contains("/nonexistent/libonnxruntime.so does not exist"),
        "{err}"
    );
    // A file that is not ONNX Runtime: refused, not a crash.
    let err = try_start(&config, false, &[("ORT_DYLIB_PATH", "/bin/sh")])
        .err()
        .unwrap();
    assert!(err.contains("cannot be loaded"), "{err}");
    let config = demo_config(
        &endpoint("t", "1", "auto"),
        "engine:\n  require_ort: true\n",
    );
    let err = try_start(&config, false, &[]).err().unwrap();
    assert!(err.contains("ONNX Runtime is not available"), "{err}");
}

#[test]
fn tract_refuses_graphs_it_cannot_run_naming_the_op() {
    let registry = repo().join("tests/fixtures/registry");
    let config = format!(
        "registry:\n  path: {}\nendpoints:\n  - name: s\n    served_entities: [{{entity_name: scaler, entity_version: \"1\", engine: tract}}]\n",
        registry.display()
    );
    let err = try_start(&config, false, &[])
        .err()
        .expect("must not start");
    assert!(
        err.contains("the tract engine cannot run op 'Scaler' (domain 'ai.onnx.ml')"),
        "{err}"
    );
    // ort runs the same graph.
    let config = config.replace("engine: tract", "engine: ort");
    let gw = start(&config, true);
    let reply = gw.post_json("/v2/models/s/infer", &json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [3.0, 5.0]}]}));
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["outputs"][0]["data"], json!([2.0, 8.0]));
    // The demo's gradient-boosted version 2 is ort-only too.
    let err = try_start(&demo_config(&endpoint("v2", "2", "tract"), ""), false, &[])
        .err()
        .expect("must not start");
    assert!(err.contains("endpoint 'v2' cannot load its model"), "{err}");
}
