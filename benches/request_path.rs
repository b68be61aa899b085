//! The request path without HTTP: decode -> bind -> infer -> encode, per engine, beside raw
//! inference on prebuilt tensors (the engine's own limit).
//!
//! Run: `ORT_DYLIB_PATH=$(scripts/fetch-onnxruntime.sh) cargo bench --bench request_path`
//! (without `ORT_DYLIB_PATH` only the tract rows run).

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use modelgate::drift::monitor::RequestMonitor;
use modelgate::drift::{MonitorConfig, MonitoringSettings};
use modelgate::endpoint::config::{EndpointSettings, Route, RoutingSettings, TrafficConfig};
use modelgate::endpoint::loader::{load_served_entity, LoadContext};
use modelgate::endpoint::Generation;
use modelgate::endpoint::ServedEntity;
use modelgate::engine::pool::InferencePool;
use modelgate::engine::{EngineChoice, Engines};
use modelgate::metrics::Metrics;
use modelgate::pipeline::{mirror, score, Format, Job};
use modelgate::protocol::mlflow;
use modelgate::registry::file::FileRegistry;
use modelgate::settings::{InferenceSettings, ServedEntitySettings};
use serde_json::{json, Value};

fn load(
    engines: &Engines,
    pool: &Arc<InferencePool>,
    engine: EngineChoice,
    version: &str,
) -> Arc<ServedEntity> {
    let registry = FileRegistry::new(registry_without_specs());
    let inference = InferenceSettings {
        warmup_runs: 10,
        ..InferenceSettings::default()
    };
    let ctx = LoadContext {
        registry: &registry,
        engines,
        pool,
        inference: &inference,
        default_engine: engine,
        replaces: None,
        store: None,
        metrics: None,
    };
    let mut cfg = ServedEntitySettings::new("transactions", version);
    cfg.engine = Some(engine);
    load_served_entity(&ctx, &cfg, version)
        .expect("demo model loads")
        .entity
}

/// The demo registry with its versions' feature specs left out: the bench sends the model's
/// own columns (the feature join has its own loadtest, loadtests/features.sh).
fn registry_without_specs() -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir");
        let from =
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/transactions"));
        let to = dir.path().join("transactions");
        for version in ["1", "2"] {
            std::fs::create_dir_all(to.join(version)).expect("a version folder");
            for entry in std::fs::read_dir(from.join(version)).expect("the demo registry") {
                let entry = entry.expect("a file");
                if entry.file_name() != "feature_spec.yaml" {
                    std::fs::copy(entry.path(), to.join(version).join(entry.file_name()))
                        .expect("copying the demo registry");
                }
            }
        }
        dir
    });
    dir.path().to_owned()
}

/// `rows` rows of the v1 fixture as a `dataframe_split` body.
fn body(rows: usize) -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/transactions_v1_cases.json"
    );
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let data: Vec<Value> = cases["data"]
        .as_array()
        .unwrap()
        .iter()
        .cycle()
        .take(rows)
        .cloned()
        .collect();
    serde_json::to_vec(&json!({"dataframe_split": {"columns": cases["columns"], "data": data}}))
        .unwrap()
}

/// The request job of an endpoint serving `entity`, optionally mirroring every request to
/// `shadow` (as a second served entity with a shadow route).
fn job(
    entity: &Arc<ServedEntity>,
    shadow: Option<&Arc<ServedEntity>>,
    pool: &Arc<InferencePool>,
    metrics: &Arc<Metrics>,
) -> Job {
    let mut entities = vec![ServedEntitySettings::new(
        "transactions",
        &entity.meta.version,
    )];
    let mut routes = vec![Route {
        served_entity_name: entities[0].served_name(),
        traffic_percentage: 100,
        shadow: false,
        shadow_percentage: None,
    }];
    if let Some(s) = shadow {
        let mut se = ServedEntitySettings::new("transactions", &s.meta.version);
        se.name = Some("shadow".into());
        entities.push(se);
        routes.push(Route {
            served_entity_name: "shadow".into(),
            traffic_percentage: 0,
            shadow: true,
            shadow_percentage: None,
        });
    }
    let settings = EndpointSettings {
        name: "bench".into(),
        served_entities: entities,
        traffic_config: Some(TrafficConfig { routes }),
        routing: RoutingSettings::default(),
        auto_capture_config: None,
        rate_limits: Vec::new(),
    };
    let generation = Generation::build(settings, None, None, metrics, 1);
    generation.slots[0].publish(entity.clone());
    if let Some(s) = shadow {
        generation.slots[1].publish(s.clone());
    }
    Job {
        generation: Arc::new(generation),
        pinned: None,
        header_key: None,
        format: Format::MlflowJson,
        limits: Default::default(),
        deadline: None,
        pool: pool.clone(),
        runtime: None,
        sinks: Default::default(),
        measured: false,
    }
}

fn bench(c: &mut Criterion) {
    let metrics = Arc::new(Metrics::new());
    let pool = InferencePool::new(1, 16);
    let engines = Engines::init(None, 1, false).expect("engines");
    let mut arms = vec![("tract", load(&engines, &pool, EngineChoice::Tract, "1"))];
    if engines.ort_available() {
        arms.push(("ort", load(&engines, &pool, EngineChoice::Ort, "1")));
        arms.push(("ort-gbt-v2", load(&engines, &pool, EngineChoice::Ort, "2")));
    } else {
        eprintln!("ORT_DYLIB_PATH is not set or does not load: benchmarking tract only");
    }
    for rows in [1usize, 64] {
        let body = body(rows);
        let frame = mlflow::decode_json(&body).unwrap().frame;
        let mut group = c.benchmark_group(format!("rows_{rows}"));
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_function("decode_json", |b| {
            b.iter(|| mlflow::decode_json(&body).unwrap())
        });
        for (name, entity) in &arms {
            let tensors = entity.meta.binding.bind(&frame).unwrap();
            group.bench_with_input(BenchmarkId::new("raw_inference", name), &tensors, |b, t| {
                b.iter(|| entity.loaded.run(0, t.clone()).unwrap())
            });
            let plain = job(entity, None, &pool, &metrics);
            group.bench_with_input(BenchmarkId::new("request_path", name), &body, |b, body| {
                b.iter(|| score(&plain, 0, body, Instant::now()).unwrap())
            });
            // The same with drift profiling and the wait for labels (monitoring's defaults).
            let mut monitored = job(entity, None, &pool, &metrics);
            monitored.sinks.monitor = Some(RequestMonitor {
                config: MonitorConfig::new(&MonitoringSettings::default()).expect("enabled"),
                pending: Default::default(),
                request_id: "bench".into(),
                now_ms: modelgate::clock::now_ms() as i64,
            });
            group.bench_with_input(
                BenchmarkId::new("request_path_monitored", name),
                &body,
                |b, body| b.iter(|| score(&monitored, 0, body, Instant::now()).unwrap()),
            );
        }
        // A worker's whole time per request with a shadow arm: the answer, then queueing the
        // copy (which the server does after the answer is handed over). The pool's one worker
        // runs the copies meanwhile, or drops them when its queue is full.
        let (_, first) = &arms[0];
        let (_, last) = &arms[arms.len() - 1];
        let mirrored = job(first, Some(last), &pool, &metrics);
        group.bench_with_input(
            BenchmarkId::new("request_path_with_shadow", arms[0].0),
            &body,
            |b, body| {
                b.iter(|| {
                    let mut scored = score(&mirrored, 0, body, Instant::now()).unwrap();
                    if let Some(frame) = scored.shadow.take() {
                        mirror(&mirrored, frame);
                    }
                    scored
                })
            },
        );
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
