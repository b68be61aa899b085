//! MLflow / Databricks scoring protocol over real HTTP: every body format and every bad input.

mod common;

use common::*;
use serde_json::{json, Value};

fn gateway() -> Gateway {
    // Small limits so the limit errors are cheap to reach.
    start(
        &demo_config(
            &endpoint("transactions", "champion", "tract"),
            "  max_batch_rows: 100\nserver:\n  max_body_bytes: 65536\n",
        ),
        false,
    )
}

fn assert_one_prediction(reply: &Reply) -> Value {
    assert_eq!(reply.status, 200, "body: {}", reply.text);
    assert_eq!(
        reply.header("served-model-name").as_deref(),
        Some("transactions-champion")
    );
    assert_eq!(reply.header("served-model-version").as_deref(), Some("1"));
    let preds = reply.json()["predictions"].clone();
    let p = &preds[0];
    assert!(p["label"].is_i64(), "label in {preds}");
    let prob = p["probability"].as_f64().expect("probability");
    assert!((0.0..=1.0).contains(&prob));
    preds
}

/// Version 1's columns (every feature given) and one row of them.
fn v1_row() -> ([&'static str; 6], Value) {
    let cols = [
        "Product",
        "Amount",
        "transactionCount",
        "isTimeout",
        "MaxProductAmount",
        "MaxDifferenceRatio",
    ];
    (cols, json!(["Product B", 44.15, 5, false, 355.2, 0.88]))
}

#[test]
fn every_body_format_scores_the_same_row() {
    let gw = gateway();
    let (cols, row) = v1_row();
    let record: serde_json::Map<String, Value> = cols
        .iter()
        .zip(row.as_array().unwrap())
        .map(|(c, v)| (c.to_string(), v.clone()))
        .collect();
    let bodies = [
        json!({"dataframe_split": {"columns": cols, "data": [row]}}),
        json!({"dataframe_split": {"index": [0], "columns": cols, "data": [row]}, "params": {"k": 1}, "client_request_id": "abc"}),
        json!({"dataframe_records": [record]}),
        json!({"instances": [record]}),
        json!({"inputs": [record]}),
        json!({"inputs": cols.iter().zip(row.as_array().unwrap()).map(|(c, v)| (c.to_string(), json!([v]))).collect::<serde_json::Map<_, _>>()}),
    ];
    let first = assert_one_prediction(&gw.invoke("transactions", &bodies[0]));
    for body in &bodies[1..] {
        let preds = assert_one_prediction(&gw.invoke("transactions", body));
        assert_eq!(preds, first, "body {body}");
    }
    let csv = "Product,Amount,transactionCount,isTimeout,MaxProductAmount,MaxDifferenceRatio\nProduct B,44.15,5,false,355.2,0.88\n";
    let preds = assert_one_prediction(&gw.post(
        "/serving-endpoints/transactions/invocations",
        "text/csv",
        csv,
    ));
    assert_eq!(preds, first);
    // `/invocations` serves the only endpoint, as `mlflow models serve` does.
    let preds = assert_one_prediction(&gw.post_json("/invocations", &bodies[0]));
    assert_eq!(preds, first);
    // Fields MLflow does not know are ignored, as its scoring server does.
    let mut extra = bodies[0].clone();
    extra["inference_id"] = json!("x-1");
    assert_eq!(
        assert_one_prediction(&gw.invoke("transactions", &extra)),
        first
    );
    // Charset parameters are fine.
    let preds = assert_one_prediction(&gw.post(
        "/invocations",
        "application/json; charset=utf-8",
        bodies[0].to_string(),
    ));
    assert_eq!(preds, first);
}

#[test]
fn batches_keep_row_order() {
    let gw = gateway();
    let cases = cases(1);
    let reply = gw.invoke("transactions", &split_body(&cases, 20));
    assert_eq!(reply.status, 200, "{}", reply.text);
    let preds = reply.json()["predictions"].as_array().unwrap().clone();
    assert_eq!(preds.len(), 20);
    for (i, p) in preds.iter().enumerate() {
        assert_eq!(p["label"], cases["label"][i], "row {i}");
    }
}

#[test]
fn health_and_version_routes() {
    let gw = gateway();
    for path in ["/ping", "/health", "/livez", "/readyz", "/version"] {
        assert_eq!(gw.get(path).status, 200, "{path}");
    }
    assert_eq!(gw.get("/version").text, env!("CARGO_PKG_VERSION"));
    assert_eq!(gw.get("/readyz").json()["status"], "ready");
}

fn split(columns: Value, data: Value) -> Value {
    json!({"dataframe_split": {"columns": columns, "data": data}})
}

fn cols() -> Value {
    json!([
        "Product",
        "Amount",
        "transactionCount",
        "isTimeout",
        "MaxProductAmount",
        "MaxDifferenceRatio"
    ])
}

#[test]
fn bad_bodies_get_400_naming_the_problem() {
    let gw = gateway();
    let path = "/serving-endpoints/transactions/invocations";
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "no input data"),
        (
            json!({"dataframe_split": {"columns": cols(), "data": []}, "instances": []}),
            "give exactly one",
        ),
        (
            json!({"dataframe_splitt": {}}),
            "(fields found: dataframe_splitt)",
        ),
        (json!([1, 2]), "JSON object"),
        (
            split(json!(["Product", "Amount"]), json!([["Product A", 1.0]])),
            "missing lookup key column 'CustomerID'",
        ),
        (
            split(
                json!([
                    "Product",
                    "Amount",
                    "transactionCount",
                    "isTimeout",
                    "MaxProductAmount",
                    "MaxDifferenceRatio",
                    "Extra"
                ]),
                json!([["Product A", 1.0, 1, false, 2.0, 0.5, 7]]),
            ),
            "unknown input column(s) [\"Extra\"]",
        ),
        (
            split(cols(), json!([["Product A", "lots", 1, false, 2.0, 0.5]])),
            "column 'Amount' row 0 is a string",
        ),
        (
            split(cols(), json!([["Product A", 1.0, 1.5, false, 2.0, 0.5]])),
            "'transactionCount' row 0 is 1.5, not a whole number",
        ),
        (
            split(cols(), json!([["Product A", 1.0, 1, "no", 2.0, 0.5]])),
            "column 'isTimeout' row 0 is a string",
        ),
        (
            split(cols(), json!([[7, 1.0, 1, false, 2.0, 0.5]])),
            "column 'Product' row 0 is an integer",
        ),
        (
            split(cols(), json!([["Product A", 1.0, 1, false, 2.0]])),
            "'dataframe_split.data[0]' has 5 values but there are 6 columns",
        ),
        (
            split(cols(), json!([["Product A", null, 1, false, 2.0, 0.5]])),
            "column 'Amount' row 0 is null",
        ),
        (split(cols(), json!([])), "no rows"),
        (
            split(cols(), json!([["Product A", 1e300, 1, false, 2.0, 0.5]])),
            "not a finite number",
        ),
        (
            json!({"dataframe_records": [{"Product": "Product A"}, {"Amount": 1.0}]}),
            "different columns than the first record",
        ),
        (
            json!({"inputs": {"Product": ["Product A"], "Amount": [1.0, 2.0]}}),
            "all inputs must have the same number of rows",
        ),
        (
            split(json!(["Product", 3]), json!([])),
            "'dataframe_split.columns[1]' must be a string",
        ),
        (
            json!({"dataframe_split": {"columns": cols(), "data": [["Product A", 1.0, 1, false, 2.0, 0.5]]}, "params": 3}),
            "'params' must be a JSON object",
        ),
    ];
    for (body, needle) in cases {
        let msg = gw.post_json(path, &body).mlflow_error(400);
        assert!(
            msg.contains(needle),
            "body {body}: message '{msg}' lacks '{needle}'"
        );
    }
    // Too many rows.
    let rows: Vec<Value> = (0..101)
        .map(|_| json!(["Product A", 1.0, 1, false, 2.0, 0.5]))
        .collect();
    let msg = gw
        .post_json(path, &split(cols(), json!(rows)))
        .mlflow_error(400);
    assert!(
        msg.contains("more than 100 rows, over the limit of 100 rows"),
        "{msg}"
    );
}

#[test]
fn malformed_and_non_finite_json_is_a_malformed_request() {
    let gw = gateway();
    let path = "/serving-endpoints/transactions/invocations";
    let reply = gw.post(path, "application/json", "{\"dataframe_split\": ");
    assert!(reply.mlflow_error(400).contains("not valid JSON"));
    assert_eq!(reply.json()["error_code"], "BAD_REQUEST");
    let body = r#"{"dataframe_split": {"columns": ["Amount"], "data": [[NaN]]}}"#;
    let msg = gw.post(path, "application/json", body).mlflow_error(400);
    assert!(msg.contains("NaN and Infinity are not valid JSON"), "{msg}");
    // CSV: a ragged row, a non-number, a NaN.
    let header = "Product,Amount,transactionCount,isTimeout,MaxProductAmount,MaxDifferenceRatio\n";
    for (csv, needle) in [
        (
            format!("{header}Product A,1.0,1\n"),
            "CSV row 0 has 3 values",
        ),
        (
            format!("{header}Product A,abc,1,false,2.0,0.5\n"),
            "column 'Amount' row 0 is 'abc'",
        ),
        (
            format!("{header}Product A,NaN,1,false,2.0,0.5\n"),
            "not a finite number",
        ),
        (
            format!("{header}Product A,,1,false,2.0,0.5\n"),
            "row 0 is empty",
        ),
    ] {
        let msg = gw.post(path, "text/csv", csv.clone()).mlflow_error(400);
        assert!(
            msg.contains(needle),
            "csv {csv:?}: '{msg}' lacks '{needle}'"
        );
    }
}

#[test]
fn unknown_endpoints_content_types_and_oversized_bodies() {
    let gw = gateway();
    let msg = gw.invoke("nope", &one_row()).mlflow_error(404);
    assert!(msg.contains("endpoint 'nope' does not exist"), "{msg}");
    assert_eq!(
        gw.invoke("nope", &one_row()).json()["error_code"],
        "RESOURCE_DOES_NOT_EXIST"
    );
    let msg = gw
        .post(
            "/serving-endpoints/transactions/invocations",
            "text/plain",
            "x",
        )
        .mlflow_error(415);
    assert!(
        msg.contains("content type 'text/plain' is not supported"),
        "{msg}"
    );
    let msg = gw.get("/no/such/route").mlflow_error(404);
    assert!(msg.contains("no route for GET /no/such/route"), "{msg}");
    let big = format!("{{\"inputs\": [{}]}}", vec!["1.0"; 20_000].join(","));
    let reply = gw.post(
        "/serving-endpoints/transactions/invocations",
        "application/json",
        big,
    );
    let msg = reply.mlflow_error(413);
    assert!(
        msg.contains("over the limit of 65536 bytes (server.max_body_bytes)"),
        "{msg}"
    );
    // Not REQUEST_LIMIT_EXCEEDED, which clients take for throttling and retry.
    assert_eq!(reply.json()["error_code"], "BAD_REQUEST");
    // Requests refused before scoring (415, 413) are counted too.
    let text = gw.get("/metrics").text;
    for needle in [
        "modelgate_requests_total{endpoint=\"transactions\",protocol=\"mlflow\",served_entity=\"\",status_class=\"4xx\"} 2",
        "modelgate_inference_queue_depth 0",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}\n{text}");
    }
    // The server is still fine afterwards.
    assert_one_prediction(&gw.invoke("transactions", &one_row()));
}

#[test]
fn metrics_count_requests_by_endpoint_entity_and_status_class() {
    let gw = gateway();
    assert_eq!(gw.invoke("transactions", &one_row()).status, 200);
    assert_eq!(gw.invoke("transactions", &json!({})).status, 400);
    assert_eq!(gw.invoke("missing", &json!({})).status, 404);
    let text = gw.get("/metrics").text;
    for needle in [
        "modelgate_requests_total{endpoint=\"transactions\",protocol=\"mlflow\",served_entity=\"transactions-champion\",status_class=\"2xx\"} 1",
        // A body that does not decode fails before any served entity is chosen.
        "modelgate_requests_total{endpoint=\"transactions\",protocol=\"mlflow\",served_entity=\"\",status_class=\"4xx\"} 1",
        "modelgate_requests_total{endpoint=\"_unknown\",protocol=\"mlflow\",served_entity=\"\",status_class=\"4xx\"} 1",
        "modelgate_request_errors_total{endpoint=\"transactions\",error_code=\"BAD_REQUEST\"} 1",
        "modelgate_request_duration_seconds_bucket{endpoint=\"transactions\",protocol=\"mlflow\",served_entity=\"transactions-champion\",status_class=\"2xx\",le=\"0.00005\"}",
        "modelgate_request_duration_seconds_bucket{endpoint=\"transactions\",protocol=\"mlflow\",served_entity=\"transactions-champion\",status_class=\"2xx\",le=\"10\"} 1",
        "modelgate_stage_duration_seconds_count{endpoint=\"transactions\",stage=\"inference\"} 1",
        "modelgate_stage_duration_seconds_count{endpoint=\"transactions\",stage=\"decode\"} 1",
        "modelgate_stage_duration_seconds_count{endpoint=\"transactions\",stage=\"encode\"} 1",
        "modelgate_served_model_info{endpoint=\"transactions\",engine=\"tract\",model=\"transactions\",served_entity=\"transactions-champion\",version=\"1\"} 1",
        "modelgate_predicted_rows_total{endpoint=\"transactions\",served_entity=\"transactions-champion\",shadow=\"false\"} 1",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}\n{text}");
    }
}

/// `modelgate_inference_jobs_total` of endpoint `transactions` in `lane` (0 before any).
fn jobs(gw: &Gateway, lane: &str) -> f64 {
    let line =
        format!("modelgate_inference_jobs_total{{endpoint=\"transactions\",lane=\"{lane}\"}}");
    gw.metric(&line).unwrap_or(0.0)
}

/// Small requests to a version measured within `inference.inline.max_us` run on the HTTP worker
/// that decoded them; a body over `max_body_bytes`, or a version slower than the bound, goes to
/// the pool; both lanes answer alike.
#[test]
fn small_requests_on_fast_versions_run_inline_and_the_rest_on_the_pool() {
    let (cols, row) = v1_row();
    let small = json!({"dataframe_split": {"columns": cols, "data": [row]}});
    let large = json!({"dataframe_split": {"columns": cols, "data": vec![row.clone(); 60]}});
    assert!(small.to_string().len() <= 2048 && large.to_string().len() > 2048);
    // A debug build's model is slow: a wide bound keeps the lanes about the body size here.
    let gw = start(
        &demo_config(
            &endpoint("transactions", "champion", "tract"),
            "  inline: {max_us: 100000, max_body_bytes: 2048}\n",
        ),
        false,
    );
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(assert_one_prediction(&gw.invoke("transactions", &small))[0].clone());
    }
    assert_eq!(
        jobs(&gw, "inline"),
        5.0,
        "measured at warm-up: every small one inline"
    );
    assert_eq!(jobs(&gw, "pool"), 0.0);
    let reply = gw.invoke("transactions", &large);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(jobs(&gw, "pool"), 1.0, "the large body went to the pool");
    assert_eq!(jobs(&gw, "inline"), 5.0);
    let pooled = reply.json()["predictions"].clone();
    assert_eq!(pooled.as_array().unwrap().len(), 60);
    assert!(
        answers.iter().all(|a| *a == pooled[0]),
        "{answers:?} vs {}",
        pooled[0]
    );

    // No version infers within a microsecond: everything on the pool.
    let slow = start(
        &demo_config(
            &endpoint("transactions", "champion", "tract"),
            "  inline: {max_us: 1}\n",
        ),
        false,
    );
    for _ in 0..3 {
        assert_one_prediction(&slow.invoke("transactions", &small));
    }
    assert_eq!(jobs(&slow, "pool"), 3.0);
    assert_eq!(jobs(&slow, "inline"), 0.0);
}

/// Scoring paths are matched by hand in front of actix's router; a path with a `%` escape is
/// left to the router, which decodes it. Both answer alike: successes, errors, and KServe's
/// and V2's paths too.
#[test]
fn scoring_answers_alike_matched_by_hand_and_by_the_router() {
    let gw = gateway();
    let row = one_row();
    let record: serde_json::Map<String, Value> = row["dataframe_split"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .zip(row["dataframe_split"]["data"][0].as_array().unwrap())
        .map(|(c, v)| (c.as_str().unwrap().to_owned(), v.clone()))
        .collect();
    let instances = json!({ "instances": [record] });
    let pairs = [
        (
            "/serving-endpoints/transactions/invocations",
            "/serving-endpoints/tr%61nsactions/invocations",
            &row,
        ),
        (
            "/serving-endpoints/transactions/served-models/transactions-champion/invocations",
            "/serving-endpoints/transactions/served-models/transactions-ch%61mpion/invocations",
            &row,
        ),
        (
            "/serving-endpoints/nope/invocations",
            "/serving-endpoints/n%6Fpe/invocations",
            &row,
        ),
        (
            "/v1/models/transactions:predict",
            "/v1/models/tr%61nsactions:predict",
            &instances,
        ),
        ("/v2/models/nope/infer", "/v2/models/n%6Fpe/infer", &row),
    ];
    for (plain, escaped, body) in pairs {
        let (a, b) = (gw.post_json(plain, body), gw.post_json(escaped, body));
        assert_eq!(
            (a.status, &a.text),
            (b.status, &b.text),
            "{plain} / {escaped}"
        );
        for header in ["served-model-name", "served-model-version", "content-type"] {
            assert_eq!(a.header(header), b.header(header), "{plain}: {header}");
        }
    }
    assert_one_prediction(&gw.post_json(pairs[0].1, &row));
}
