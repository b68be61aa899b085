//! `databricks-sdk` from PyPI, unmodified, against the real binary over loopback: a user's
//! whole deployment of a model through `WorkspaceClient().serving_endpoints` (create and wait,
//! get, list, query, update the config and wait, delete), with every compute field the SDK's
//! `ServedEntityInput` carries but `external_model`, and the create fields Databricks adds
//! (tags, description, budget policy, route optimization). The script is tests/clients/databricks_sdk_endpoints.py.

mod common;

use std::process::Command;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

#[test]
fn databricks_sdk_deploys_queries_updates_and_deletes_an_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yaml");
    let sha = hex::encode(Sha256::digest(b"manage-secret"));
    std::fs::write(
        &tokens,
        format!("tokens:\n  - {{name: ops, sha256: {sha}, scopes: [query, manage]}}\n"),
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
    assert!(!calls["after_delete"]
        .as_array()
        .unwrap()
        .contains(&json!("sdk")));
}
