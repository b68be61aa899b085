//! Monitoring across a fleet: three gateways share a real `redis-server` and publish their
//! monitoring profiles to it; the same requests and labels go to one process and, spread
//! in turn, to the fleet. Any replica's report (and its Prometheus gauges) then equals the
//! single process's, to 1e-9; `?scope=replica` gives a replica's own share.

mod common;

use std::path::Path;
use std::time::Duration;

use common::redis::Redis;
use common::Gateway;
use modelgate::demo::{Transaction, TransactionStream};
use serde_json::{json, Value};

const REPLICAS: usize = 3;

/// One endpoint `tx` (version 1, monitored in 1h windows), in a fleet when `redis_port` is
/// given.
fn config(registry: &Path, redis_port: Option<u16>) -> String {
    let fleet = redis_port
        .map(|p| {
            format!("fleet:\n  redis_url: redis://127.0.0.1:{p}\n  profile_interval_ms: 200\n")
        })
        .unwrap_or_default();
    format!(
        "registry:\n  path: {}\ninference:\n  workers: 2\nmonitoring:\n  windows: [1h]\n  min_count: 10\n{fleet}endpoints:\n  - name: tx\n    served_entities:\n      - {{name: champion, entity_name: transactions, entity_version: '1', engine: tract}}\n",
        registry.display()
    )
}

/// Scores `batch`; the request id.
fn score(gw: &Gateway, batch: &[Transaction]) -> String {
    let reply = common::score_model_columns(gw, "tx", batch);
    reply.header("x-request-id").expect("x-request-id")
}

fn post_labels(gw: &Gateway, labels: &[Value]) {
    let reply = gw.post_json(
        "/api/2.0/serving-endpoints/tx/labels",
        &json!({ "labels": labels }),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
}

/// The champion's since-load drift window and quality of a report.
fn totals(report: &Value) -> (Value, Value) {
    let champion = report["served_entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["served_entity"] == "champion")
        .unwrap();
    let pick = |list: &str| {
        champion[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["window"] == "total")
            .cloned()
            .unwrap_or(Value::Null)
    };
    (pick("windows"), pick("quality"))
}

fn report(gw: &Gateway, query: &str) -> Value {
    let reply = gw.get(&format!("/api/2.0/serving-endpoints/tx/monitoring{query}"));
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()
}

/// Whether `a` and `b` agree, numbers to 1e-9, the windows' times aside; the first
/// difference's path.
fn differs(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            ((x - y).abs() > 1e-9).then(|| format!("{path}: {x} != {y}"))
        }
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter()
                .filter(|k| !matches!(k.as_str(), "start" | "end"))
                .find_map(|k| {
                    differs(
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        &format!("{path}.{k}"),
                    )
                })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (x, y))| differs(x, y, &format!("{path}[{i}]"))),
        _ => (a != b).then(|| format!("{path}: {a} != {b}")),
    }
}

#[test]
fn any_replicas_report_equals_one_process_over_the_same_requests() {
    let dir = tempfile::tempdir().unwrap();
    let registry = common::registry_without_spec(dir.path());
    let redis = Redis::start();
    let single = common::start(&config(&registry, None), false);
    let fleet: Vec<Gateway> = (0..REPLICAS)
        .map(|_| common::start(&config(&registry, Some(redis.port)), false))
        .collect();
    // A fourth replica the traffic never reaches (a challenger's arm may be so on some).
    let idle = common::start(&config(&registry, Some(redis.port)), false);

    // The same 40 batches of the generator's traffic to the single process and, in turn, to
    // the replicas; the same labels (the generator's truth for every row), each batch's
    // posted to the single process and through the next replica.
    let mut stream = TransactionStream::new(11, 1_795_000_000_000);
    for i in 0..40 {
        let batch: Vec<Transaction> = stream.by_ref().take(10).collect();
        let labels = |id: &str| -> Vec<Value> {
            batch
                .iter()
                .enumerate()
                .map(|(row, t)| json!({"request_id": id, "row_index": row, "label": t.label}))
                .collect()
        };
        let single_id = score(&single, &batch);
        post_labels(&single, &labels(&single_id));
        let fleet_id = score(&fleet[i % REPLICAS], &batch);
        post_labels(&fleet[(i + 1) % REPLICAS], &labels(&fleet_id));
    }

    let (single_drift, single_quality) = totals(&report(&single, ""));
    assert_eq!(single_quality["labels"], 400, "{single_quality}");
    // Each replica's report, once every replica has published its last counts, is the
    // single process's.
    for (i, gw) in fleet.iter().chain([&idle]).enumerate() {
        let merged = common::wait_for("the fleet's counts", Duration::from_secs(30), || {
            let r = report(gw, "");
            let (_, quality) = totals(&r);
            (quality["labels"] == 400).then_some(r)
        });
        assert_eq!(merged["scope"], "fleet");
        let (drift, quality) = totals(&merged);
        if let Some(d) = differs(&drift, &single_drift, "drift total") {
            panic!("replica {i}: {d}");
        }
        if let Some(d) = differs(&quality, &single_quality, "quality total") {
            panic!("replica {i}: {d}");
        }
        let champion = merged["served_entities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["served_entity"] == "champion")
            .unwrap();
        // The three with traffic and, once it has published its (empty) windows, the idle one.
        let replicas = champion["replicas"].as_u64().unwrap();
        assert!((3..=4).contains(&replicas), "{champion}");
        // Its own share alone: about a third of the rows (none for the idle one).
        let own = report(gw, "?scope=replica");
        assert_eq!(own["scope"], "replica");
        let (own_drift, _) = totals(&own);
        let rows = own_drift["columns"][0]["count"].as_u64().unwrap_or(0);
        if i < REPLICAS {
            assert!(rows < 400 && rows > 0, "{rows}");
        } else {
            assert_eq!(rows, 0);
        }
    }
    // The gauges are the fleet's figures too.
    let single_f1 = single.metric(
        "modelgate_quality{endpoint=\"tx\",metric=\"f1\",served_entity=\"champion\",window=\"total\"}",
    );
    let fleet_f1 = fleet[1].metric(
        "modelgate_quality{endpoint=\"tx\",metric=\"f1\",served_entity=\"champion\",window=\"total\"}",
    );
    assert!(single_f1.is_some());
    assert!((single_f1.unwrap() - fleet_f1.unwrap()).abs() < 1e-9);
    let bad = fleet[0].get("/api/2.0/serving-endpoints/tx/monitoring?scope=everything");
    assert_eq!(bad.status, 400, "{}", bad.text);
}

/// The champion's `replicas` in a fleet report of `gw` (1 alone, more as others' profiles
/// count).
fn replicas_counted(gw: &Gateway) -> u64 {
    let report = report(gw, "");
    report["served_entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["served_entity"] == "champion")
        .and_then(|e| e["replicas"].as_u64())
        .unwrap_or_else(|| panic!("no champion with replicas in {report}"))
}

/// While the store is down, a replica's reports keep adding the others' profiles it read
/// last, but only until they are older than the keep time (12 windows of 1h here): then they
/// stop counting, as they would with the store up. The replica's clock jumps a day ahead
/// (libfaketime reading its offset from a file) with Redis stopped.
#[test]
fn others_profiles_read_before_a_store_outage_age_out() {
    let faketime = common::path_from_env_or_script("MODELGATE_FAKETIME", "scripts/faketime.sh");
    let dir = tempfile::tempdir().unwrap();
    let registry = common::registry_without_spec(dir.path());
    let offset = dir.path().join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    let mut redis = Redis::start();
    let config = config(&registry, Some(redis.port));
    let env = [
        ("LD_PRELOAD", faketime.to_str().unwrap()),
        ("FAKETIME_TIMESTAMP_FILE", offset.to_str().unwrap()),
        ("FAKETIME_NO_CACHE", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let reporting = common::try_start(&config, false, &env).unwrap();
    let other = common::start(&config, false);
    let mut stream = TransactionStream::new(5, 1_795_000_000_000);
    let batch: Vec<Transaction> = stream.by_ref().take(10).collect();
    score(&other, &batch);
    common::wait_for(
        "the other replica's profile",
        Duration::from_secs(30),
        || (replicas_counted(&reporting) == 2).then_some(()),
    );

    redis.stop();
    // Once the replica sees the store gone, what it read last still counts.
    common::wait_for("the store seen down", Duration::from_secs(30), || {
        (reporting.metric("modelgate_fleet_store_up") == Some(0.0)).then_some(())
    });
    assert_eq!(replicas_counted(&reporting), 2);
    // A day later, with the store still down, it is older than the keep time. Written beside
    // and renamed, so that libfaketime never reads a half-written offset.
    let next = dir.path().join("faketime.next");
    std::fs::write(&next, "+1d\n").unwrap();
    std::fs::rename(&next, &offset).unwrap();
    common::wait_for(
        "the others' profiles to age out",
        Duration::from_secs(30),
        || (replicas_counted(&reporting) == 1).then_some(()),
    );
}
