//! Config layering (defaults -> file -> env -> CLI) and validation errors that name the key.

mod common;

use std::process::Command;

use common::*;

fn check_config(yaml: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_modelgate"));
    cmd.args(["check-config", "--config", path.to_str().unwrap()]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

const VALID: &str = "endpoints:\n  - name: t\n    served_entities: [{entity_name: transactions, entity_version: champion}]\n";

#[test]
fn the_demo_config_is_valid_and_defaults_are_filled_in() {
    let (ok, out, err) = check_config(
        &std::fs::read_to_string(repo().join("config/demo.yaml")).unwrap(),
        &[],
    );
    assert!(ok, "{err}");
    assert!(out.contains("max_body_bytes: 16777216"), "{out}");
    assert!(out.contains("queue_capacity: 1024"), "{out}");
}

#[test]
fn the_ab_example_config_is_valid() {
    let (ok, out, err) = check_config(
        &std::fs::read_to_string(repo().join("config/ab.yaml")).unwrap(),
        &[],
    );
    assert!(ok, "{err}");
    assert!(out.contains("traffic_percentage: 90"), "{out}");
    assert!(out.contains("shadow: true"), "{out}");
}

#[test]
fn environment_overrides_the_file() {
    let (ok, out, err) = check_config(VALID, &[("MODELGATE__INFERENCE__MAX_BATCH_ROWS", "7")]);
    assert!(ok, "{err}");
    assert!(out.contains("max_batch_rows: 7"), "{out}");
}

#[test]
fn invalid_configs_name_the_key() {
    let cases = [
        ("server:\n  listn: 1\n", "listn"),
        ("server:\n  listen: nowhere\n", "server.listen"),
        ("inference:\n  workers: many\n", "inference.workers"),
        ("inference:\n  max_batch_rows: 0\n", "inference.max_batch_rows"),
        ("registry:\n  kind: s3\n", "registry.kind: unknown value 's3' (known: file, mlflow, folder)"),
        ("features:\n  store: memcached\n", "features.store: unknown value 'memcached' (known: embedded, redis)"),
        ("endpoints:\n  - name: a\n    served_entities: [{entity_name: m, entity_version: '1', name: x}, {entity_name: m, entity_version: '2', name: y}]\n    traffic_config: {routes: [{served_entity_name: x, traffic_percentage: 50}]}\n", "endpoints[0].traffic_config.routes"),
        ("endpoints:\n  - name: a\n    served_entities: [{entity_name: m, entity_version: '1'}]\n    routing: {batch: sometimes}\n", "batch"),
        ("endpoints:\n  - name: 'a b'\n    served_entities: [{entity_name: m, entity_version: '1'}]\n", "endpoints[0].name"),
        ("endpoints:\n  - name: a\n    served_entities: []\n", "endpoints[0].served_entities"),
        ("endpoints:\n  - name: a\n    served_entities: [{entity_name: m, entity_version: '1', engine: gpu}]\n", "engine"),
    ];
    for (yaml, key) in cases {
        let yaml = if yaml.starts_with("endpoints") {
            yaml.to_owned()
        } else {
            format!("{yaml}{VALID}")
        };
        let (ok, _, err) = check_config(&yaml, &[]);
        assert!(!ok, "{yaml} must be refused");
        assert!(err.contains(key), "{yaml}: '{err}' does not name '{key}'");
    }
    let (ok, _, err) = check_config(VALID, &[("MODELGATE__REGISTRY__KIND", "S3")]);
    assert!(
        !ok && err.contains("registry.kind: unknown value 'S3' (known: file, mlflow, folder)"),
        "{err}"
    );
    let (ok, _, err) = check_config(VALID, &[("MODELGATE__SERVER__MAX_BODY_BYTES", "lots")]);
    assert!(
        !ok && err.to_lowercase().contains("server.max_body_bytes"),
        "{err}"
    );
}

#[test]
fn environment_reaches_a_running_gateway() {
    let config = demo_config(&endpoint("transactions", "champion", "tract"), "");
    let gw = try_start(
        &config,
        false,
        &[("MODELGATE__INFERENCE__MAX_BATCH_ROWS", "1")],
    )
    .unwrap();
    let cases = cases(1);
    let msg = gw
        .invoke("transactions", &split_body(&cases, 2))
        .mlflow_error(400);
    assert!(msg.contains("over the limit of 1 rows"), "{msg}");
}

#[test]
fn check_config_still_takes_the_file_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, VALID).unwrap();
    let printed = succeed(
        Command::new(env!("CARGO_BIN_EXE_modelgate"))
            .args(["check-config", path.to_str().unwrap()]),
    );
    // What the gateway writes for itself goes to its data directory, not beside the config.
    assert!(printed.contains("data_dir: .modelgate"), "{printed}");
    assert!(
        printed.contains("state_file: .modelgate/c.endpoints.json"),
        "{printed}"
    );
    assert!(
        printed.contains("cache_dir: .modelgate/mlflow-cache"),
        "{printed}"
    );
}
