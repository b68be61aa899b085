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
use modelgate::endpoint::Generation;
use modelgate::endpoint::ServedEntity;
use modelgate::engine::pool::InferencePool;
use modelgate::engine::{EngineChoice, Engines};
use modelgate::metrics::Metrics;
use modelgate::pipeline::{mirror, score, Format, Job};

mod common;
use common::{body, load};
use modelgate::protocol::mlflow;
use modelgate::settings::ServedEntitySettings;

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
        ..Default::default()
    };
    let shared = modelgate::endpoint::Shared {
        metrics: metrics.clone(),
        fleet: None,
    };
    let generation = Generation::build(settings, None, None, &shared, 1);
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
        traced: false,
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
