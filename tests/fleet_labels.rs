//! Labels meet their predictions anywhere in a fleet: three gateways share a real
//! `redis-server` (`fleet.redis_url`); the demo's traffic is scored on each in turn and its
//! labels are posted through each in turn, so most labels reach a replica that did not make
//! their prediction. Relayed through the store, every label joins, the replicas' confusion
//! counts add up to the single-process golden (TP 5, FP 10, FN 15, TN 70: DEMO.md), and any
//! replica's (fleet-wide) report shows the golden itself.

mod common;

use std::path::Path;
use std::time::Duration;

use common::redis::Redis;
use common::Gateway;
use modelgate::demo::{Transaction, TransactionStream};
use serde_json::{json, Value};

const REPLICAS: usize = 3;

fn config(registry: &Path, redis_port: u16) -> String {
    format!(
        "registry:\n  path: {}\ninference:\n  workers: 2\nmonitoring:\n  windows: [1h]\nfleet:\n  redis_url: redis://127.0.0.1:{redis_port}\n  profile_interval_ms: 200\nendpoints:\n  - name: tx\n    served_entities:\n      - {{name: champion, entity_name: transactions, entity_version: '1', engine: tract}}\n",
        registry.display()
    )
}

fn score(gw: &Gateway, batch: &[Transaction]) -> (String, Vec<Value>) {
    let reply = common::score_model_columns(gw, "tx", batch);
    let id = reply.header("x-request-id").expect("x-request-id");
    (id, reply.json()["predictions"].as_array().unwrap().clone())
}

/// A replica's confusion counts of its champion, over everything it scored.
fn confusion(gw: &Gateway) -> [u64; 4] {
    confusion_of(gw, "?scope=replica")
}

/// The fleet's confusion counts of the champion, as a replica reports them.
fn fleet_confusion(gw: &Gateway) -> [u64; 4] {
    confusion_of(gw, "")
}

fn confusion_of(gw: &Gateway, query: &str) -> [u64; 4] {
    let report = gw
        .get(&format!("/api/2.0/serving-endpoints/tx/monitoring{query}"))
        .json();
    let champion = report["served_entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["served_entity"] == "champion")
        .unwrap()
        .clone();
    let total = champion["quality"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["window"] == "total")
        .cloned()
        .unwrap_or_default();
    ["tp", "fp", "fn", "tn"].map(|k| total[k].as_u64().unwrap_or(0))
}

fn labels_total(gw: &Gateway, outcome: &str) -> u64 {
    gw.metric(&format!(
        "modelgate_labels_total{{endpoint=\"tx\",outcome=\"{outcome}\"}}"
    ))
    .unwrap_or(0.0) as u64
}

#[test]
fn labels_posted_to_any_replica_meet_their_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let registry = common::registry_without_spec(dir.path());
    let redis = Redis::start();
    let fleet: Vec<Gateway> = (0..REPLICAS)
        .map(|_| common::start(&config(&registry, redis.port), false))
        .collect();

    // The generator's traffic in batches of 10, each batch to the next replica, until there
    // are 15 predicted positives and 85 negatives (as tests/monitoring.rs scores them on one).
    let mut stream = TransactionStream::new(7, 1_795_000_000_000);
    let (mut positives, mut negatives) = (Vec::new(), Vec::new());
    let mut scored_by = std::collections::HashMap::new();
    let mut batch_no = 0;
    // One positive beyond the golden's, for the last check.
    while positives.len() < 16 || negatives.len() < 85 {
        let batch: Vec<Transaction> = stream.by_ref().take(10).collect();
        let (id, predictions) = score(&fleet[batch_no % REPLICAS], &batch);
        scored_by.insert(id.clone(), batch_no % REPLICAS);
        batch_no += 1;
        for (row, p) in predictions.iter().enumerate() {
            let list = if p["label"] == 1 {
                &mut positives
            } else {
                &mut negatives
            };
            list.push((id.clone(), row));
        }
        assert!(batch_no < 500, "too few positives");
    }
    let mut labels = Vec::new();
    for (i, (id, row)) in positives.iter().take(15).enumerate() {
        labels.push(json!({"request_id": id, "row_index": row, "label": i32::from(i < 5)}));
    }
    for (i, (id, row)) in negatives.iter().take(85).enumerate() {
        labels.push(json!({"request_id": id, "row_index": row, "label": i32::from(i < 15)}));
    }
    // Posted in tens, each ten through the replica after the one that scored most of it: a
    // label joins where it is posted or is relayed.
    let (mut joined_here, mut forwarded) = (0, 0);
    for (i, chunk) in labels.chunks(10).enumerate() {
        let reply = fleet[(i + 1) % REPLICAS].post_json(
            "/api/2.0/serving-endpoints/tx/labels",
            &json!({ "labels": chunk }),
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
        let m = &reply.json()["monitoring"];
        assert_eq!(m["unmatched"], 0, "{m}");
        joined_here += m["joined"].as_u64().unwrap();
        forwarded += m["forwarded"].as_u64().unwrap_or(0);
    }
    assert_eq!(joined_here + forwarded, 100);
    assert!(
        forwarded > 0,
        "every label met its prediction where it was posted"
    );

    // The replicas' counts add up to the single-process golden, and every label joined once.
    common::wait_for(
        "the relayed labels to join",
        Duration::from_secs(30),
        || {
            let sum = fleet.iter().map(confusion).fold([0; 4], |mut acc, c| {
                for (a, x) in acc.iter_mut().zip(c) {
                    *a += x;
                }
                acc
            });
            (sum == [5, 10, 15, 70]).then_some(())
        },
    );
    // Any replica's report adds up the others' counts (published every
    // fleet.profile_interval_ms): the golden itself.
    for gw in &fleet {
        common::wait_for("the fleet-wide report", Duration::from_secs(30), || {
            (fleet_confusion(gw) == [5, 10, 15, 70]).then_some(())
        });
    }
    let joined: u64 = fleet.iter().map(|gw| labels_total(gw, "joined")).sum();
    assert_eq!(joined, 100);
    let counted_forwarded: u64 = fleet.iter().map(|gw| labels_total(gw, "forwarded")).sum();
    assert_eq!(counted_forwarded, forwarded);

    // A label no replica's prediction matches goes to the fleet and joins nowhere; a label
    // posted again through another replica counts once. A third label, for another
    // prediction of the same replica, joins there: once it has, so has everything relayed
    // with it.
    let (extra_id, extra_row) = positives[15].clone();
    let holder = scored_by[&extra_id];
    let (id, row) = positives[..15]
        .iter()
        .chain(&negatives[..85])
        .find(|(i, _)| scored_by[i] == holder)
        .expect("a labelled prediction of every replica");
    let extra_label = 1;
    let reply = fleet[(holder + 1) % REPLICAS].post_json(
        "/api/2.0/serving-endpoints/tx/labels",
        &json!({"labels": [
            {"request_id": "no-such-request", "label": 1},
            {"request_id": id, "row_index": row, "label": 0},
            {"request_id": extra_id, "row_index": extra_row, "label": extra_label},
        ]}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["monitoring"]["forwarded"], 3, "{}", reply.text);
    common::wait_for("the third label to join", Duration::from_secs(30), || {
        let joined: u64 = fleet.iter().map(|gw| labels_total(gw, "joined")).sum();
        (joined > 100).then_some(())
    });
    let joined: u64 = fleet.iter().map(|gw| labels_total(gw, "joined")).sum();
    assert_eq!(
        joined, 101,
        "a relayed label joined twice, or an unknown one joined"
    );
    let sum = fleet.iter().map(confusion).fold([0; 4], |mut acc, c| {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
        acc
    });
    // The extra label agrees with its prediction: one more true positive.
    assert_eq!(sum, [6, 10, 15, 70]);
}
