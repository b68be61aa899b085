//! The two-step join against a real `redis-server`: the lookup is awaited on an async worker
//! (a current-thread runtime, as actix runs) without holding it while Redis answers, and the
//! CPU stages complete elsewhere, with the result of the one-call join.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis::Redis;
use modelgate::data::frame::{Column, ColumnData, Frame};
use modelgate::features::join::JoinPlan;
use modelgate::features::redis_store::{load_snapshots, RedisSettings, RedisStore};
use modelgate::features::store::TableSettings;
use modelgate::metrics::Metrics;

const SPEC: &str = "
request_columns: [{name: id, type: int}]
lookups:
  - table: t
    lookup_key: [id]
    features: [{name: n, type: int, default: -1}]
model_columns: [n]
";

fn frame(ids: &[i64]) -> Frame {
    Frame {
        columns: vec![Column::scalar("id", ColumnData::I64(ids.to_vec()))],
    }
}

fn counted(m: &Metrics, outcome: &str) -> u64 {
    m.features
        .values
        .with_label_values(&["t", "n", outcome])
        .get()
}

#[test]
fn the_lookup_is_awaited_without_holding_the_worker_and_completes_like_the_join() {
    let redis = Redis::start();
    let port = redis.port;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    std::fs::write(&path, "{\"id\": 1, \"n\": 5}\n{\"id\": 2, \"n\": 7}\n").unwrap();
    let tables = vec![TableSettings {
        name: "t".into(),
        path,
        primary_keys: vec!["id".into()],
        timestamp_key: None,
        event_timestamp: None,
    }];
    let settings = RedisSettings {
        url: format!("redis://127.0.0.1:{port}"),
        timeout_ms: 300,
        ..Default::default()
    };
    load_snapshots(&settings, &tables).unwrap();
    let store = RedisStore::open(&settings, tables).unwrap();
    let metrics = Metrics::new();
    let spec = serde_yaml::from_str(SPEC).unwrap();
    let plan = Arc::new(JoinPlan::compile(&spec, Arc::new(store), Some(&metrics)).unwrap());

    let worker = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Answered: the future may move to another thread (Send), and the CPU stages run there.
    let looked = worker
        .block_on(worker.spawn(plan.lookup(&frame(&[1, 9, 2]), None)))
        .unwrap()
        .unwrap();
    let p = plan.clone();
    let two = std::thread::spawn(move || p.complete(looked).unwrap())
        .join()
        .unwrap();
    let one = plan.join(&frame(&[1, 9, 2]), None).unwrap();
    assert_eq!(two.frame, one.frame);
    assert_eq!(two.frame.columns[0].data, ColumnData::I64(vec![5, -1, 7]));
    assert_eq!(counted(&metrics, "present"), 4);
    assert_eq!(counted(&metrics, "missing"), 2);

    // Redis stops answering: while the lookup waits out its deadline, the same single worker
    // thread keeps running other tasks.
    redis.pause(true);
    let started = Instant::now();
    let (looked, ticks) = worker.block_on(async {
        let ticker = async {
            let mut ticks = 0;
            while started.elapsed() < Duration::from_millis(200) {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks += 1;
            }
            ticks
        };
        tokio::join!(plan.lookup(&frame(&[1]), None), ticker)
    });
    redis.pause(false);
    assert!(
        ticks >= 5,
        "the worker was held during the lookup: {ticks} ticks"
    );
    let joined = plan.complete(looked.unwrap()).unwrap();
    // Past the deadline, the value timed out and took its default.
    assert_eq!(joined.frame.columns[0].data, ColumnData::I64(vec![-1]));
    assert_eq!(counted(&metrics, "timed_out"), 1);
    assert!(started.elapsed() >= Duration::from_millis(300));
}
