//! Online features over real HTTP: callers send what they know, the gateway joins the rest from
//! the embedded store and computes on-demand features, and the predictions equal the models
//! script's on the rows it joined itself (tests/fixtures/transactions_join_cases.json).

mod common;

use common::*;
use serde_json::{json, Value};

fn fixture() -> Value {
    let path = repo().join("tests/fixtures/transactions_join_cases.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn gateway() -> Gateway {
    let endpoints = format!(
        "{}{}",
        endpoint("v1", "1", "ort"),
        endpoint("v2", "2", "ort")
    );
    start(&demo_config(&endpoints, ""), true)
}

fn raw(rows: &[Value], columns: &Value) -> Value {
    json!({"dataframe_split": {"columns": columns, "data": rows}})
}

#[test]
fn raw_requests_score_like_the_models_script_on_its_own_join() {
    let gw = gateway();
    let f = fixture();
    let rows = f["data"].as_array().unwrap();
    for version in ["1", "2"] {
        let want = &f[format!("v{version}")];
        let r = gw.invoke(&format!("v{version}"), &raw(rows, &f["columns"]));
        assert_eq!(r.status, 200, "{}", r.text);
        let got = r.json()["predictions"].as_array().unwrap().clone();
        assert_eq!(got.len(), rows.len());
        for (i, p) in got.iter().enumerate() {
            assert_eq!(
                p["label"], want["label"][i],
                "v{version} row {i}: {}",
                rows[i]
            );
            let (a, b) = (
                p["probability"].as_f64().unwrap(),
                want["probabilities"][i][1].as_f64().unwrap(),
            );
            assert!((a - b).abs() < 1e-5, "v{version} row {i}: {a} vs {b}");
        }
    }
    // One row at a time gives the same (the DEMO.md request is row 0).
    let one = gw.invoke("v1", &raw(&rows[..1], &f["columns"]));
    let p = one.json()["predictions"][0]["probability"]
        .as_f64()
        .unwrap();
    assert!((p - f["v1"]["probabilities"][0][1].as_f64().unwrap()).abs() < 1e-5);
}

#[test]
fn return_features_echoes_the_joined_row() {
    let gw = gateway();
    let f = fixture();
    let rows = f["data"].as_array().unwrap();
    let mut body = raw(&rows[..8], &f["columns"]);
    body["params"] = json!({"return_features": true});
    let r = gw.invoke("v1", &body);
    assert_eq!(r.status, 200, "{}", r.text);
    let features = r.json()["features"].clone();
    let joined_columns: Vec<&str> = f["joined"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for i in 0..8 {
        let want = &f["joined"]["data"][i];
        for (k, col) in joined_columns.iter().enumerate() {
            let (got, want) = (&features[i][*col], &want[k]);
            match (got.as_f64(), want.as_f64()) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "row {i} {col}: {a} vs {b}"),
                _ => assert_eq!(got, want, "row {i} {col}"),
            }
        }
        assert_eq!(features[i]["CustomerID"], rows[i][0]);
        assert_eq!(features[i]["TransactionTimestamp"], rows[i][1]);
    }
    // Without the parameter, only predictions.
    let plain = gw.invoke("v1", &raw(&rows[..1], &f["columns"])).json();
    assert!(plain.get("features").is_none(), "{plain}");
}

#[test]
fn request_values_override_lookups_and_policies_name_key_and_table() {
    let gw = gateway();
    let columns = json!(["CustomerID", "TransactionTimestamp", "Product", "Amount"]);
    let base = json!([1240, "2026-11-22T10:19:05.123Z", "Product A", 132.75]);
    let looked_up = gw.invoke("v1", &raw(std::slice::from_ref(&base), &columns));
    assert_eq!(looked_up.status, 200, "{}", looked_up.text);
    // The caller's own transactionCount wins over the table's.
    let mut cols = columns.as_array().unwrap().clone();
    cols.push(json!("transactionCount"));
    let mut row = base.as_array().unwrap().clone();
    row.push(json!(9));
    let mut body = raw(&[Value::Array(row)], &Value::Array(cols));
    body["params"] = json!({"return_features": true});
    let overridden = gw.invoke("v1", &body);
    assert_eq!(overridden.status, 200, "{}", overridden.text);
    assert_eq!(overridden.json()["features"][0]["transactionCount"], 9);
    assert_ne!(
        overridden.json()["predictions"][0]["probability"],
        looked_up.json()["predictions"][0]["probability"]
    );

    // Before the first price row: MaxProductAmount is missing, and its policy rejects.
    let early = json!([1240, "2026-11-22T08:00:00Z", "Product B", 10.0]);
    let r = gw.invoke("v1", &raw(&[early], &columns));
    let message = r.mlflow_error(422);
    assert!(
        message.contains("MaxProductAmount")
            && message.contains("Product=Product B")
            && message.contains("product_3minute_max_price_ft"),
        "{message}"
    );
    // An unknown customer takes the defaults (no transactions, timed out).
    let mut unknown = raw(
        &[json!([4242, "2026-11-22T10:19:05Z", "Product A", 50.0])],
        &columns,
    );
    unknown["params"] = json!({"return_features": true});
    let v = gw.invoke("v1", &unknown).json();
    assert_eq!(v["features"][0]["transactionCount"], 0, "{v}");
    assert_eq!(v["features"][0]["isTimeout"], true, "{v}");

    // Bad input is named.
    let r = gw.invoke(
        "v1",
        &raw(&[json!([1240, "yesterday", "Product A", 1.0])], &columns),
    );
    assert!(
        r.mlflow_error(400).contains("TransactionTimestamp"),
        "{}",
        r.text
    );
    let r = gw.invoke(
        "v1",
        &json!({"dataframe_split": {"columns": ["TransactionTimestamp", "Product", "Amount"], "data": [["2026-11-22T10:19:05Z", "Product A", 1.0]]}}),
    );
    assert!(
        r.mlflow_error(400)
            .contains("missing lookup key column 'CustomerID'"),
        "{}",
        r.text
    );
    let r = gw.invoke(
        "v1",
        &json!({"dataframe_records": [{"CustomerID": 1, "TransactionTimestamp": "2026-11-22T10:19:05Z", "Product": "Product A", "Amount": 1.0, "Colour": "red"}]}),
    );
    assert!(
        r.mlflow_error(400)
            .contains(r#"unknown input column(s) ["Colour"]"#),
        "{}",
        r.text
    );

    let metric = |outcome: &str| {
        gw.metric(&format!("modelgate_feature_values_total{{feature=\"transactionCount\",outcome=\"{outcome}\",table=\"transaction_count_ft\"}}"))
            .unwrap_or(0.0)
    };
    assert!(metric("present") >= 1.0);
    assert!(metric("defaulted") >= 1.0);
    assert!(metric("request") >= 1.0);
    assert!(gw
        .metric("modelgate_feature_lookup_duration_seconds_count{store=\"embedded\"}")
        .is_some_and(|n| n >= 3.0));
}
