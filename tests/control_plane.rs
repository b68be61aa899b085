//! The control plane against the real binary: a config update keeps what its body leaves out
//! (the endpoint's inference tables above all), and two endpoints never share inference tables.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{demo_config, wait_for, Gateway};
use serde_json::{json, Value};

use common::delta_python as python;

/// The `databricks_request_id` of every row of a payload table, as Python `deltalake` reads it
/// (DuckDB counting the same).
fn logged_ids(table: &Path) -> Vec<String> {
    let mut readers = Command::new(python());
    readers
        .arg(common::repo().join("tests/readers/delta_tables.py"))
        .arg(table);
    let v: Value =
        serde_json::from_slice(&common::stdout_of(&mut readers, "the Delta readers")).unwrap();
    let t = &v[table.to_str().unwrap()];
    let rows = t["deltalake"]["rows"].as_array().expect("a payload table");
    assert_eq!(t["duckdb"]["count"].as_u64().unwrap() as usize, rows.len());
    rows.iter()
        .map(|r| r["databricks_request_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The endpoint's state once no config update runs.
fn settled(gw: &Gateway, name: &str) -> Value {
    let what = format!("{name}'s config update to end");
    wait_for(&what, Duration::from_secs(60), || {
        let s = gw.get(&format!("/api/2.0/serving-endpoints/{name}")).json();
        (s["state"]["config_update"] != "IN_PROGRESS").then_some(s)
    })
}

/// `n` scored calls to `endpoint`, each answered by `served_entity`; their request ids.
fn calls(gw: &Gateway, endpoint: &str, served_entity: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let r = gw.invoke(endpoint, &common::one_row());
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(
                r.header("served-model-name").as_deref(),
                Some(served_entity)
            );
            r.header("x-request-id").expect("x-request-id")
        })
        .collect()
}

/// A config body serving version 1 of the demo model on tract, under served entity name `name`.
fn version_1(name: &str) -> Value {
    json!({"served_entities": [
        {"name": name, "entity_name": "transactions", "entity_version": "1", "engine": "tract"}
    ]})
}

const PAYLOAD_ROWS: &str = "modelgate_inference_log_rows_total{endpoint=\"e\",table=\"payload\"}";

#[test]
fn a_config_update_keeps_logging_until_auto_capture_is_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tables");
    let endpoint = common::endpoint("e", "1", "tract")
        + "    auto_capture_config: {table_name_prefix: tx}\n"
        + "    routing: {key_header: X-Customer}\n";
    let settings = format!(
        "inference_log:\n  location: {}\n  flush_interval_ms: 20\n",
        root.display()
    );
    let gw = common::start(&demo_config(&endpoint, &settings), false);
    let mut logged = calls(&gw, "e", "transactions-1", 2);
    gw.wait_for_metric(PAYLOAD_ROWS, 2.0);

    // An update that says nothing of auto_capture_config (nor of routing) keeps them.
    let r = gw.put_json("/api/2.0/serving-endpoints/e/config", &version_1("one"));
    assert_eq!(r.status, 200, "{}", r.text);
    let s = settled(&gw, "e");
    assert_eq!(s["config"]["config_version"], 2, "{s}");
    assert!(s.get("last_config_update_error").is_none(), "{s}");
    assert_eq!(
        s["config"]["auto_capture_config"],
        json!({"enabled": true, "table_name_prefix": "tx", "sampling_fraction": 1.0}),
        "{s}"
    );
    assert_eq!(s["config"]["routing"]["key_header"], "X-Customer", "{s}");
    logged.extend(calls(&gw, "e", "one", 3));
    gw.wait_for_metric(PAYLOAD_ROWS, 5.0);

    // enabled: false turns it off, keeping the rest of the capture for a later enabled: true.
    let mut off = version_1("two");
    off["auto_capture_config"] = json!({"enabled": false});
    let r = gw.put_json("/api/2.0/serving-endpoints/e/config", &off);
    assert_eq!(r.status, 200, "{}", r.text);
    let s = settled(&gw, "e");
    assert_eq!(s["config"]["config_version"], 3, "{s}");
    assert_eq!(
        s["config"]["auto_capture_config"],
        json!({"enabled": false, "table_name_prefix": "tx", "sampling_fraction": 1.0}),
        "{s}"
    );
    let unlogged: HashSet<String> = calls(&gw, "e", "two", 3).into_iter().collect();

    // SIGTERM flushes everything queued: the table then holds exactly the calls made while
    // capture was on, none made after it was turned off.
    assert!(gw.terminate().success());
    let ids = logged_ids(&root.join("tx_payload"));
    assert_eq!(ids.len(), logged.len(), "{ids:?}");
    let ids: HashSet<String> = ids.into_iter().collect();
    assert!(ids.is_disjoint(&unlogged), "logged after enabled: false");
    assert_eq!(ids, logged.into_iter().collect::<HashSet<_>>());
}

#[test]
fn two_endpoints_cannot_share_inference_tables() {
    let dir = tempfile::tempdir().unwrap();
    let endpoints = common::endpoint("a", "1", "tract")
        + "    auto_capture_config: {table_name_prefix: tx}\n"
        + &common::endpoint("quiet", "1", "tract");
    let settings = format!("inference_log:\n  location: {}\n", dir.path().display());
    let gw = common::start(&demo_config(&endpoints, &settings), false);
    let refused = |r: common::Reply| {
        let message = r.mlflow_error(400);
        let v = r.json();
        assert_eq!(v["error_code"], "INVALID_PARAMETER_VALUE");
        assert_eq!(
            v["details"][0]["field_violations"][0]["field"],
            "auto_capture_config.table_name_prefix",
            "{v}"
        );
        message
    };

    // A create that would write a's tables.
    let mut config = version_1("m");
    config["auto_capture_config"] = json!({"table_name_prefix": "TX"});
    let message = refused(gw.post_json(
        "/api/2.0/serving-endpoints",
        &json!({"name": "b", "config": config}),
    ));
    assert!(
        message.contains("'b' and 'a'") && message.contains("TX_payload"),
        "{message}"
    );
    assert_eq!(gw.get("/api/2.0/serving-endpoints/b").status, 404);

    // An update that would: refused, and the endpoint keeps not logging.
    config["auto_capture_config"] = json!({"table_name_prefix": "tx"});
    let message = refused(gw.put_json("/api/2.0/serving-endpoints/quiet/config", &config));
    assert!(message.contains("'quiet' and 'a'"), "{message}");
    let s = settled(&gw, "quiet");
    assert_eq!(s["config"]["config_version"], 1, "{s}");
    assert!(s["config"].get("auto_capture_config").is_none(), "{s}");

    // Through the AI gateway's inference tables alike.
    let message = refused(gw.put_json(
        "/api/2.0/serving-endpoints/quiet/ai-gateway",
        &json!({"inference_table_config": {"enabled": true, "table_name_prefix": "tx"}}),
    ));
    assert!(message.contains("'quiet' and 'a'"), "{message}");
    assert!(settled(&gw, "quiet").get("ai_gateway").is_none());

    // An endpoint named as a's prefix logs to a's tables by default.
    config["auto_capture_config"] = json!({});
    let message = refused(gw.post_json(
        "/api/2.0/serving-endpoints",
        &json!({"name": "tx", "config": config}),
    ));
    assert!(message.contains("'tx' and 'a'"), "{message}");

    // Once a stops logging, its tables are free; once quiet takes them, a cannot take them back.
    let mut off = version_1("a2");
    off["auto_capture_config"] = json!({"enabled": false});
    assert_eq!(
        gw.put_json("/api/2.0/serving-endpoints/a/config", &off)
            .status,
        200
    );
    settled(&gw, "a");
    config["auto_capture_config"] = json!({"table_name_prefix": "tx"});
    let r = gw.put_json("/api/2.0/serving-endpoints/quiet/config", &config);
    assert_eq!(r.status, 200, "{}", r.text);
    let s = settled(&gw, "quiet");
    assert_eq!(s["config"]["config_version"], 2, "{s}");
    assert_eq!(
        s["config"]["auto_capture_config"]["table_name_prefix"], "tx",
        "{s}"
    );
    off["auto_capture_config"] = json!({"enabled": true});
    let message = refused(gw.put_json("/api/2.0/serving-endpoints/a/config", &off));
    assert!(message.contains("'a' and 'quiet'"), "{message}");
}

#[test]
fn an_update_still_loading_holds_its_inference_tables() {
    // A slow warm-up keeps the update of `first` in progress while `second` asks for its tables.
    let endpoints =
        common::endpoint("first", "1", "tract") + &common::endpoint("second", "1", "tract");
    let dir = tempfile::tempdir().unwrap();
    let settings = format!(
        "  warmup_runs: 3000\ninference_log:\n  location: {}\n",
        dir.path().display()
    );
    let gw = common::start(&demo_config(&endpoints, &settings), false);
    let mut config = version_1("slow");
    config["auto_capture_config"] = json!({"table_name_prefix": "shared"});
    let r = gw.put_json("/api/2.0/serving-endpoints/first/config", &config);
    assert_eq!(r.status, 200, "{}", r.text);
    config["served_entities"][0]["name"] = json!("fast");
    let r = gw.put_json("/api/2.0/serving-endpoints/second/config", &config);
    let pending = gw.get("/api/2.0/serving-endpoints/first").json();
    assert_eq!(
        pending["state"]["config_update"], "IN_PROGRESS",
        "{pending}"
    );
    assert!(r.text.contains("'second' and 'first'"), "{}", r.text);
    assert_eq!(r.status, 400, "{}", r.text);
    // Once it serves, the tables stay taken.
    let s = settled(&gw, "first");
    assert_eq!(s["config"]["config_version"], 2, "{s}");
    let r = gw.put_json("/api/2.0/serving-endpoints/second/config", &config);
    assert_eq!(r.status, 400, "{}", r.text);
}

#[test]
fn a_config_file_whose_endpoints_share_inference_tables_is_refused() {
    let endpoints = common::endpoint("a", "1", "tract")
        + "    auto_capture_config: {catalog_name: ml, table_name_prefix: tx}\n"
        + &common::endpoint("b", "1", "tract")
        + "    auto_capture_config: {catalog_name: ML, table_name_prefix: tx}\n";
    let err = match common::try_start(&demo_config(&endpoints, ""), false, &[]) {
        Ok(_) => panic!("started with two endpoints on one table"),
        Err(stderr) => stderr,
    };
    assert!(
        err.contains("endpoints[1].auto_capture_config.table_name_prefix")
            && err.contains("'b' and 'a'"),
        "{err}"
    );
}
