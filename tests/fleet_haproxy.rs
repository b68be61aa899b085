//! A fleet behind a real load balancer: three gateways sharing a real `redis-server`, Debian's
//! `haproxy` in front (round robin, health-checked on `/readyz`), inference tables in one S3
//! bucket (moto's server). An endpoint created through one replica is served through the
//! balancer by all; one replica killed with `-9` under load: the balancer fails over, and the
//! tables hold every call the other replicas answered exactly once (the killed one's calls at
//! most once: its loss window is documented in docs/operations.md).

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::haproxy::Haproxy;
use common::redis::Redis;
use common::Gateway;
use serde_json::{json, Value};

const REPLICAS: usize = 3;

fn config(redis_port: u16, s3_options: &Value, bucket: &str) -> String {
    let mut settings = format!(
        "fleet:\n  redis_url: redis://127.0.0.1:{redis_port}\ninference_log:\n  location: s3://{bucket}/tables\n  flush_rows: 8\n  flush_interval_ms: 50\n  storage_options:\n"
    );
    for (k, v) in s3_options.as_object().unwrap() {
        settings.push_str(&format!("    {k}: \"{}\"\n", v.as_str().unwrap()));
    }
    common::demo_config(&common::endpoint("base", "1", "tract"), &settings)
}

/// One call through the balancer: its status, request id and the gateway that answered.
fn call(base: &str) -> Call {
    let started = Instant::now();
    let (status, id, by) = send(base);
    Call {
        started,
        status,
        id,
        by,
    }
}

struct Call {
    started: Instant,
    status: u16,
    id: Option<String>,
    by: Option<String>,
}

fn send(base: &str) -> (u16, Option<String>, Option<String>) {
    let reply = common::client()
        .post(format!("{base}/serving-endpoints/ab/invocations"))
        .header("content-type", "application/json")
        .body(common::join_rows(1).to_string())
        .send();
    match reply {
        Ok(r) => {
            let header = |n: &str| {
                r.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            (
                r.status().as_u16(),
                header("x-request-id"),
                header("x-served-by"),
            )
        }
        Err(_) => (0, None, None),
    }
}

/// The request ids of a payload table, as Python `deltalake` reads it (DuckDB agreeing on
/// the count).
fn logged_ids(table: &str, options: &Value) -> Vec<String> {
    let mut readers = Command::new(common::delta_python());
    readers
        .arg(common::repo().join("tests/readers/delta_tables.py"))
        .arg(table)
        .env("DELTA_STORAGE_OPTIONS", options.to_string());
    let v: Value =
        serde_json::from_slice(&common::stdout_of(&mut readers, "the Delta readers")).unwrap();
    let t = &v[table];
    let rows = t["deltalake"]["rows"].as_array().expect("a payload table");
    assert_eq!(t["duckdb"]["count"].as_u64().unwrap() as usize, rows.len());
    rows.iter()
        .map(|r| r["databricks_request_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_replica_killed_under_load_fails_over_and_the_others_log_every_answer_once() {
    let redis = Redis::start();
    let s3 = common::s3::MotoServer::start(&common::delta_python());
    let bucket = s3.create_bucket("fleet");
    let options = s3.storage_options();
    let mut fleet: Vec<Gateway> = (0..REPLICAS)
        .map(|_| common::start(&config(redis.port, &options, &bucket), false))
        .collect();
    let bases: Vec<&str> = fleet.iter().map(|g| g.base.as_str()).collect();
    let balancer = Haproxy::start(&bases);
    balancer.wait_for_all(REPLICAS);

    // Created through replica 0, logging to the bucket: served through the balancer by all.
    let create = json!({"name": "ab", "config": {
        "served_entities": [{"entity_name": "transactions", "entity_version": "1", "engine": "tract"}],
        "auto_capture_config": {"table_name_prefix": "ab"}
    }});
    let r = fleet[0].post_json("/api/2.0/serving-endpoints", &create);
    assert_eq!(r.status, 200, "{}", r.text);
    for gw in &fleet {
        common::wait_for(
            "ab to serve on every replica",
            Duration::from_secs(60),
            || {
                let v = gw.get("/api/2.0/serving-endpoints/ab");
                (v.status == 200 && v.json()["state"]["ready"] == "READY").then_some(())
            },
        );
    }

    // Two callers through the balancer; replica 2 is killed with -9 after 60 answers, and the
    // calls go on until 150 more have been answered, for 2 s at least.
    let stop = AtomicBool::new(false);
    let answered = AtomicUsize::new(0);
    let killed_at = AtomicUsize::new(usize::MAX);
    let mut kill_time = Instant::now();
    let calls: Vec<Call> = std::thread::scope(|s| {
        let callers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    while !stop.load(Ordering::Acquire) {
                        let c = call(&balancer.base);
                        if c.status == 200 {
                            answered.fetch_add(1, Ordering::AcqRel);
                        }
                        mine.push(c);
                    }
                    mine
                })
            })
            .collect();
        common::wait_for("60 answers", Duration::from_secs(60), || {
            (answered.load(Ordering::Acquire) >= 60).then_some(())
        });
        fleet[2].child.kill().unwrap();
        fleet[2].child.wait().unwrap();
        kill_time = Instant::now();
        killed_at.store(answered.load(Ordering::Acquire), Ordering::Release);
        common::wait_for(
            "150 answers and 2 s after the kill",
            Duration::from_secs(60),
            || {
                let enough =
                    answered.load(Ordering::Acquire) >= killed_at.load(Ordering::Acquire) + 150;
                (enough && kill_time.elapsed() >= Duration::from_secs(2)).then_some(())
            },
        );
        stop.store(true, Ordering::Release);
        callers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });

    // The balancer failed over: the calls in flight at the kill may fail; a second after it
    // (five health checks), every call is answered, and by the others.
    let failed = calls.iter().filter(|c| c.status != 200).count();
    assert!(failed <= 4, "{failed} calls failed");
    let settled: Vec<&Call> = calls
        .iter()
        .filter(|c| c.started > kill_time + Duration::from_secs(1))
        .collect();
    assert!(
        settled.len() >= 50,
        "{} calls a second after the kill",
        settled.len()
    );
    assert!(
        settled
            .iter()
            .all(|c| c.status == 200 && c.by.as_deref() != Some("r2")),
        "a call failed or reached the killed replica a second after the kill"
    );

    // The survivors commit everything they answered, then stop.
    let mut by_replica: HashMap<String, Vec<String>> = HashMap::new();
    for c in calls.iter().filter(|c| c.status == 200) {
        by_replica
            .entry(c.by.clone().expect("X-Served-By"))
            .or_default()
            .push(c.id.clone().expect("x-request-id"));
    }
    for (i, gw) in fleet.iter().enumerate().take(2) {
        let answered = by_replica.get(&format!("r{i}")).map_or(0, Vec::len);
        gw.wait_for_metric(
            "modelgate_inference_log_rows_total{endpoint=\"ab\",table=\"payload\"}",
            answered as f64,
        );
    }
    for gw in fleet.drain(..2) {
        assert!(gw.terminate().success());
    }
    let logged = logged_ids(&format!("s3://{bucket}/tables/ab_payload"), &options);
    let mut times: HashMap<&str, usize> = HashMap::new();
    for id in &logged {
        *times.entry(id.as_str()).or_default() += 1;
    }
    for replica in ["r0", "r1"] {
        for id in by_replica.get(replica).into_iter().flatten() {
            assert_eq!(times.get(id.as_str()), Some(&1), "{replica}'s call {id}");
        }
    }
    assert!(times.values().all(|&n| n == 1), "a call logged twice");
    let r2_logged = by_replica
        .get("r2")
        .into_iter()
        .flatten()
        .filter(|id| times.contains_key(id.as_str()))
        .count();
    println!(
        "{} calls, {failed} failed at the kill; killed replica: {r2_logged} of its {} answered calls reached the table",
        calls.len(),
        by_replica.get("r2").map_or(0, Vec::len)
    );
}
