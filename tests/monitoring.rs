//! Drift and quality monitoring, end to end over HTTP on the real binary: demo traffic from
//! the generator, labels posted to the labels API, figures read back from
//! `GET /api/2.0/serving-endpoints/{name}/monitoring` and `/metrics`.

mod common;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use common::Gateway;
use modelgate::demo::bodies::{render, Columns, Format};
use modelgate::demo::{Transaction, TransactionStream};
use serde_json::{json, Value};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn config(registry: &Path, monitoring: &str, endpoint: &str) -> String {
    format!(
        "registry:\n  path: {}\ninference:\n  workers: 2\nmonitoring:\n{monitoring}endpoints:\n{endpoint}",
        registry.display()
    )
}

const V1_ENDPOINT: &str = "  - name: tx\n    served_entities:\n      - {name: champion, entity_name: transactions, entity_version: '1', engine: tract}\n";

fn score(gw: &Gateway, batch: &[Transaction], columns: Columns) -> (String, Vec<Value>) {
    let body = render(batch, columns, Format::DataframeSplit);
    let reply = gw.post(
        "/serving-endpoints/tx/invocations",
        body.content_type,
        body.bytes.to_vec(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    let id = reply.header("x-request-id").expect("x-request-id");
    let predictions = reply.json()["predictions"].as_array().unwrap().clone();
    assert_eq!(predictions.len(), batch.len());
    (id, predictions)
}

fn monitoring(gw: &Gateway) -> Value {
    let reply = gw.get("/api/2.0/serving-endpoints/tx/monitoring");
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()
}

fn entity<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["served_entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["served_entity"] == name)
        .unwrap_or_else(|| panic!("no served entity {name} in {report}"))
}

fn window<'a>(entity: &'a Value, name: &str) -> Option<&'a Value> {
    entity["windows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["window"] == name)
}

fn column<'a>(window: &'a Value, name: &str) -> &'a Value {
    window["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no column {name} in {window}"))
}

fn quality<'a>(entity: &'a Value, window: &str) -> &'a Value {
    entity["quality"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["window"] == window)
        .unwrap_or_else(|| panic!("no quality window {window} in {entity}"))
}

fn close(v: &Value, expected: f64, tolerance: f64) -> bool {
    v.as_f64()
        .is_some_and(|x| (x - expected).abs() <= tolerance)
}

#[test]
fn the_demo_confusion_matrix_from_posted_labels() {
    let dir = tempfile::tempdir().unwrap();
    let registry = common::registry_without_spec(dir.path());
    // A shadow challenger gets copies of every request, and the same labels.
    let endpoint = format!(
        "{V1_ENDPOINT}      - {{name: challenger, entity_name: transactions, entity_version: '1', engine: tract}}\n    traffic_config:\n      routes:\n        - {{served_entity_name: champion, traffic_percentage: 100}}\n        - {{served_entity_name: challenger, shadow: true}}\n"
    );
    let gw = common::start(&config(&registry, "  windows: [1h]\n", &endpoint), false);
    // Score generated traffic in batches of 10 until there are 15 predicted positives.
    let mut stream = TransactionStream::new(7, 1_795_000_000_000);
    let mut positives: Vec<(String, usize)> = Vec::new();
    let mut negatives: Vec<(String, usize)> = Vec::new();
    while positives.len() < 15 || negatives.len() < 85 {
        let batch: Vec<Transaction> = stream.by_ref().take(10).collect();
        let (id, predictions) = score(&gw, &batch, Columns::Model);
        for (row, p) in predictions.iter().enumerate() {
            let list = if p["label"] == 1 {
                &mut positives
            } else {
                &mut negatives
            };
            list.push((id.clone(), row));
        }
        assert!(
            positives.len() + negatives.len() < 5000,
            "too few positives"
        );
    }
    // The shadow's copies run after the answers: wait until it has scored every row.
    let scored = (positives.len() + negatives.len()) as f64;
    gw.wait_for_metric(
        "modelgate_predicted_rows_total{endpoint=\"tx\",served_entity=\"challenger\",shadow=\"true\"}",
        scored,
    );
    // DEMO.md's check: TP 5, FP 10, FN 15, TN 70.
    let mut labels = Vec::new();
    for (i, (id, row)) in positives.iter().take(15).enumerate() {
        labels.push(json!({"request_id": id, "row_index": row, "label": i32::from(i < 5)}));
    }
    for (i, (id, row)) in negatives.iter().take(85).enumerate() {
        labels.push(json!({"request_id": id, "row_index": row, "label": i32::from(i < 15)}));
    }
    let reply = gw.post_json(
        "/api/2.0/serving-endpoints/tx/labels",
        &json!({ "labels": labels }),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json(),
        json!({"accepted": 100, "monitoring": {"joined": 100, "unmatched": 0, "duplicate": 0, "invalid": 0}})
    );
    // A repeated label, one for an unknown request, one not 0/1: none of them count.
    let (id, row) = &positives[0];
    let extra = json!({"labels": [
        {"request_id": id, "row_index": row, "label": 0},
        {"request_id": "no-such-request", "label": 1},
        {"request_id": id, "row_index": row, "label": 2},
    ]});
    let reply = gw.post_json("/api/2.0/serving-endpoints/tx/labels", &extra);
    assert_eq!(
        reply.json()["monitoring"],
        json!({"joined": 0, "unmatched": 1, "duplicate": 1, "invalid": 1})
    );

    let report = monitoring(&gw);
    let champion = entity(&report, "champion");
    let total = quality(champion, "total");
    assert_eq!(
        [
            &total["tp"],
            &total["fp"],
            &total["fn"],
            &total["tn"],
            &total["labels"]
        ],
        [&json!(5), &json!(10), &json!(15), &json!(70), &json!(100)]
    );
    assert!(close(&total["accuracy"], 0.75, 1e-12), "{total}");
    assert!(close(&total["precision"], 0.3333, 1e-4), "{total}");
    assert!(close(&total["recall"], 0.25, 1e-12), "{total}");
    assert!(close(&total["f1"], 0.2857, 1e-4), "{total}");
    assert!(total["auc"]
        .as_f64()
        .is_some_and(|a| (0.0..=1.0).contains(&a)));
    assert!(total["log_loss"].as_f64().is_some_and(|l| l > 0.0));
    // The same figures side by side in the comparison, and as Prometheus gauges.
    let comparison = report["quality_comparison"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["window"] == "total")
        .unwrap();
    assert_eq!(comparison["served_entities"]["champion"]["tp"], 5);
    // The challenger is the same model on the same rows: the same figures beside it.
    assert_eq!(
        comparison["served_entities"]["challenger"],
        comparison["served_entities"]["champion"]
    );
    let f1 = gw
        .metric("modelgate_quality{endpoint=\"tx\",metric=\"f1\",served_entity=\"champion\",window=\"total\"}")
        .expect("the f1 gauge");
    assert!((f1 - 2.0 / 7.0).abs() < 1e-9, "{f1}");
    assert_eq!(
        gw.metric("modelgate_labels_total{endpoint=\"tx\",outcome=\"joined\"}"),
        Some(100.0)
    );
    assert_eq!(
        gw.metric("modelgate_labels_total{endpoint=\"tx\",outcome=\"duplicate\"}"),
        Some(1.0)
    );
}

/// Scores generated traffic in batches until `until_ms` (wall clock).
fn drive(gw: &Gateway, stream: &mut TransactionStream, until_ms: i64) -> usize {
    let mut rows = 0;
    while now_ms() < until_ms {
        let batch: Vec<Transaction> = stream.by_ref().take(25).collect();
        score(gw, &batch, Columns::Model);
        rows += batch.len();
    }
    rows
}

const WINDOW_MS: i64 = 4_000;

fn next_boundary(t: i64) -> i64 {
    (t / WINDOW_MS + 1) * WINDOW_MS
}

/// The last closed 4 s window of the champion, checked to lie within [from, to).
fn last_window(gw: &Gateway, from: i64, to: i64) -> Value {
    let report = monitoring(gw);
    let w = window(entity(&report, "champion"), "4s")
        .unwrap_or_else(|| panic!("no closed window: {report}"))
        .clone();
    let start = chrono::DateTime::parse_from_rfc3339(w["start"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert!(
        start >= from && start + WINDOW_MS <= to,
        "window {w} not in [{from}, {to})"
    );
    w
}

#[test]
fn the_amount_drift_flag_rises_in_the_window_after_the_drift_knob() {
    let dir = tempfile::tempdir().unwrap();
    let registry = common::registry_without_spec(dir.path());
    let gw = common::start(
        &config(
            &registry,
            "  windows: [4s]\n  min_count: 300\n",
            V1_ENDPOINT,
        ),
        false,
    );
    let mut stream = TransactionStream::new(11, 1_795_000_000_000);
    // One whole window of the training distribution.
    let start = now_ms();
    let calm_until = next_boundary(start) + WINDOW_MS;
    let calm_rows = drive(&gw, &mut stream, calm_until);
    let calm = last_window(&gw, start, calm_until);
    assert!(
        calm_rows >= 300,
        "{calm_rows} rows: the machine is too slow for 4 s windows"
    );
    assert_eq!(calm["drift"], false, "drift before the knob: {calm}");
    for feature in [
        "Product",
        "Amount",
        "transactionCount",
        "isTimeout",
        "MaxDifferenceRatio",
    ] {
        assert_ne!(
            column(&calm, feature)["status"],
            "drift",
            "{feature}: {calm}"
        );
    }
    // The knob: every Beta parameter equal to 10 becomes 2; Amount shifts. (DEMO.md's 10 -> 8
    // moves Amount's PSI against the version 1 baseline by about 0.02: real, but below any
    // threshold that does not also flag noise.)
    stream.set_drift_to(2.0);
    stream.set_drift(true);
    let knob = now_ms();
    let drifted_until = next_boundary(knob) + WINDOW_MS;
    drive(&gw, &mut stream, drifted_until);
    let drifted = last_window(&gw, knob, drifted_until + 1);
    let amount = column(&drifted, "Amount");
    assert_eq!(amount["status"], "drift", "{drifted}");
    assert_eq!(drifted["drift"], true);
    assert!(
        amount["vs_baseline"]["psi"].as_f64().unwrap() >= 0.25,
        "{amount}"
    );
    // Features the knob does not touch stay below every threshold.
    for feature in ["Product", "transactionCount", "isTimeout"] {
        let c = column(&drifted, feature);
        assert_eq!(c["status"], "ok", "{feature}: {c}");
        assert!(
            c["vs_baseline"]["psi"].as_f64().unwrap() < 0.1,
            "{feature}: {c}"
        );
    }
    // Against the previous (calm or mixed) window Amount moved too.
    assert!(amount["vs_previous"]["psi"].as_f64().is_some(), "{amount}");
    // The flag and the statistics as Prometheus series.
    let metrics = gw.get("/metrics").text;
    let line = |prefix: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(
        line("modelgate_drift_detected{endpoint=\"tx\",served_entity=\"champion\",window=\"4s\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        line("modelgate_drift_status{endpoint=\"tx\",feature=\"Amount\",served_entity=\"champion\",window=\"4s\"}"),
        Some(2.0)
    );
    assert_eq!(
        line("modelgate_drift_status{endpoint=\"tx\",feature=\"Product\",served_entity=\"champion\",window=\"4s\"}"),
        Some(0.0)
    );
    let psi = line("modelgate_drift_statistic{endpoint=\"tx\",feature=\"Amount\",reference=\"baseline\",served_entity=\"champion\",statistic=\"psi\",window=\"4s\"}");
    assert_eq!(psi, amount["vs_baseline"]["psi"].as_f64());
}

#[test]
fn looked_up_features_are_profiled_with_their_defaults_and_labels_join_by_key() {
    // The demo endpoint with its feature spec: transactionCount and isTimeout come from a
    // table whose rows are older than their max age, so the join fills their defaults.
    let gw = common::start(
        &common::demo_config(
            "  - name: tx\n    served_entities:\n      - {name: champion, entity_name: transactions, entity_version: '1', engine: tract}\n",
            "monitoring:\n  windows: [1h]\n",
        ),
        false,
    );
    // After the price table's last minute: the as-of lookup finds each product's last row.
    let mut stream = TransactionStream::new(3, 1_795_345_200_000);
    let batch: Vec<Transaction> = stream.by_ref().take(20).collect();
    let (_, predictions) = score(&gw, &batch, Columns::Raw);
    let report = monitoring(&gw);
    let champion = entity(&report, "champion");
    assert_eq!(champion["baseline"], true);
    assert_eq!(champion["version"], "1");
    let total = window(champion, "total").expect("the since-load total");
    let count = column(total, "transactionCount");
    assert_eq!(count["defaulted"], 20, "{count}");
    assert_eq!(count["count"], 20);
    assert_eq!(column(total, "Amount")["defaulted"], 0);
    assert_eq!(column(total, "probability")["role"], "output");
    assert_eq!(column(total, "probability")["count"], 20);
    // Labels by customer and event time find their rows.
    let labels: Vec<Value> = batch
        .iter()
        .zip(&predictions)
        .map(|(t, p)| {
            json!({"keys": {"CustomerID": t.customer_id},
                   "timestamp": modelgate::demo::bodies::iso8601_ms(t.timestamp_ms),
                   "label": p["label"]})
        })
        .collect();
    let reply = gw.post_json(
        "/api/2.0/serving-endpoints/tx/labels",
        &json!({ "labels": labels }),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["monitoring"]["joined"], 20, "{}", reply.text);
    let report = monitoring(&gw);
    let total = quality(entity(&report, "champion"), "total");
    assert_eq!(total["labels"], 20);
    assert_eq!(total["accuracy"], 1.0);
}

#[test]
fn a_bad_baseline_refuses_the_version_with_the_file_and_column_named() {
    let dir = tempfile::tempdir().unwrap();
    let registry = common::registry_without_spec(dir.path());
    let path = registry.join("transactions/1/baseline.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut baseline: Value = serde_json::from_str(&text).unwrap();
    baseline["features"]["Amount"]["shares"] = json!([0.5, 0.5]);
    std::fs::write(&path, baseline.to_string()).unwrap();
    let err = common::try_start(
        &config(&registry, "  enabled: true\n", V1_ENDPOINT),
        false,
        &[],
    )
    .err()
    .expect("the gateway must refuse the version");
    assert!(
        err.contains("baseline.json") && err.contains("features.Amount"),
        "{err}"
    );
    // A feature the model does not take.
    baseline = serde_json::from_str(&text).unwrap();
    baseline["features"]["Colour"] = baseline["features"]["Product"].clone();
    std::fs::write(&path, baseline.to_string()).unwrap();
    let err = common::try_start(
        &config(&registry, "  enabled: true\n", V1_ENDPOINT),
        false,
        &[],
    )
    .err()
    .expect("the gateway must refuse the version");
    assert!(
        err.contains("feature 'Colour' is not an input of the model"),
        "{err}"
    );
}

#[test]
fn monitoring_settings_are_checked_and_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let registry = common::registry_without_spec(dir.path());
    let err = common::try_start(
        &config(&registry, "  windows: [5x]\n", V1_ENDPOINT),
        false,
        &[],
    )
    .err()
    .expect("a bad window must stop the start");
    assert!(err.contains("monitoring.windows[0]"), "{err}");
    let gw = common::start(&config(&registry, "  enabled: false\n", V1_ENDPOINT), false);
    let reply = gw.invoke("tx", &common::one_row());
    assert_eq!(reply.status, 200);
    let message = gw
        .get("/api/2.0/serving-endpoints/tx/monitoring")
        .mlflow_error(400);
    assert!(message.contains("monitoring is off"), "{message}");
    assert!(!gw
        .get("/metrics")
        .text
        .contains("modelgate_drift_statistic{"));
    let unknown = gw.get("/api/2.0/serving-endpoints/nope/monitoring");
    assert_eq!(unknown.status, 404);
}

#[test]
fn predictions_waiting_for_labels_stay_within_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let registry = common::registry_without_spec(dir.path());
    // Well under the 40 requests' bytes (about 1.5 KB each: predictions and bookkeeping; no
    // timestamp, so no columns are held).
    let bound = 20_000;
    let gw = common::start(
        &config(
            &registry,
            &format!("  windows: [1h]\n  labels: {{max_pending_bytes: {bound}}}\n"),
            V1_ENDPOINT,
        ),
        false,
    );
    let mut stream = TransactionStream::new(11, 1_795_000_000_000);
    let mut ids = Vec::new();
    for _ in 0..40 {
        let batch: Vec<Transaction> = stream.by_ref().take(50).collect();
        ids.push(score(&gw, &batch, Columns::Model).0);
    }
    let metrics = gw.get("/metrics").text;
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
    };
    let bytes = value("modelgate_labels_pending_bytes{endpoint=\"tx\"}");
    let rows = value("modelgate_labels_pending_rows{endpoint=\"tx\"}");
    let dropped = value(
        "modelgate_labels_pending_dropped_rows_total{endpoint=\"tx\",reason=\"max_pending_bytes\"}",
    );
    assert!(bytes > 0.0 && bytes <= bound as f64, "{bytes} bytes held");
    assert!(rows > 0.0 && rows < 2000.0, "{rows} rows held");
    assert_eq!(
        rows + dropped,
        2000.0,
        "every row held or counted as dropped"
    );
    let report = monitoring(&gw);
    assert_eq!(report["labels"]["pending_rows"], rows as u64, "{report}");
    // The oldest left: a label for the first request meets nothing, one for the last joins.
    let labels = json!({"labels": [
        {"request_id": ids[0], "row_index": 0, "label": 1},
        {"request_id": ids[39], "row_index": 0, "label": 1},
    ]});
    let reply = gw.post_json("/api/2.0/serving-endpoints/tx/labels", &labels);
    assert_eq!(reply.status, 200, "{}", reply.text);
    let v = reply.json();
    assert_eq!(v["monitoring"]["joined"], 1, "{v}");
    assert_eq!(v["monitoring"]["unmatched"], 1, "{v}");
}
