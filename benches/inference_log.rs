//! How many calls a second the inference-log writers commit, by writer count: one-row calls as
//! the request path logs them (a payload row with its bodies, a predictions row with the
//! request's columns and the model's outputs) are queued as fast as one thread can, and timed
//! until both tables hold them all. The writers run at the serving threads' priority
//! (`writer_nice: 0`), so this is their capacity, not their share of a busy core.
//!
//! Run: `cargo bench --bench inference_log` (CALLS=n, 100000 by default; WRITERS="1 2").

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use modelgate::engine::pool::InferencePool;
use modelgate::engine::{EngineChoice, Engines};
use modelgate::inference_log::{
    CallRecord, InferenceLog, InferenceLogSettings, Inputs, ScoredRows,
};
use modelgate::metrics::Metrics;
use modelgate::protocol::mlflow;
use modelgate::settings::capture::AutoCaptureConfig;

mod common;
use common::{body, load};

mod settings_from_env;
use settings_from_env::env_or;

fn main() {
    // Cargo passes `--bench` (and a filter, when given); neither applies here.
    let calls: usize = env_or("CALLS", 100_000);
    let writers: Vec<usize> = std::env::var("WRITERS")
        .unwrap_or_else(|_| "1 2".into())
        .split_whitespace()
        .map(|w| w.parse().expect("WRITERS: whole numbers"))
        .collect();
    let pool = InferencePool::new(1, 16);
    let engines = Engines::init(None, 1, false).expect("engines");
    let entity = load(&engines, &pool, EngineChoice::Tract, "1");
    let request = Bytes::from(body(1));
    let frame = Arc::new(mlflow::decode_json(&request).unwrap().frame);
    let outputs = (entity.loaded)
        .run(0, entity.meta.binding.bind(&frame).unwrap())
        .unwrap();
    let response = Bytes::from_static(br#"{"predictions":[{"label":1,"probability":0.66}]}"#);
    let served: Arc<str> = Arc::from("transactions-1");
    println!("{calls} one-row calls, {} cores", num_cpus());
    println!("| writers | calls/s committed | seconds |");
    println!("| ---: | ---: | ---: |");
    for n in writers {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let settings = InferenceLogSettings {
            location: dir.path().display().to_string(),
            writers: n,
            writer_nice: 0,
            queue_bytes: 4 << 30,
            compact_every_commits: 0,
            ..Default::default()
        };
        let log = InferenceLog::start(settings, metrics.clone()).unwrap();
        let config: AutoCaptureConfig = serde_json::from_str("{}").unwrap();
        let capture = Arc::new(log.capture("bench", &config).unwrap());
        let records: Vec<(CallRecord, ScoredRows)> = (0..calls)
            .map(|i| {
                let id: Arc<str> = Arc::from(format!("{i:036}"));
                let call = CallRecord {
                    request_id: id.clone(),
                    client_request_id: None,
                    time_us: 1_764_000_000_000_000,
                    status_code: 200,
                    execution_ms: Some(0),
                    request: Some(request.clone()),
                    response: Some(response.clone()),
                    served_entity: Some(served.clone()),
                    logging_error_codes: Vec::new(),
                    requester: None,
                    sampling_fraction: 1.0,
                };
                let rows = ScoredRows {
                    request_id: id,
                    time_us: call.time_us,
                    served_entity: served.clone(),
                    meta: entity.meta.clone(),
                    shadow: false,
                    inputs: Inputs::Frame(frame.clone()),
                    outputs: outputs.clone(),
                    request_rows: None,
                    stages: None,
                    shadow_ms: None,
                };
                (call, rows)
            })
            .collect();
        let started = Instant::now();
        for (call, rows) in records {
            let queued = log.log_call(capture.clone(), 0, call, vec![rows]);
            assert!(queued.is_ok(), "the queue holds every call");
        }
        let committed = |table: &str| metrics.log.rows.with_label_values(&["bench", table]).get();
        let deadline = Instant::now() + Duration::from_secs(600);
        while committed("payload") < calls as u64 || committed("predictions") < calls as u64 {
            assert!(Instant::now() < deadline, "not committed within 10 minutes");
            std::thread::sleep(Duration::from_millis(5));
        }
        let seconds = started.elapsed().as_secs_f64();
        println!("| {n} | {:.0} | {seconds:.2} |", calls as f64 / seconds);
        assert!(log.close(Duration::from_secs(10)));
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
