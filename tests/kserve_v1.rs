//! KServe's V1 prediction protocol over real HTTP: `:predict` with `instances` (records) and
//! `inputs` (columns), model readiness and the model list; errors in its `{"error"}` shape.

mod common;

use common::*;
use serde_json::{json, Value};

#[test]
fn kserve_v1_predicts_like_mlflow_invocations() {
    let gw = start(
        &demo_config(&endpoint("transactions", "champion", "tract"), ""),
        false,
    );
    let cases = cases(1);
    let columns: Vec<&str> = cases["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let rows = 4;
    let records: Vec<Value> = (0..rows)
        .map(|r| {
            let mut row = serde_json::Map::new();
            for (c, name) in columns.iter().enumerate() {
                row.insert(name.to_string(), cases["data"][r][c].clone());
            }
            Value::Object(row)
        })
        .collect();
    let mlflow = gw.invoke("transactions", &split_body(&cases, rows));
    assert_eq!(mlflow.status, 200, "{}", mlflow.text);
    let want = mlflow.json()["predictions"].clone();

    let by_instances = gw.post_json(
        "/v1/models/transactions:predict",
        &json!({"instances": records}),
    );
    assert_eq!(by_instances.status, 200, "{}", by_instances.text);
    assert_eq!(by_instances.json()["predictions"], want);
    assert!(by_instances.header("x-request-id").is_some());
    assert_eq!(
        by_instances.header("served-model-name").as_deref(),
        Some("transactions-champion")
    );

    let inputs: serde_json::Map<String, Value> = columns
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let values: Vec<Value> = (0..rows).map(|r| cases["data"][r][c].clone()).collect();
            (name.to_string(), Value::Array(values))
        })
        .collect();
    let by_inputs = gw.post_json(
        "/v1/models/transactions:predict",
        &json!({"inputs": inputs}),
    );
    assert_eq!(by_inputs.status, 200, "{}", by_inputs.text);
    assert_eq!(by_inputs.json()["predictions"], want);

    assert_eq!(
        gw.get("/v1/models/transactions").json(),
        json!({"name": "transactions", "ready": true})
    );
    assert_eq!(
        gw.get("/v1/models").json(),
        json!({"models": ["transactions"]})
    );

    // Errors in KServe's shape, naming the problem.
    let missing = gw.post_json("/v1/models/nope:predict", &json!({"instances": records}));
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].as_str().unwrap().contains("'nope'"));
    let bad = gw.post_json(
        "/v1/models/transactions:predict",
        &json!({"instances": [{"Product": "Product A"}]}),
    );
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(bad.json()["error"].is_string(), "{}", bad.text);
    assert_eq!(gw.get("/v1/models/nope").status, 404);
    let metrics = gw.get("/metrics").text;
    assert!(
        metrics.contains("protocol=\"kserve_v1\""),
        "requests are counted under their protocol"
    );
}
