//! Predictions equal Python onnxruntime's on the same inputs (fixtures from models/train.py),
//! for every engine that can run each version; graphs an engine cannot run are refused at load.

mod common;

use common::*;
use serde_json::{json, Value};

fn assert_matches_python(gw: &Gateway, endpoint: &str, version: u32) {
    let cases = cases(version);
    let n = cases["data"].as_array().unwrap().len();
    assert_rows_match_python(gw, endpoint, &cases, &(0..n).collect::<Vec<_>>());
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

/// Posts rows `rows` of the fixture to `endpoint` and checks each prediction against Python's.
fn assert_rows_match_python(gw: &Gateway, endpoint: &str, cases: &Value, rows: &[usize]) {
    let data: Vec<Value> = rows.iter().map(|&r| cases["data"][r].clone()).collect();
    let body = json!({"dataframe_split": {"columns": cases["columns"], "data": data}});
    let reply = gw.invoke(endpoint, &body);
    assert_eq!(reply.status, 200, "{endpoint}: {}", reply.text);
    let preds = reply.json()["predictions"].clone();
    assert_python_predictions(&preds, cases, rows, &format!("{endpoint} rows {rows:?}"));
}

#[test]
fn ort_sessions_score_each_call_on_its_own_values() {
    // A session keeps its input tensors between runs and writes the next call's values into
    // them: calls of one row, of several, and of one again must each get their own answers.
    let config = demo_config(
        &[
            endpoint("v1-ort", "1", "ort"),
            endpoint("v2-ort", "2", "ort"),
        ]
        .concat(),
        "inference:\n  workers: 1\nserver:\n  http_workers: 1\n",
    );
    let gw = start(&config, true);
    for (endpoint, version) in [("v1-ort", 1), ("v2-ort", 2)] {
        let cases = cases(version);
        // Rows whose probabilities differ, so that a value left from the call before shows.
        let mut rows: Vec<usize> = Vec::new();
        for r in 0..cases["data"].as_array().unwrap().len() {
            let p = |r: usize| cases["probabilities"][r][1].as_f64().unwrap();
            if rows.iter().all(|&k| (p(k) - p(r)).abs() > 1e-4) {
                rows.push(r);
            }
        }
        assert!(rows.len() >= 4, "{endpoint}: {rows:?}");
        for &r in &rows {
            assert_rows_match_python(&gw, endpoint, &cases, &[r]);
        }
        assert_rows_match_python(&gw, endpoint, &cases, &[rows[2], rows[0], rows[3]]);
        for &r in rows.iter().rev() {
            assert_rows_match_python(&gw, endpoint, &cases, &[r]);
        }
    }
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

/// A registry with the scaler fixture, and a copy of it whose graph is a OneHotEncoder.
fn ml_op_registry() -> tempfile::TempDir {
    use prost::Message;
    use tract_onnx::pb;
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &repo().join("tests/fixtures/registry/scaler"),
        &dir.path().join("scaler"),
    );
    copy_dir(
        &repo().join("tests/fixtures/registry/scaler"),
        &dir.path().join("onehot"),
    );
    let opset = |domain: &str, version| pb::OperatorSetIdProto {
        domain: domain.into(),
        version,
    };
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![opset("", 13), opset("ai.onnx.ml", 1)],
        graph: Some(pb::GraphProto {
            name: "g".into(),
            node: vec![pb::NodeProto {
                op_type: "OneHotEncoder".into(),
                domain: "ai.onnx.ml".into(),
                input: vec!["X".into()],
                output: vec!["Y".into()],
                attribute: vec![pb::AttributeProto {
                    name: "cats_strings".into(),
                    r#type: pb::attribute_proto::AttributeType::Strings as i32,
                    strings: vec![b"a".to_vec(), b"b".to_vec()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            input: vec![pb::ValueInfoProto {
                name: "X".into(),
                ..Default::default()
            }],
            output: vec![pb::ValueInfoProto {
                name: "Y".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    std::fs::write(
        dir.path().join("onehot/1/model.onnx"),
        model.encode_to_vec(),
    )
    .unwrap();
    dir
}

#[test]
fn tract_refuses_graphs_it_cannot_run_naming_the_op() {
    let registry = ml_op_registry();
    let config = |model: &str, engine: &str| {
        format!(
            "registry:\n  path: {}\nendpoints:\n  - name: s\n    served_entities: [{{entity_name: {model}, entity_version: \"1\", engine: {engine}}}]\n",
            registry.path().display()
        )
    };
    let err = match try_start(&config("onehot", "tract"), false, &[]) {
        Ok(gw) => panic!("started: {}", gw.stderr.lock().unwrap()),
        Err(e) => e,
    };
    assert!(
        err.contains("the tract engine cannot run op 'OneHotEncoder' (domain 'ai.onnx.ml')"),
        "{err}"
    );
    // A Scaler it runs as standard ops, with ort's answer.
    let infer =
        json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [3.0, 5.0]}]});
    for (engine, with_ort) in [("ort", true), ("tract", false)] {
        let gw = start(&config("scaler", engine), with_ort);
        let reply = gw.post_json("/v2/models/s/infer", &infer);
        assert_eq!(reply.status, 200, "{engine}: {}", reply.text);
        assert_eq!(
            reply.json()["outputs"][0]["data"],
            json!([2.0, 8.0]),
            "{engine}"
        );
    }
    // The demo's gradient-boosted version 2 is ort-only too.
    let err = try_start(&demo_config(&endpoint("v2", "2", "tract"), ""), false, &[])
        .err()
        .expect("must not start");
    assert!(err.contains("endpoint 'v2' cannot load its model"), "{err}");
}
