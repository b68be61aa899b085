//! `databricks-sdk` from PyPI, unmodified, against the real binary over loopback: a user's
//! whole deployment of a model through `WorkspaceClient().serving_endpoints` (create and wait,
//! get, list, query, export_metrics, get_open_api, patch (tags), put (rate limits),
//! put_ai_gateway, logs, build_logs, the permissions calls, update the config and wait,
//! delete), with every compute field the SDK's `ServedEntityInput` carries but
//! `external_model`, and the create fields Databricks adds (tags, description, budget policy,
//! route optimization); and what a query-only token can do before and after it is granted
//! CAN_VIEW, then CAN_MANAGE. The script is tests/clients/databricks_sdk_endpoints.py.

mod common;

use std::process::Command;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

#[test]
fn databricks_sdk_deploys_queries_updates_and_deletes_an_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yaml");
    let sha = |t: &[u8]| hex::encode(Sha256::digest(t));
    std::fs::write(
        &tokens,
        format!(
            "tokens:\n  - {{name: ops, sha256: {}, scopes: [query, manage]}}\n  - {{name: app, sha256: {}, scopes: [query]}}\n",
            sha(b"manage-secret"),
            sha(b"query-secret")
        ),
    )
    .unwrap();
    let extra = format!(
        "auth:\n  enabled: true\n  tokens_file: {}\n",
        tokens.display()
    );
    // With ONNX Runtime: version 2 (gradient-boosted trees) runs on it alone.
    let gw = common::start(&common::demo_config("  []\n", &extra), true);
    // Two raw rows of the demo (their features are looked up).
    let body = json!({"dataframe_split": {
        "columns": ["CustomerID", "TransactionTimestamp", "Product", "Amount"],
        "data": [[1240, "2026-11-22T10:19:05.123Z", "Product A", 10.5],
                 [1241, "2026-11-22T10:19:05.123Z", "Product B", 11.5]]}});
    let mut sdk = Command::new(common::clients_python());
    sdk.arg(common::repo().join("tests/clients/databricks_sdk_endpoints.py"))
        .arg("sdk")
        .arg(body.to_string());
    // Nothing of the machine's user takes part: no profile, credentials or proxy.
    for (key, _) in std::env::vars() {
        if ["DATABRICKS_", "ARM_", "GOOGLE_", "AZURE_"]
            .iter()
            .any(|p| key.starts_with(p))
        {
            sdk.env_remove(key);
        }
    }
    sdk.env("DATABRICKS_HOST", &gw.base)
        .env("DATABRICKS_TOKEN", "manage-secret")
        .env("QUERY_TOKEN", "query-secret")
        .env(
            "DATABRICKS_CONFIG_FILE",
            dir.path().join("no-databrickscfg"),
        )
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1");
    let stdout = common::stdout_of(&mut sdk, "databricks-sdk");
    let calls: Value = serde_json::from_slice(&stdout).unwrap();

    let created = &calls["created"];
    assert_eq!(created["name"], "sdk", "{created}");
    assert_eq!(created["state"]["config_update"], "NOT_UPDATING");
    assert_eq!(created["state"]["ready"], "READY");
    let entity = &created["config"]["served_entities"][0];
    assert_eq!(
        (
            &entity["name"],
            &entity["entity_name"],
            &entity["entity_version"]
        ),
        (&json!("champion"), &json!("transactions"), &json!("1")),
        "{entity}"
    );
    // The compute fields are kept and shown as they were sent.
    let got = &calls["get"]["config"]["served_entities"][0];
    for (field, sent) in [
        ("workload_size", json!("Small")),
        ("workload_type", json!("CPU")),
        ("scale_to_zero_enabled", json!(true)),
        ("environment_vars", json!({"LOG_LEVEL": "info"})),
        (
            "instance_profile_arn",
            json!("arn:aws:iam::1:instance-profile/p"),
        ),
        ("max_provisioned_concurrency", json!(4)),
        ("provisioned_model_units", json!(0)),
        ("burst_scaling_enabled", json!(false)),
    ] {
        assert_eq!(got[field], sent, "{field}: {got}");
    }
    assert_eq!(calls["get"]["name"], "sdk");
    assert!(calls["list"].as_array().unwrap().contains(&json!("sdk")));
    let predictions = calls["query"]["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 2, "{}", calls["query"]);

    check_endpoint_calls(&calls);
    // Its host metadata probe (/.well-known/databricks-config) is answered.
    assert_eq!(calls["sdk_warnings"], json!([]));

    let updated = &calls["updated"];
    assert_eq!(
        updated["state"]["config_update"], "NOT_UPDATING",
        "{updated}"
    );
    let names: Vec<&str> = updated["config"]["served_entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["champion", "challenger"]);
    let routes = &updated["config"]["traffic_config"]["routes"];
    assert_eq!(routes[0]["traffic_percentage"], 90, "{routes}");
    assert_eq!(routes[1]["traffic_percentage"], 10, "{routes}");
    // What the calls between set is kept by a config update.
    let tags = &updated["tags"];
    assert_eq!(
        tags,
        &json!([{"key": "owner", "value": "ml"}, {"key": "tier"}, {"key": "by", "value": "app"}])
    );
    assert_eq!(
        updated["ai_gateway"]["inference_table_config"]["table_name_prefix"], "sdk_endpoint",
        "{updated}"
    );
    let challenger = calls["build_logs_challenger"].as_str().unwrap();
    assert!(
        challenger.contains("loading model 'transactions' version 2"),
        "{challenger}"
    );
    assert!(!calls["after_delete"]
        .as_array()
        .unwrap()
        .contains(&json!("sdk")));
}

/// export_metrics, get_open_api, patch (tags), put (rate limits), put_ai_gateway, logs,
/// build_logs and the permissions calls, each as the SDK parsed its answer; and what the token
/// `app` (query scope only) could do before and after it was granted CAN_VIEW, then CAN_MANAGE.
fn check_endpoint_calls(calls: &Value) {
    let metrics = calls["metrics"].as_str().unwrap();
    let samples: Vec<&str> = metrics.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(!samples.is_empty(), "{metrics}");
    for line in &samples {
        assert!(
            line.contains("endpoint=\"sdk\""),
            "another endpoint's series: {line}"
        );
    }
    assert!(
        metrics.contains("modelgate_requests_total{"),
        "the query is counted: {metrics}"
    );

    let openapi = &calls["openapi"];
    assert_eq!(openapi["openapi"], "3.1.0");
    assert!(openapi["paths"]["/serving-endpoints/sdk/invocations"]["post"].is_object());
    assert!(
        openapi["paths"]["/serving-endpoints/sdk/served-models/champion/invocations"].is_object()
    );
    let row = &openapi["components"]["schemas"]["Row"]["properties"];
    assert_eq!(row["CustomerID"], json!({"type": "integer"}), "{row}");
    assert_eq!(
        row["TransactionTimestamp"],
        json!({"type": "string", "format": "date-time"})
    );
    assert_eq!(row["Amount"], json!({"type": "number"}));

    assert_eq!(
        calls["tags"]["tags"],
        json!([{"key": "owner", "value": "ml"}, {"key": "tier"}]),
        "team was deleted"
    );
    assert_eq!(
        calls["rate_limits"]["rate_limits"],
        json!([{"calls": 1000, "key": "user", "renewal_period": "minute"}])
    );
    let gateway = &calls["ai_gateway"];
    assert_eq!(
        gateway["inference_table_config"],
        json!({"enabled": true, "catalog_name": "ml", "schema_name": "sdk", "table_name_prefix": "sdk_endpoint"})
    );
    assert_eq!(gateway["rate_limits"][1]["principal"], "app", "{gateway}");
    assert_eq!(gateway["usage_tracking_config"]["enabled"], true);

    let logs = calls["logs"].as_str().unwrap();
    assert!(logs.contains("serving version 1 on"), "{logs}");
    let build = calls["build_logs"].as_str().unwrap();
    for step in [
        "loading model 'transactions' version 1",
        "fetched model 'transactions' version 1",
        "validated with its input example",
        "serving version 1",
    ] {
        assert!(build.contains(step), "{step}: {build}");
    }

    let levels = calls["permission_levels"]["permission_levels"]
        .as_array()
        .unwrap();
    assert_eq!(levels.len(), 3);
    let entry = |doc: &Value, who: &str| -> Value {
        doc["access_control_list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["user_name"] == who || e["service_principal_name"] == who)
            .cloned()
            .unwrap_or_else(|| panic!("{who} in {doc}"))
    };
    let before = &calls["permissions_before"];
    assert_eq!(before["object_id"], "/serving-endpoints/sdk");
    assert_eq!(
        entry(before, "ops")["all_permissions"][0]["permission_level"],
        "CAN_MANAGE"
    );
    assert_eq!(
        entry(before, "app")["all_permissions"],
        json!([{"permission_level": "CAN_QUERY", "inherited": true, "inherited_from_object": ["/serving-endpoints"]}])
    );
    assert_eq!(
        calls["app_before"],
        json!({"get": "PERMISSION_DENIED", "tags": "PERMISSION_DENIED"})
    );
    let granted = entry(&calls["permissions_set"], "app");
    assert_eq!(
        granted["all_permissions"][1]["permission_level"],
        "CAN_VIEW"
    );
    assert_eq!(
        calls["app_viewer"],
        json!({"get": "ok", "tags": "PERMISSION_DENIED"})
    );
    let manager = entry(&calls["permissions_updated"], "app");
    assert_eq!(manager["service_principal_name"], "app", "{manager}");
    assert_eq!(
        manager["all_permissions"][1],
        json!({"permission_level": "CAN_MANAGE", "inherited": false})
    );
    assert_eq!(calls["app_manager"], json!({"tags": "ok", "query": "ok"}));
}
