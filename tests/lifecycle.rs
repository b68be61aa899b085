//! Start-up errors, graceful shutdown and readiness, over the real binary.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::*;

/// A registry holding a copy of demo version 1 as `transactions/1`, for corrupting.
fn registry_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &demo_registry().join("transactions/1"),
        &dir.path().join("transactions/1"),
    );
    dir
}

fn config_for(registry: &Path, version: &str) -> String {
    format!(
        "registry:\n  path: {}\nendpoints:\n  - name: t\n    served_entities: [{{entity_name: transactions, entity_version: \"{version}\", engine: tract}}]\n",
        registry.display()
    )
}

fn start_error(registry: &Path, version: &str) -> String {
    try_start(&config_for(registry, version), false, &[])
        .err()
        .expect("the gateway must refuse to start")
}

#[test]
fn corrupt_or_missing_registry_files_are_clear_load_errors() {
    let reg = registry_copy();
    let dir = reg.path().join("transactions/1");
    assert!(start_error(reg.path(), "2").contains("model 'transactions' has no version '2'"));
    assert!(start_error(reg.path(), "champion")
        .contains("model 'transactions' has no alias 'champion'"));

    std::fs::write(dir.join("model.onnx"), b"this is not a protobuf").unwrap();
    let err = start_error(reg.path(), "1");
    assert!(
        err.contains(
            "endpoint 't' cannot load its model: served entity 'transactions-1': model 'transactions' version 1"
        ),
        "{err}"
    );
    assert!(
        err.contains("the tract engine cannot load this model"),
        "{err}"
    );

    std::fs::remove_file(dir.join("model.onnx")).unwrap();
    let err = start_error(reg.path(), "1");
    assert!(
        err.contains("model.onnx") && err.contains("No such file"),
        "{err}"
    );

    std::fs::write(dir.join("MLmodel"), "flavors: [unclosed").unwrap();
    let err = start_error(reg.path(), "1");
    assert!(err.contains("MLmodel is not a valid model file"), "{err}");

    std::fs::write(dir.join("MLmodel"), "flavors:\n  python_function: {}\n").unwrap();
    let err = start_error(reg.path(), "1");
    assert!(err.contains("no 'onnx' flavor"), "{err}");
}

#[test]
fn a_version_that_does_not_fit_its_signature_or_expected_output_is_refused() {
    let reg = registry_copy();
    let dir = reg.path().join("transactions/1");
    let mlmodel = std::fs::read_to_string(dir.join("MLmodel")).unwrap();
    std::fs::write(
        dir.join("MLmodel"),
        mlmodel.replace("\"name\": \"Product\"", "\"name\": \"Produkt\""),
    )
    .unwrap();
    let err = start_error(reg.path(), "1");
    assert!(
        err.contains("ONNX input 'Product' is not a column of the MLflow signature"),
        "{err}"
    );

    std::fs::write(dir.join("MLmodel"), &mlmodel).unwrap();
    let expected = std::fs::read_to_string(dir.join("expected_output.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&expected).unwrap();
    v["predictions"][1]["probability"] = serde_json::json!(0.5);
    std::fs::write(dir.join("expected_output.json"), v.to_string()).unwrap();
    let err = start_error(reg.path(), "1");
    assert!(err.contains("failed validation"), "{err}");
    assert!(err.contains("predictions[1].probability"), "{err}");
}

#[test]
fn sigterm_lets_in_flight_requests_finish_then_exits_zero() {
    let config = demo_config(
        &endpoint("transactions", "champion", "tract"),
        "server:\n  shutdown_timeout_seconds: 10\n",
    );
    let mut gw = start(&config, false);
    assert_eq!(gw.get("/readyz").status, 200);
    let body = one_row().to_string();
    let addr = gw.base.trim_start_matches("http://").to_owned();
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "POST /serving-endpoints/transactions/invocations HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // The request is in flight (headers and half the body sent) when SIGTERM arrives.
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(&body.as_bytes()[..body.len() / 2]).unwrap();
    // The gateway holds the half body it has read: the request is in flight.
    wait_for("the half body to be read", Duration::from_secs(20), || {
        gw.metric("modelgate_inflight_body_bytes")
            .filter(|b| *b > 0.0)
    });
    signal_term(&gw.child);
    // New connections are no longer accepted while draining.
    wait_for(
        "the listener to close on SIGTERM",
        Duration::from_secs(10),
        || TcpStream::connect(&addr).is_err().then_some(()),
    );
    conn.write_all(&body.as_bytes()[body.len() / 2..]).unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"predictions\""), "{response}");
    let status = wait_timeout(&mut gw.child, Duration::from_secs(15)).expect("exit after draining");
    assert_eq!(
        status.code(),
        Some(0),
        "stderr: {}",
        gw.stderr.lock().unwrap()
    );
}

#[test]
fn sigterm_on_an_idle_gateway_exits_zero() {
    let gw = start(
        &demo_config(&endpoint("transactions", "1", "tract"), ""),
        false,
    );
    assert_eq!(gw.terminate().code(), Some(0));
}

#[test]
fn a_full_inference_queue_refuses_with_503_and_counts_it() {
    let config = demo_config(
        &endpoint("transactions", "champion", "tract"),
        "  queue_capacity: 1\n  max_batch_rows: 100000\n",
    )
    .replace("workers: 2", "workers: 1");
    let gw = start(&config, false);
    let cases = cases(1);
    let big = split_body(&cases, 64);
    let rows: Vec<serde_json::Value> = big["dataframe_split"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .cycle()
        .take(20_000)
        .cloned()
        .collect();
    let body = serde_json::json!({"dataframe_split": {"columns": cases["columns"], "data": rows}})
        .to_string();
    let url = gw.url("/serving-endpoints/transactions/invocations");
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            std::thread::spawn(move || {
                let r = client()
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .unwrap();
                let status = r.status().as_u16();
                if status == 503 {
                    assert_eq!(r.headers()["retry-after"], "1");
                }
                (status, r.text().unwrap())
            })
        })
        .collect();
    let results: Vec<(u16, String)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let refused: Vec<&(u16, String)> = results.iter().filter(|(s, _)| *s == 503).collect();
    assert!(
        results.iter().all(|(s, _)| *s == 200 || *s == 503),
        "{results:?}"
    );
    assert!(
        !refused.is_empty(),
        "16 concurrent large batches on one worker with a queue of 1 must overflow"
    );
    assert!(
        refused[0].1.contains("the inference queue is full"),
        "{}",
        refused[0].1
    );
    assert!(refused[0].1.contains("TEMPORARILY_UNAVAILABLE"));
    assert_eq!(
        gw.metric("modelgate_inference_queue_rejections_total{endpoint=\"transactions\"}"),
        Some(refused.len() as f64)
    );
}
