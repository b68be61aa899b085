//! Log lines as a log pipeline reads them: `log.format: json` makes every stderr line one JSON
//! object; `log.access` adds one line per request, refused ones included; a caller's
//! `x-request-id` is honoured (when well formed) and echoed.

mod common;

use std::time::Duration;

use serde_json::{json, Value};

fn body() -> Value {
    json!({"dataframe_split": {
        "columns": ["CustomerID", "TransactionTimestamp", "Product", "Amount"],
        "data": [[1240, "2026-11-22T10:19:05.123Z", "Product A", 10.5]]}})
}

/// The access lines of `stderr` so far.
fn access_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "modelgate::access")
        .collect()
}

#[test]
fn json_lines_and_an_access_line_per_request_with_the_callers_request_id() {
    let gw = common::start(
        &common::demo_config(
            &common::endpoint("tx", "1", "tract"),
            "log:\n  format: json\n  access: true\n",
        ),
        false,
    );
    let scored = gw.post_json_with(
        "/serving-endpoints/tx/invocations",
        &body(),
        &[("x-request-id", "client-42:a/b")],
    );
    assert_eq!(scored.status, 200, "{}", scored.text);
    assert_eq!(
        scored.header("x-request-id").as_deref(),
        Some("client-42:a/b")
    );
    // Not an id of the accepted shape (a space, too long): replaced by a fresh one.
    for bad in ["has space".to_owned(), "x".repeat(129)] {
        let r = gw.post_json_with(
            "/serving-endpoints/tx/invocations",
            &body(),
            &[("x-request-id", &bad)],
        );
        assert_eq!(r.status, 200);
        let id = r.header("x-request-id").unwrap();
        let id = id.as_str();
        assert!(id != bad.as_str() && id.len() == 36, "{id}");
    }
    // V2 honours it too, and errors echo it.
    let v2 = gw.post_json_with(
        "/v2/models/tx/infer",
        &json!({"inputs": []}),
        &[("x-request-id", "v2-call")],
    );
    assert_eq!(v2.status, 400, "{}", v2.text);
    assert_eq!(v2.header("x-request-id").as_deref(), Some("v2-call"));
    assert_eq!(gw.get("/no/such/route").status, 404);
    assert_eq!(gw.get("/readyz").status, 200);

    let lines = common::wait_for(
        "an access line per request",
        Duration::from_secs(10),
        || {
            let lines = access_lines(&gw.stderr.lock().unwrap());
            (lines.len() >= 6).then_some(lines)
        },
    );
    let scored = lines
        .iter()
        .find(|l| l["request_id"] == "client-42:a/b")
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(scored["method"], "POST");
    assert_eq!(scored["path"], "/serving-endpoints/tx/invocations");
    assert_eq!(scored["status"], 200);
    assert_eq!(scored["endpoint"], "tx");
    assert_eq!(scored["served_entity"], "transactions-1");
    assert!(scored["duration_ms"].as_f64().unwrap() > 0.0, "{scored}");
    assert_eq!(scored["level"], "INFO");
    let status_of = |path: &str| {
        lines
            .iter()
            .find(|l| l["path"] == path)
            .map(|l| l["status"].clone())
    };
    assert_eq!(status_of("/no/such/route"), Some(json!(404)));
    assert_eq!(status_of("/readyz"), Some(json!(200)));
    assert_eq!(status_of("/v2/models/tx/infer"), Some(json!(400)));

    // Every line is one JSON object, the start's lines too.
    let stderr = gw.stderr.lock().unwrap().clone();
    assert!(stderr.lines().count() > lines.len(), "{stderr}");
    for line in stderr.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["timestamp"].is_string() && v["message"].is_string(),
            "{line}"
        );
    }
}

#[test]
fn the_access_log_is_off_by_default() {
    // Every info line of the gateway shown: an access line would be too.
    let gw = common::try_start(
        &common::demo_config(&common::endpoint("tx", "1", "tract"), ""),
        false,
        &[("RUST_LOG", "info")],
    )
    .unwrap();
    assert_eq!(gw.invoke("tx", &body()).status, 200);
    // The answer is written after the line would have been: no line by then, none later.
    let stderr = gw.stderr.lock().unwrap().clone();
    assert!(!stderr.contains("modelgate::access"), "{stderr}");
    assert!(
        stderr.contains(" INFO modelgate"),
        "plain text, no colours: {stderr}"
    );
    assert!(
        !stderr.trim_start().starts_with('{'),
        "text by default: {stderr}"
    );
}
