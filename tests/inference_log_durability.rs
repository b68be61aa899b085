//! What the inference log does when things go wrong after the request was answered: a Delta
//! commit whose post-commit step fails (retried without appending the batch twice, read back
//! with Python `deltalake`), and a shutdown whose store does not answer (the deadline holds and
//! every row is either committed or counted). In process: the log's own API and metrics.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use modelgate::endpoint::config::AutoCaptureConfig;
use modelgate::inference_log::{Capture, InferenceLog, InferenceLogSettings, LabelRecord};
use modelgate::metrics::Metrics;
use serde_json::Value;

use common::delta_python as python;

fn capture(log: &InferenceLog, endpoint: &str) -> Arc<Capture> {
    let config: AutoCaptureConfig = serde_json::from_str("{}").unwrap();
    Arc::new(log.capture(endpoint, &config).expect("capture enabled"))
}

fn labels(prefix: &str, n: usize) -> Vec<LabelRecord> {
    (0..n)
        .map(|i| LabelRecord {
            received_us: 1_795_428_000_000_000,
            request_id: Some(format!("{prefix}-{i}")),
            row_index: Some(0),
            event_time_us: None,
            keys: Vec::new(),
            label: Some((i % 2) as f64),
            label_text: (i % 2).to_string(),
        })
        .collect()
}

fn counter(metrics: &Metrics, endpoint: &str, reason: &str) -> u64 {
    metrics
        .log
        .dropped_rows
        .with_label_values(&[endpoint, "labels", reason])
        .get()
}

fn committed(metrics: &Metrics, endpoint: &str) -> u64 {
    metrics
        .log
        .rows
        .with_label_values(&[endpoint, "labels"])
        .get()
}

/// Runs Python with `script` and `args`, failing the test with its stderr. The script ends with
/// `os._exit`: Python `deltalake` at times aborts in its teardown at interpreter exit
/// ("terminate called without an active exception") after the work is done.
fn run_python(script: &str, args: &[&Path]) -> Vec<u8> {
    let script = format!("{script}import os, sys\nsys.stdout.flush()\nos._exit(0)\n");
    let mut cmd = Command::new(python());
    cmd.arg("-c").arg(script).args(args);
    common::stdout_of(&mut cmd, "python")
}

#[test]
fn a_retry_after_a_post_commit_failure_does_not_append_the_batch_twice() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tables");
    let table = root.join("e_labels");
    // A table that checkpoints after every commit...
    run_python(
        "import sys, pyarrow as pa\n\
         from deltalake import DeltaTable\n\
         DeltaTable.create(sys.argv[1], pa.schema([('request_id', pa.string())]),\n\
             configuration={'delta.checkpointInterval': '1'})\n",
        &[&table],
    );
    // ... whose checkpoint of version 1 cannot be written (a folder is in its place): the
    // first append writes its commit file, then fails in its post-commit step.
    let blocked = table.join("_delta_log/00000000000000000001.checkpoint.parquet");
    std::fs::create_dir(&blocked).unwrap();

    let metrics = Arc::new(Metrics::new());
    let settings = InferenceLogSettings {
        location: root.display().to_string(),
        flush_interval_ms: 20,
        commit_attempts: 5,
        ..Default::default()
    };
    let log = InferenceLog::start(settings, metrics.clone()).unwrap();
    let n = 25;
    log.log_labels(capture(&log, "e"), labels("first", n))
        .unwrap();
    common::eventually(Duration::from_secs(60), || {
        committed(&metrics, "e") + counter(&metrics, "e", "commit_failed") >= n as u64
    });
    assert_eq!(committed(&metrics, "e"), n as u64);
    assert!(
        metrics
            .log
            .commit_retries
            .with_label_values(&["e", "labels"])
            .get()
            >= 1,
        "the first attempt failed after its commit"
    );
    // A later batch is written normally (the checkpoint of its version is not blocked).
    log.log_labels(capture(&log, "e"), labels("second", 3))
        .unwrap();
    assert!(log.close(Duration::from_secs(30)));
    assert_eq!(committed(&metrics, "e"), n as u64 + 3);

    let read = run_python(
        "import json, sys\n\
         from deltalake import DeltaTable\n\
         t = DeltaTable(sys.argv[1])\n\
         ids = t.to_pyarrow_table().column('request_id').to_pylist()\n\
         print(json.dumps({'ids': ids, 'version': t.version()}))\n",
        &[&table],
    );
    let read: Value = serde_json::from_slice(&read).unwrap();
    let ids: Vec<&str> = read["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a row appended twice: {ids:?}");
    assert_eq!(ids.len(), n + 3);
    // Created, the first batch once, the second batch.
    assert_eq!(read["version"], 2);
}

/// A TCP server that takes connections and never answers (an object store that hangs).
fn black_hole() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

#[test]
fn shutdown_holds_its_deadline_and_counts_every_row_it_could_not_commit() {
    let port = black_hole();
    let storage_options: BTreeMap<String, String> = [
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let metrics = Arc::new(Metrics::new());
    let settings = InferenceLogSettings {
        location: "s3://hangs/tables".into(),
        storage_options,
        flush_interval_ms: 20,
        // Retries would outlast any deadline.
        commit_attempts: 20,
        ..Default::default()
    };
    let log = InferenceLog::start(settings, metrics.clone()).unwrap();
    let (a, b) = (capture(&log, "a"), capture(&log, "b"));
    log.log_labels(a.clone(), labels("a", 7)).unwrap();
    log.log_labels(b.clone(), labels("b", 5)).unwrap();
    // Once the writer has taken them (and starts an attempt that hangs), a batch behind it.
    common::eventually(Duration::from_secs(10), || log.depth().1 == 0);
    log.log_labels(a, labels("a-late", 4)).unwrap();
    let accepted = 7 + 5 + 4;

    let deadline = Duration::from_secs(1);
    let started = Instant::now();
    let all_committed = log.close(deadline);
    let took = started.elapsed();
    assert!(!all_committed);
    // The deadline, and at most the bounded check of the one abandoned attempt after it.
    assert!(
        took < deadline + Duration::from_millis(1800),
        "close took {took:?} with a deadline of {deadline:?}"
    );
    let counted: u64 = ["a", "b"]
        .iter()
        .map(|e| counter(&metrics, e, "shutdown") + counter(&metrics, e, "commit_failed"))
        .sum();
    let written = committed(&metrics, "a") + committed(&metrics, "b");
    assert_eq!(
        written + counted,
        accepted,
        "committed + counted == accepted"
    );
    assert_eq!(
        counter(&metrics, "a", "shutdown") + counter(&metrics, "b", "shutdown"),
        accepted
    );
    // Nothing more is taken, and that is counted too.
    assert!(log
        .log_labels(capture(&log, "a"), labels("after", 1))
        .is_err());
}
