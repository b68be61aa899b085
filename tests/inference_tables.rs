//! Inference tables, end to end: the real binary logs calls, scored rows and labels to Delta
//! tables, and two independent readers (Python `deltalake`, and DuckDB reading the Parquet
//! files the Delta log lists) read them back after the gateway exits on SIGTERM.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::demo_config;
use serde_json::{json, Value};

use common::delta_python as python;

/// Both readers' view of each table (`null` for a table that was never created); tables in an
/// object store are reached with `storage_options`.
fn read_with(tables: &[PathBuf], storage_options: Option<&Value>) -> Value {
    let mut cmd = Command::new(python());
    cmd.arg(common::repo().join("tests/readers/delta_tables.py"))
        .args(tables);
    if let Some(options) = storage_options {
        cmd.env("DELTA_STORAGE_OPTIONS", options.to_string());
    }
    serde_json::from_slice(&common::stdout_of(&mut cmd, "the Delta readers")).unwrap()
}

struct Tables {
    payload: Value,
    predictions: Value,
    labels: Value,
}

fn read_endpoint(root: &Path, prefix: &str) -> Tables {
    read_endpoint_with(root, prefix, None)
}

fn read_endpoint_with(root: &Path, prefix: &str, storage_options: Option<&Value>) -> Tables {
    let paths: Vec<PathBuf> = ["payload", "predictions", "labels"]
        .iter()
        .map(|t| root.join(format!("{prefix}_{t}")))
        .collect();
    let v = read_with(&paths, storage_options);
    let get = |p: &PathBuf| v[p.to_str().unwrap()].clone();
    Tables {
        payload: get(&paths[0]),
        predictions: get(&paths[1]),
        labels: get(&paths[2]),
    }
}

/// Rows as Python `deltalake` read them, after checking DuckDB counts the same.
fn rows(table: &Value) -> Vec<Value> {
    let rows = table["deltalake"]["rows"].as_array().unwrap().clone();
    assert_eq!(
        table["duckdb"]["count"].as_u64().unwrap() as usize,
        rows.len(),
        "the two readers disagree on the row count"
    );
    rows
}

fn columns(table: &Value, reader: &str) -> Vec<(String, String)> {
    table[reader]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c[0].as_str().unwrap().to_owned(),
                c[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn capture(extra: &str) -> String {
    format!("    auto_capture_config: {{table_name_prefix: tx{extra}}}\n")
}

fn log_settings(root: &Path, extra: &str) -> String {
    format!("inference_log:\n  location: {}\n{extra}", root.display())
}

fn request_id(reply: &common::Reply) -> String {
    reply.header("x-request-id").expect("x-request-id header")
}

/// A demo body of `n` rows in the raw DEMO columns (the features are looked up).
fn raw_rows(n: usize, first_customer: i64) -> Value {
    let data: Vec<Value> = (0..n)
        .map(|i| {
            let product = ["Product A", "Product B", "Product C"][i % 3];
            json!([
                first_customer + i as i64,
                "2026-11-22T10:19:05.123Z",
                product,
                10.5 + i as f64
            ])
        })
        .collect();
    json!({"dataframe_split": {"columns": ["CustomerID", "TransactionTimestamp", "Product", "Amount"], "data": data}})
}

const PAYLOAD_COLUMNS: [(&str, &str, &str); 12] = [
    ("request_date", "date32[day]", "DATE"),
    ("databricks_request_id", "string", "VARCHAR"),
    ("client_request_id", "string", "VARCHAR"),
    (
        "request_time",
        "timestamp[us, tz=UTC]",
        "TIMESTAMP WITH TIME ZONE",
    ),
    ("status_code", "int32", "INTEGER"),
    ("sampling_fraction", "double", "DOUBLE"),
    ("execution_duration_ms", "int64", "BIGINT"),
    ("request", "string", "VARCHAR"),
    ("response", "string", "VARCHAR"),
    ("served_entity_id", "string", "VARCHAR"),
    ("logging_error_codes", "list<element: string>", "VARCHAR[]"),
    ("requester", "string", "VARCHAR"),
];

#[test]
fn every_call_is_logged_once_with_its_rows_and_flushed_at_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tables");
    // Nothing is due before the shutdown: the rows reach the tables only through the flush.
    let endpoint = common::SHADOW_YAML.to_owned() + &capture("");
    // Version 2 (the shadow) is a gradient-boosted model that only ONNX Runtime loads.
    let gw = common::start(
        &demo_config(
            &endpoint,
            &log_settings(&root, "  flush_interval_ms: 600000\n"),
        ),
        true,
    );
    let path = "/serving-endpoints/sh/invocations";
    let mut sent: HashMap<String, (u16, usize)> = HashMap::new();
    for i in 0..24usize {
        let (reply, rows) = match i % 6 {
            // A bad column: 400, logged with the error body.
            4 => (
                gw.post_json(
                    path,
                    &json!({"dataframe_split": {"columns": ["x"], "data": [[1]]}}),
                ),
                0,
            ),
            // A content type the endpoint does not take: 415, refused before the body is read.
            5 => (gw.post(path, "text/plain", "hello"), 0),
            n => {
                let mut body = raw_rows(n + 1, 1000 + i as i64);
                body["client_request_id"] = json!(format!("client-{i}"));
                (gw.post_json(path, &body), n + 1)
            }
        };
        let expected = [200, 200, 200, 200, 400, 415][i % 6];
        assert_eq!(reply.status, expected, "{}", reply.text);
        sent.insert(request_id(&reply), (reply.status, rows));
    }
    // A pinned served entity that does not exist: 404.
    let reply = gw.post_json(
        "/serving-endpoints/sh/served-models/nope/invocations",
        &raw_rows(1, 1),
    );
    assert_eq!(reply.status, 404);
    sent.insert(request_id(&reply), (404, 0));
    // Shadow copies are scored after the answers; let them finish before stopping.
    let scored: usize = sent.values().map(|(_, r)| r).sum();
    gw.wait_for_metric(
        "modelgate_predicted_rows_total{endpoint=\"sh\",served_entity=\"shadow\",shadow=\"true\"}",
        scored as f64,
    );
    assert!(gw.terminate().success());

    let t = read_endpoint(&root, "tx");
    let payload = rows(&t.payload);
    assert_eq!(payload.len(), sent.len(), "one payload row per call");
    let want: Vec<(String, String)> = PAYLOAD_COLUMNS
        .iter()
        .map(|(n, ty, _)| (n.to_string(), ty.to_string()))
        .collect();
    assert_eq!(columns(&t.payload, "deltalake"), want);
    let want: Vec<(String, String)> = PAYLOAD_COLUMNS
        .iter()
        .map(|(n, _, ty)| (n.to_string(), ty.to_string()))
        .collect();
    assert_eq!(columns(&t.payload, "duckdb"), want);
    let mut seen = HashSet::new();
    for row in &payload {
        let id = row["databricks_request_id"].as_str().unwrap().to_owned();
        let (status, _) = sent[&id];
        assert!(seen.insert(id.clone()), "request {id} logged twice");
        assert_eq!(row["status_code"], json!(status), "{row}");
        assert_eq!(row["sampling_fraction"], json!(1.0));
        match status {
            200 => {
                assert_eq!(row["served_entity_id"], "champion");
                assert!(row["client_request_id"]
                    .as_str()
                    .unwrap()
                    .starts_with("client-"));
                assert!(row["response"]
                    .as_str()
                    .unwrap()
                    .starts_with("{\"predictions\":"));
                assert!(row["request"].as_str().unwrap().contains("CustomerID"));
                assert!(row["execution_duration_ms"].as_i64().is_some());
            }
            415 => {
                assert!(row["request"].is_null(), "{row}");
                assert!(row["response"].as_str().unwrap().contains("not supported"));
            }
            _ => assert!(
                row["response"].as_str().unwrap().contains("error_code"),
                "{row}"
            ),
        }
        assert_eq!(row["logging_error_codes"], json!([]));
    }

    let predictions = rows(&t.predictions);
    assert_eq!(
        predictions.len(),
        2 * scored,
        "each row once by the champion, once by the shadow"
    );
    let names: Vec<String> = columns(&t.predictions, "deltalake")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for c in [
        "request_id",
        "row_index",
        "served_entity",
        "model_version",
        "shadow",
        "CustomerID",
        "transactionCount",
        "MaxProductAmount",
        "prediction",
        "probability",
        "inference_ms",
    ] {
        assert!(names.iter().any(|n| n == c), "no column {c} in {names:?}");
    }
    let types: HashMap<String, String> = columns(&t.predictions, "duckdb").into_iter().collect();
    assert_eq!(types["CustomerID"], "BIGINT");
    assert_eq!(types["Amount"], "DOUBLE");
    assert_eq!(types["isTimeout"], "BOOLEAN");
    assert_eq!(types["prediction"], "BIGINT");
    for shadow in [false, true] {
        let mut per_request: HashMap<&str, Vec<i64>> = HashMap::new();
        for p in predictions.iter().filter(|p| p["shadow"] == json!(shadow)) {
            assert_eq!(
                p["served_entity"],
                if shadow { "shadow" } else { "champion" }
            );
            assert!(
                p["transactionCount"].as_i64().is_some(),
                "looked-up feature logged: {p}"
            );
            per_request
                .entry(p["request_id"].as_str().unwrap())
                .or_default()
                .push(p["row_index"].as_i64().unwrap());
        }
        for (id, (status, n)) in &sent {
            let mut got = per_request.remove(id.as_str()).unwrap_or_default();
            got.sort();
            let want: Vec<i64> = (0..*n as i64).collect();
            assert_eq!(got, want, "rows of {id} ({status}), shadow {shadow}");
        }
        assert!(per_request.is_empty());
    }
}

#[test]
fn sampling_keeps_a_calls_payload_and_prediction_rows_together() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tables");
    let endpoint = common::endpoint("e", "1", "tract") + &capture(", sampling_fraction: 0.25");
    let gw = common::start(&demo_config(&endpoint, &log_settings(&root, "")), false);
    let n = 400;
    let mut ids = HashSet::new();
    for i in 0..n {
        let reply = gw.invoke("e", &raw_rows(2, i));
        assert_eq!(reply.status, 200);
        ids.insert(request_id(&reply));
    }
    assert!(gw.terminate().success());
    let t = read_endpoint(&root, "tx");
    let payload = rows(&t.payload);
    // Binomial(400, 0.25): mean 100, sd 8.7; within 4 sd.
    assert!(
        (65..=135).contains(&payload.len()),
        "{} of {n} logged at 25 %",
        payload.len()
    );
    let logged: HashSet<String> = payload
        .iter()
        .map(|r| {
            assert_eq!(r["sampling_fraction"], json!(0.25));
            r["databricks_request_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(logged.is_subset(&ids));
    let predictions = rows(&t.predictions);
    assert_eq!(predictions.len(), 2 * logged.len());
    let predicted: HashSet<String> = predictions
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        predicted, logged,
        "payload and prediction rows are sampled together"
    );
}

#[test]
fn bodies_over_the_cap_are_logged_as_null_with_their_error_code() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tables");
    let small = json!({"dataframe_split": {"columns": ["CustomerID", "TransactionTimestamp", "Product", "Amount"], "data": [[1240, "2026-11-22T10:19:05.123Z", "Product A", 132.75]]}, "params": {"return_features": true}});
    let cap = small.to_string().len() + 10;
    let endpoint = common::endpoint("e", "1", "tract") + &capture("");
    let settings = log_settings(&root, &format!("  max_payload_bytes: {cap}\n"));
    let gw = common::start(&demo_config(&endpoint, &settings), false);
    // The request fits; its answer (predictions and the joined features) does not.
    let a = gw.invoke("e", &small);
    assert_eq!(a.status, 200);
    assert!(
        a.text.len() > cap,
        "the answer must exceed the cap: {}",
        a.text
    );
    // The request does not fit; its answer does.
    let big = raw_rows(3, 1);
    assert!(big.to_string().len() > cap);
    let b = gw.invoke("e", &big);
    assert_eq!(b.status, 200);
    assert!(b.text.len() <= cap, "{}", b.text);
    assert!(gw.terminate().success());

    let t = read_endpoint(&root, "tx");
    let payload = rows(&t.payload);
    let by_id: HashMap<&str, &Value> = payload
        .iter()
        .map(|r| (r["databricks_request_id"].as_str().unwrap(), r))
        .collect();
    let a_row = by_id[request_id(&a).as_str()];
    assert_eq!(a_row["request"], json!(small.to_string()));
    assert!(a_row["response"].is_null());
    assert_eq!(
        a_row["logging_error_codes"],
        json!(["MAX_RESPONSE_SIZE_EXCEEDED"])
    );
    let b_row = by_id[request_id(&b).as_str()];
    assert!(b_row["request"].is_null());
    assert_eq!(b_row["response"], json!(b.text));
    assert_eq!(
        b_row["logging_error_codes"],
        json!(["MAX_REQUEST_SIZE_EXCEEDED"])
    );
    // The scored rows are typed columns, not payloads: they are all there.
    assert_eq!(rows(&t.predictions).len(), 4);
}

#[test]
fn a_new_version_adds_its_columns_without_rewriting_old_rows() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("models");
    common::copy_dir(&common::demo_registry(), &registry);
    // Version 1 without a feature spec: the caller sends the model's columns.
    std::fs::remove_file(registry.join("transactions/1/feature_spec.yaml")).unwrap();
    let aliases = registry.join("transactions/aliases.yaml");
    std::fs::write(&aliases, "champion: 1\n").unwrap();
    let root = dir.path().join("tables");
    let config = format!(
        "{}\nregistry:\n  path: {}\n  settle_ms: 100\n  poll_interval_seconds: 1\ninference:\n  workers: 2\nendpoints:\n  - name: e\n    served_entities:\n      - {{entity_name: transactions, entity_version: champion, engine: ort}}\n{}",
        log_settings(&root, "  flush_interval_ms: 100\n"),
        registry.display(),
        capture("")
    );
    let gw = common::start(&config, true);
    for _ in 0..3 {
        let reply = gw.invoke("e", &common::one_row());
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.header("served-model-version").as_deref(), Some("1"));
    }
    let committed = gw.wait_for_metric(
        "modelgate_inference_log_rows_total{endpoint=\"e\",table=\"predictions\"}",
        3.0,
    );
    assert_eq!(committed, 3.0);
    // Move the alias: version 2 looks features up from the raw DEMO columns.
    std::fs::write(&aliases, "champion: 2\n").unwrap();
    let start = Instant::now();
    loop {
        let reply = gw.invoke("e", &raw_rows(2, 7));
        if reply.status == 200 && reply.header("served-model-version").as_deref() == Some("2") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "version 2 never served: {} {}\n{}",
            reply.status,
            reply.text,
            gw.stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gw.terminate().success());

    let t = read_endpoint(&root, "tx");
    let predictions = rows(&t.predictions);
    let v1: Vec<&Value> = predictions
        .iter()
        .filter(|r| r["model_version"] == "1")
        .collect();
    let v2: Vec<&Value> = predictions
        .iter()
        .filter(|r| r["model_version"] == "2")
        .collect();
    assert!(v1.len() >= 3 && v2.len() >= 2);
    for r in &v1 {
        assert!(
            r["CustomerID"].is_null(),
            "old rows have no value for a new column: {r}"
        );
        assert_eq!(r["Product"], "Product A");
    }
    for r in &v2 {
        assert!(r["CustomerID"].as_i64().is_some(), "{r}");
        assert!(r["TransactionTimestamp"].is_string(), "{r}");
    }
    let types: HashMap<String, String> = columns(&t.predictions, "duckdb").into_iter().collect();
    assert_eq!(types["CustomerID"], "BIGINT");
    assert_eq!(types["TransactionTimestamp"], "TIMESTAMP WITH TIME ZONE");
    // Appends only: every commit added one file and none was removed.
    let ops = t.predictions["deltalake"]["operations"].as_array().unwrap();
    let writes = ops.iter().filter(|o| *o == "WRITE").count();
    assert!(writes >= 2, "{ops:?}");
    assert_eq!(
        t.predictions["duckdb"]["files"].as_u64().unwrap() as usize,
        writes
    );
}

#[test]
fn two_gateways_append_to_the_same_tables() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tables");
    // Small batches: many commits race for the same table versions.
    let settings = log_settings(&root, "  flush_rows: 4\n  flush_interval_ms: 20\n");
    let ids = append_from_two_gateways(&settings);
    let t = read_endpoint(&root, "tx");
    check_every_id_once(&t, &ids);
}

/// Two gateways append to the same tables in small batches, each asking for a compaction of the
/// tables after every one of its commits (the two race for the same files: a swap of a file
/// the other removed first must fail, not remove it twice). Every call is still there once for
/// both readers, the log holds OPTIMIZE commits, and the rows are read from fewer files than
/// were written.
#[test]
fn compaction_keeps_every_row_once_in_fewer_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tables");
    let settings = log_settings(
        &root,
        "  flush_rows: 4\n  flush_interval_ms: 20\n  compact_every_commits: 1\n",
    );
    // Compactions run beside the writer, and shutdown skips those still waiting: the gateways
    // stop once each table has had one that rewrote files (a compaction that found fewer than
    // two small files succeeds with nothing to do).
    let ids = append_from_two_gateways_then(&settings, |gateways| {
        for table in ["payload", "predictions"] {
            let line = format!(
                "modelgate_inference_log_compacted_files_total{{endpoint=\"e\",table=\"{table}\"}}"
            );
            common::wait_for(&line, Duration::from_secs(60), || {
                let done: f64 = gateways.iter().filter_map(|g| g.metric(&line)).sum();
                (done > 0.0).then_some(())
            });
        }
    });
    let t = read_endpoint(&root, "tx");
    check_every_id_once(&t, &ids);
    for (name, table) in [("payload", &t.payload), ("predictions", &t.predictions)] {
        let ops = table["deltalake"]["operations"].as_array().unwrap();
        let count = |op: &str| ops.iter().filter(|o| *o == op).count();
        let (writes, optimized) = (count("WRITE"), count("OPTIMIZE"));
        assert!(optimized > 0, "{name}: never compacted: {ops:?}");
        let files = table["duckdb"]["files"].as_u64().unwrap() as usize;
        assert!(
            files < writes,
            "{name}: {files} live files after {writes} appends and {optimized} compactions"
        );
    }
}

/// A real S3-compatible server (moto's, on loopback) holding the tables: the gateways commit
/// with S3 conditional writes, and the readers fetch them over S3.
#[test]
fn two_gateways_append_to_the_same_tables_in_an_s3_bucket() {
    let s3 = common::s3::MotoServer::start(&python());
    let bucket = s3.create_bucket("inference");
    let options = s3.storage_options();
    let mut settings = format!(
        "inference_log:\n  location: s3://{bucket}/tables\n  flush_rows: 4\n  flush_interval_ms: 20\n  storage_options:\n"
    );
    for (k, v) in options.as_object().unwrap() {
        settings.push_str(&format!("    {k}: \"{}\"\n", v.as_str().unwrap()));
    }
    let ids = append_from_two_gateways(&settings);
    let root = PathBuf::from(format!("s3://{bucket}/tables"));
    let t = read_endpoint_with(&root, "tx", Some(&options));
    check_every_id_once(&t, &ids);
}

/// Two gateways logging to the same tables, two callers each; the answered request ids.
fn append_from_two_gateways(settings: &str) -> Vec<String> {
    append_from_two_gateways_then(settings, |_| {})
}

/// As [`append_from_two_gateways`], calling `before_stopping` once every call is committed.
fn append_from_two_gateways_then(
    settings: &str,
    before_stopping: impl FnOnce(&[common::Gateway; 2]),
) -> Vec<String> {
    let endpoint = common::endpoint("e", "1", "tract") + &capture("");
    let gateways = [
        common::start(&demo_config(&endpoint, settings), false),
        common::start(&demo_config(&endpoint, settings), false),
    ];
    let per_caller = 60;
    let ids: Vec<String> = std::thread::scope(|s| {
        let callers: Vec<_> = gateways
            .iter()
            .enumerate()
            .flat_map(|(g, gw)| {
                (0..2).map(move |c| {
                    s.spawn(move || {
                        (0..per_caller)
                            .map(|i| {
                                let reply =
                                    gw.invoke("e", &raw_rows(1, (g * 1000 + c * 100 + i) as i64));
                                assert_eq!(reply.status, 200);
                                request_id(&reply)
                            })
                            .collect::<Vec<_>>()
                    })
                })
            })
            .collect();
        callers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    // Each gateway commits its own calls (retrying lost races), none dropped, before it stops.
    for gw in &gateways {
        let sent = (2 * per_caller) as f64;
        gw.wait_for_metric(
            "modelgate_inference_log_rows_total{endpoint=\"e\",table=\"payload\"}",
            sent,
        );
        let metrics = gw.get("/metrics").text;
        assert!(
            !metrics.contains("modelgate_inference_log_dropped_rows_total{"),
            "rows were dropped: {}",
            gw.stderr.lock().unwrap()
        );
    }
    before_stopping(&gateways);
    let [a, b] = gateways;
    assert!(a.terminate().success());
    assert!(b.terminate().success());
    ids
}

fn check_every_id_once(t: &Tables, ids: &[String]) {
    let payload = rows(&t.payload);
    assert_eq!(payload.len(), ids.len());
    let logged: HashSet<&str> = payload
        .iter()
        .map(|r| r["databricks_request_id"].as_str().unwrap())
        .collect();
    assert_eq!(logged, ids.iter().map(String::as_str).collect());
    assert_eq!(rows(&t.predictions).len(), ids.len());
}

#[test]
fn a_full_queue_drops_and_counts_rows_but_never_fails_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tables");
    let endpoint = common::endpoint("e", "1", "tract") + &capture("");
    // A queue that holds a few calls, and nothing committed until the shutdown.
    let settings = log_settings(
        &root,
        "  queue_bytes: 8000\n  flush_interval_ms: 600000\n  catch_up: false\n",
    );
    let gw = common::start(&demo_config(&endpoint, &settings), false);
    let n = 40;
    for i in 0..n {
        let reply = gw.invoke("e", &raw_rows(4, i));
        assert_eq!(reply.status, 200);
    }
    let dropped = |table: &str| {
        gw.metric(&format!(
            "modelgate_inference_log_dropped_rows_total{{endpoint=\"e\",reason=\"queue_full\",table=\"{table}\"}}"
        ))
        .unwrap_or(0.0) as usize
    };
    let (payload_dropped, predictions_dropped) = (dropped("payload"), dropped("predictions"));
    assert!(
        payload_dropped > 0 && payload_dropped < n as usize,
        "{payload_dropped}"
    );
    assert_eq!(
        predictions_dropped,
        4 * payload_dropped,
        "a call's rows go with it"
    );
    let queued = gw.metric("modelgate_inference_log_queue_bytes").unwrap();
    assert!(queued > 0.0 && queued <= 8000.0, "{queued}");
    assert!(gw.terminate().success());
    let t = read_endpoint(&root, "tx");
    assert_eq!(rows(&t.payload).len() + payload_dropped, n as usize);
    assert_eq!(
        rows(&t.predictions).len() + predictions_dropped,
        4 * n as usize
    );
}

#[test]
fn failed_commits_are_retried_then_counted_and_requests_still_answer() {
    let dir = tempfile::tempdir().unwrap();
    // The tables' folder cannot be made: a file is in the way.
    let blocker = dir.path().join("not-a-folder");
    std::fs::write(&blocker, "x").unwrap();
    let root = blocker.join("tables");
    let endpoint = common::endpoint("e", "1", "tract") + &capture("");
    let settings = log_settings(&root, "  flush_interval_ms: 50\n  commit_attempts: 2\n");
    let gw = common::start(&demo_config(&endpoint, &settings), false);
    for i in 0..3 {
        assert_eq!(gw.invoke("e", &raw_rows(1, i)).status, 200);
    }
    let failed = gw.wait_for_metric("modelgate_inference_log_dropped_rows_total{endpoint=\"e\",reason=\"commit_failed\",table=\"payload\"}",
        3.0,
    );
    assert_eq!(failed, 3.0);
    assert!(
        gw.metric("modelgate_inference_log_commit_retries_total{endpoint=\"e\",table=\"payload\"}")
            .unwrap()
            >= 1.0
    );
    assert_eq!(gw.invoke("e", &raw_rows(1, 9)).status, 200);
    assert!(gw.terminate().success());
}

#[test]
fn labels_are_appended_by_request_id_or_by_keys() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tables");
    let endpoints = common::endpoint("e", "1", "tract")
        + &capture("")
        + &common::endpoint("plain", "1", "tract");
    // Monitoring off: an endpoint without tables has nowhere to put labels.
    let settings =
        log_settings(&root, "  max_labels_per_request: 3\n") + "monitoring:\n  enabled: false\n";
    let gw = common::start(&demo_config(&endpoints, &settings), false);
    let scored = gw.invoke("e", &raw_rows(2, 1240));
    assert_eq!(scored.status, 200);
    let id = request_id(&scored);
    let labels = json!({"labels": [
        {"request_id": id, "row_index": 0, "label": 1},
        {"request_id": id, "row_index": 1, "label": 0},
        {"keys": {"CustomerID": 1240}, "timestamp": "2026-11-22T10:19:05.123Z", "label": "fraud"}
    ]});
    let reply = gw.post_json("/api/2.0/serving-endpoints/e/labels", &labels);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json(), json!({"accepted": 3}));

    let bad = gw.post_json(
        "/api/2.0/serving-endpoints/e/labels",
        &json!({"labels": [{"request_id": id, "label": 1}, {"label": 1}]}),
    );
    assert_eq!(
        bad.mlflow_error(400),
        "labels[1] needs a request_id or keys"
    );
    // Keys become columns of the labels table: only the endpoint's declared key columns (the
    // served version's feature lookup keys here), and the whole call is refused otherwise.
    let undeclared = gw.post_json(
        "/api/2.0/serving-endpoints/e/labels",
        &json!({"labels": [
            {"request_id": id, "label": 1},
            {"keys": {"CustomerID": 1240, "Evil0": 1}, "label": 1}
        ]}),
    );
    let message = undeclared.mlflow_error(400);
    assert!(
        message.starts_with("labels[1].keys.Evil0 is not a key column of this endpoint")
            && message.contains("allowed: CustomerID, Product"),
        "{message}"
    );
    let too_many = gw.post_json(
        "/api/2.0/serving-endpoints/e/labels",
        &json!({"labels": (0..4).map(|_| json!({"request_id": id, "label": 1})).collect::<Vec<_>>()}),
    );
    assert_eq!(too_many.status, 413, "{}", too_many.text);
    assert!(too_many
        .text
        .contains("inference_log.max_labels_per_request"));
    for limit in ["label_keys", "labels"] {
        assert_eq!(
            gw.metric(&format!(
                "modelgate_limit_refusals_total{{limit=\"{limit}\"}}"
            )),
            Some(1.0),
            "{limit}"
        );
    }
    let unknown = gw.post_json("/api/2.0/serving-endpoints/nope/labels", &labels);
    assert_eq!(unknown.status, 404);
    let plain = gw.post_json("/api/2.0/serving-endpoints/plain/labels", &labels);
    assert!(plain
        .mlflow_error(400)
        .contains("neither logs nor monitors"));
    assert!(gw.terminate().success());

    let t = read_endpoint(&root, "tx");
    let labels = rows(&t.labels);
    assert_eq!(labels.len(), 3, "only the accepted call's labels");
    let types: HashMap<String, String> = columns(&t.labels, "duckdb").into_iter().collect();
    assert_eq!(types["label"], "DOUBLE");
    assert_eq!(types["event_time"], "TIMESTAMP WITH TIME ZONE");
    assert_eq!(types["CustomerID"], "BIGINT");
    assert!(
        !types.contains_key("Evil0"),
        "a refused key became a column"
    );
    // Joined at read time: each labelled (request, row) is a logged prediction.
    let predictions = rows(&t.predictions);
    for l in labels.iter().filter(|l| l["request_id"].is_string()) {
        let p = predictions
            .iter()
            .find(|p| p["request_id"] == l["request_id"] && p["row_index"] == l["row_index"])
            .expect("the labelled prediction");
        assert_eq!(
            p["CustomerID"],
            json!(1240 + l["row_index"].as_i64().unwrap())
        );
    }
    let by_key = labels.iter().find(|l| l["request_id"].is_null()).unwrap();
    assert_eq!(by_key["CustomerID"], 1240);
    assert_eq!(by_key["label_text"], "fraud");
    assert!(by_key["label"].is_null());
    assert!(by_key["event_time"]
        .as_str()
        .unwrap()
        .starts_with("2026-11-22T10:19:05.123"));
    assert!(t.payload.is_object());
}

/// The top byte of the bits that decide whether a request is sampled: the eighth byte of its
/// id (`RequestId`: the bits are the id's first eight random bytes, little-endian, and the
/// hyphenated text shows byte 7 at characters 16-17; the version nibble is in byte 6).
fn sampling_byte(id: &str) -> u8 {
    u8::from_str_radix(&id[16..18], 16).unwrap()
}

/// The halvings of the sampling fraction a row was written at (1.0: 0, 0.5: 1, ...).
fn halvings(fraction: f64) -> u32 {
    let level = (1.0 / fraction).log2().round() as u32;
    assert_eq!(fraction, 1.0 / f64::from(1u32 << level), "{fraction}");
    level
}

#[test]
fn sample_backpressure_logs_a_smaller_share_and_records_it_in_each_row() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tables");
    let endpoint = common::endpoint("e", "1", "tract") + &capture(", backpressure: sample");
    // Nothing is committed (nor its bytes released) until the shutdown: the queue only fills,
    // so the share a request is logged at can only fall as the test goes on.
    let queue_bytes = 200_000.0;
    let settings = log_settings(
        &root,
        &format!("  queue_bytes: {queue_bytes}\n  flush_interval_ms: 600000\n  catch_up: false\n"),
    );
    let gw = common::start(&demo_config(&endpoint, &settings), false);
    // Requests until the queue is past three halvings (half, then three sixteenths more).
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let reply = gw.invoke("e", &raw_rows(1, ids.len() as i64));
        assert_eq!(reply.status, 200, "{}", reply.text);
        ids.push(request_id(&reply));
        let queued = gw.metric("modelgate_inference_log_queue_bytes").unwrap();
        if queued >= queue_bytes * (0.5 + 3.0 / 16.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queue did not fill: {queued}"
        );
    }
    let sampled_down = gw
        .metric("modelgate_inference_log_dropped_rows_total{endpoint=\"e\",reason=\"sampled_down\",table=\"payload\"}")
        .unwrap_or(0.0) as usize;
    assert!(gw.terminate().success());

    let t = read_endpoint(&root, "tx");
    let payload = rows(&t.payload);
    let level_of: HashMap<String, u32> = payload
        .iter()
        .map(|r| {
            let id = r["databricks_request_id"].as_str().unwrap().to_owned();
            (id, halvings(r["sampling_fraction"].as_f64().unwrap()))
        })
        .collect();
    assert_eq!(
        level_of.len() + sampled_down,
        ids.len(),
        "every request is logged or counted as sampled down"
    );
    assert!(sampled_down > 0, "the backlog thinned the log");
    // In the order sent, the share only falls; each request kept at a level has the bits of
    // that level (its top `level` bits zero), and each one left out between two kept at the
    // same level has not.
    let mut last_kept: Option<(usize, u32)> = None;
    let mut levels_seen = HashSet::new();
    for (i, id) in ids.iter().enumerate() {
        let Some(&level) = level_of.get(id) else {
            continue;
        };
        levels_seen.insert(level);
        assert!(
            u32::from(sampling_byte(id)) < 256 >> level,
            "{id} kept at 1/2^{level}"
        );
        if let Some((before, previous)) = last_kept {
            assert!(
                level >= previous,
                "the share rose from 1/2^{previous} to 1/2^{level}"
            );
            if level == previous && level > 0 {
                for skipped in &ids[before + 1..i] {
                    assert!(
                        u32::from(sampling_byte(skipped)) >= 256 >> level,
                        "{skipped} was left out at 1/2^{level} though its bits keep it"
                    );
                }
            }
        }
        last_kept = Some((i, level));
    }
    assert!(
        levels_seen.contains(&0) && levels_seen.iter().any(|l| *l > 0),
        "{levels_seen:?}"
    );
    // Weighted by their inverse share, the rows count the requests (Horvitz-Thompson): within
    // a half here (the few rows at 1/8 each weigh eight; the bits checks above are exact).
    let weighted: f64 = payload
        .iter()
        .map(|r| 1.0 / r["sampling_fraction"].as_f64().unwrap())
        .sum();
    let n = ids.len() as f64;
    assert!(
        (weighted - n).abs() <= n / 2.0,
        "rows weighted by 1/sampling_fraction: {weighted}, requests: {n}"
    );
    assert_eq!(rows(&t.predictions).len(), payload.len());
}

#[test]
fn reject_backpressure_answers_only_what_it_logs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tables");
    let endpoint = common::endpoint("e", "1", "tract") + &capture(", backpressure: reject");
    let queue_bytes = 8000.0;
    let settings = log_settings(
        &root,
        &format!("  queue_bytes: {queue_bytes}\n  flush_interval_ms: 600000\n  catch_up: false\n"),
    );
    let gw = common::start(&demo_config(&endpoint, &settings), false);
    let queued = || gw.metric("modelgate_inference_log_queue_bytes").unwrap();
    let queue_full = |table: &str| {
        gw.metric(&format!("modelgate_inference_log_dropped_rows_total{{endpoint=\"e\",reason=\"queue_full\",table=\"{table}\"}}"))
            .unwrap_or(0.0)
    };
    let check_refusal = |reply: &common::Reply| {
        assert_eq!(reply.status, 429, "{}", reply.text);
        let body: Value = serde_json::from_str(&reply.text).unwrap();
        assert_eq!(body["error_code"], "REQUEST_LIMIT_EXCEEDED");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("inference_log.queue_bytes = 8000")
                && message.contains("backpressure: reject"),
            "{message}"
        );
        assert_eq!(reply.header("retry-after").as_deref(), Some("1"));
    };
    // Rows larger than the whole queue could never be logged: answered, counted as dropped.
    let never_fits = gw.invoke("e", &raw_rows(100, 0));
    assert_eq!(never_fits.status, 200, "{}", never_fits.text);
    assert_eq!(
        (queue_full("payload"), queue_full("predictions")),
        (1.0, 100.0)
    );

    // A call's bytes grow by about the same for every row: measured on one and two rows.
    let mut answered = HashSet::new();
    let mut sizes = Vec::new();
    for rows in [1, 2] {
        let before = queued();
        let reply = gw.invoke("e", &raw_rows(rows, 1000 + rows as i64));
        assert_eq!(reply.status, 200, "{}", reply.text);
        answered.insert(request_id(&reply));
        sizes.push(queued() - before);
    }
    let per_row = sizes[1] - sizes[0];
    let fixed = sizes[0] - per_row;
    // Admitted (the queue is under seven eighths), scored, and then its rows do not fit.
    let big = ((queue_bytes - fixed) / per_row) as usize - 1;
    assert!(
        queued() < queue_bytes * 7.0 / 8.0 && fixed + per_row * big as f64 > queue_bytes - queued()
    );
    check_refusal(&gw.invoke("e", &raw_rows(big, 2000)));
    let mut refused = 1;
    // Now the queue could not hold a call like that one: refused before they are scored.
    for i in 0..20 {
        check_refusal(&gw.invoke("e", &raw_rows(4, 3000 + i)));
        refused += 1;
    }
    assert_eq!(
        gw.metric("modelgate_limit_refusals_total{limit=\"inference_log_queue\"}"),
        Some(refused as f64)
    );
    let scored = gw
        .metric("modelgate_predicted_rows_total{endpoint=\"e\",served_entity=\"transactions-1\",shadow=\"false\"}")
        .unwrap() as usize;
    assert_eq!(scored, 100 + 3 + big, "refused calls are not scored");
    assert_eq!(
        queue_full("payload"),
        1.0,
        "nothing answered but the first was dropped"
    );
    assert!(gw.terminate().success());
    let t = read_endpoint(&root, "tx");
    let logged: HashSet<String> = rows(&t.payload)
        .iter()
        .map(|r| r["databricks_request_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        logged, answered,
        "every answered request is logged, and only those"
    );
    assert_eq!(rows(&t.predictions).len(), 3, "the 1- and 2-row calls");
}

#[test]
fn a_backlog_is_committed_without_waiting_for_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tables");
    let endpoint = common::endpoint("e", "1", "tract") + &capture("");
    // The niced writers alone would commit nothing before the shutdown: the flush interval is
    // ten minutes, a batch's rows and bytes far off.
    let settings = log_settings(&root, "  queue_bytes: 40000\n  flush_interval_ms: 600000\n");
    let gw = common::start(&demo_config(&endpoint, &settings), false);
    let committed = |table: &str| {
        gw.metric(&format!(
            "modelgate_inference_log_rows_total{{endpoint=\"e\",table=\"{table}\"}}"
        ))
        .unwrap_or(0.0)
    };
    // Calls until both tables have had a commit: each shard's catch-up thread took its
    // backlog (a quarter of its part of the queue) and committed it.
    let mut n = 0;
    while committed("payload") == 0.0 || committed("predictions") == 0.0 {
        assert_eq!(gw.invoke("e", &raw_rows(2, n)).status, 200);
        n += 1;
        assert!(n < 1000, "nothing committed after {n} calls");
    }
    let dropped = gw.metric("modelgate_inference_log_dropped_rows_total{endpoint=\"e\",reason=\"queue_full\",table=\"payload\"}");
    assert_eq!(dropped.unwrap_or(0.0), 0.0, "the queue never filled");
    assert!(gw.terminate().success());
    let t = read_endpoint(&root, "tx");
    assert_eq!(rows(&t.payload).len(), n as usize);
    assert_eq!(rows(&t.predictions).len(), 2 * n as usize);
}
