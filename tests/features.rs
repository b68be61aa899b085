//! Online features over real HTTP: callers send what they know, the gateway joins the rest from
//! the embedded store and computes on-demand features, and the predictions equal the models
//! script's on the rows it joined itself (tests/fixtures/transactions_join_cases.json).

mod common;

use common::*;
use serde_json::{json, Value};

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
    let f = join_cases();
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
    let f = join_cases();
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
    assert!(gw
        .metric("modelgate_feature_age_seconds_count{table=\"transaction_count_ft\"}")
        .is_some_and(|n| n >= 1.0));
}

/// The demo tables copied where a test may change them, and a config serving version 1.
fn gateway_on_copied_tables() -> (Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let src = demo_registry().join("feature_tables");
    for f in [
        "transaction_count_ft.jsonl",
        "product_3minute_max_price_ft.jsonl",
    ] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let tables = demo_feature_tables().replace(
        &src.display().to_string(),
        &dir.path().display().to_string(),
    );
    let config = format!(
        "{tables}registry:\n  path: {}\n  settle_ms: 20\ninference:\n  workers: 2\nendpoints:\n{}",
        demo_registry().display(),
        endpoint("v1", "1", "ort")
    );
    (start(&config, true), dir)
}

fn features_of(gw: &Gateway, customer: i64) -> Value {
    let mut body = raw(
        &[json!([customer, "2026-11-22T10:30:00Z", "Product A", 50.0])],
        &json!(["CustomerID", "TransactionTimestamp", "Product", "Amount"]),
    );
    body["params"] = json!({"return_features": true});
    let r = gw.invoke("v1", &body);
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["features"][0].clone()
}

#[test]
fn pushed_rows_and_changed_snapshots_are_served() {
    let (gw, dir) = gateway_on_copied_tables();
    assert_eq!(features_of(&gw, 4242)["transactionCount"], 0);
    let path = "/api/2.0/feature-tables/transaction_count_ft/rows";
    let row = json!({"CustomerID": 4242, "transactionCount": 9, "isTimeout": false, "eventTimestamp": "2026-11-22T10:29:50Z"});
    let r = gw.post_json(path, &json!({"upsert": [row]}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json(), json!({"upserted": 1, "deleted": 0}));
    let f = features_of(&gw, 4242);
    assert_eq!(
        (f["transactionCount"].clone(), f["isTimeout"].clone()),
        (json!(9), json!(false))
    );
    let r = gw.post_json(path, &json!({"delete": [{"CustomerID": 4242}]}));
    assert_eq!(r.json(), json!({"upserted": 0, "deleted": 1}));
    assert_eq!(features_of(&gw, 4242)["transactionCount"], 0);
    // Bad pushes change nothing and say why.
    let r = gw.post_json(
        path,
        &json!({"upsert": [row, {"CustomerID": 1, "colour": "red"}]}),
    );
    assert!(
        r.mlflow_error(400)
            .contains("upsert[1]: column 'colour' is not in table"),
        "{}",
        r.text
    );
    assert_eq!(features_of(&gw, 4242)["transactionCount"], 0);
    let r = gw.post_json("/api/2.0/feature-tables/nope/rows", &json!({"upsert": []}));
    assert_eq!(r.status, 404, "{}", r.text);

    // A new snapshot (written aside, then renamed over the old) is loaded by itself.
    let file = dir.path().join("transaction_count_ft.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let changed: String = text
        .lines()
        .map(|l| {
            if l.contains("\"CustomerID\": 1240") {
                r#"{"CustomerID": 1240, "transactionCount": 17, "isTimeout": false, "eventTimestamp": "2026-11-22T10:29:59.000Z"}"#.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let tmp = dir.path().join("transaction_count_ft.jsonl.tmp");
    std::fs::write(&tmp, changed + "\n").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let ten_seconds = std::time::Duration::from_secs(10);
    wait_for("the snapshot to be reloaded", ten_seconds, || {
        (features_of(&gw, 1240)["transactionCount"] == 17).then_some(())
    });
    // A snapshot that does not parse leaves the loaded tables serving.
    std::fs::write(&tmp, "not json\n").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    wait_for("the bad snapshot to be read", ten_seconds, || {
        let stderr = gw.stderr.lock().unwrap();
        stderr.contains("feature tables not reloaded").then_some(())
    });
    assert_eq!(features_of(&gw, 1240)["transactionCount"], 17);
}
